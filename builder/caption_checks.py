"""Checks on every caption: coverage (each listed concept is named, or a concept narrower than it:
`builder.relations`), hallucination (an unlisted concept of a checked category is named, a narrower one too), no
listed concept negated ("no percussion"), length bounds, no prompt echo.
Concepts are found by `builder.mentions`, negation-aware: a negated mention names nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from builder.mentions import PARAPHRASE_TABLE, ConceptMatcher
from builder.prompting import CATEGORY_LABELS, INSTRUCTION, SYSTEM_PROMPT
from builder.relations import Relations, load_relations
from builder.taxonomy import Taxonomy
from core.retry import Verdict

HALLUCINATION_CATEGORIES = ("genre", "instrument")


@dataclass(frozen=True)
class CheckResult(Verdict):
    missing: tuple[str, ...] = ()
    hallucinated: tuple[str, ...] = ()
    negated: tuple[str, ...] = ()
    words: int = 0


@dataclass
class CaptionChecker:
    taxonomy: Taxonomy
    min_words: int = 8
    max_words: int = 90
    hallucination_categories: Sequence[str] = HALLUCINATION_CATEGORIES
    paraphrase_table: Path = PARAPHRASE_TABLE
    matcher: ConceptMatcher = field(init=False, repr=False)
    relations: Relations = field(init=False, repr=False)

    def __post_init__(self):
        self.matcher = ConceptMatcher(self.taxonomy, Path(self.paraphrase_table))
        self.relations = load_relations()
        self._echo = [SYSTEM_PROMPT.lower()[:40], INSTRUCTION.lower()[:40]] + [
            f"{v.lower()}:" for v in CATEGORY_LABELS.values()
        ]

    def named_concepts(self, caption: str) -> list[str]:
        """Concepts a caption names, in order of first mention."""
        return self.matcher.named_concepts(caption)

    def check(self, caption: str, tags: Sequence[str], truncated: bool = False) -> CheckResult:
        """Every reason the caption fails; ok when there is none. `truncated`: generation stopped at its length
        bound, so the caption is cut off, whatever it names."""
        reasons = ["truncated"] if truncated else []
        if not caption or not caption.strip():
            return CheckResult((*reasons, "empty"))
        words = len(caption.split())
        if words < self.min_words:
            reasons.append("too short")
        if words > self.max_words:
            reasons.append("too long")
        lowered = caption.lower()
        if any(e in lowered for e in self._echo):
            reasons.append("prompt echo")
        named = self.named_concepts(caption)
        covered = self.relations.with_broader(named)  # "hard rock" names rock too (but rock does not name hard rock)
        missing = tuple(t for t in tags if t not in covered)
        negated = tuple(t for t in self.matcher.negated_concepts(caption) if t in tags)
        hallucinated = tuple(
            n for n in named if n not in tags and self.taxonomy.category_of[n] in self.hallucination_categories
        )
        if missing:
            reasons.append("missing attribute")
        if negated:
            reasons.append("negated attribute")
        if hallucinated:
            reasons.append("hallucinated attribute")
        return CheckResult(tuple(reasons), missing, hallucinated, negated, words)
