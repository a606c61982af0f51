"""The evidence of a dataset's concept sets: what independent judges say of each concept, per split, as the
`evidence` config (`builder.schema.EVIDENCE_FEATURES`), written by the audit (`probing.audit`) and read here by
the card, `concept_examples(..., evidence="confirmed")` and the probing and TCAV CLIs' `--confirmed_only`.

A judge's verdict on a concept's set comes from its figure's 95 % interval: an AUC (positives against their
confound-matched negatives) or listeners' share "audible" whose interval lies above 0.5 is "confirmed", one that
lies below is "contradicted", else "not confirmed"; a concept no judge speaks for is "no judge". A concept's
verdict in a split combines its judges' (`concept_verdict`): contradicted if any judge contradicts it, else
confirmed if any confirms it. A row with an `id` flags one clip of a concept's positives that a per-clip check
doubts (tempo on a clip with no drum part whose estimated tempo disagrees with the rendered one); a restricted
set leaves such clips out, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow.parquet as pq

from builder.reader import open_file, split_files
from builder.schema import CONFIG_DIRS, CONFIG_FEATURES, EVIDENCE_FEATURES, VERDICTS, SplitWriter
from core.config import arg
from core.constants import SPLITS
from core.errors import DataError
from core.io import read_json
from core.log import get_logger

logger = get_logger(__name__)

CONFIRMED, NOT_CONFIRMED, CONTRADICTED, NO_JUDGE = VERDICTS
EVIDENCE_LEVELS = ("any", "confirmed")  # what `concept_examples(..., evidence=...)` accepts


def interval_verdict(interval: Sequence[float], chance: float = 0.5) -> str:
    """Confirmed when the interval lies above chance, contradicted when below, else not confirmed."""
    if interval[1] < chance:
        return CONTRADICTED
    return NOT_CONFIRMED if interval[0] <= chance else CONFIRMED


def concept_verdict(rows: Iterable[dict]) -> str:
    """One concept's verdict in one split from its judges' rows (per-clip rows are not verdicts on the set)."""
    verdicts = {r["verdict"] for r in rows if not r.get("id")} - {NO_JUDGE}
    if not verdicts:
        return NO_JUDGE
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return CONFIRMED if CONFIRMED in verdicts else NOT_CONFIRMED


def write_evidence(dataset: Path, rows: Sequence[dict]) -> dict[str, int]:
    """The `evidence` config of an assembled folder, replacing any earlier one: {split: rows written}."""
    folder = Path(dataset) / CONFIG_DIRS["evidence"]
    for old in folder.glob("*.parquet"):
        old.unlink()
    counts = {}
    for split in SPLITS:
        writer = SplitWriter(folder, split, CONFIG_FEATURES["evidence"], 64e6)
        writer.write_all(r for r in rows if r["split"] == split)
        writer.close()
        counts[split] = writer.rows
    return counts


def read_evidence(source: str, split: str | None = None) -> list[dict]:
    """The evidence rows (verdicts as names) of a dataset's `evidence` config, or of an audit report (JSON) for a
    dataset that carries none (the paper's published one); `split` keeps one split's rows."""
    if str(source).endswith(".json"):
        report = read_json(source)
        if not report or "evidence" not in report:
            raise DataError(source, "not an audit report with evidence (make one with `python -m probing.audit`)")
        rows = report["evidence"]
    else:
        rows = []
        for s in [split] if split else SPLITS:
            try:
                files = split_files(str(source), "evidence", s)
            except DataError as e:
                if "has no split" in str(e):
                    continue
                raise DataError(source, "no evidence config: run `python -m probing.audit --dataset <it>` (or pass "
                                "the audit's report with evidence_from=)") from e  # fmt: skip
            for path in files:
                with open_file(path) as handle:
                    table = pq.read_table(handle, columns=list(EVIDENCE_FEATURES))
                rows += [{**r, "verdict": VERDICTS[r["verdict"]]} for r in table.to_pylist()]
    return [r for r in rows if split is None or r["split"] == split]


def restrict(sets: dict, concept: str, rows: Sequence[dict]) -> tuple[dict | None, dict]:
    """A concept's sets ({"positive", "negative", "random"} of ids) restricted to what was confirmed, and what was
    left out and why: None when the concept's verdict is not confirmed, else its positives without the clips a
    per-clip row flags. Returns (sets or None, {"verdict", "judges", "left_out_clips": {id: note}})."""
    mine = [r for r in rows if r["concept"] == concept]
    judges = [
        f"{r['judge']} ({r['criterion']}): {r['verdict']}"
        + (f", {r['measure']} {r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]" if r.get("value") is not None else "")
        for r in mine
        if not r.get("id")
    ]
    report = {"verdict": concept_verdict(mine), "judges": judges, "left_out_clips": {}}
    if report["verdict"] != CONFIRMED:
        return None, report
    flagged = {r["id"]: r["note"] for r in mine if r.get("id")}
    report["left_out_clips"] = {i: flagged[i] for i in sets["positive"] if i in flagged}
    return {**sets, "positive": [i for i in sets["positive"] if i not in flagged]}, report


@dataclass
class EvidenceArguments:
    """The evidence level of the probing and TCAV CLIs (their arguments inherit these)."""

    confirmed_only: bool = arg(False, "only concepts an independent judge confirmed (the dataset's evidence config), "
                               "their positives without the clips a per-clip check flags")  # fmt: skip
    evidence_from: str | None = arg(None, "read the evidence from this audit report (for a dataset without one)")


def keep_confirmed(args: EvidenceArguments, dataset: str, split: str, members: dict) -> tuple[dict, dict[str, str]]:
    """A split's concept sets ({concept: sets}) as `args` restricts them: with --confirmed_only the confirmed ones,
    flagged clips left out, and {concept: why it was left out} for the others; else all of them, untouched."""
    if not args.confirmed_only:
        return members, {}
    rows = read_evidence(args.evidence_from or dataset, split)
    kept, left = {}, {}
    for concept, sets in members.items():
        restricted, report = restrict(sets, concept, rows)
        if restricted is None:
            left[concept] = f"{report['verdict']} in the {split} split (--confirmed_only)"
        else:
            kept[concept] = restricted
            if report["left_out_clips"]:
                logger.info("%s: %d positives flagged by a per-clip check left out", concept,
                            len(report["left_out_clips"]))  # fmt: skip
    return kept, left
