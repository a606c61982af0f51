"""The reviewed table of which tagger output hears which concept (`builder/data/tagger_tags.tsv`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import DataError
from core.io import read_tsv

TABLE = Path(__file__).resolve().parent.parent / "builder" / "data" / "tagger_tags.tsv"
VOCABULARIES = ("MTT", "MSD", "AudioSet")


@dataclass(frozen=True)
class TagRow:
    vocabulary: str
    tag: str
    concept: str
    reason: str


@lru_cache(maxsize=None)
def tag_rows(path: Path = TABLE) -> tuple[TagRow, ...]:
    """Every row, checked: a known vocabulary, a reason, and one tag per (vocabulary, concept)."""
    rows, seen = [], set()
    for number, (vocabulary, tag, concept, reason) in read_tsv(path, 4):
        if vocabulary not in VOCABULARIES:
            raise DataError(
                path, f"unknown vocabulary {vocabulary!r}; one of {VOCABULARIES}", row=number, field="vocabulary"
            )
        if not reason:
            raise DataError(path, "every mapping needs its reason", row=number, field="reason")
        if (vocabulary, concept) in seen:
            raise DataError(path, f"{concept!r} has two {vocabulary} tags", row=number, field="concept")
        seen.add((vocabulary, concept))
        rows.append(TagRow(vocabulary, tag, concept, reason))
    return tuple(rows)


def concept_tags(vocabulary: str | None, outputs: list[str]) -> dict[str, str]:
    """{concept: output name} for a model's outputs: the table's rows for its vocabulary, or, for a model whose
    outputs are concepts (this project's genre CNN, vocabulary "concepts"), each output itself."""
    if vocabulary == "concepts":
        return {o: o for o in outputs}
    return {r.concept: r.tag for r in tag_rows() if r.vocabulary == vocabulary and r.tag in outputs}


def tag_siblings(concept: str) -> set[str]:
    """The other concepts that some vocabulary hears through the same tag as `concept` (MTT's guitar: acoustic and
    electric guitar): a clip holding one of them is no negative that the tag could tell apart."""
    rows = tag_rows()
    tags = {(r.vocabulary, r.tag) for r in rows if r.concept == concept}
    return {r.concept for r in rows if (r.vocabulary, r.tag) in tags and r.concept != concept}
