"""Distil MusicCaps into the seed set: rows whose aspects reach at least 3 of the 4 concept categories.

Writes two files into the run directory:
  distilled.parquet         the seed set (rows reaching >= `min_categories` categories)
  musiccaps_tagged.parquet  every row naming at least one concept (the VAE's training data)
Both carry the same split, assigned per YouTube video so that no video (and so no id) is in two splits.

    python -m builder.distill --taxonomy runs/demo/taxonomy.json --musiccaps_csv path/to/musiccaps-public.csv
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from builder.musiccaps import MUSICCAPS_HELP, MusicCapsRow, read_musiccaps
from builder.splits import seeded_split
from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import DEFAULT_MUSICCAPS, arg, parse_args, run_dir
from core.constants import CATEGORIES, SPLITS
from core.io import write_json, write_parquet
from core.log import get_logger

SPLIT_SEED = 20260120
VALIDATION_FRACTION = 0.05
TEST_FRACTION = 0.05
MIN_CATEGORIES = 3

logger = get_logger(__name__)

_LOW_QUALITY = r"low[- ]quality"
# "The low quality recording features ..." -> "The recording features ...": the phrase used as an adjective,
# after a determiner or a comma and before a noun. Other uses drop their whole sentence.
_ATTRIBUTIVE = re.compile(
    rf"(?:\b(?P<det>the|a|an|this|that|its)\s+|(?P<comma>,\s*)|(?P<start>^|(?<=[.!?] )))"
    rf"(?:very\s+)?{_LOW_QUALITY}\s+(?=(?!of\b|and\b)(?P<next>[a-z]))",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")


def _drop_adjective(m: re.Match) -> str:
    det = m.group("det")
    if m.group("start") is not None:
        return ""  # "Low quality recording of ..." -> "recording of ...", capitalised below
    if det is None:
        return " "  # ", low quality recording" -> " recording"
    if det.lower() in ("a", "an"):  # article agreement with the word that now follows
        det = det[0] + ("n" if m.group("next").lower() in "aeiou" else "")
    return det + " "


def clean_caption(caption: str) -> tuple[str, int]:
    """Remove mentions of low recording quality without leaving artefacts.

    The phrase is cut where it qualifies a noun ("the low quality recording"); any sentence that still
    speaks of low quality ("... due to the low quality of the audio.") is dropped whole.

    Returns:
        The cleaned caption and the number of sentences dropped.
    """
    text = " ".join(caption.split())
    text = _ATTRIBUTIVE.sub(_drop_adjective, text)
    dropped = 0
    if re.search(_LOW_QUALITY, text, re.IGNORECASE):
        sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
        kept = [s for s in sentences if not re.search(_LOW_QUALITY, s, re.IGNORECASE)]
        dropped = len(sentences) - len(kept)
        text = " ".join(kept)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    text = re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text, dropped


def assign_video_splits(
    ytids: Sequence[str], seed: int = SPLIT_SEED, validation: float = VALIDATION_FRACTION, test: float = TEST_FRACTION
) -> dict[str, str]:
    """Split by YouTube video, so that no video (and so no id) is in two splits: test, validation, then train."""
    return seeded_split(ytids, {"test": test, "validation": validation, "train": 1 - test - validation}, seed)


ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("ytid", pa.string()),
        ("start_s", pa.int32()),
        ("end_s", pa.int32()),
        ("caption", pa.string()),
        ("caption_original", pa.string()),
        ("aspect_list", pa.list_(pa.string())),
        *[(c, pa.list_(pa.string())) for c in CATEGORIES],
        ("n_categories", pa.int8()),
        ("split", pa.string()),
    ]
)


@dataclass
class DistillResult:
    distilled: pa.Table
    tagged: pa.Table
    summary: dict


def distill_musiccaps(
    rows: Sequence[MusicCapsRow],
    taxonomy: Taxonomy,
    min_categories: int = MIN_CATEGORIES,
    seed: int = SPLIT_SEED,
    source: str = "musiccaps",
) -> DistillResult:
    """Match every row's aspects to concepts, clean captions, assign splits, keep rows by category count.

    Returns:
        The distilled table, the table of every row with at least one concept, and a summary whose
        `skipped` counts every row left out, by reason.
    """
    splits = assign_video_splits([r.ytid for r in rows], seed=seed)
    records = []
    skipped: Counter[str] = Counter()
    sentences_dropped = 0
    for row in sorted(rows, key=lambda r: r.id):
        matched = taxonomy.match(row.aspect_list)
        n_categories = sum(bool(matched[c]) for c in CATEGORIES)
        if n_categories == 0:
            skipped["no taxonomy concept"] += 1
            continue
        caption, dropped = clean_caption(row.caption)
        if not caption:
            skipped["empty caption after cleaning"] += 1
            logger.warning("%s row %d: caption is empty after cleaning; row skipped", source, row.line)
            continue
        sentences_dropped += dropped
        records.append(
            {
                "id": row.id,
                "ytid": row.ytid,
                "start_s": row.start_s,
                "end_s": row.end_s,
                "caption": caption,
                "caption_original": row.caption,
                "aspect_list": list(row.aspect_list),
                **matched,
                "n_categories": n_categories,
                "split": splits[row.ytid],
            }
        )
    tagged = pa.Table.from_pylist(records, schema=ROW_SCHEMA)
    keep = [r for r in records if r["n_categories"] >= min_categories]
    skipped[f"fewer than {min_categories} categories"] = len(records) - len(keep)
    distilled = pa.Table.from_pylist(keep, schema=ROW_SCHEMA)
    summary = {
        "musiccaps_rows": len(rows),
        "tagged_rows": len(records),
        "distilled_rows": len(keep),
        "skipped": dict(sorted(skipped.items())),
        "quality_sentences_dropped": sentences_dropped,
        "per_split": {s: sum(r["split"] == s for r in keep) for s in SPLITS},
        "tagged_per_split": {s: sum(r["split"] == s for r in records) for s in SPLITS},
        "rows_per_category": {c: sum(bool(r[c]) for r in keep) for c in CATEGORIES},
        "concepts_used_per_category": {c: len({t for r in keep for t in r[c]}) for c in CATEGORIES},
        "min_categories": min_categories,
        "split_seed": seed,
        "taxonomy_version": taxonomy.version,
    }
    return DistillResult(distilled, tagged, summary)


@dataclass
class DistillArguments:
    """Distil MusicCaps into distilled.parquet (and musiccaps_tagged.parquet) with leak-free splits."""

    musiccaps_csv: str = arg(DEFAULT_MUSICCAPS, MUSICCAPS_HELP)
    taxonomy: str | None = arg(None, "taxonomy.json (default: run dir)")
    output_dir: str | None = arg(None, "where to write (default: run dir)")
    min_categories: int = arg(MIN_CATEGORIES, "categories a row must reach")
    split_seed: int = arg(SPLIT_SEED, "seed of the per-video split")


ARGUMENTS = DistillArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> DistillResult:
    args = parse_args(ARGUMENTS, "distill", argv)
    out = Path(args.output_dir) if args.output_dir else run_dir()
    taxonomy = Taxonomy.load(args.taxonomy or out / "taxonomy.json")
    result = distill_musiccaps(
        read_musiccaps(args.musiccaps_csv),
        taxonomy,
        args.min_categories,
        args.split_seed,
        source=str(args.musiccaps_csv),
    )
    write_parquet(out / "musiccaps_tagged.parquet", result.tagged)
    write_parquet(out / "distilled.parquet", result.distilled)
    write_json(out / "distill_summary.json", result.summary)
    s = result.summary
    logger.info(
        "distilled %d of %d rows; per split %s; rows per category %s; skipped %s",
        s["distilled_rows"],
        s["musiccaps_rows"],
        s["per_split"],
        s["rows_per_category"],
        s["skipped"],
    )
    return result


if __name__ == "__main__":
    cli(main)
