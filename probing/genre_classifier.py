"""A small genre classifier (log-mel CNN) trained on the dataset's own audio, with genre concepts as labels, so
that TCAV runs end to end. Any other torch classifier can be given to TCAV by import path and layer name.

    python -m probing.genre_classifier --dataset runs/demo/dataset --output_dir runs/demo/genre_cnn

Mel features come from the project's one mel front end (`probing.features.MelPower`). Classes are the most frequent
genres among examples that carry exactly one of them; other examples are left out (counted). The dataset may be
this project's or one in the paper's published schema. Audio is decoded batch by batch into log-mels kept in a
file beside the checkpoint while training (`FeatureStore`), so memory does not grow with the dataset.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import set_seed

from builder.reader import AudioSplit
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.errors import ConfigError, DataError
from core.io import write_json
from core.log import get_logger
from probing.features import MelPower, model_inputs

logger = get_logger(__name__)


@dataclass
class MelConfig:
    sampling_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    duration_s: float = 3.0


class LogMel(MelPower):
    """Waveform (batch, samples) -> log-mel (batch, n_mels, frames), cropped or padded to `duration_s`."""

    def __init__(self, config: MelConfig):
        super().__init__(config.sampling_rate, config.n_fft, config.hop_length, config.n_mels)
        self.config = config
        self.samples = int(config.duration_s * config.sampling_rate)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave[..., : self.samples]
        if wave.shape[-1] < self.samples:
            wave = nn.functional.pad(wave, (0, self.samples - wave.shape[-1]))
        return torch.log(torch.clamp(super().forward(wave), min=1e-10)).transpose(1, 2)


class _ConvFrontEnd(nn.Module):
    """Three conv blocks over the log-mel (batch, n_mels, frames) -> (batch, 4 * channels, n_mels // 8, frames // 8)."""

    def __init__(self, n_mels: int, channels: int):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.norm = nn.BatchNorm2d(1)
        self.block1, self.block2, self.block3 = (
            block(1, channels),
            block(channels, 2 * channels),
            block(2 * channels, 4 * channels),
        )

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.block1(self.norm(mel.unsqueeze(1)))))


class GenreCNN(_ConvFrontEnd):
    """log-mel (batch, n_mels, frames) -> class logits, from the conv features averaged over time and frequency.
    TCAV layers: block1, block2, block3, embedding."""

    def __init__(self, n_classes: int, n_mels: int = 64, channels: int = 16):
        super().__init__(n_mels, channels)
        self.embedding = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * channels, 4 * channels), nn.ReLU()
        )
        self.head = nn.Linear(4 * channels, n_classes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(self.features(mel)))


class FrameCNN(_ConvFrontEnd):
    """log-mel (batch, n_mels, frames) -> class logits, from per-step logits pooled over time by a log-mean-exp: the
    conv features, max-pooled over 4 steps of 80 ms (a step of 0.32 s at the default hop), through a dense layer
    per step (`frames`) and the head. TCAV layers: block1, block2, block3, frames.

    A clip's logit follows the steps where its class is most evident, so the class gradient at `frames` or any
    earlier layer differs from clip to clip (where and what the instrument plays). After `GenreCNN`'s average
    pooling the network is nearly linear and the gradient nearly the same for every clip, which makes TCAV's sign
    counts all or nothing (see `probing.tcav_validation`). The 0.32 s steps keep `frames` small (64 values per
    step), so a linear CAV there is learnt from few examples; at 80 ms steps, four times as many values, sparsely
    playing or similar-sounding instruments were separated less well (docs/benchmarks.md, the ground-truth
    experiment).
    """

    def __init__(self, n_classes: int, n_mels: int = 64, channels: int = 16):
        super().__init__(n_mels, channels)
        per_step = 4 * channels * (n_mels // 8)
        self.frames = nn.Sequential(nn.MaxPool1d(4, ceil_mode=True), nn.Conv1d(per_step, 4 * channels, 1), nn.ReLU())
        self.head = nn.Conv1d(4 * channels, n_classes, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.frames(self.features(mel).flatten(1, 2)))  # (batch, classes, steps)
        return torch.logsumexp(logits, -1) - math.log(logits.shape[-1])


ARCHITECTURES = {"pooled": GenreCNN, "frames": FrameCNN}


@dataclass
class GenreClassifierArguments:
    """Train the log-mel CNN genre classifier on the assembled dataset's audio."""

    dataset: str | None = arg(None, "assembled dataset folder or Hub id (default: run dir/dataset)")
    output_dir: str | None = arg(None, "checkpoint folder (default: run dir/genre_cnn)")
    num_classes: int = arg(5, "most frequent single genres used as classes")
    duration_s: float = arg(3.0, "seconds of each clip the classifier sees")
    channels: int = arg(16, "CNN width")
    architecture: str = arg(
        "pooled",
        "'pooled' (GenreCNN: features averaged over time) or 'frames' (FrameCNN: per-step logits pooled "
        "by log-mean-exp; gradients that differ per clip, which TCAV's sign counts need)",
    )
    epochs: int = arg(10, "training epochs")
    batch_size: int = arg(16, "batch size")
    learning_rate: float = arg(1e-3, "Adam learning rate")
    seed: int = arg(0, "seed")


def choose_labels(rows: Sequence[dict], num_classes: int) -> tuple[list[str], list[int], Counter]:
    counts = Counter(g for r in rows for g in r["genre"])
    classes = [g for g, _ in counts.most_common(num_classes)]
    labels, skipped = [], Counter()
    for r in rows:
        mine = [g for g in r["genre"] if g in classes]
        if len(mine) != 1:
            skipped["no class genre" if not mine else "several class genres"] += 1
            labels.append(-1)
        else:
            labels.append(classes.index(mine[0]))
    return classes, labels, skipped


def save_classifier(
    path: Path, model: nn.Module, classes: list[str], mel: MelConfig, channels: int, extra: dict
) -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    architecture = next(k for k, cls in ARCHITECTURES.items() if type(model) is cls)
    write_json(
        path / "config.json",
        {"classes": classes, "mel": asdict(mel), "channels": channels, "architecture": architecture, **extra},
    )


def architecture_class(name: str, source=None) -> type[nn.Module]:
    if name not in ARCHITECTURES:
        raise ConfigError(
            f"{source + ': ' if source else ''}unknown classifier architecture {name!r}; "
            f"choose one of {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[name]


def load_classifier(path) -> tuple[nn.Module, LogMel, list[str]]:
    path = Path(path)
    for name in ("model.safetensors", "config.json"):
        if not (path / name).is_file():
            raise DataError(path / name, "missing from the classifier checkpoint")
    config = json.loads((path / "config.json").read_text())
    mel = MelConfig(**config["mel"])
    model_class = architecture_class(config.get("architecture", "pooled"), str(path / "config.json"))
    model = model_class(len(config["classes"]), mel.n_mels, config["channels"])
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), LogMel(mel), config["classes"]


def train_genre_classifier(args: GenreClassifierArguments, dataset: str, output_dir: Path) -> dict:
    architecture_class(args.architecture)  # a misspelt name fails before any audio is read
    set_seed(args.seed)
    audio = AudioSplit(dataset, "train")
    classes, labels, skipped = choose_labels(audio.rows, args.num_classes)
    if len(classes) < 2:
        raise DataError(dataset, f"need at least two genres to classify, found {classes}")
    keep = [i for i, label in enumerate(labels) if label >= 0]
    mel = MelConfig(duration_s=args.duration_s)
    to_mel = LogMel(mel)
    # log-mels of the kept clips, computed in one pass over the split into a file beside the checkpoint
    features, row_of = model_inputs(
        audio, [audio.rows[i]["id"] for i in keep], to_mel, to_mel.samples, output_dir / "features.tmp"
    )
    try:
        label_of = {audio.rows[i]["id"]: labels[i] for i in keep}
        y = torch.tensor([label_of[id_] for id_ in sorted(row_of, key=row_of.get)])  # in the store's order
        model, losses = fit_classifier(
            features,
            y,
            len(classes),
            mel.n_mels,
            args.channels,
            args.epochs,
            args.batch_size,
            args.learning_rate,
            args.seed,
            args.architecture,
        )
        accuracy = _accuracy(model, features, y)
    finally:
        features.close()
    result = {
        "skipped_clips": audio.skip_report(),
        "classes": classes,
        "train_examples": len(y),
        "skipped": dict(skipped),
        "losses": losses,
        "train_accuracy": accuracy,
        "arguments": asdict(args),
    }
    if audio.reader is not None:
        result["source"] = {"schema": "published", **audio.reader.report()}
    save_classifier(output_dir, model, classes, mel, args.channels, result)
    logger.info(
        "genre CNN: %d classes %s, %d examples, loss %.3f -> %.3f, train accuracy %.3f",
        len(classes),
        classes,
        len(y),
        losses[0],
        losses[-1],
        accuracy,
    )
    return result


def _accuracy(model: nn.Module, x, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(
            int((model(x[torch.arange(b, min(b + batch_size, len(y)))]).argmax(1) == y[b : b + batch_size]).sum())
            for b in range(0, len(y), batch_size)
        )
    return hits / len(y)


def fit_classifier(
    x,
    y: torch.Tensor,
    n_classes: int,
    n_mels: int,
    channels: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    architecture: str = "pooled",
) -> tuple[nn.Module, list[float]]:
    """Train a GenreCNN (or another of `ARCHITECTURES`) on log-mel inputs `x` (a tensor, or a `FeatureStore`:
    anything indexed by a tensor of row numbers) and class indices `y` (cross-entropy), or multi-hot labels `y` of
    shape (n, n_classes) (one
    independent sigmoid output per class, binary cross-entropy); Adam, seeded shuffling."""
    set_seed(seed)
    model = architecture_class(architecture)(n_classes, n_mels, channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for b in range(0, len(y), batch_size):
            idx = order[b : b + batch_size]
            logits = model(x[idx])
            loss = (
                nn.functional.binary_cross_entropy_with_logits(logits, y[idx].float())
                if y.dim() == 2
                else nn.functional.cross_entropy(logits, y[idx])
            )
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite loss at epoch {epoch}, batch {b // batch_size}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(y))
    return model.eval(), losses


ARGUMENTS = GenreClassifierArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "genre_classifier", argv)
    out = run_dir()
    return train_genre_classifier(
        args, args.dataset or str(out / "dataset"), Path(args.output_dir or out / "genre_cnn")
    )


if __name__ == "__main__":
    cli(main)
