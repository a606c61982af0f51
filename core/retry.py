"""The generate -> check -> retry loop that captioning and synthesis share, and the tally of its outcomes.

Items are generated in batches; each output is checked; the items whose output failed are generated again, in
new batches with new seeds, up to `max_attempts` times. Seeds derive from (shard, attempt, batch offset), so a
redone shard repeats itself exactly, whichever process redoes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence


@dataclass(frozen=True)
class Verdict:
    """A check's outcome: every reason the output fails, none when it passes."""

    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Attempt:
    output: Any
    verdict: Verdict
    attempt: int  # 1-based: the attempt that made this output (the last one for a rejected item)
    seed: int
    rejections: tuple[str, ...] = ()  # the reasons of every failed attempt, the last one included if it failed


def generate_with_retries(
    items: Sequence,
    generate: Callable[[list, int], Sequence],
    check: Callable[[Any, Any], Verdict],
    seed_of: Callable[[int, int], int],
    batch_size: int,
    max_attempts: int,
    deterministic: bool = False,
) -> list[Attempt]:
    """Each item's last attempt, in input order.

    Args:
        generate: (items of one batch, seed) -> one output per item.
        check: (item, output) -> Verdict.
        seed_of: (attempt index, batch offset) -> seed.
        deterministic: the generator ignores its seed, so a second attempt would repeat the first: stop after one.
    """
    last: dict[int, Attempt] = {}
    pending = list(range(len(items)))
    for attempt in range(max_attempts):
        failed = []
        for b in range(0, len(pending), batch_size):
            batch = pending[b : b + batch_size]
            seed = seed_of(attempt, b)
            for i, output in zip(batch, generate([items[i] for i in batch], seed), strict=True):
                verdict = check(items[i], output)
                earlier = last[i].rejections if i in last else ()
                last[i] = Attempt(output, verdict, attempt + 1, seed, earlier + verdict.reasons)
                if not verdict.ok:
                    failed.append(i)
        pending = failed
        if not pending or deterministic:
            break
    return [last[i] for i in range(len(items))]


def tally(rows: Iterable[dict]) -> dict:
    """Counts of a stage's output rows (each with `status` and `reasons`): ok, rejected, rejections by reason and
    the attempts that the accepted ones took."""
    status, reasons, attempts = Counter(), Counter(), Counter()
    for row in rows:
        status[row["status"]] += 1
        if row["status"] == "ok":
            attempts[row.get("attempts", 1)] += 1
        else:
            reasons.update(row["reasons"])
    return {
        "total": sum(status.values()),
        "ok": status["ok"],
        "rejected": status["rejected"],
        "rejected_by_reason": dict(sorted(reasons.items())),
        "accepted_at_attempt": dict(sorted(attempts.items())),
    }


def acceptance_by_concept(rows: Iterable[dict], max_attempts: int) -> dict[str, dict]:
    """Per concept: how many lists held it, how many of those were accepted by each attempt (cumulative), and,
    where rows record them (`rejections`), the reasons of every failed attempt, counted: so that a concept the
    generator cannot render, or whose outputs fail a check more often (loud genres clipping, say), shows up instead
    of being silently under-represented."""
    out: dict[str, dict] = {}
    for row in rows:
        for tag in row["tags"]:
            entry = out.setdefault(tag, {"lists": 0, "accepted_by_attempt": [0] * max_attempts})
            entry["lists"] += 1
            if row["status"] == "ok":
                for k in range(row.get("attempts", 1) - 1, max_attempts):
                    entry["accepted_by_attempt"][k] += 1
            if "rejections" in row:
                counts = entry.setdefault("rejections_by_reason", {})
                for reason in row["rejections"] or ():
                    counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(out.items()))


def most_rejected(acceptance: dict[str, dict], n: int = 10) -> list[tuple[str, int, int, dict]]:
    """The `n` concepts whose lists' attempts failed a check most often per list: (concept, failed attempts,
    lists, reasons with counts); concepts with none are left out."""
    rows = [
        (c, sum(e.get("rejections_by_reason", {}).values()), e["lists"], e.get("rejections_by_reason", {}))
        for c, e in acceptance.items()
        if e["lists"]
    ]
    return sorted((r for r in rows if r[1]), key=lambda r: (-r[1] / r[2], -r[2], r[0]))[:n]


def least_accepted(acceptance: dict[str, dict], n: int = 10) -> list[tuple[str, int, int]]:
    """The `n` concepts with the lowest final acceptance rate: (concept, accepted, lists)."""
    rows = [(c, e["accepted_by_attempt"][-1], e["lists"]) for c, e in acceptance.items() if e["lists"]]
    return sorted(rows, key=lambda r: (r[1] / r[2], -r[2], r[0]))[:n]
