"""Decoding that does not fight the caption checks.

`ForbiddenForms`: a per-row logits processor that keeps the LLM from writing the surface forms of the genres and
instruments a row does not list (their token sequences in lower, capitalised and title case, with and without a
leading space). A form that is part of a listed concept's form ("guitar" when "electric guitar" is listed) stays
allowed, so every listed concept can still be written.

`generated_repetition_penalty`: transformers applies the repetition penalty to every input id of a decoder-only
model, the prompt included, so it penalises the very attribute words the caption must contain and the
end-of-turn token; this penalises the generated tokens only.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from transformers import LogitsProcessor, RepetitionPenaltyLogitsProcessor

from builder.mentions import ConceptMatcher


def casings(form: str) -> set[str]:
    return {form, form[:1].upper() + form[1:], form.title()}


class FormTokens:
    """The token sequences of every surface form of the guarded concepts, computed once per tokenizer."""

    def __init__(self, tokenizer, matcher: ConceptMatcher, categories: Iterable[str]):
        guarded = {c.name for c in matcher.taxonomy.concepts if c.category in set(categories)}
        self.forms: dict[str, list[str]] = {}
        for form, concept in matcher.forms.items():
            self.forms.setdefault(concept, []).append(form)
        self.sequences: dict[str, list[tuple[int, ...]]] = {}
        for concept in guarded:
            seqs = set()
            for form in self.forms.get(concept, []):
                for text in casings(form):
                    for variant in (text, " " + text):
                        ids = tuple(tokenizer.encode(variant, add_special_tokens=False))
                        if ids:
                            seqs.add(ids)
            self.sequences[concept] = sorted(seqs)

    def banned_for(self, listed: Sequence[str]) -> list[tuple[int, ...]]:
        """Sequences of the guarded concepts not in `listed`, except forms inside a listed concept's form."""
        listed_forms = [f" {f} " for c in listed for f in self.forms.get(c, [])]
        out = []
        for concept, seqs in self.sequences.items():
            if concept in listed:
                continue
            inside = any(f" {form} " in lf for form in self.forms[concept] for lf in listed_forms)
            if not inside:
                out += seqs
        return out


class ForbiddenForms(LogitsProcessor):
    """Per row of a batch, no token that would complete a forbidden sequence among the generated tokens."""

    def __init__(self, banned: Sequence[Sequence[tuple[int, ...]]], prompt_length: int):
        self.prompt_length = prompt_length
        self.tries: list[dict[tuple[int, ...], list[int]]] = []
        for sequences in banned:
            trie: dict[tuple[int, ...], set[int]] = {}
            for seq in sequences:
                trie.setdefault(tuple(seq[:-1]), set()).add(seq[-1])
            self.tries.append({k: sorted(v) for k, v in trie.items()})
        self.longest = max((len(k) for t in self.tries for k in t), default=0)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:].tolist()
        for row, (trie, tokens) in enumerate(zip(self.tries, generated)):
            for length in range(min(self.longest, len(tokens)) + 1):
                blocked = trie.get(tuple(tokens[len(tokens) - length:]))
                if blocked:
                    scores[row, blocked] = -float("inf")
        return scores


def generated_repetition_penalty(penalty: float, prompt_length: int) -> RepetitionPenaltyLogitsProcessor:
    return RepetitionPenaltyLogitsProcessor(float(penalty), prompt_ignore_length=prompt_length)
