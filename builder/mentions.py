"""Which concepts a text names, through their surface forms: the concept's name, its taxonomy aliases and the
reviewed paraphrases in `builder/data/paraphrases.tsv`, matched on whole words of the normalised text.

One regular expression holds every form, longest first: at any position the alternation takes the longest form
that matches there, and `finditer` resumes after it, so "upright bass" names the upright bass and not also the
bass guitar. Used by the caption checks (coverage, hallucination) and by the concept sets (negatives free of
the concept's surface forms).
"""

from __future__ import annotations

import re
from pathlib import Path

from builder.taxonomy import ALIAS_SEPARATOR, Taxonomy
from core.errors import DataError
from core.io import read_tsv

PARAPHRASE_TABLE = Path(__file__).resolve().parent / "data" / "paraphrases.tsv"


class ConceptMatcher:
    def __init__(self, taxonomy: Taxonomy, paraphrase_table: Path = PARAPHRASE_TABLE):
        forms: dict[str, str] = {}
        for concept in taxonomy.concepts:
            for form in (concept.name, *concept.aliases):
                forms.setdefault(form, concept.name)
        for number, (name, extra) in read_tsv(paraphrase_table, 2):
            if name not in taxonomy.index:
                continue  # a paraphrase of a concept this taxonomy does not keep
            for form in extra.split(ALIAS_SEPARATOR):
                form = taxonomy.normalise(form)
                if form and forms.setdefault(form, name) != name:
                    raise DataError(paraphrase_table, f"form {form!r} already names {forms[form]!r}", row=number)
        self.taxonomy = taxonomy
        self.forms = forms
        ordered = sorted(forms, key=lambda f: (-len(f.split()), -len(f), f))
        self._pattern = re.compile(r"(?<![\w&'-])(" + "|".join(re.escape(f) for f in ordered) + r")(?![\w&'-])")

    def named_concepts(self, text: str) -> list[str]:
        """Concepts a text names, in order of first mention."""
        found = (self.forms[m.group(1)] for m in self._pattern.finditer(self.taxonomy.normalise(text)))
        return list(dict.fromkeys(found))
