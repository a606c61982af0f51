"""Which concepts a text names, through their surface forms: the concept's name, its taxonomy aliases and the
reviewed paraphrases in `builder/data/paraphrases.tsv`, matched on whole words of the normalised text.

A hyphenated compound names the concepts of its parts ("piano-driven", "pop-rock", "jazz-tinged", "synth-heavy"),
except the reviewed idioms of `builder/data/compound_idioms.tsv` ("e-piano", "soul-stirring", "heavy-hearted").
One regular expression holds every form, longest first: at any position the alternation takes the longest form
that matches there, and `finditer` resumes after it, so "upright bass" names the upright bass and not also the
bass guitar. A mention is negated when a negation cue ("no", "not", "without", "lacks", "n't" ...) comes before
it in the same clause with no word between that ends the cue's scope ("and", "but", "with", a verb such as
"plays"): "there are no voices in this song", "no percussion or bass", "a song without vocals" name nothing,
while "no drums, and the piano plays" still names the piano. Used by the caption checks (coverage,
hallucination, negated attributes) and by the concept sets (negatives free of the concept's surface forms,
negated or not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.taxonomy import ALIAS_SEPARATOR, Taxonomy
from core.errors import DataError
from core.io import read_tsv

PARAPHRASE_TABLE = Path(__file__).resolve().parent / "data" / "paraphrases.tsv"
IDIOM_TABLE = Path(__file__).resolve().parent / "data" / "compound_idioms.tsv"
_COMPOUND_HYPHEN = re.compile(r"(?<=[\w&'])-(?=[\w&'])")
NEGATION_CUES = frozenset(
    {
        "no",
        "not",
        "without",
        "lacks",
        "lacking",
        "lack",
        "absence",
        "absent",
        "devoid",
        "never",
        "nor",
        "neither",
        "none",
    }
)
# words that end a negation's scope when met looking back from a mention: a new clause, an affirmative verb, a
# preposition or a definite determiner ("no percussion at a slow tempo" negates the percussion, not the tempo)
SCOPE_BREAKERS = frozenset(
    {
        "and",
        "but",
        "with",
        "while",
        "whereas",
        "plus",
        "also",
        "then",
        "which",
        "who",
        "that",
        "is",
        "are",
        "was",
        "were",
        "plays",
        "played",
        "playing",
        "sings",
        "sung",
        "singing",
        "features",
        "featuring",
        "feature",
        "accompanied",
        "backed",
        "by",
        "over",
        "alongside",
        "at",
        "in",
        "on",
        "for",
        "to",
        "into",
        "during",
        "throughout",
        "from",
        "the",
        "this",
        "its",
        "their",
        "his",
        "her",
    }
)
NEGATION_WINDOW = 5  # words looked back from a mention
_CLAUSES = re.compile(r"[.;:!?,()\[\]]+")


@dataclass(frozen=True)
class Mention:
    concept: str
    negated: bool


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
        idioms = [taxonomy.normalise(compound) for _, (compound, _) in read_tsv(IDIOM_TABLE, 2)]
        self._idioms = (
            re.compile(r"(?<![\w&'-])(" + "|".join(re.escape(i) for i in idioms) + r")(?![\w&'-])") if idioms else None
        )
        ordered = sorted(forms, key=lambda f: (-len(f.split()), -len(f), f))
        self._pattern = re.compile(r"(?<![\w&'-])(" + "|".join(re.escape(f) for f in ordered) + r")(?![\w&'-])")

    def mentions(self, text: str) -> list[Mention]:
        """Every surface form found, in order, with whether it is negated."""
        out = []
        for clause in _CLAUSES.split(text):
            normalised = self._compounds_split(self.taxonomy.normalise(clause))
            words = normalised.split()
            for m in self._pattern.finditer(normalised):
                start = normalised.count(" ", 0, m.start())  # the mention's first word
                out.append(Mention(self.forms[m.group(1)], _negated(words[max(0, start - NEGATION_WINDOW) : start])))
        return out

    def _compounds_split(self, normalised: str) -> str:
        """A hyphenated compound's parts as words ("piano-driven" names the piano, "upright-bass" the upright bass),
        except the reviewed idioms (`compound_idioms.tsv`: "e-piano" names no piano), which name nothing."""
        if self._idioms is not None:
            normalised = self._idioms.sub(lambda m: "_" * len(m.group(1)), normalised)
        return _COMPOUND_HYPHEN.sub(" ", normalised)

    def named_concepts(self, text: str) -> list[str]:
        """Concepts a text names (at least once not negated), in order of first mention."""
        return list(dict.fromkeys(m.concept for m in self.mentions(text) if not m.negated))

    def negated_concepts(self, text: str) -> list[str]:
        """Concepts a text only ever mentions negated ("there is no percussion")."""
        named = set(self.named_concepts(text))
        return list(dict.fromkeys(m.concept for m in self.mentions(text) if m.negated and m.concept not in named))

    def surface_concepts(self, text: str) -> list[str]:
        """Concepts any of whose surface forms occur, negated or not."""
        return list(dict.fromkeys(m.concept for m in self.mentions(text)))


def _negated(before: list[str]) -> bool:
    """Whether the words before a mention (nearest last) put it in a negation's scope."""
    for word in reversed(before):
        if word in NEGATION_CUES or word.endswith("n't"):
            return True
        if word in SCOPE_BREAKERS:
            return False
    return False
