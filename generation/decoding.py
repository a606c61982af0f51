"""Decoding that does not fight the caption checks.

`ForbiddenForms`: a per-row logits processor that keeps the LLM from writing the surface forms of the genres and
instruments a row does not list (their token sequences in lower, capitalised and title case, with and without a
leading space). The listed concepts' own forms stay writable: a forbidden token is allowed where it completes a
listed form ("bass" after "synth" when "synth bass" is listed, though a lone "bass" would name the bass guitar).
Token sequences miss what the caption checks still read as a form: another spelling of the same letters
("E"+"D"+"M"), a plural or misspelling that normalisation maps onto a form ("percussions", "hi-hats"). So the
processor also reads each row's text as the checks do: when the normalised text ends with a forbidden form at a
word start (and not with a listed form), the word may not end there, so no token that begins a new word, a
punctuation mark or the end of the caption is allowed.

`generated_repetition_penalty`: transformers applies the repetition penalty to every input id of a decoder-only
model, the prompt included, so it penalises the very attribute words the caption must contain and the
end-of-turn token; this penalises the generated tokens only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from transformers import LogitsProcessor, RepetitionPenaltyLogitsProcessor

from builder.mentions import ConceptMatcher


def casings(form: str) -> set[str]:
    return {form, form[:1].upper() + form[1:], form.title(), form.upper()}


class FormTokens:
    """The token sequences of every surface form of the guarded concepts, computed once per tokenizer."""

    def __init__(self, tokenizer, matcher: ConceptMatcher, categories: Iterable[str]):
        guarded = {c.name for c in matcher.taxonomy.concepts if c.category in set(categories)}
        self.forms: dict[str, list[str]] = {}
        for form, concept in matcher.forms.items():
            self.forms.setdefault(concept, []).append(form)
        self.tokenize = lambda text: tokenizer.encode(text, add_special_tokens=False)
        self.sequences: dict[str, list[tuple[int, ...]]] = {}
        for concept in guarded:
            seqs = {
                tuple(self.tokenize(variant))
                for form in self.forms.get(concept, [])
                for text in casings(form)
                for variant in (text, " " + text)
            }
            self.sequences[concept] = sorted(s for s in seqs if s)

    def sequences_of(self, concepts: Iterable[str]) -> list[tuple[int, ...]]:
        return [seq for concept in concepts for seq in self.sequences.get(concept, [])]

    def banned_for(self, listed: Sequence[str]) -> list[tuple[int, ...]]:
        """Token sequences of the guarded concepts not in `listed`."""
        return self.sequences_of(c for c in self.sequences if c not in listed)

    def banned_forms(self, listed: Sequence[str]) -> list[str]:
        return [f for c in self.sequences if c not in listed for f in self.forms.get(c, [])]

    def allowed_forms(self, listed: Sequence[str]) -> list[str]:
        return [f for c in listed for f in self.forms.get(c, [])]

    def allowed_for(self, listed: Sequence[str]) -> list[tuple[int, ...]]:
        """Token sequences of the listed concepts' forms (every casing), which a ban must never cut short."""
        return [
            tuple(self.tokenize(text))
            for c in listed
            for form in self.forms.get(c, [])
            for text in (*casings(form), *(" " + x for x in casings(form)))
        ]


def _trie(sequences: Iterable[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    """prefix -> the tokens that complete a sequence after it."""
    trie: dict[tuple[int, ...], set[int]] = {}
    for seq in sequences:
        if seq:
            trie.setdefault(tuple(seq[:-1]), set()).add(seq[-1])
    return {k: sorted(v) for k, v in trie.items()}


@dataclass
class WordEnds:
    """What the text backstop needs: the tokenizer, the checks' normalisation, the tokens that end a word."""

    tokenizer: object
    normalise: Callable[[str], str]
    boundary: torch.Tensor  # bool over the vocabulary: the token begins with a non-word character, or ends the text

    @classmethod
    def of(cls, tokenizer, normalise: Callable[[str], str], end_ids: Sequence[int]) -> "WordEnds":
        vocabulary = len(tokenizer)
        boundary = torch.zeros(vocabulary, dtype=torch.bool)
        for i, text in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocabulary)))):
            shown = tokenizer.convert_tokens_to_string([text]) if text else ""
            boundary[i] = not shown or not (shown[0].isalnum() or shown[0] in "&'-")
        boundary[[i for i in end_ids if i is not None and i < vocabulary]] = True
        return cls(tokenizer, normalise, boundary)


def _ending(forms: Iterable[str]) -> re.Pattern | None:
    ordered = sorted(set(forms), key=len, reverse=True)
    return re.compile(r"(?:^|\s)(?:" + "|".join(re.escape(f) for f in ordered) + r")$") if ordered else None


class ForbiddenForms(LogitsProcessor):
    """Per row of a batch, no token that would complete a forbidden sequence among the generated tokens, and (with
    `words`) no word ending right after a forbidden form, as the caption checks read the text."""

    def __init__(
        self,
        banned: Sequence[Sequence[tuple[int, ...]]],
        prompt_length: int,
        allowed: Sequence[Sequence[tuple[int, ...]]] | None = None,
        words: WordEnds | None = None,
        banned_forms: Sequence[Sequence[str]] = (),
        allowed_forms: Sequence[Sequence[str]] = (),
    ):
        self.prompt_length = prompt_length
        self.banned = [_trie(seqs) for seqs in banned]
        self.allowed = [_trie(seqs) for seqs in (allowed or [[] for _ in banned])]
        self.longest = max((len(k) for t in (*self.banned, *self.allowed) for k in t), default=0)
        self.words = words
        self.banned_endings = [_ending(forms) for forms in banned_forms]
        self.allowed_endings = [_ending(forms) for forms in allowed_forms] or [None] * len(self.banned_endings)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, (banned, allowed, tokens) in enumerate(zip(self.banned, self.allowed, generated)):
            suffixes = [tuple(tokens[len(tokens) - n :]) for n in range(min(self.longest, len(tokens)) + 1)]
            blocked = {t for suffix in suffixes for t in banned.get(suffix, ())}
            blocked -= {t for suffix in suffixes for t in allowed.get(suffix, ())}
            if blocked:
                scores[row, sorted(blocked)] = -float("inf")
            if self.words is not None and tokens and self.banned_endings[row] is not None:
                tail = self.words.normalise(self.words.tokenizer.decode(tokens[-16:], skip_special_tokens=True))
                listed = self.allowed_endings[row]
                if self.banned_endings[row].search(tail) and not (listed is not None and listed.search(tail)):
                    scores[row, self.words.boundary[: scores.shape[1]]] = -float("inf")
        return scores


def generated_repetition_penalty(penalty: float, prompt_length: int) -> RepetitionPenaltyLogitsProcessor:
    return RepetitionPenaltyLogitsProcessor(float(penalty), prompt_ignore_length=prompt_length)
