"""Checks on every caption: coverage (each listed concept is named), hallucination (an unlisted concept of a
checked category is named), length bounds, no prompt echo.

Concepts are found by their surface forms: the concept's name, its taxonomy aliases and the reviewed
paraphrases in `generation/data/paraphrases.tsv`, matched on whole words of the normalised caption, longest
match first (so "upright bass" is the upright bass, not also the bass guitar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from builder.common import DataError
from builder.taxonomy import ALIAS_SEPARATOR, Taxonomy, _read_tsv, normalise_aspect
from generation.prompting import CATEGORY_LABELS, INSTRUCTION, SYSTEM_PROMPT

PARAPHRASE_TABLE = Path(__file__).resolve().parent / "data" / "paraphrases.tsv"
HALLUCINATION_CATEGORIES = ("genre", "instrument")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reasons: tuple[str, ...]
    missing: tuple[str, ...] = ()
    hallucinated: tuple[str, ...] = ()
    words: int = 0


@dataclass
class CaptionChecker:
    taxonomy: Taxonomy
    min_words: int = 8
    max_words: int = 90
    hallucination_categories: Sequence[str] = HALLUCINATION_CATEGORIES
    paraphrase_table: Path = PARAPHRASE_TABLE
    _forms: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def __post_init__(self):
        forms: dict[str, str] = {}
        for concept in self.taxonomy.concepts:
            for form in (concept.name, *concept.aliases):
                forms.setdefault(form, concept.name)
        for number, (name, extra) in _read_tsv(Path(self.paraphrase_table), 2):
            if name not in self.taxonomy.index:
                continue  # a paraphrase of a concept this taxonomy does not keep
            for form in extra.split(ALIAS_SEPARATOR):
                form = normalise_aspect(form)
                if form and forms.setdefault(form, name) != name:
                    raise DataError(self.paraphrase_table, f"form {form!r} already names {forms[form]!r}", row=number)
        # longest forms first, so that overlapping shorter forms lose
        self._forms = sorted(forms.items(), key=lambda kv: (-len(kv[0].split()), -len(kv[0]), kv[0]))
        self._pattern = re.compile(r"(?<![\w&'-])(" + "|".join(re.escape(f) for f, _ in self._forms) + r")(?![\w&'-])")
        self._form_to_concept = dict(self._forms)
        self._echo = [SYSTEM_PROMPT.lower()[:40], INSTRUCTION.lower()[:40]] + [f"{v.lower()}:" for v in CATEGORY_LABELS.values()]

    def named_concepts(self, caption: str) -> list[str]:
        """Concepts a caption names, in order of first mention."""
        text = normalise_aspect(caption)
        found: list[str] = []
        taken = [False] * (len(text) + 1)
        matches = []
        for m in self._pattern.finditer(text):
            matches.append(m)
        # regex alternation already prefers earlier (longer) forms at one position; resolve overlaps by length
        for m in sorted(matches, key=lambda m: (-(m.end() - m.start()), m.start())):
            if any(taken[m.start():m.end()]):
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            found.append((m.start(), self._form_to_concept[m.group(1)]))
        ordered = []
        for _, name in sorted(found):
            if name not in ordered:
                ordered.append(name)
        return ordered

    def check(self, caption: str, tags: Sequence[str]) -> CheckResult:
        """Every reason the caption fails; ok when there is none."""
        if not caption or not caption.strip():
            return CheckResult(False, ("empty",))
        reasons = []
        words = len(caption.split())
        if words < self.min_words:
            reasons.append("too short")
        if words > self.max_words:
            reasons.append("too long")
        lowered = caption.lower()
        if any(e in lowered for e in self._echo):
            reasons.append("prompt echo")
        named = self.named_concepts(caption)
        missing = tuple(t for t in tags if t not in named)
        hallucinated = tuple(n for n in named if n not in tags
                             and self.taxonomy.category_of[n] in self.hallucination_categories)
        if missing:
            reasons.append("missing attribute")
        if hallucinated:
            reasons.append("hallucinated attribute")
        return CheckResult(not reasons, tuple(reasons), missing, hallucinated, words)
