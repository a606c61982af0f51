"""A deterministic captioner: grammatical sentences built from the attribute list alone.

It names every attribute by its concept name and nothing else, so it passes the caption checks by
construction; it is the baseline for caption metrics and the CPU demo's default backend. The sentence
pattern is chosen by a stable hash of the id, so the same id always gets the same caption.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _variant(key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % n


def template_caption(attributes: Mapping[str, Sequence[str]], key: str = "") -> str:
    """A caption naming every concept of `attributes` (category -> concepts)."""
    genre, mood = list(attributes.get("genre", [])), list(attributes.get("mood", []))
    instruments, tempo = list(attributes.get("instrument", [])), list(attributes.get("tempo", []))
    kind = f"{_join(genre)} piece" if genre else "piece of music"
    v = _variant(key, 3)
    opening = ["This is", "Here is", "The recording is"][v]
    sentences = [f"{opening} {_article(kind)}."]
    if instruments:
        lead = ["It features", "The arrangement features", "Instruments include"][v]
        sentences.append(f"{lead} {_join(instruments)}.")
    if tempo:
        sentences.append(f"{['It moves with', 'Its rhythm combines', 'It moves with'][v]} {_join(tempo)}.")
    if mood:
        feel = ["The mood is", "It sounds", "Overall it feels"][v]
        sentences.append(f"{feel} {_join(mood)}.")
    return " ".join(sentences)
