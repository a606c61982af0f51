"""The musicnn port: shapes and preprocessing with random weights of the real shapes, the weight conversion's
mapping, the tagger audit on a planted tagger, and the real weights (when converted here) against the original."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import ConfigError, DataError
from core.io import sha256_file, write_json
from probing.musicnn import (
    MODELS,
    MTT_LABELS,
    PATCH_FRAMES,
    SAMPLING_RATE,
    MelFrontEnd,
    Musicnn,
    build_net,
    weights_path,
)

# the original TensorFlow models (benchmarks/musicnn_tf_reference.py: librosa's mel with reflect padding, float32
# log) on two 3.2 s signals: the three most probable tags and their probabilities
TF_REFERENCE = {
    "MTT_musicnn": [
        [("flute", 0.4372), ("solo", 0.0927), ("slow", 0.0678)],
        [("slow", 0.3057), ("ambient", 0.2970), ("quiet", 0.2827)],
    ],
    "MSD_musicnn": [
        [("ambient", 0.3427), ("experimental", 0.1414), ("electronic", 0.1397)],
        [("electronic", 0.3229), ("ambient", 0.2481), ("chillout", 0.1024)],
    ],
    "MTT_vgg": [
        [("flute", 0.6008), ("quiet", 0.1776), ("slow", 0.1403)],
        [("electronic", 0.5336), ("synth", 0.3898), ("slow", 0.3781)],
    ],
    "MSD_vgg": [
        [("experimental", 0.2498), ("jazz", 0.2100), ("electronic", 0.2012)],
        [("electronic", 0.4683), ("ambient", 0.2548), ("experimental", 0.2200)],
    ],
}


def reference_signals() -> torch.Tensor:
    t = np.arange(int(3.2 * SAMPLING_RATE)) / SAMPLING_RATE
    sine = 0.2 * np.sin(2 * np.pi * 440 * t)
    chord = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * np.exp(-(t % 0.5) * 4)
    return torch.from_numpy(np.stack([sine, chord]).astype(np.float32))


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_with_random_weights(name):
    torch.manual_seed(0)
    tagger = Musicnn(MODELS[name]).eval()
    wave = 0.1 * torch.randn(2, int(8 * SAMPLING_RATE))
    with torch.no_grad():
        taggram = tagger.taggram(wave)
        probs = tagger(wave)
    assert taggram.shape == (2, 2, 50) and probs.shape == (2, 50)  # 8 s: two whole 3 s patches, the tail dropped
    assert torch.allclose(probs, taggram.mean(1)) and ((probs > 0) & (probs < 1)).all()
    with pytest.raises(ValueError, match="at least 187 frames"):
        tagger(wave[:, :SAMPLING_RATE])


def test_every_patch_gets_its_own_features():
    """The original copies patch 0's intermediate features into every patch; the port computes each patch's."""
    from probing.models import ProbedModel, _PatchTagger

    torch.manual_seed(0)
    tagger = Musicnn(MODELS["MTT_musicnn"]).eval()
    model = ProbedModel(
        "random musicnn",
        _PatchTagger(tagger.net).eval(),
        tagger.logmel_patches,
        ["net.cnn3"],
        SAMPLING_RATE,
        6.0,
        time_axis=1,
    )
    x = tagger.logmel_patches(
        torch.cat([torch.zeros(1, 3 * SAMPLING_RATE), 0.3 * torch.randn(1, 3 * SAMPLING_RATE)], 1)
    )
    rows = []
    model.module.net.cnn3.register_forward_hook(lambda m, a, out: rows.append(out))
    model.activations(x, ["net.cnn3"])
    assert rows[0].shape[0] == 2 and not torch.allclose(rows[0][0], rows[0][1])


@pytest.mark.slow
def test_mel_front_end_matches_librosa_with_training_time_padding():
    librosa = pytest.importorskip("librosa")
    wave = reference_signals()
    ours = MelFrontEnd()(wave).numpy()
    for w, m in zip(wave.numpy(), ours):
        ref = librosa.feature.melspectrogram(
            y=w, sr=SAMPLING_RATE, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect"
        ).T
        assert m.shape == ref.shape
        assert np.abs(np.log10(10000 * m + 1) - np.log10(10000 * ref + 1)).max() < 1e-3


def test_float16_overflow_is_counted_not_copied():
    tagger = Musicnn(MODELS["MTT_musicnn"]).eval()
    t = torch.arange(3 * SAMPLING_RATE) / SAMPLING_RATE
    quiet, loud = 0.01 * torch.sin(2 * torch.pi * 440 * t), 0.9 * torch.sin(2 * torch.pi * 440 * t)
    counts = tagger.overflow_bins(torch.stack([quiet, loud]))
    assert counts[0] == 0 and counts[1] > 0
    with torch.no_grad():
        assert torch.isfinite(tagger(torch.stack([quiet, loud]))).all()  # float32 throughout


@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_vgg"])
def test_conversion_maps_every_checkpoint_variable(name):
    """Every tensor of our state dict comes from a TF variable of the transposed shape (strict load)."""
    from probing.convert_musicnn import state_dict_from_tf, tf_names

    spec = MODELS[name]
    torch.manual_seed(0)
    source = build_net(spec)
    state = source.state_dict()
    variables = {}
    for tf_name, prefix in tf_names(spec).items():
        if tf_name.startswith("batch_normalization"):
            for tf_key, key in (
                ("gamma", "weight"),
                ("beta", "bias"),
                ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"),
            ):
                variables[f"{tf_name}/{tf_key}"] = state[f"{prefix}.{key}"].numpy()
        elif tf_name.startswith("dense"):
            variables[f"{tf_name}/kernel"] = state[f"{prefix}.weight"].T.numpy()
            variables[f"{tf_name}/bias"] = state[f"{prefix}.bias"].numpy()
        else:
            variables[f"{tf_name}/kernel"] = state[f"{prefix}.weight"].permute(2, 3, 1, 0).numpy()
            variables[f"{tf_name}/bias"] = state[f"{prefix}.bias"].numpy()
    target = build_net(spec)
    target.load_state_dict(state_dict_from_tf(spec, variables), strict=True)
    for key, value in target.state_dict().items():
        if "num_batches" not in key:
            assert torch.equal(value, state[key]), key
    del variables[next(iter(variables))]
    with pytest.raises(DataError, match="has no variable"):
        state_dict_from_tf(spec, variables)


def test_missing_or_corrupt_weights_fail_loudly(tmp_path):
    from probing.musicnn import load_musicnn

    with pytest.raises(ConfigError, match="python -m probing.convert_musicnn"):
        load_musicnn("MTT_musicnn", tmp_path)
    path = weights_path("MTT_musicnn", tmp_path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="no readable conversion record of musicnn MTT_musicnn; re-convert it"):
        load_musicnn("MTT_musicnn", tmp_path)
    write_json(path.with_suffix(".json"), {"weights_sha256": sha256_file(path)})  # recorded, yet not a checkpoint
    with pytest.raises(DataError, match="not a complete musicnn MTT_musicnn checkpoint"):
        load_musicnn("MTT_musicnn", tmp_path)


def test_a_converted_file_changed_since_its_conversion_is_refused(tmp_path):
    """A same-size bit flip in a converted file would load silently: its sha256 is compared with the record."""
    from safetensors.torch import save_file

    from probing.musicnn import MODELS, build_net, load_musicnn

    path = weights_path("MSD_musicnn", tmp_path)
    save_file({k: v.contiguous() for k, v in build_net(MODELS["MSD_musicnn"]).state_dict().items()}, str(path))
    write_json(path.with_suffix(".json"), {"weights_sha256": sha256_file(path)})
    assert load_musicnn("MSD_musicnn", tmp_path).labels[0] == "rock"  # as recorded: loads
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01  # one bit of one weight: the file still loads as safetensors
    path.write_bytes(bytes(raw))
    with pytest.raises(
        DataError,
        match=r"MSD_musicnn.safetensors: sha256 \w+\.\.\. is not the \w+\.\.\. recorded at "
        r"conversion \(the file changed since\); re-convert it: `python -m probing.convert_musicnn`",
    ):
        load_musicnn("MSD_musicnn", tmp_path)


class Planted(torch.nn.Module):
    """A tagger whose `piano` output is the strength of the 1 kHz partial planted in the piano clips."""

    labels, revision = list(MTT_LABELS), "planted"

    def forward(self, wave):
        spec = torch.stft(wave, 512, 256, window=torch.hann_window(512), return_complex=True).abs().mean(-1)
        probs = torch.full((len(wave), 50), 0.5)
        probs[:, self.labels.index("piano")] = torch.sigmoid(spec[:, 32] / spec.mean(1) - 5)
        return probs

    def overflow_bins(self, wave):
        return torch.zeros(len(wave), dtype=torch.long)


def test_audit_gives_a_planted_tagger_its_concept_and_counts_a_missing_model(tmp_path, monkeypatch):
    """A tagger whose `piano` output is the 1 kHz partial planted in the piano clips: the piano is confirmed with
    AUC near 1; a concept the audio does not carry (rock) is not; an unconverted model is a counted skip."""
    import probing.musicnn as musicnn
    from builder.evidence import NOT_CONFIRMED
    from fixtures.published import write_published
    from probing.audit import main
    from tests.test_probing import planted_wave

    folder = tmp_path / "planted"
    write_published(folder, n=300, seconds=3.0, wave=planted_wave)

    real = musicnn.load_musicnn
    monkeypatch.setattr(
        musicnn, "load_musicnn", lambda name, folder=None: Planted() if name == "MTT_musicnn" else real(name, tmp_path)
    )
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    report = main(
        [
            "--dataset",
            str(folder),
            "--models",
            "MTT_musicnn",
            "MSD_musicnn",
            "--bootstrap",
            "200",
            "--output",
            str(tmp_path / "audit.json"),
        ]
    )
    assert list(report["skipped_models"]) == ["MSD_musicnn"]
    rows = {r["concept"]: r for r in report["summary"]}
    assert rows["piano"]["verdict"] == "confirmed" and rows["piano"]["splits"]["train"]["auc"] > 0.95
    assert rows["rock"]["verdict"] == NOT_CONFIRMED  # every other tag is a constant: AUC 0.5
    assert "energetic" in report["models"]["MTT_musicnn"]["no_counterpart"] and "energetic" not in rows
    assert (tmp_path / "audit.png").is_file()


def test_clips_shorter_than_a_patch_are_a_counted_skip(tmp_path, monkeypatch):
    """musicnn has nothing to tag in a clip under 3 s (the tiny presets render 1 s): counted, and the step ends."""
    import probing.musicnn as musicnn
    from fixtures.published import write_published
    from probing.audit import main
    from tests.test_probing import planted_wave

    folder = tmp_path / "short"
    write_published(folder, n=60, seconds=1.0, wave=planted_wave)
    monkeypatch.setattr(musicnn, "load_musicnn", lambda name, folder=None: Planted())
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    report = main(["--dataset", str(folder), "--models", "MTT_musicnn", "--output", str(tmp_path / "audit.json")])
    assert report["summary"] == [] and sum(report["clips_too_short"].values()) > 10
    assert (tmp_path / "audit.png").is_file()


@pytest.mark.skipif(
    not all(weights_path(n).is_file() for n in MODELS),
    reason="the real musicnn weights are not converted on this machine (python -m probing.convert_musicnn)",
)
@pytest.mark.parametrize("name", list(MODELS))
def test_real_weights_match_the_original_tensorflow_model(name):
    from probing.musicnn import load_musicnn

    tagger = load_musicnn(name)
    with torch.no_grad():
        probs = tagger(reference_signals()).numpy()
    for clip, expected in zip(probs, TF_REFERENCE[name]):
        top = [tagger.labels[k] for k in np.argsort(-clip)[:3]]
        assert top == [tag for tag, _ in expected]
        for tag, p in expected:
            assert abs(clip[tagger.labels.index(tag)] - p) < 1e-3, (tag, clip[tagger.labels.index(tag)], p)
    assert "wheel sha256:f38a4890" in tagger.revision


def test_one_patch_is_three_seconds_of_centred_frames():
    """`seconds_for(1)` of audio gives exactly one whole patch of PATCH_FRAMES frames (librosa's count for 3 s);
    one hop less gives none."""
    import librosa

    from probing.musicnn import HOP, N_MELS, SAMPLING_RATE, MelFrontEnd, log_compress, patches, seconds_for

    assert PATCH_FRAMES == librosa.time_to_frames(3, sr=SAMPLING_RATE, n_fft=512, hop_length=HOP) + 1
    samples = round(seconds_for(1) * SAMPLING_RATE)
    with torch.no_grad():
        assert patches(log_compress(MelFrontEnd()(torch.zeros(1, samples)))).shape == (1, 1, PATCH_FRAMES, N_MELS)
        with pytest.raises(ValueError, match="at least 187 frames"):
            patches(log_compress(MelFrontEnd()(torch.zeros(1, samples - HOP))))
