"""A split of a dataset's audio, read in batches, and its concept sets: for this project's datasets and for the
paper's published one (`builder.published`).

Nothing holds a split's audio in memory: `AudioSplit.batches` decodes the clips of one batch at a time (only the
seconds a model looks at), so the genre classifier and TCAV use the same memory at 200 clips and at 21,000.
"""

from __future__ import annotations

import io
from typing import Callable, Iterator, Sequence

import numpy as np
import soundfile as sf
import torch

from core.constants import CATEGORIES, SAMPLING_RATE
from core.errors import DataError


def read_wave(data: bytes, seconds: float | None = None, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Mono float32 at `sampling_rate` of an encoded clip, decoding only its first `seconds` when given."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        frames = -1 if seconds is None else int(np.ceil(seconds * f.samplerate))
        wave = f.read(frames, dtype="float32", always_2d=True).mean(axis=1)
        rate = f.samplerate
    if rate != sampling_rate:
        import soxr

        wave = soxr.resample(wave, rate, sampling_rate).astype(np.float32)
    return wave if seconds is None else wave[: int(seconds * sampling_rate)]


def pad_stack(waves: Sequence[np.ndarray], samples: int) -> torch.Tensor:
    out = np.zeros((len(waves), samples), dtype=np.float32)
    for i, w in enumerate(waves):
        out[i, : min(len(w), samples)] = w[:samples]
    return torch.from_numpy(out)


class Batches:
    """A re-iterable sequence of model-input batches for a list of ids (what captum's `Concept` reads)."""

    def __init__(self, split: "AudioSplit", ids: Sequence[str], preprocess: Callable, samples: int, batch_size: int):
        self.split, self.ids, self.preprocess, self.samples, self.batch_size = split, list(ids), preprocess, samples, batch_size

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in range(0, len(self.ids), self.batch_size):
            waves = self.split.waves(self.ids[b:b + self.batch_size], self.samples / SAMPLING_RATE)
            with torch.no_grad():
                yield self.preprocess(pad_stack(waves, self.samples))


class AudioSplit:
    """One split of a dataset's audio config: `rows` (id, tags and the category lists, no audio) and the clips,
    decoded on demand. A published-schema dataset is read through `builder.published` (tags mapped onto our
    concepts, duplicate ids dropped with a count)."""

    def __init__(self, dataset: str, split: str):
        import datasets

        from conceptcaps import is_published_dataset, open_dataset, published_examples

        self.dataset, self.split_name = dataset, split
        self.published = is_published_dataset(dataset, split)
        if self.published:
            from builder.published import AUDIO_FIELD

            self.source, self.rows, self.reader = published_examples(dataset, split, "audio")
            self.audio_column = AUDIO_FIELD
        else:
            source = open_dataset(dataset, "audio", split=split)
            self.audio_column = "audio"
            self.source = source.cast_column("audio", datasets.Audio(decode=False))
            self.rows = [{**r, "index": i} for i, r in enumerate(source.select_columns(["id", "tags", *CATEGORIES]))]
            self.reader = None
        self.position = {r["id"]: r["index"] for r in self.rows}

    def waves(self, ids: Sequence[str], seconds: float | None = None) -> list[np.ndarray]:
        missing = [i for i in ids if i not in self.position]
        if missing:
            raise DataError(self.dataset, f"split {self.split_name!r} has no example {missing[0]!r}")
        clips = self.source.select([self.position[i] for i in ids])[self.audio_column]
        out = []
        for id_, clip in zip(ids, clips):
            if not clip or not clip.get("bytes"):
                raise DataError(self.dataset, f"split {self.split_name!r}, id {id_!r}, field {self.audio_column!r}: no audio bytes")
            out.append(read_wave(clip["bytes"], seconds))
        return out

    def batches(self, ids: Sequence[str], preprocess: Callable, samples: int, batch_size: int = 32) -> Batches:
        return Batches(self, ids, preprocess, samples, batch_size)

    def concept_sets(self, concepts: Sequence[str] | None = None) -> dict[str, dict]:
        """{concept: {"positive": [ids], "random": {set index: [ids]}}}: the dataset's `concepts` config, or for a
        published dataset sets built here with assembly's rules (`concepts` may then use either taxonomy's names)."""
        members: dict[str, dict] = {}
        if self.published:
            from builder.published import published_concept_sets, resolve_concept
            from builder.splits import ConceptSetArguments

            taxonomy = self.reader.taxonomy
            wanted = None if not concepts else [resolve_concept(c, taxonomy) for c in concepts]
            rows, _ = published_concept_sets(self.rows, taxonomy, ConceptSetArguments(), wanted)
            roles = None
        else:
            from conceptcaps import open_dataset

            sets = open_dataset(self.dataset, "concepts", split=self.split_name)
            roles = sets.features["role"].names
            rows = sets
        for r in rows:
            role = r["role"] if roles is None else roles[r["role"]]
            entry = members.setdefault(r["concept"], {"positive": [], "random": {}})
            if role == "positive":
                entry["positive"].append(r["id"])
            elif role == "random":
                entry["random"].setdefault(r["set_index"], []).append(r["id"])
        return members
