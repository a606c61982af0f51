"""Activations once: every requested layer's time-pooled activations of a model, in a store keyed by the model
(its identity, the seconds it reads, the pooling; a random-init control by its seed), the layer and the clip's
audio checksum (sha256 of its encoded bytes). A second probe or TCAV run on the same model and clips decodes
nothing and runs the model zero times; a run that adds layers or clips computes only what is missing, all
missing layers of a clip in the same forward pass.

Layout: `<cache>/<model key>/<layer>/` holds `rows.f32` (one row of float32 features per clip, appended) and
`index.txt` (one checksum per line, appended after its rows are written), so a killed run loses at most the
batch in flight: rows past the index are cut off when the store is next opened. Rows are read back with
`pread`, one concept set at a time, so memory does not grow with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from core.io import write_json


def model_key(model) -> str:
    """A folder name for a model's activations: readable, and unique by a hash of what decides them."""
    what = json.dumps(
        {"name": model.name, "seconds": model.seconds, "rate": model.sampling_rate, "random_seed": model.random_seed}
    )
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.name)[:48].strip("-")
    return f"{slug}-{hashlib.sha256(what.encode()).hexdigest()[:12]}"


class LayerStore:
    """One layer's pooled activations by clip checksum."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.rows_path, self.index_path, self.meta_path = (
            folder / "rows.f32",
            folder / "index.txt",
            folder / "meta.json",
        )
        self.dim = json.loads(self.meta_path.read_text())["dim"] if self.meta_path.is_file() else None
        checksums = self.index_path.read_text().split() if self.index_path.is_file() else []
        self.row_of = {c: i for i, c in enumerate(checksums)}
        if self.dim is not None and self.rows_path.is_file():
            whole = len(checksums) * self.dim * 4
            if self.rows_path.stat().st_size > whole:  # rows of a batch whose index was never written
                os.truncate(self.rows_path, whole)

    def __contains__(self, checksum: str) -> bool:
        return checksum in self.row_of

    def append(self, checksums: Sequence[str], rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if self.dim is None:
            self.dim = rows.shape[1]
            write_json(self.meta_path, {"dim": self.dim})
        with open(self.rows_path, "ab") as f:
            f.write(rows.tobytes())
            f.flush()
            os.fsync(f.fileno())
        with open(self.index_path, "a") as f:
            f.write("".join(c + "\n" for c in checksums))
        for c in checksums:
            self.row_of[c] = len(self.row_of)

    def get(self, checksums: Sequence[str]) -> np.ndarray:
        size = self.dim * 4
        with open(self.rows_path, "rb") as f:
            rows = [
                np.frombuffer(os.pread(f.fileno(), size, self.row_of[c] * size), dtype=np.float32) for c in checksums
            ]
        return np.stack(rows) if rows else np.zeros((0, self.dim or 0), dtype=np.float32)


class ActivationCache:
    """The stores of one model: `cache[layer]` is a LayerStore; `forward_calls` counts model runs this session."""

    def __init__(self, root: str | Path, model, pooling: str = "mean"):
        self.model, self.pooling = model, pooling
        self.folder = Path(root) / model_key(model) / pooling
        self.stores: dict[str, LayerStore] = {}
        self.forward_calls = 0
        self.clips_run = 0

    def __getitem__(self, layer: str) -> LayerStore:
        if layer not in self.stores:
            self.stores[layer] = LayerStore(self.folder / re.sub(r"[^A-Za-z0-9._-]+", "_", layer))
        return self.stores[layer]

    def missing(self, checksum: str, layers: Sequence[str]) -> list[str]:
        return [layer for layer in layers if checksum not in self[layer]]


def fill_caches(
    audio, ids: Iterable[str], layers: Sequence[str], caches: Sequence[ActivationCache], batch_size: int = 16
) -> dict[str, str]:
    """Make sure every (clip, layer) is stored in every cache: one pass over the split, each clip decoded once
    (for every model that lacks one of its layers) and each model run only on clips it lacks. The caches' models
    must read the same seconds at the same rate (a model and its random-init control do). Returns {id: checksum} of
    every usable clip: the reader's checks skip (and count) the others."""
    from probing.features import pad_stack

    layers, first = list(layers), caches[0].model
    if any((c.model.seconds, c.model.sampling_rate) != (first.seconds, first.sampling_rate) for c in caches):
        raise ValueError("caches filled together must read the same seconds at the same rate")
    checksums, batch, queued = {}, [], set()

    def flush():
        decoded = [audio.decode(id_, data, first.seconds, first.sampling_rate) for id_, _, data in batch]
        bad = {c for (_, c, _), w in zip(batch, decoded) if w is None}  # counted by the reader; no activations
        for id_ in [i for i, c in checksums.items() if c in bad]:
            del checksums[id_]
        batch[:] = [b for b, w in zip(batch, decoded) if w is not None]
        if not batch:
            queued.clear()
            return
        waves = pad_stack([w for w in decoded if w is not None], first.samples)
        for cache in caches:
            todo = [k for k, (_, c, _) in enumerate(batch) if cache.missing(c, layers)]
            if not todo:
                continue
            with torch.no_grad():
                acts = cache.model.activations(cache.model.preprocess(waves[todo]), layers, cache.pooling)
            cache.forward_calls += 1
            cache.clips_run += len(todo)
            for layer in layers:
                keep = [j for j, k in enumerate(todo) if batch[k][1] not in cache[layer]]
                if keep:
                    cache[layer].append([batch[todo[j]][1] for j in keep], acts[layer][keep].numpy())
        batch.clear()
        queued.clear()

    for id_, data in audio.encoded(list(dict.fromkeys(ids))):
        checksum = hashlib.sha256(data).hexdigest()
        checksums[id_] = checksum
        if checksum in queued or not any(cache.missing(checksum, layers) for cache in caches):
            continue  # stored already (or the same audio under another id, in this batch)
        batch.append((id_, checksum, data))
        queued.add(checksum)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return checksums
