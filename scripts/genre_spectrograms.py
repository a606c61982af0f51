"""The README's figure of rendered genres: one clip each of rock, jazz, country and electronic music from the
symbolic backend (the same lists and seeds every time), as log-mel spectrograms (the musicnn front end's 96 bands
at 16 kHz), with each clip's ground truth in its title. Writes docs/images/genre_spectrograms.png and, with
--wav_dir, the clips themselves for listening (never committed).

    python scripts/genre_spectrograms.py [--wav_dir /tmp/clips]
    python scripts/genre_spectrograms.py --examples runs/genre_examples   # a short clip of every genre, to listen

With --examples, every genre of `generation/data/genre_instruments.tsv` (the genres whose lists get their core
instruments) is rendered with exactly those instruments, one FLAC each (`<genre>.flac`), and an `index.md`
lists each clip's attribute list and ground truth: style, tempo, meter, key, amp. Generated here, never
committed (audio stays out of the repository); the figure is not rewritten then.
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
    parser.add_argument("--examples", default=None, help="folder for a short clip of every genre (FLAC + index.md)")
    args = parser.parse_args(argv)
    if args.examples:
        return write_examples(Path(args.examples), args.seconds)
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


def genre_lists() -> dict[str, list[str]]:
    """{genre: [genre, its core instruments (each slot's first alternative)]} from genre_instruments.tsv."""
    from core.io import read_tsv
    from generation.sample_tags import GENRE_CORE_TABLE

    return {
        genre: [genre, *(slot.split(" / ")[0].strip() for slot in core.split(" | "))]
        for _, (genre, core, _reason) in read_tsv(GENRE_CORE_TABLE, 3)
    }


def write_examples(folder: Path, seconds: float) -> Path:
    """One FLAC per genre and an index of what each plays; returns the index."""
    import soundfile as sf

    from builder.taxonomy import build_taxonomy
    from generation.symbolic import SymbolicSynthesizer

    synth = SymbolicSynthesizer(build_taxonomy()[0])
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["| genre | attribute list | style | bpm | meter | key | amp | file |", "|---|---|---|---|---|---|---|---|"]
    for genre, tags in genre_lists().items():
        clip = synth.render_row(tags, seed=1, duration_s=seconds)
        name = genre.replace(" ", "_").replace("/", "-") + ".flac"
        sf.write(folder / name, clip.wave, synth.sampling_rate)
        t = clip.ground_truth
        lines.append(f"| {genre} | {', '.join(tags)} | {t['style']} | {t['bpm']:.0f} | {t['meter']} | {t['key']} | "
                     f"{t['amp'] or '-'} | {name} |")  # fmt: skip
    index = folder / "index.md"
    index.write_text(f"Rendered by {synth.name}, revision {synth.revision}; {seconds:g} s each, seed 1.\n\n"
                     + "\n".join(lines) + "\n")  # fmt: skip
    return index


if __name__ == "__main__":
    from core.cli import cli
    from core.log import get_logger

    # a missing soundfont or MusicCaps CSV is one line, as for every stage
    cli(lambda argv: get_logger(__name__).info("wrote %s", main(argv)), lock=False)
