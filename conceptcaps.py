"""Open a ConceptCaps dataset and a concept's example sets, for this project's datasets and the paper's.

    from datasets import load_dataset
    ds = load_dataset("<repo or folder>")                       # default: captions, attributes, CLAP score
    ds = load_dataset("<repo or folder>", "audio")              # the same plus 32 kHz audio
    sets = load_dataset("<repo or folder>", "concepts")         # per-concept positive / negative / random sets
    from conceptcaps import concept_examples
    piano = concept_examples("<repo or folder>", "piano", split="train")   # {"positive", "negative", "random"}
    piano = concept_examples("bsienkiewicz/ConceptCaps", "piano", split="train")   # the paper's published dataset

The configs and features are in `builder.schema`; `builder.assemble` writes them. A dataset in the paper's
published schema (no `concepts` config, raw tags) is recognised from its features: its tags are mapped onto our
concepts and its sets are built on the fly by the code assembly uses (`builder.published`).
"""

from __future__ import annotations

from pathlib import Path

import datasets

from builder.schema import BASE_FEATURES, CONCEPT_FEATURES, CONFIG_DIRS, RENDER_FEATURES  # noqa: F401 (re-exported)
from core.constants import SPLITS


def open_dataset(path: str, config: str = "default", split: str | None = None, **kwargs):
    """`load_dataset` for a Hub id or a local folder. For a local folder, the cache lives inside it: datasets keys
    a local folder's cache by the folder's name, so two folders named alike would otherwise share (and mix up)
    one cache."""
    if Path(path).is_dir():
        kwargs.setdefault("cache_dir", str(Path(path) / ".cache"))
    return datasets.load_dataset(str(path), config, split=split, **kwargs)


def published_reader(path: str, split: str, **kwargs):
    """A `PublishedReader` that has read the ids of the splits before `split` (from the text config), so that an
    id already kept there is dropped from this one."""
    from builder.published import TEXT_FIELDS, PublishedReader

    reader = PublishedReader()
    for earlier in SPLITS[: SPLITS.index(split)]:
        for _ in reader.convert(open_dataset(path, "default", split=earlier, **kwargs).select_columns(list(TEXT_FIELDS)),
                                earlier):
            pass
    return reader


def is_published_dataset(path: str, split: str = "train", **kwargs) -> bool:
    """Whether a dataset is in the paper's published schema, from its default config's features."""
    from builder.published import is_published

    return is_published(open_dataset(path, "default", split=split, **kwargs).features)


def concept_examples(path: str, concept: str, split: str = "train", config: str = "default", family: bool = False,
                     **kwargs) -> dict:
    """A concept's positive and negative examples and its random sets, as datasets, in one call.

    Args:
        path: a Hub dataset id or a local folder: this project's dataset, or one in the paper's published schema
            (`bsienkiewicz/ConceptCaps`), whose sets are built here with assembly's rules (5 random sets, at
            least 10 positives).
        concept: our concept's name or any alias of it, or one of the paper's tags.
        config: which examples to return: "default" (no audio) or "audio"; for a published dataset also its
            subsets ("25pct", "10pct-audio", ...), whose sets are then built within the subset.
        family: the sets of the concept's family instead: positives list the concept or one narrower than it
            (`rock` with hard rock, indie rock ...: `builder/data/relations.tsv`).
    Returns:
        {"positive": Dataset, "negative": Dataset, "random": [Dataset, ...]}; for a published dataset also
        "summary": the set's sizes and matching quality, and the rows dropped and tags left unmapped, with counts.
    """
    from builder.splits import FAMILY_SUFFIX

    if is_published_dataset(path, split, **kwargs):
        return _published_concept_examples(path, concept, split, config, family, **kwargs)
    name = concept + FAMILY_SUFFIX if family else concept
    sets = open_dataset(path, "concepts", split=split, **kwargs).filter(lambda r: r["concept"] == name)
    if len(sets) == 0:
        raise ValueError(f"no concept set for {name!r} in split {split!r} (too few positives, not a concept, or "
                         f"{'no concept narrower than it' if family else 'a typo'})")
    examples = open_dataset(path, config, split=split, **kwargs)
    position = {id_: i for i, id_ in enumerate(examples["id"])}
    roles = sets.features["role"].names
    members = {}
    for r in sets:
        members.setdefault((roles[r["role"]], r["set_index"]), []).append(position[r["id"]])
    return _select(examples, members)


def _select(examples, members: dict) -> dict:
    """{"positive", "negative", "random": [...]} from row positions keyed by (role, set index)."""
    n_random = len([key for key in members if key[0] == "random"])
    return {"positive": examples.select(members.get(("positive", 0), [])),
            "negative": examples.select(members.get(("negative", 0), [])),
            "random": [examples.select(members[("random", i)]) for i in range(n_random)]}


def _published_concept_examples(path: str, concept: str, split: str, config: str, family: bool, **kwargs) -> dict:
    from builder.published import TEXT_FIELDS, resolve_concept
    from builder.splits import FAMILY_SUFFIX, ConceptSetArguments, concept_sets

    reader = published_reader(path, split, **kwargs)
    source = open_dataset(path, config, split=split, **kwargs)
    # our rows from the config asked for, so that each row's `index` points into `source`
    rows = list(reader.convert(source.select_columns(list(TEXT_FIELDS)), split))
    reader.warn(str(path))
    base = resolve_concept(concept, reader.taxonomy)
    name = base + FAMILY_SUFFIX if family else base
    set_rows, summary = concept_sets(rows, reader.taxonomy, ConceptSetArguments(families=family), [base])
    set_rows = set_rows.only(name)
    if not set_rows:
        raise ValueError(f"no concept set for {name!r} in split {split!r} of {path}: "
                         f"{sum(base in r['tags'] for r in rows)} positives of {base!r}, fewer than "
                         f"{ConceptSetArguments.min_positives}{', or nothing narrower than it' if family else ''}")
    index = {r["id"]: r["index"] for r in rows}
    members = {}
    for r in set_rows:
        members.setdefault((r["role"], r["set_index"]), []).append(index[r["id"]])
    return {**_select(source, members),
            "summary": {"concept": name, **summary["concepts"][f"{split}/{name}"], **reader.report()}}
