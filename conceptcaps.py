"""Open a ConceptCaps dataset and a concept's example sets, for this project's datasets and the paper's.

    from datasets import load_dataset
    ds = load_dataset("<repo or folder>")                       # default: captions, attributes, CLAP score
    ds = load_dataset("<repo or folder>", "audio")              # the same plus 32 kHz audio
    sets = load_dataset("<repo or folder>", "concepts")         # per-concept positive / negative / random sets
    from conceptcaps import concept_examples
    piano = concept_examples("<repo or folder>", "piano", split="train")   # {"positive", "negative", "random"}
    piano = concept_examples("bsienkiewicz/ConceptCaps", "piano", split="train")   # the paper's published dataset
    piano = concept_examples("<repo or folder>", "piano", evidence="confirmed")   # only if a judge confirmed it

The configs and features are in `builder.schema`; `builder.assemble` writes them; `builder.reader` reads them. A
dataset in the paper's published schema (no `concepts` config, raw tags) is recognised from its features: its tags
are mapped onto our concepts and its sets are built on the fly by the code assembly uses (`builder.published`).
"""

from __future__ import annotations

from builder.evidence import EVIDENCE_LEVELS, read_evidence, restrict
from builder.reader import group_members, is_published_dataset, open_dataset, published_reader, read_concept_sets
from builder.schema import BASE_FEATURES, CONCEPT_FEATURES, CONFIG_DIRS, RENDER_FEATURES  # noqa: F401 (re-exported)
from core.log import get_logger

logger = get_logger(__name__)

__all__ = ["concept_examples", "is_published_dataset", "open_dataset", "published_reader"]


def concept_examples(
    path: str,
    concept: str,
    split: str = "train",
    config: str = "default",
    family: bool = False,
    evidence: str = "any",
    evidence_from: str | None = None,
    **kwargs,
) -> dict:
    """A concept's positive and negative examples and its random sets, as datasets, in one call.

    Args:
        path: a Hub dataset id or a local folder: this project's dataset, or one in the paper's published schema
            (`bsienkiewicz/ConceptCaps`), whose sets are built here with assembly's rules (5 random sets, at
            least 10 positives).
        concept: our concept's name or any alias of it, or one of the paper's tags; for a rendered dataset also a
            theory concept from the clips' ground truth ("mode=minor", "meter=7/8", "progression=ii-V-I":
            `builder/theory.py`).
        config: which examples to return: "default" (no audio) or "audio"; for a published dataset also its
            subsets ("25pct", "10pct-audio", ...), whose sets are then built within the subset.
        family: the sets of the concept's family instead: positives list the concept or one narrower than it
            (`rock` with hard rock, indie rock ...: `builder/data/relations.tsv`).
        evidence: "any" (every set), or "confirmed": only a concept an independent judge confirmed in this split
            (the dataset's `evidence` config, written by `python -m probing.audit`), and for rendered clips its
            positives without the clips a per-clip check flags; anything else is a ValueError naming the verdicts.
        evidence_from: where the evidence is read instead of the dataset: an audit report (JSON), for a dataset
            that carries none, such as the paper's published one.
    Returns:
        {"positive": Dataset, "negative": Dataset, "random": [Dataset, ...], "evidence": {"verdict", "judges",
        "left_out_clips": {id: why}}}; for a published dataset also "summary": the set's sizes and matching
        quality, and the rows dropped and tags left unmapped, with counts.
    """
    from builder.splits import FAMILY_SUFFIX

    if evidence not in EVIDENCE_LEVELS:
        raise ValueError(f"evidence={evidence!r}: choose one of {list(EVIDENCE_LEVELS)}")
    check = _EvidenceCheck(evidence_from or str(path), split, evidence)
    if is_published_dataset(path, split, **kwargs):
        return _published_concept_examples(path, concept, split, config, family, check, **kwargs)
    name = concept + FAMILY_SUFFIX if family else concept
    sets = read_concept_sets(str(path), split, [name]).get(name)
    if sets is None:
        raise ValueError(
            f"no concept set for {name!r} in split {split!r} (too few positives, not a concept, or "
            f"{'no concept narrower than it' if family else 'a typo'})"
        )
    sets, report = check(name, sets)
    examples = open_dataset(path, config, split=split, **kwargs)
    return {**_select(examples, sets, {id_: i for i, id_ in enumerate(examples["id"])}), "evidence": report}


class _EvidenceCheck:
    """A concept's sets restricted to an evidence level (`builder.evidence.restrict`); at "any" nothing is read."""

    def __init__(self, source: str, split: str, level: str):
        self.source, self.split, self.level = source, split, level

    def __call__(self, name: str, sets: dict) -> tuple[dict, dict]:
        if self.level == "any":
            return sets, {"verdict": None, "judges": [], "left_out_clips": {}}
        kept, report = restrict(sets, name, read_evidence(self.source, self.split))
        if kept is None:
            judges = "; ".join(report["judges"]) or "no judge speaks for it"
            raise ValueError(f"{name!r} in split {self.split!r} is {report['verdict']}, not confirmed ({judges})")
        if report["left_out_clips"]:
            logger.info("%s: %d positives left out by per-clip checks", name, len(report["left_out_clips"]))
        return kept, report


def _select(examples, sets: dict, position: dict[str, int]) -> dict:
    """{"positive", "negative", "random": [...]} as datasets, from a concept's sets of ids (`group_members`) and
    each id's row in `examples`."""
    rows = {role: [position[i] for i in sets[role]] for role in ("positive", "negative")}
    return {
        **{role: examples.select(r) for role, r in rows.items()},
        "random": [examples.select([position[i] for i in sets["random"][k]]) for k in sorted(sets["random"])],
    }


def _published_concept_examples(
    path: str, concept: str, split: str, config: str, family: bool, check: _EvidenceCheck, **kwargs
) -> dict:
    from builder.published import TEXT_FIELDS, resolve_concept
    from builder.splits import FAMILY_SUFFIX, ConceptSetArguments, concept_sets
    from builder.theory import is_theory_concept

    if is_theory_concept(concept):
        raise ValueError(
            f"{concept!r} is a theory concept: those exist only for rendered clips, whose ground truth states them "
            f"(builder/theory.py); {path} is in the published schema, whose audio has none"
        )
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
        raise ValueError(
            f"no concept set for {name!r} in split {split!r} of {path}: "
            f"{sum(base in r['tags'] for r in rows)} positives of {base!r}, fewer than "
            f"{ConceptSetArguments.min_positives}{', or nothing narrower than it' if family else ''}"
        )
    index = {r["id"]: r["index"] for r in rows}
    sets, report = check(name, group_members(set_rows)[name])
    return {
        **_select(source, sets, index),
        "evidence": report,
        "summary": {"concept": name, **summary["concepts"][f"{split}/{name}"], **reader.report()},
    }
