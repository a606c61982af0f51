"""The original musicnn (TensorFlow, from PyPI's wheel) on given inputs: the reference that
`benchmarks.bench_musicnn_fidelity` compares the PyTorch port with. Run by that benchmark with a Python that has
TensorFlow and librosa (`requirements-tf.txt`), never by the project itself.

    python benchmarks/musicnn_tf_reference.py --wheel musicnn-0.1.0-py3-none-any.whl --inputs in.npz --output out.npz

`inputs` holds `waves` (clips, samples) at 16 kHz and `patches` (n, 187, 96) of log-mel; writes, per model,
`<model>_patch_probs` (the original network on the given patches), `<model>_clip_probs` (the original
preprocessing with librosa, its float16 cast replaced by float32, reflect padding as in training, then the
network; per clip the mean over patches), and `mel` (librosa's mel power of every clip, for the port's
preprocessing), and the count of mel bins above the float16 overflow.
"""

import argparse
import os
import sys
import tempfile
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--models", nargs="+", default=["MTT_musicnn", "MSD_musicnn"])
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    zipfile.ZipFile(args.wheel).extractall(tmp)
    sys.path.insert(0, tmp)
    import librosa
    import tensorflow as tf
    from musicnn import models  # the wheel's own model code (imports only TensorFlow)

    tf.compat.v1.disable_eager_execution()
    data = np.load(args.inputs)
    waves, patches = data["waves"], data["patches"].astype(np.float32)
    mels = [
        librosa.feature.melspectrogram(y=w, sr=16000, hop_length=256, n_fft=512, n_mels=96, pad_mode="reflect").T
        for w in waves
    ]
    out = {
        "mel": np.stack(mels).astype(np.float32),
        "float16_overflow_bins": np.array([(m[: len(m) // 187 * 187] > 65504 / 10000).sum() for m in mels]),
    }
    for name in args.models:
        tf.compat.v1.reset_default_graph()
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        with tf.name_scope("model"):
            logits = models.define_model(x, is_training, name, 50)[0]
        probs = tf.nn.sigmoid(logits)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().restore(sess, os.path.join(tmp, "musicnn", name) + "/")  # raises on failure
            out[f"{name}_patch_probs"] = sess.run(probs, {x: patches, is_training: False})
            clip_probs = []
            for m in mels:
                logmel = np.log10(10000 * m + 1).astype(np.float32)
                n = logmel.shape[0] // 187
                batch = logmel[: n * 187].reshape(n, 187, 96)
                clip_probs.append(sess.run(probs, {x: batch, is_training: False}).mean(0))
            out[f"{name}_clip_probs"] = np.stack(clip_probs)
    np.savez(args.output, **out)


if __name__ == "__main__":
    main()
