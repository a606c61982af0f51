"""How concepts relate (`builder/data/relations.tsv`, reviewed): sub-genres are narrower than their genre, tempo
bands overlap, some shared words are homonyms. Negatives and random sets use it (a clip listing or naming a
concept's relative is never a negative for it), families are built from it (rock and everything narrower), and
the caption checks use it (a caption naming hard rock names rock too).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from core.errors import DataError
from core.io import read_tsv

RELATIONS_TABLE = Path(__file__).resolve().parent / "data" / "relations.tsv"
CONCEPT_TABLE = Path(__file__).resolve().parent / "data" / "concepts.tsv"
KINDS = ("narrower", "overlaps", "homonym")


def _words(name: str) -> list[str]:
    return name.replace("-", " ").split()


def contains(a: str, b: str) -> bool:
    """Whether `b`'s words appear, in order and together, in `a`'s name."""
    wa, wb = _words(a), _words(b)
    return a != b and any(wa[i : i + len(wb)] == wb for i in range(len(wa) - len(wb) + 1))


@dataclass(frozen=True)
class Relations:
    narrower: dict[str, frozenset[str]]  # concept -> the concepts it is a kind of (its direct broader ones)
    overlaps: dict[str, frozenset[str]]  # symmetric
    decided: frozenset[frozenset[str]]  # every pair the table decides, homonyms too

    def broader(self, concept: str) -> set[str]:
        """Every concept `concept` is a kind of, transitively."""
        out, todo = set(), list(self.narrower.get(concept, ()))
        while todo:
            c = todo.pop()
            if c not in out:
                out.add(c)
                todo += self.narrower.get(c, ())
        return out

    def descendants(self, concept: str) -> set[str]:
        """Every concept that is a kind of `concept`, transitively."""
        return {c for c in self.narrower if concept in self.broader(c)}

    def excluded_from_negatives(self, concept: str) -> dict[str, set[str]]:
        """The relatives whose clips are never negatives (nor random examples) for `concept`, by rule."""
        return {"narrower": self.descendants(concept), "overlaps": set(self.overlaps.get(concept, ()))}

    def family(self, concept: str) -> set[str]:
        return {concept} | self.descendants(concept)

    def with_broader(self, concepts: Iterable[str]) -> set[str]:
        """The concepts and every concept they are kinds of."""
        out = set(concepts)
        for c in list(out):
            out |= self.broader(c)
        return out


def concept_names(path: Path = CONCEPT_TABLE) -> set[str]:
    return {fields[1] for _, fields in read_tsv(path, 3)}


@lru_cache(maxsize=None)
def load_relations(path: Path = RELATIONS_TABLE, concepts: Path = CONCEPT_TABLE) -> Relations:
    """The table, checked: known concepts and relations, a reason per line, one decision per pair, no cycle of
    narrower concepts."""
    known = concept_names(concepts)
    narrower: dict[str, set[str]] = {}
    overlaps: dict[str, set[str]] = {}
    decided: dict[frozenset, int] = {}
    for number, (a, kind, b, reason) in read_tsv(path, 4):
        for name, field in ((a, "concept"), (b, "related concept")):
            if name not in known:
                raise DataError(path, f"{name!r} is not a concept of {concepts.name}", row=number, field=field)
        if kind not in KINDS:
            raise DataError(path, f"unknown relation {kind!r}; one of {KINDS}", row=number, field="relation")
        if not reason:
            raise DataError(path, "every relation needs its reason", row=number, field="reason")
        pair = frozenset((a, b))
        if a == b or pair in decided:
            raise DataError(path, f"the pair {a!r} / {b!r} is decided twice (also row {decided.get(pair)})", row=number)
        decided[pair] = number
        if kind == "narrower":
            narrower.setdefault(a, set()).add(b)
        elif kind == "overlaps":
            overlaps.setdefault(a, set()).add(b)
            overlaps.setdefault(b, set()).add(a)
    relations = Relations(
        {k: frozenset(v) for k, v in narrower.items()},
        {k: frozenset(v) for k, v in overlaps.items()},
        frozenset(decided),
    )
    for c in narrower:
        if c in relations.broader(c):
            raise DataError(path, f"{c!r} is narrower than itself through a cycle of narrower relations")
    return relations


def undecided_pairs(names: Iterable[str], relations: Relations) -> list[tuple[str, str]]:
    """Pairs where one concept's name contains the other's words and the table decides nothing."""
    names = sorted(set(names))
    return [(a, b) for a in names for b in names if contains(a, b) and frozenset((a, b)) not in relations.decided]
