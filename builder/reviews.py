"""Listeners' verdicts as the dataset keeps them: the reviews file's format (written by the review app,
`review.store`), the latest verdict per reviewer, which positives a verdict removes, the `reviews` config's rows
and the card's figures (clips reviewed per concept, share judged audible, Cohen's kappa between reviewers).

A verdict applies to the clip it was given on: its id and the sha256 of its audio. A verdict on audio that has
since changed (a regenerated clip) is stale: counted, never applied. A clip that a reviewer's latest verdict
judges "not audible" for a concept it lists leaves that concept's positive set (it stays in the dataset and in
the other concepts' sets). Reviewers are published as pseudonyms (the first 8 hex digits of their name's
sha256), never by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Iterable, Sequence

REVIEWS_FILE = "reviews.jsonl"
QUESTIONS = {"audible": ("yes", "no", "unsure"), "caption": ("right", "wrong", "unsure")}
FIELDS = ("dataset", "dataset_version", "id", "audio_sha256", "concept", "question", "answer", "reviewer", "time")
MAX_NAME = 80
UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


@dataclass(frozen=True)
class Verdict:
    dataset: str  # the dataset's name (a Hub id or the folder's name)
    dataset_version: str
    id: str
    audio_sha256: str
    concept: str
    question: str  # audible: is the concept audible in the clip? caption: is the caption right?
    answer: str
    reviewer: str
    time: float  # seconds since the epoch

    def check(self) -> "Verdict":
        """The verdict, every field of its type and allowed value; else a ValueError that names the field."""
        for name in FIELDS:
            kind, value = ((int, float), "a number") if name == "time" else ((str,), "a string")
            if not isinstance(getattr(self, name), kind) or isinstance(getattr(self, name), bool):
                raise ValueError(f"field {name!r}: {value} is required, not {type(getattr(self, name)).__name__}")
        if self.question not in QUESTIONS:
            raise ValueError(f"field 'question': {self.question[:40]!r} is not one of {sorted(QUESTIONS)}")
        if self.answer not in QUESTIONS[self.question]:
            raise ValueError(f"field 'answer': {self.answer[:40]!r} to {self.question!r} is not one of "
                             f"{QUESTIONS[self.question]}")  # fmt: skip
        name = self.reviewer
        if not name.strip() or len(name) > MAX_NAME or not printable(name):
            raise ValueError(f"field 'reviewer': a name is 1-{MAX_NAME} printable characters on one line (no control, "
                             "format, bidi or line-separator characters)")  # fmt: skip
        return self


def printable(text: str) -> bool:
    """No control (Cc), format (Cf: bidi overrides, zero-width), line or paragraph separator, surrogate, private or
    unassigned character: what a name shown to other reviewers and written into the card may hold."""
    return not any(unicodedata.category(ch) in UNPRINTABLE for ch in text)


def read_verdicts(path: str | os.PathLike) -> tuple[list[Verdict], int]:
    """Every verdict in a reviews file, in order, and the number of torn or malformed lines skipped."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    verdicts, skipped = [], 0
    with path.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
                verdicts.append(Verdict(**{k: row[k] for k in FIELDS}).check())
            except (ValueError, KeyError, TypeError):
                skipped += 1
    return verdicts, skipped


def latest_verdicts(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """Each reviewer's last answer per (clip, concept, question), in file order."""
    last = {}
    for v in verdicts:
        last[v.reviewer, v.id, v.concept, v.question] = v
    return list(last.values())


def pseudonym(reviewer: str) -> str:
    return "reviewer-" + hashlib.sha256(reviewer.encode("utf-8")).hexdigest()[:8]


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None when chance agreement is total)."""
    n = len(a)
    if n == 0:
        return None
    labels = sorted(set(a) | set(b))
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)
    return None if expected >= 1 else round((observed - expected) / (1 - expected), 4)


def apply_reviews(run: Path, examples: Sequence[dict]) -> tuple[dict[str, set[str]], list[dict], dict]:
    """The run's verdicts on these examples: {id: concepts judged not audible}, the `reviews` config's rows (with
    each clip's split) and the summary the card reports."""
    verdicts, torn = read_verdicts(run / REVIEWS_FILE)
    by_id = {e["id"]: e for e in examples}
    current, stale, unknown = [], 0, 0
    for v in latest_verdicts(verdicts):
        e = by_id.get(v.id)
        if e is None:
            unknown += 1
        elif e.get("audio_sha256") and v.audio_sha256 != e["audio_sha256"]:
            stale += 1
        else:
            current.append(v)
    unheard: dict[str, set[str]] = {}
    per_concept: dict[str, dict] = {}
    for v in current:
        if v.question != "audible":
            continue
        listed = v.concept in by_id[v.id]["tags"]
        entry = per_concept.setdefault(v.concept, {"clips": set(), "yes": 0, "no": 0, "unsure": 0, "removed": set()})
        entry["clips"].add(v.id)
        entry[v.answer] += 1
        if v.answer == "no" and listed:
            unheard.setdefault(v.id, set()).add(v.concept)
            entry["removed"].add(v.id)
    rows = [
        {
            "id": v.id,
            "split": by_id[v.id]["split"],
            "concept": v.concept,
            "question": v.question,
            "answer": v.answer,
            "reviewer": pseudonym(v.reviewer),
            "time": float(v.time),
            "audio_sha256": v.audio_sha256,
            "dataset_version": v.dataset_version,
        }
        for v in current
    ]
    summary = {
        "verdicts": len(current),
        "lines_skipped_torn_or_malformed": torn,
        "stale_audio_changed": stale,
        "unknown_clip": unknown,
        "reviewers": len({v.reviewer for v in current}),
        "clips_reviewed": len({v.id for v in current}),
        "removed_from_positives": sum(len(c) for c in unheard.values()),
        "concepts": {
            c: {
                "clips_reviewed": len(e["clips"]),
                "judged": e["yes"] + e["no"] + e["unsure"],
                "audible_share": round(e["yes"] / max(e["yes"] + e["no"], 1), 4) if e["yes"] + e["no"] else None,
                "unsure": e["unsure"],
                "removed_from_positives": len(e["removed"]),
            }
            for c, e in sorted(per_concept.items())
        },
        "agreement": agreement(current),
    }
    return unheard, rows, summary


def agreement(verdicts: Sequence[Verdict]) -> list[dict]:
    """Cohen's kappa for each pair of reviewers and question, over the (clip, concept) pairs both answered."""
    answers: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    for v in verdicts:
        answers.setdefault((v.reviewer, v.question), {})[v.id, v.concept] = v.answer
    out = []
    for question in QUESTIONS:
        reviewers = sorted(r for r, q in answers if q == question)
        for a, b in combinations(reviewers, 2):
            shared = sorted(set(answers[a, question]) & set(answers[b, question]))
            if len(shared) < 2:
                continue
            kappa = cohen_kappa([answers[a, question][k] for k in shared], [answers[b, question][k] for k in shared])
            out.append(
                {"question": question, "reviewers": [pseudonym(a), pseudonym(b)], "shared": len(shared), "kappa": kappa}
            )
    return out
