"""Embed a reference set of audio files with CLAP, for FAD against the generated clips (`evaluation.fad`).

    python -m evaluation.fad_reference --audio_dir path/to/reference_audio --output runs/paper/fad_reference.npy \\
        --model laion/clap-htsat-unfused

The embeddings use the same model and the same fixed 10 s windows as the per-clip scores, so the two sets are
comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from core.cli import cli
from core.config import arg, parse_args
from core.errors import DataError
from core.log import get_logger
from evaluation.score import ClapScorer

logger = get_logger(__name__)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class FADReferenceArguments:
    """Embed reference audio files with CLAP into a .npy file."""

    audio_dir: str = arg("", "folder of reference audio files (searched recursively)")
    output: str = arg("fad_reference.npy", "where to write the (n, d) embeddings")
    model: str = arg("laion/clap-htsat-unfused", "CLAP id or path (as used for scores)")
    batch_size: int = arg(16, "10 s windows embedded at once")


def embed_reference(args: FADReferenceArguments) -> np.ndarray:
    files = sorted(p for p in Path(args.audio_dir).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if len(files) < 2:
        raise DataError(args.audio_dir, f"FAD needs at least two reference audio files ({', '.join(AUDIO_SUFFIXES)})")
    scorer = ClapScorer(args.model)
    waves, rates = [], []
    for path in files:
        try:
            wave, sr = sf.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise DataError(path, f"unreadable audio ({e})") from None
        waves.append(wave.mean(axis=1))
        rates.append(sr)
    embeddings, _ = scorer.audio_embeddings(waves, rates, args.batch_size)
    np.save(args.output, embeddings)
    logger.info("embedded %d reference files with %s into %s", len(files), args.model, args.output)
    return embeddings


ARGUMENTS = FADReferenceArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> np.ndarray:
    return embed_reference(parse_args(ARGUMENTS, "fad_reference", argv))


if __name__ == "__main__":
    cli(main)
