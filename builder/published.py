"""Datasets in the paper's published schema (`bsienkiewicz/ConceptCaps`), read with this project's concepts.

The published schema: `id`, `caption`, `aspect_list` (a string holding a Python list literal of tags) and
`genre_aspects`, `mood_aspects`, `instrument_aspects`, `tempo_aspects` (lists of the paper's 200 raw tags); its
audio configs add `file_name` (Audio). It is recognised from those features (`is_published`).

`PublishedReader` turns its rows into this project's example rows (`tags` and one list per category of our
concepts): every tag is mapped through our reviewed aliases (`Taxonomy.from_concept_table`), a tag no alias
names is counted, not guessed; the `aspect_list` string is parsed as a literal, never evaluated, and a malformed
one is counted and its row kept with the category lists alone. An id seen before, in this split or an earlier
one (train, then validation, then test), is dropped with a count: the published data repeat about a third of
their ids with other content, some across splits, and a concept set must not hold one id twice or let it leak
between splits. The concept sets are then built by the same code as assembly's (`builder.splits.concept_sets`).
"""

from __future__ import annotations

import ast
from collections import Counter
from typing import Iterable

from builder.taxonomy import Taxonomy
from core.constants import CATEGORIES
from core.log import get_logger

logger = get_logger(__name__)

ASPECT_FIELDS = tuple(f"{c}_aspects" for c in CATEGORIES)
TEXT_FIELDS = ("id", "caption", "aspect_list", *ASPECT_FIELDS)
AUDIO_FIELD = "file_name"


def is_published(features) -> bool:
    """Whether a dataset's features are the paper's published schema."""
    return all(name in features for name in TEXT_FIELDS)


def parse_aspect_list(text) -> list[str]:
    """The tags of an `aspect_list` string such as "['rock', 'fast tempo']" (a literal, never evaluated).

    Raises:
        ValueError: not a list literal of strings.
    """
    if isinstance(text, list):
        value = text
    else:
        try:
            value = ast.literal_eval(text) if isinstance(text, str) else None
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"not a list of strings: {str(text)[:80]!r}")
    return list(value)


def resolve_concept(name: str, taxonomy: Taxonomy) -> str:
    """Our concept for a name of either taxonomy (our concept, an alias of it, or one of the paper's tags)."""
    concept = taxonomy.concept_for(name)
    if concept is None:
        raise ValueError(
            f"{name!r} is neither a concept nor a tag that maps to one (aliases: builder/data/concepts.tsv)"
        )
    return concept


class PublishedReader:
    """Reads published-schema rows into our example rows, split after split, keeping the counts it reports."""

    def __init__(self, taxonomy: Taxonomy | None = None):
        self.taxonomy = taxonomy or Taxonomy.from_concept_table()
        self.unmapped: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.seen: dict[str, str] = {}  # id -> the split that kept it
        self.malformed = 0  # rows whose aspect_list is not a list literal: kept, with their category lists alone

    def convert(self, rows: Iterable[dict], split: str) -> Iterable[dict]:
        """Our example rows for one split's source rows, in order; each keeps `index`, its row's position in the
        source split. Splits must be given in order (train, validation, test) for the cross-split rule."""
        for index, row in enumerate(rows):
            example = self.convert_row(row, split, index)
            if example is not None:
                yield example

    def convert_row(self, row: dict, split: str, index: int) -> dict | None:
        """One source row as our example row, or None for an id seen before (counted)."""
        id_ = str(row["id"])
        if id_ in self.seen:
            where = "in the same split" if self.seen[id_] == split else f"already in {self.seen[id_]}"
            self.skipped[f"duplicate id ({where})"] += 1
            return None
        self.seen[id_] = split
        tags = [t for field in ASPECT_FIELDS for t in (row.get(field) or [])]
        try:
            tags += parse_aspect_list(row["aspect_list"])
        except ValueError:
            self.malformed += 1
        concepts = set()
        for tag in tags:
            concept = self.taxonomy.concept_for(tag)
            if concept is None:
                self.unmapped[self.taxonomy.normalise(tag)] += 1
            else:
                concepts.add(concept)
        ordered = sorted(concepts, key=self.taxonomy.index.__getitem__)
        return {
            "id": id_,
            "caption": row["caption"] or "",
            "tags": ordered,
            "split": split,
            "index": index,
            **{c: [t for t in ordered if self.taxonomy.category_of[t] == c] for c in CATEGORIES},
        }

    def report(self) -> dict:
        """What was dropped and what could not be mapped, with counts."""
        return {
            "dropped": dict(self.skipped),
            "malformed_aspect_list": self.malformed,
            "unmapped_tags": dict(self.unmapped.most_common()),
            "unmapped_tag_occurrences": sum(self.unmapped.values()),
        }

    def warn(self, source: str) -> None:
        if self.skipped:
            logger.warning("%s: %s", source, ", ".join(f"{n} rows dropped: {k}" for k, n in self.skipped.items()))
        if self.malformed:
            logger.warning(
                "%s: %d rows have a malformed aspect_list; their category lists are used alone", source, self.malformed
            )
        if self.unmapped:
            top = ", ".join(f"{t!r} ({n})" for t, n in self.unmapped.most_common(8))
            logger.warning(
                "%s: %d tags in %d occurrences map to no concept, most often %s",
                source,
                len(self.unmapped),
                sum(self.unmapped.values()),
                top,
            )
