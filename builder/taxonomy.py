"""Derive the concept taxonomy (4 categories x 50 concepts) from MusicCaps' aspect lists.

The judgement calls live in reviewed data files beside this module, not in code:
  builder/data/spelling.tsv   word-level misspelling fixes used by `normalise_aspect`
  builder/data/concepts.tsv   concept -> category and aliases (the synonym merge table)
This module normalises every aspect string, maps it through the aliases, counts the MusicCaps rows that
name each concept, and keeps the most frequent concepts per category.

    python -m builder.taxonomy --musiccaps_csv ../shared/data/musiccaps-public.csv --output runs/demo/taxonomy.json
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from builder.musiccaps import MUSICCAPS_HELP, read_musiccaps, resolve_musiccaps
from core.cli import cli
from core.config import DEFAULT_MUSICCAPS, arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import DataError
from core.io import read_tsv, sha256_file, write_json
from core.log import get_logger
from core.provenance import hub_file_commit

TAXONOMY_VERSION = "1.0.0"
DATA_DIR = Path(__file__).resolve().parent / "data"
SPELLING_TABLE = DATA_DIR / "spelling.tsv"
CONCEPT_TABLE = DATA_DIR / "concepts.tsv"
PAPER_TAXONOMY = DATA_DIR / "paper_taxonomy.tsv"
CONCEPTS_PER_CATEGORY = 50
ALIAS_SEPARATOR = "|"

logger = get_logger(__name__)

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_DROP = re.compile(r"[^a-z0-9&/+' -]")  # anything else (quotes, brackets, dots) becomes a space


@lru_cache(maxsize=None)
def load_spelling(path: Path = SPELLING_TABLE) -> Mapping[str, str]:
    fixes: dict[str, str] = {}
    for number, (word, replacement) in read_tsv(Path(path), 2):
        if word in fixes:
            raise DataError(path, f"word {word!r} listed twice", row=number, field="word")
        fixes[word] = replacement
    return fixes


def normalise_aspect(text: str, spelling: Mapping[str, str] | None = None) -> str:
    """Canonical form of an aspect string: NFKC, lower case, plain quotes, no stray punctuation,
    single spaces, reviewed misspellings fixed word by word."""
    spelling = load_spelling() if spelling is None else spelling
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    text = _DROP.sub(" ", text)
    words = [w.strip("'-/") for w in text.split()]
    words = [spelling.get(w, w) for w in words if w]
    return " ".join(" ".join(words).split())


@dataclass(frozen=True)
class ConceptEntry:
    name: str
    category: str
    aliases: tuple[str, ...]


def load_concept_table(path: Path = CONCEPT_TABLE, spelling: Mapping[str, str] | None = None) -> list[ConceptEntry]:
    """Read the reviewed concept table; every name and alias is normalised.

    Raises:
        DataError: an unknown category, a concept listed twice (in one category or two), an alias that
        points to two concepts.
    """
    path = Path(path)
    entries: list[ConceptEntry] = []
    concept_line: dict[str, tuple[int, str]] = {}
    alias_owner: dict[str, tuple[int, str]] = {}
    for number, (category, name, aliases) in read_tsv(path, 3):
        if category not in CATEGORIES:
            raise DataError(
                path, f"unknown category {category!r}; expected one of {CATEGORIES}", row=number, field="category"
            )
        name = normalise_aspect(name, spelling)
        if not name:
            raise DataError(path, "empty concept name", row=number, field="concept")
        if name in concept_line:
            first, first_category = concept_line[name]
            raise DataError(
                path,
                f"concept {name!r} is already listed at row {first} ({first_category}); "
                "a concept belongs to exactly one category",
                row=number,
                field="concept",
            )
        concept_line[name] = (number, category)
        names = [name] + [normalise_aspect(a, spelling) for a in aliases.split(ALIAS_SEPARATOR) if a.strip()]
        unique = list(dict.fromkeys(names))
        for alias in unique:
            if alias in alias_owner and alias_owner[alias][1] != name:
                first, owner = alias_owner[alias]
                raise DataError(
                    path,
                    f"alias {alias!r} points to {name!r} here and to {owner!r} at row {first}",
                    row=number,
                    field="aliases",
                )
            alias_owner[alias] = (number, name)
        entries.append(ConceptEntry(name, category, tuple(unique[1:])))
    return entries


@dataclass(frozen=True)
class Concept:
    name: str
    category: str
    aliases: tuple[str, ...]
    rows: int


@dataclass
class Taxonomy:
    """The concept vocabulary. Concept order (by category, then by row count) is the VAE's vector order."""

    concepts: list[Concept]
    version: str = TAXONOMY_VERSION
    source: dict = field(default_factory=dict)
    spelling: dict[str, str] = field(default_factory=lambda: dict(load_spelling()))  # what it was built with
    _alias_map: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._alias_map = {}
        for c in self.concepts:
            for alias in (c.name, *c.aliases):
                self._alias_map[alias] = c.name
        self.index = {c.name: i for i, c in enumerate(self.concepts)}
        self.category_of = {c.name: c.category for c in self.concepts}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def by_category(self, category: str) -> list[Concept]:
        return [c for c in self.concepts if c.category == category]

    def concept_for(self, aspect: str) -> str | None:
        """The concept an aspect string names, or None."""
        return self._alias_map.get(self.normalise(aspect))

    def normalise(self, text: str) -> str:
        """`normalise_aspect` with the spelling fixes this taxonomy was built with."""
        return normalise_aspect(text, self.spelling)

    def match(self, aspects: Iterable[str]) -> dict[str, list[str]]:
        """Concepts named by an aspect list, per category, in taxonomy order, without repeats."""
        found = {self.concept_for(a) for a in aspects} - {None}
        ordered = sorted(found, key=self.index.__getitem__)
        return {cat: [n for n in ordered if self.category_of[n] == cat] for cat in CATEGORIES}

    def validate(self, tags: Iterable[str], where: str = "tags") -> None:
        unknown = [t for t in tags if t not in self.index]
        if unknown:
            raise DataError(None, f"{where}: concept(s) not in the taxonomy (version {self.version}): {unknown}")

    def fingerprint(self) -> list[list[str]]:
        """What must match between a model and the taxonomy it is used with: names and categories in order."""
        return [[c.name, c.category] for c in self.concepts]

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "categories": list(CATEGORIES),
            "source": self.source,
            "spelling": self.spelling,
            "concepts": [
                {"name": c.name, "category": c.category, "aliases": list(c.aliases), "rows": c.rows}
                for c in self.concepts
            ],
        }

    @classmethod
    def from_json(cls, obj: dict, path=None) -> "Taxonomy":
        try:
            concepts = [Concept(c["name"], c["category"], tuple(c["aliases"]), int(c["rows"])) for c in obj["concepts"]]
            spelling = (
                obj["spelling"] if "spelling" in obj else dict(load_spelling())
            )  # files written before it was kept
            return cls(concepts=concepts, version=obj["version"], source=obj.get("source", {}), spelling=dict(spelling))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"not a taxonomy file ({e!r})") from None

    @classmethod
    def load(cls, path) -> "Taxonomy":
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "taxonomy file not found (run `python -m builder.taxonomy` first)")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, f"not valid JSON ({e})") from None
        return cls.from_json(obj, path)

    def save(self, path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def from_concept_table(
        cls, concept_table: Path = CONCEPT_TABLE, spelling_table: Path = SPELLING_TABLE
    ) -> "Taxonomy":
        """Every concept of the reviewed table, without MusicCaps counts: the vocabulary that a dataset built
        elsewhere (the paper's published one) is mapped onto."""
        spelling = load_spelling(Path(spelling_table))
        entries = load_concept_table(Path(concept_table), spelling)
        concepts = [Concept(e.name, e.category, e.aliases, 0) for c in CATEGORIES for e in entries if e.category == c]
        source = {
            "concept_table_sha256": sha256_file(concept_table),
            "spelling_table_sha256": sha256_file(spelling_table),
        }
        return cls(concepts=concepts, source=source, spelling=dict(spelling))


def build_taxonomy(
    musiccaps_csv=DEFAULT_MUSICCAPS,
    concept_table: Path = CONCEPT_TABLE,
    spelling_table: Path = SPELLING_TABLE,
    per_category: int = CONCEPTS_PER_CATEGORY,
) -> tuple[Taxonomy, dict]:
    """Count, for each concept of the table, the MusicCaps rows whose aspect list names it (through any
    alias), and keep the `per_category` most frequent concepts of each category.

    Returns:
        The taxonomy and a summary (rows read, concepts per category, the most frequent unmapped aspects).
    """
    spelling = load_spelling(Path(spelling_table))
    entries = load_concept_table(Path(concept_table), spelling)
    alias_map = {a: e.name for e in entries for a in (e.name, *e.aliases)}
    musiccaps_csv = resolve_musiccaps(musiccaps_csv)
    rows = read_musiccaps(musiccaps_csv)
    counts: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    for row in rows:
        aspects = {normalise_aspect(a, spelling) for a in row.aspect_list} - {""}
        counts.update({alias_map[a] for a in aspects if a in alias_map})
        unmapped.update(a for a in aspects if a not in alias_map)
    concepts: list[Concept] = []
    summary = {"musiccaps_rows": len(rows), "per_category": {}, "dropped_for_rank": {}}
    for category in CATEGORIES:
        ranked = sorted(
            (e for e in entries if e.category == category and counts[e.name] > 0),
            key=lambda e: (-counts[e.name], e.name),
        )
        if len(ranked) < per_category:
            raise DataError(
                concept_table,
                f"category {category!r} has only {len(ranked)} concepts that occur in MusicCaps; "
                f"{per_category} are needed",
                field="category",
            )
        concepts += [Concept(e.name, category, e.aliases, counts[e.name]) for e in ranked[:per_category]]
        summary["per_category"][category] = len(ranked[:per_category])
        summary["dropped_for_rank"][category] = [e.name for e in ranked[per_category:]]
    summary["top_unmapped_aspects"] = unmapped.most_common(30)
    source = {
        "musiccaps_file": Path(musiccaps_csv).name,
        "musiccaps_sha256": sha256_file(musiccaps_csv),
        "musiccaps_revision": hub_file_commit(musiccaps_csv),  # the Hub commit when downloaded, else None
        "concept_table_sha256": sha256_file(concept_table),
        "spelling_table_sha256": sha256_file(spelling_table),
        "per_category": per_category,
    }
    return Taxonomy(concepts=concepts, source=source, spelling=dict(spelling)), summary


def read_paper_taxonomy(path=PAPER_TAXONOMY) -> dict[str, list[str]]:
    """The paper's tags per category, from the fact table (`builder/data/paper_taxonomy.tsv`)."""
    paper: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for number, (category, tag) in read_tsv(path, 2):
        if category not in paper:
            raise DataError(path, f"unknown category {category!r}", row=number, field="category")
        paper[category].append(tag)
    return paper


def compare_with_paper(taxonomy: Taxonomy, paper_table=PAPER_TAXONOMY) -> dict:
    """Overlap between our taxonomy and the paper's raw tag list (`builder/data/paper_taxonomy.tsv`).

    A paper tag overlaps when it normalises to an alias of one of our concepts; it agrees when that concept is
    in the same category.
    """
    paper = read_paper_taxonomy(paper_table)
    report = {"paper_tags": 0, "mapped": 0, "same_category": 0, "per_category": {}, "unmapped": {}, "moved": []}
    covered: set[str] = set()
    for category, tags in paper.items():
        mapped = same = 0
        unmapped = []
        for tag in tags:
            name = taxonomy.concept_for(tag)
            if name is None:
                unmapped.append(tag)
                continue
            covered.add(name)
            mapped += 1
            if taxonomy.category_of[name] == category:
                same += 1
            else:
                report["moved"].append([tag, category, name, taxonomy.category_of[name]])
        report["paper_tags"] += len(tags)
        report["mapped"] += mapped
        report["same_category"] += same
        report["per_category"][category] = {"tags": len(tags), "mapped": mapped, "same_category": same}
        report["unmapped"][category] = unmapped
    report["our_concepts_covered_by_paper"] = len(covered)
    report["our_concepts_new"] = sorted(set(taxonomy.names) - covered)
    return report


@dataclass
class TaxonomyArguments:
    """Derive taxonomy.json from the MusicCaps aspect lists."""

    musiccaps_csv: str = arg(DEFAULT_MUSICCAPS, MUSICCAPS_HELP)
    output: str | None = arg(None, "where to write taxonomy.json (default: run dir)")
    concept_table: str = arg(str(CONCEPT_TABLE), "reviewed concept/category/alias table")
    spelling_table: str = arg(str(SPELLING_TABLE), "reviewed misspelling table")
    per_category: int = arg(CONCEPTS_PER_CATEGORY, "concepts kept per category")
    paper_taxonomy: str | None = arg(
        str(PAPER_TAXONOMY),
        "the paper's tag table to compare with (writes taxonomy_vs_paper.json); empty: no comparison",
    )


ARGUMENTS = TaxonomyArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> Taxonomy:
    args = parse_args(ARGUMENTS, "taxonomy", argv)
    taxonomy, summary = build_taxonomy(
        args.musiccaps_csv, Path(args.concept_table), Path(args.spelling_table), args.per_category
    )
    output = Path(args.output) if args.output else run_dir() / "taxonomy.json"
    taxonomy.save(output)
    logger.info(
        "wrote %s: %s concepts from %d MusicCaps rows", output, summary["per_category"], summary["musiccaps_rows"]
    )
    if args.paper_taxonomy:
        report = compare_with_paper(taxonomy, args.paper_taxonomy)
        logger.info(
            "paper taxonomy: %d of %d tags map to our concepts (%d in the same category); "
            "our concepts it covers: %d of %d",
            report["mapped"],
            report["paper_tags"],
            report["same_category"],
            report["our_concepts_covered_by_paper"],
            len(taxonomy.concepts),
        )
        write_json(output.with_name("taxonomy_vs_paper.json"), report)
    return taxonomy


if __name__ == "__main__":
    cli(main)
