"""The caption prompt: one function builds it for training and for generation, so the attribute format
cannot drift between the two (the reference trained on a comma string and generated from a list repr)."""

from __future__ import annotations

from typing import Mapping, Sequence

from core.constants import CATEGORIES

PROMPT_VERSION = "1"
SYSTEM_PROMPT = "You are an expert in music who writes short, professional descriptions of music recordings."
INSTRUCTION = (
    "Write one short, professional description (one to three sentences) of a music recording that has "
    "exactly these attributes. Mention every attribute and no other genre or instrument."
)
CATEGORY_LABELS = {"genre": "Genre", "mood": "Mood", "instrument": "Instruments", "tempo": "Tempo and rhythm"}


def format_attributes(attributes: Mapping[str, Sequence[str]]) -> str:
    """One line per non-empty category, concepts in the given order: 'Genre: rock, pop'."""
    lines = [f"{CATEGORY_LABELS[c]}: {', '.join(attributes[c])}" for c in CATEGORIES if attributes.get(c)]
    if not lines:
        raise ValueError("an attribute list needs at least one concept")
    return "\n".join(lines)


def build_messages(attributes: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """System and user turns of the chat prompt."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{INSTRUCTION}\n{format_attributes(attributes)}"},
    ]


def build_example(attributes: Mapping[str, Sequence[str]], caption: str) -> dict:
    """A prompt-completion example in TRL's conversational format."""
    return {"prompt": build_messages(attributes), "completion": [{"role": "assistant", "content": caption}]}
