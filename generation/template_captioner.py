"""A deterministic captioner: grammatical sentences built from the attribute list alone.

It names every attribute by its concept name and nothing else, so it passes the caption checks by
construction; it is the baseline for caption metrics and the CPU demo's default backend. The sentence
pattern is chosen by a stable hash of the id, so the same id always gets the same caption.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

# How a tempo or rhythm concept reads in "It moves ..." (reviewed; the concept's own words are kept, so the caption
# still names exactly it): a tempo band "at a fast tempo", a meter "in waltz time", an adjective "with a groovy feel",
# a plural or mass noun "with tempo changes", anything else "with a steady rhythm"
TEMPO_BANDS = ("tempo",)  # concepts ending so: "at a <concept>"
METERS = {"waltz time", "free time", "odd meter", "compound meter"}  # "in (an) <concept>"
ADJECTIVES = {"groovy", "upbeat", "rhythmic"}  # "with a <concept> feel"
MASS_NOUNS = {
    "tempo changes",
    "foot stomping",
    "fast drumming",
    "intense drumming",
    "four on the floor",
}  # "with <concept>"
# instruments named without an article: plurals and mass nouns
NO_ARTICLE = {
    "percussion",
    "vocal harmony",
    "strings",
    "hand claps",
    "hi hats",
    "cymbals",
    "bells",
    "congas",
    "bongos",
    "backing vocals",
    "rap vocals",
    "turntables",
    "acoustic drums",
    "electronic drums",
}
AN_SOUNDS = {"r&b", "edm"}  # read letter by letter: "an R&B piece"


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _article(phrase: str) -> str:
    an = phrase[:1].lower() in "aeiou" or phrase.split()[0].lower() in AN_SOUNDS
    return ("an " if an else "a ") + phrase


def instrument_phrase(concept: str) -> str:
    """An instrument as a noun phrase: "a bass guitar", "strings"."""
    return concept if concept in NO_ARTICLE or concept.endswith("s") else _article(concept)


def tempo_phrase(concept: str) -> str:
    """A tempo or rhythm concept as the complement of "It moves": "at a fast tempo", "in waltz time"."""
    if concept.endswith(TEMPO_BANDS):
        return "at " + _article(concept)
    if concept in METERS:
        return "in " + (_article(concept) if concept.endswith("meter") else concept)
    if concept in ADJECTIVES:
        return f"with {_article(concept)} feel"
    if concept in MASS_NOUNS:
        return "with " + (f"a {concept} beat" if concept == "four on the floor" else concept)
    return "with " + _article(concept)


def _tempo_clause(tempo: Sequence[str]) -> str:
    """Bands and meters first, then the "with" phrases joined under one "with"."""
    adjectives = [t for t in tempo if t in ADJECTIVES]  # one feel: "with a groovy and upbeat feel"
    phrases = [tempo_phrase(t) for t in tempo if t not in ADJECTIVES]
    if adjectives:
        phrases.insert(0, f"with {_article(_join(adjectives))} feel")
    fixed = [p for p in phrases if not p.startswith("with ")]
    withs = [p[len("with ") :] for p in phrases if p.startswith("with ")]
    if not withs:
        return _join(fixed)  # "in waltz time and at a medium tempo"
    return ", ".join(fixed + ["with " + _join(withs)])  # "at a fast tempo, with a groovy feel and a backbeat"


def _variant(key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % n


def template_caption(attributes: Mapping[str, Sequence[str]], key: str = "") -> str:
    """A caption naming every concept of `attributes` (category -> concepts), in grammatical sentences."""
    genre, mood = list(attributes.get("genre", [])), list(attributes.get("mood", []))
    instruments, tempo = list(attributes.get("instrument", [])), list(attributes.get("tempo", []))
    kind = f"{_join(genre)} piece" if genre else "piece of music"
    v = _variant(key, 3)
    opening = ["This is", "Here is", "The recording is"][v]
    sentences = [f"{opening} {_article(kind)}."]
    if instruments:
        lead = ["It features", "The arrangement features", "You can hear"][v]
        sentences.append(f"{lead} {_join([instrument_phrase(i) for i in instruments])}.")
    if tempo:
        sentences.append(f"{['It moves', 'The music moves', 'It plays'][v]} {_tempo_clause(tempo)}.")
    if mood:
        feel = ["The mood is", "It sounds", "Overall it feels"][v]
        sentences.append(f"{feel} {_join(mood)}.")
    return " ".join(sentences)
