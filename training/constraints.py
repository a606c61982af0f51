"""What makes an attribute list contradict itself.

Two kinds of rule:
  * mutually exclusive groups (reviewed, `training/data/exclusive.tsv`): at most one concept per group;
  * learned pairs: two concepts that never co-occur in MusicCaps' training rows although their frequencies
    predict at least `min_expected` co-occurrences, minus reviewed exceptions
    (`training/data/allowed_pairs.tsv`).
The rules are learned once (when the VAE is trained) and saved beside it as `constraints.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from builder.taxonomy import ALIAS_SEPARATOR, Taxonomy
from core.errors import DataError
from core.io import read_tsv, write_json

DATA_DIR = Path(__file__).resolve().parent / "data"
EXCLUSIVE_TABLE = DATA_DIR / "exclusive.tsv"
ALLOWED_PAIRS_TABLE = DATA_DIR / "allowed_pairs.tsv"
MIN_EXPECTED = 8.0
CONSTRAINTS_NAME = "constraints.json"


@dataclass
class Constraints:
    exclusive_groups: dict[str, list[str]] = field(default_factory=dict)
    forbidden_pairs: list[tuple[str, str]] = field(default_factory=list)
    min_expected: float = MIN_EXPECTED

    def __post_init__(self):
        self._group_of = {c: g for g, members in self.exclusive_groups.items() for c in members}
        self._forbidden = {frozenset(p) for p in self.forbidden_pairs}

    def violations(self, tags: Sequence[str]) -> list[str]:
        """Reasons this list contradicts itself; empty if it does not."""
        reasons = []
        seen: dict[str, str] = {}
        for tag in tags:
            group = self._group_of.get(tag)
            if group is not None:
                if group in seen:
                    reasons.append(f"exclusive ({group}): {seen[group]!r} and {tag!r}")
                seen.setdefault(group, tag)
        for i, a in enumerate(tags):
            for b in tags[i + 1 :]:
                if frozenset((a, b)) in self._forbidden:
                    reasons.append(f"never co-occur: {a!r} and {b!r}")
        return reasons

    def forbidden_matrix(self, taxonomy: Taxonomy) -> np.ndarray:
        """Boolean (n, n) matrix: True where two concepts may not appear together (groups included)."""
        n = len(taxonomy.concepts)
        m = np.zeros((n, n), dtype=bool)
        for a, b in self.forbidden_pairs:
            m[taxonomy.index[a], taxonomy.index[b]] = m[taxonomy.index[b], taxonomy.index[a]] = True
        for members in self.exclusive_groups.values():
            idx = [taxonomy.index[c] for c in members if c in taxonomy.index]
            for i in idx:
                for j in idx:
                    m[i, j] = i != j
        return m

    def to_json(self) -> dict:
        return {
            "min_expected": self.min_expected,
            "exclusive_groups": self.exclusive_groups,
            "forbidden_pairs": [list(p) for p in self.forbidden_pairs],
        }

    def save(self, path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "Constraints":
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "constraints file not found")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            return cls(obj["exclusive_groups"], [tuple(p) for p in obj["forbidden_pairs"]], obj["min_expected"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(path, f"not a constraints file ({e})") from None


def load_exclusive_groups(taxonomy: Taxonomy, path: Path = EXCLUSIVE_TABLE) -> dict[str, list[str]]:
    groups = {}
    for number, (group, members) in read_tsv(Path(path), 2):
        names = [m.strip() for m in members.split(ALIAS_SEPARATOR) if m.strip()]
        _check_known(taxonomy, names, path, number)
        groups[group] = names
    return groups


def load_allowed_pairs(taxonomy: Taxonomy, path: Path = ALLOWED_PAIRS_TABLE) -> set[frozenset]:
    pairs = set()
    for number, (a, b) in read_tsv(Path(path), 2):
        _check_known(taxonomy, [a, b], path, number)
        pairs.add(frozenset((a, b)))
    return pairs


def _check_known(taxonomy: Taxonomy, names: Iterable[str], path, number: int) -> None:
    unknown = [n for n in names if n not in taxonomy.index]
    if unknown:
        raise DataError(path, f"concept(s) not in the taxonomy: {unknown}", row=number)


def learn_constraints(
    x: np.ndarray,
    taxonomy: Taxonomy,
    min_expected: float = MIN_EXPECTED,
    exclusive_table: Path = EXCLUSIVE_TABLE,
    allowed_table: Path = ALLOWED_PAIRS_TABLE,
) -> Constraints:
    """Learn never-co-occurring pairs from a multi-hot matrix (rows x concepts in taxonomy order)."""
    n_rows = len(x)
    counts = x.sum(0)
    together = x.T @ x
    expected = np.outer(counts, counts) / max(n_rows, 1)
    allowed = load_allowed_pairs(taxonomy, allowed_table)
    names = taxonomy.names
    pairs = []
    for i, j in zip(*np.nonzero((together == 0) & (expected >= min_expected))):
        if i < j and frozenset((names[i], names[j])) not in allowed:
            pairs.append((names[i], names[j]))
    return Constraints(load_exclusive_groups(taxonomy, exclusive_table), sorted(pairs), min_expected)
