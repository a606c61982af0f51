"""The README's figure of rendered genres: one clip each of rock, jazz, country and electronic music from the
symbolic backend (the same lists and seeds every time), as log-mel spectrograms (the musicnn front end's 96 bands
at 16 kHz), with each clip's ground truth in its title. Writes docs/images/genre_spectrograms.png and, with
--wav_dir, the clips themselves for listening (never committed).

    python scripts/genre_spectrograms.py [--wav_dir /tmp/clips]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LISTS = {
    "rock": ["rock", "energetic", "electric guitar", "bass guitar", "drum kit"],
    "jazz": ["jazz", "mellow", "piano", "upright bass", "drum kit", "saxophone"],
    "country": ["country", "happy", "acoustic guitar", "bass guitar", "drum kit", "electric guitar"],
    "electronic": ["electronic", "energetic", "synthesizer", "synth bass", "electronic drums"],
}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(REPO / "docs" / "images" / "genre_spectrograms.png"))
    parser.add_argument("--wav_dir", default=None)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf
    import soxr

    from builder.taxonomy import build_taxonomy
    from generation.symbolic import SymbolicSynthesizer
    from review.data import log_mel_db

    synth = SymbolicSynthesizer(build_taxonomy()[0])
    fig, axes = plt.subplots(len(LISTS), 1, figsize=(10, 2.3 * len(LISTS)))
    for ax, (genre, tags) in zip(axes, LISTS.items()):
        clip = synth.render_row(tags, seed=1, duration_s=args.seconds)
        if args.wav_dir:
            Path(args.wav_dir).mkdir(parents=True, exist_ok=True)
            sf.write(Path(args.wav_dir) / f"{genre}.wav", clip.wave, synth.sampling_rate)
        db = log_mel_db(soxr.resample(clip.wave, synth.sampling_rate, 16000))
        ax.imshow(
            db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=db.max() - 80,
            vmax=db.max(),
            extent=[0, args.seconds, 0, db.shape[0]],
        )
        t = clip.ground_truth
        ax.set_title(
            f"{genre}: {', '.join(tags[1:])} — style {t['style']}, {t['bpm']:.0f} bpm {t['meter']}, {t['key']}"
            f"{', amp ' + t['amp'] if t['amp'] else ''}",
            fontsize=9,
        )
        ax.set_ylabel("mel band")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(args.output, dpi=72)
    from PIL import Image

    Image.open(args.output).convert("RGB").quantize(64).save(args.output, optimize=True)  # a small file for the README
    return Path(args.output)


if __name__ == "__main__":
    from core.log import get_logger

    get_logger(__name__).info("wrote %s", main())
