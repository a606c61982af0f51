"""The musicnn port against the original TensorFlow model, and its tagging speed.

    python -m benchmarks.bench_musicnn_fidelity --tf_python /path/to/tf-venv/bin/python [--dataset runs/demo/dataset]

`--tf_python` is a Python with TensorFlow and librosa (`pip install -r requirements-tf.txt` in a venv of its own);
it runs `benchmarks/musicnn_tf_reference.py`, the wheel's own model code. The clips: up to 16 of the dataset's
rendered clips and 12 synthetic signals (sines, a chord, a chirp, white and pink noise, clicks), peaks 0.05-0.5.
Prints one JSON line:
- `network_max_abs`: the same log-mel patches through both networks, max |p_port - p_tf| over tags and patches
  (target <= 1e-3, both models);
- `logmel_max_abs`: log10(10000 mel + 1) of the port's front end against librosa's (reflect padding, float32);
- `clip_max_abs`: whole clips, the port's preprocessing and network against librosa + the TF network (float32);
- `float16_overflow_bins`: bins the original's float16 cast would have made inf, over all clips;
- `realtime_per_process`: seconds of 30 s audio tagged per second by one process with its default threads (one
  per core; target >= 50), and `realtime_per_thread` on one thread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.log import get_logger
from probing.musicnn import SAMPLING_RATE, load_musicnn

logger = get_logger(__name__)
MODELS = ("MTT_musicnn", "MSD_musicnn")
SECONDS = 8.0


def synthetic_clips(seconds: float = SECONDS) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    pink = np.cumsum(rng.standard_normal(len(t)))
    pink -= np.convolve(pink, np.ones(200) / 200, mode="same")
    signals = [np.sin(2 * np.pi * f * t) for f in (110, 440, 1760)]
    signals += [
        sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)),
        np.sin(2 * np.pi * (100 + 900 * t / seconds) * t),
        rng.standard_normal(len(t)),
        pink,
        (np.arange(len(t)) % 8000 < 80) * rng.standard_normal(len(t)),
        np.sign(np.sin(2 * np.pi * 220 * t)),
        np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 4 * t)),
        np.sin(2 * np.pi * 55 * t) + 0.3 * rng.standard_normal(len(t)),
        np.sin(2 * np.pi * 880 * t) * np.exp(-(t % 0.5) * 8),
    ]
    peaks = np.linspace(0.05, 0.5, len(signals))
    return [(p * s / np.abs(s).max()).astype(np.float32) for p, s in zip(peaks, signals)]


def dataset_clips(dataset: Path, n: int, seconds: float = SECONDS) -> list[np.ndarray]:
    import pyarrow.parquet as pq

    from builder.reader import read_wave

    clips = []
    for path in sorted((dataset / "audio").glob("*.parquet")):
        for row in pq.read_table(path, columns=["audio"]).column(0).to_pylist():
            wave = read_wave(row["bytes"], seconds, SAMPLING_RATE)
            clips.append(np.pad(wave, (0, int(seconds * SAMPLING_RATE) - len(wave))))
            if len(clips) == n:
                return clips
    return clips


def speed(model, threads: int, seconds: float = 30.0, clips: int = 8) -> float:
    torch.set_num_threads(threads)
    wave = torch.from_numpy(np.stack(synthetic_clips(seconds)[:clips]))
    with torch.no_grad():
        model(wave[:1])  # warm-up
        start = time.perf_counter()
        model(wave)
        elapsed = time.perf_counter() - start
    return clips * seconds / elapsed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tf_python", required=True, help="a Python with tensorflow and librosa")
    parser.add_argument("--wheel", default=None, help="musicnn-0.1.0 wheel (default: pip-download it)")
    parser.add_argument("--dataset", default="runs/demo/dataset", help="an assembled dataset whose clips to use")
    parser.add_argument("--dataset_clips", type=int, default=16)
    args = parser.parse_args(argv)
    waves = synthetic_clips() + (
        dataset_clips(Path(args.dataset), args.dataset_clips) if Path(args.dataset).is_dir() else []
    )
    ports = {name: load_musicnn(name) for name in MODELS}
    front = ports[MODELS[0]]
    with torch.no_grad():
        batch = torch.from_numpy(np.stack(waves))
        patches = front.logmel_patches(batch).flatten(0, 1)
        mel = front.mel(batch)
    with tempfile.TemporaryDirectory() as tmp:
        from probing.convert_musicnn import download_wheel

        wheel = Path(args.wheel) if args.wheel else download_wheel(Path(tmp))
        np.savez(Path(tmp) / "in.npz", waves=np.stack(waves), patches=patches.numpy())
        subprocess.run(
            [
                args.tf_python,
                str(Path(__file__).with_name("musicnn_tf_reference.py")),
                "--wheel",
                str(wheel),
                "--inputs",
                str(Path(tmp) / "in.npz"),
                "--output",
                str(Path(tmp) / "out.npz"),
                "--models",
                *MODELS,
            ],
            check=True,
        )
        ref = dict(np.load(Path(tmp) / "out.npz"))
    result = {
        "clips": len(waves),
        "patches": len(patches),
        "network_max_abs": {},
        "clip_max_abs": {},
        "logmel_max_abs": float(np.abs(np.log10(10000 * mel.numpy() + 1) - np.log10(10000 * ref["mel"] + 1)).max()),
        "float16_overflow_bins": int(ref["float16_overflow_bins"].sum()),
        "port_overflow_bins": int(front.overflow_bins(batch).sum()),
    }
    with torch.no_grad():
        for name, model in ports.items():
            result["network_max_abs"][name] = float(
                np.abs(torch.sigmoid(model.net(patches)).numpy() - ref[f"{name}_patch_probs"]).max()
            )
            result["clip_max_abs"][name] = float(np.abs(model(batch).numpy() - ref[f"{name}_clip_probs"]).max())
    threads = torch.get_num_threads()  # a process's default: one per core
    result["realtime_per_process"] = {name: round(speed(model, threads), 1) for name, model in ports.items()}
    result["realtime_per_thread"] = {name: round(speed(model, 1), 1) for name, model in ports.items()}
    result["threads_per_process"] = threads
    result["targets"] = {
        "network_max_abs <= 1e-3": all(v <= 1e-3 for v in result["network_max_abs"].values()),
        "clip_max_abs <= 1e-3": all(v <= 1e-3 for v in result["clip_max_abs"].values()),
        "realtime >= 50x": all(v >= 50 for v in result["realtime_per_process"].values()),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
