"""Shared fixtures: the real MusicCaps CSV (read from ../shared, never copied) and small CSV fixtures."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from builder.common import DEFAULT_MUSICCAPS_CSV

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MUSICCAPS_COLUMNS = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
                     "is_balanced_subset", "is_audioset_eval"]


@pytest.fixture(scope="session")
def musiccaps_csv() -> Path:
    assert DEFAULT_MUSICCAPS_CSV.is_file(), f"the MusicCaps CSV is expected at {DEFAULT_MUSICCAPS_CSV}"
    return DEFAULT_MUSICCAPS_CSV


def write_musiccaps(path: Path, rows: list[dict]) -> Path:
    """Write a small MusicCaps-shaped CSV; each row gives ytid, aspect_list (a list) and caption."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MUSICCAPS_COLUMNS)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({
                "ytid": row.get("ytid", f"vid{i:08d}"), "start_s": row.get("start_s", 30), "end_s": row.get("end_s", 40),
                "audioset_positive_labels": "[]", "aspect_list": repr(row["aspect_list"]),
                "caption": row.get("caption", "A caption."), "author_id": 0, "is_balanced_subset": False,
                "is_audioset_eval": False,
            })
    return path


@pytest.fixture(scope="session")
def taxonomy(musiccaps_csv):
    from builder.taxonomy import build_taxonomy

    return build_taxonomy(musiccaps_csv)[0]
