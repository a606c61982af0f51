"""A split of a dataset's audio, read straight from its parquet files, for this project's datasets and for the
paper's published one (`builder.published`).

Nothing holds a split's audio in memory, and nothing copies it: the split's files (a local folder's, or the Hub's
through `hf://`) are read with pyarrow one row group at a time, in storage order; only the clips asked for are
decoded, only the seconds a model looks at, and the model inputs they give are kept in a file (`FeatureStore`),
from which training and TCAV draw batches. The genre classifier and TCAV so use the same memory at 200 clips
and at 21,000.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import torch

from core.constants import CATEGORIES, SAMPLING_RATE
from core.errors import ConfigError, DataError


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


class FeatureStore:
    """Model inputs of equal shape in a file, read back by index: batches are drawn from it without holding the
    dataset's inputs in memory (plain reads, not a memory map, whose touched pages would count as the process's
    resident memory). The file is removed by `close()`."""

    def __init__(self, path: Path):
        self.path, self.shape, self.n = Path(path), None, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w+b")

    def append(self, batch: torch.Tensor) -> None:
        batch = batch.detach().to(torch.float32).contiguous()
        if self.shape is None:
            self.shape = tuple(batch.shape[1:])
        self._file.write(batch.numpy().tobytes())
        self.n += len(batch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> torch.Tensor:
        self._file.flush()
        size = int(np.prod(self.shape)) * 4
        rows = [np.frombuffer(os.pread(self._file.fileno(), size, int(i) * size), dtype=np.float32)
                for i in torch.as_tensor(index).reshape(-1).tolist()]
        return torch.from_numpy(np.stack(rows).reshape(len(rows), *self.shape))

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class StoreBatches:
    """A re-iterable sequence of batches of a FeatureStore's rows (what captum's `Concept` reads)."""

    def __init__(self, store: FeatureStore, rows: Sequence[int], batch_size: int):
        self.store, self.rows, self.batch_size = store, list(rows), batch_size

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in range(0, len(self.rows), self.batch_size):
            yield self.store[torch.tensor(self.rows[b:b + self.batch_size])]


def assembled_layout(dataset: str) -> dict | None:
    """A local folder that `builder.assemble` wrote: {config: folder} from its build summary (readable before the
    card stage writes the README's `configs:`), else None."""
    summary = Path(dataset) / "build_summary.json"
    if "://" in dataset or not summary.is_file():
        return None
    import json

    return json.loads(summary.read_text()).get("configs")


def split_files(dataset: str, config: str, split: str) -> list[str]:
    """The parquet files of a config's split: in a folder assembly wrote, from its layout; else as the dataset's
    card (`configs:`) lists them: local paths, or `hf://` URLs read by range requests (nothing downloaded whole,
    nothing cached)."""
    import datasets

    layout = assembled_layout(dataset)
    if layout is not None:
        if config not in layout:
            raise DataError(dataset, f"no {config!r} config (it has {sorted(layout)})")
        files = sorted(str(p) for p in (Path(dataset) / layout[config]).glob(f"{split}-*.parquet"))
        if not files:
            raise DataError(Path(dataset) / layout[config], f"config {config!r} has no split {split!r}")
        return files
    try:
        files = datasets.load_dataset_builder(dataset, config).config.data_files
    except ValueError as e:  # no such config: a dataset without audio, or a folder without its card
        raise DataError(dataset, f"no {config!r} config ({str(e).splitlines()[0][:160]})") from None
    if split not in files:
        raise DataError(dataset, f"config {config!r} has no split {split!r} (it has {sorted(files)})")
    return list(files[split])


def _read_table(path: str, columns: list[str]):
    with _open(path) as handle:
        return pq.read_table(handle, columns=columns)


def _open(path: str):
    if "://" in path:
        import fsspec
        import huggingface_hub  # noqa: F401 (registers hf://)

        return fsspec.open(path, "rb").open()
    return open(path, "rb")


class AudioSplit:
    """One split of a dataset's audio config: `rows` (id, tags and the category lists; for a published-schema
    dataset mapped onto our concepts, duplicate ids dropped with a count: `reader`) and the clips, decoded on
    demand in storage order."""

    def __init__(self, dataset: str, split: str):
        from builder.published import AUDIO_FIELD, TEXT_FIELDS
        from conceptcaps import is_published_dataset, published_reader

        self.dataset, self.split_name = dataset, split
        self.published = is_published_dataset(dataset, split)
        self.audio_column = AUDIO_FIELD if self.published else "audio"
        columns = list(TEXT_FIELDS) if self.published else ["id", "tags", *CATEGORIES]
        self.files = split_files(dataset, "audio", split)
        source, self._where = [], []  # per source row: (file, row group, row within the group)
        for f, path in enumerate(self.files):
            with _open(path) as handle:
                parquet = pq.ParquetFile(handle)
                missing = [c for c in (*columns, self.audio_column) if c not in parquet.schema_arrow.names]
                if missing:
                    raise DataError(path, f"no column(s) {missing}: not this dataset's audio config")
                source += parquet.read(columns=columns).to_pylist()
                for g in range(parquet.metadata.num_row_groups):
                    self._where += [(f, g, r) for r in range(parquet.metadata.row_group(g).num_rows)]
        if self.published:
            self.reader = published_reader(dataset, split)
            self.rows = list(self.reader.convert(source, split))
            self.reader.warn(dataset)
        else:
            self.reader = None
            self.rows = [{**r, "index": i} for i, r in enumerate(source)]
        self.position = {r["id"]: r["index"] for r in self.rows}

    def clips(self, ids: Sequence[str], seconds: float | None = None,
              sampling_rate: int = SAMPLING_RATE) -> Iterator[tuple[str, np.ndarray]]:
        """(id, waveform) for every id, in storage order: each needed row group is read once."""
        for id_, data in self.encoded(ids):
            yield id_, read_wave(data, seconds, sampling_rate)

    def _row_groups(self, ids: Sequence[str]) -> Iterator[tuple[int, pq.ParquetFile, int, list[tuple[int, str]]]]:
        """(file index, open file, row group, [(row in the group, id)]) for the row groups holding `ids`, in
        storage order: each file opened once, each group visited once."""
        missing = [i for i in ids if i not in self.position]
        if missing:
            raise DataError(self.dataset, f"split {self.split_name!r} has no example {missing[0]!r}")
        wanted: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
        for id_ in ids:
            f, g, r = self._where[self.position[id_]]
            wanted[f, g].append((r, id_))
        for f in sorted({f for f, _ in wanted}):
            with _open(self.files[f]) as handle:
                parquet = pq.ParquetFile(handle)
                for g in sorted(g for ff, g in wanted if ff == f):
                    yield f, parquet, g, sorted(wanted[f, g])

    def encoded(self, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """(id, encoded audio bytes) for every id, in storage order, nothing decoded."""
        for f, parquet, g, rows in self._row_groups(ids):
            column = parquet.read_row_group(g, columns=[self.audio_column]).column(0)
            for r, id_ in rows:
                clip = column[r].as_py()
                if not clip or not clip.get("bytes"):
                    raise DataError(self.files[f], f"split {self.split_name!r}, id {id_!r}, field "
                                    f"{self.audio_column!r}: no audio bytes")
                yield id_, clip["bytes"]

    def metadata(self, ids: Sequence[str]) -> dict[str, dict]:
        """{id: its row without the audio and MIDI columns}, reading only those ids' row groups."""
        out = {}
        for _, parquet, g, rows in self._row_groups(ids):
            columns = [c for c in parquet.schema_arrow.names if c not in (self.audio_column, "midi")]
            table = parquet.read_row_group(g, columns=columns)
            out.update((id_, table.slice(r, 1).to_pylist()[0]) for r, id_ in rows)
        return out

    def features(self, ids: Sequence[str], preprocess: Callable, samples: int, path: Path, batch_size: int = 64,
                 sampling_rate: int = SAMPLING_RATE) -> tuple[FeatureStore, dict[str, int]]:
        """Model inputs of `ids` (their first `samples` samples at `sampling_rate` through `preprocess`) in a
        FeatureStore at `path`, computed in one pass over the split; and each id's row in it."""
        store, row_of, batch = FeatureStore(path), {}, []

        def flush():
            with torch.no_grad():
                store.append(preprocess(pad_stack([w for _, w in batch], samples)))
            for id_, _ in batch:
                row_of[id_] = len(row_of)
            batch.clear()

        for id_, wave in self.clips(list(dict.fromkeys(ids)), samples / sampling_rate, sampling_rate):
            batch.append((id_, wave))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        return store, row_of

    def resolve(self, concept: str) -> str:
        """Our concept for a name: as given, or for a published dataset through either taxonomy's names."""
        if not self.published:
            return concept
        from builder.published import resolve_concept

        try:
            return resolve_concept(concept, self.reader.taxonomy)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def concept_sets(self, concepts: Sequence[str] | None = None) -> dict[str, dict]:
        """{concept: {"positive": [ids], "negative": [ids], "random": {set index: [ids]}}}: the dataset's `concepts`
        config, or for a
        published dataset sets built here with assembly's rules."""
        members: dict[str, dict] = {}
        if self.published:
            from builder.splits import ConceptSetArguments, concept_sets

            wanted = None if not concepts else [self.resolve(c) for c in concepts]
            rows, _ = concept_sets(self.rows, self.reader.taxonomy, ConceptSetArguments(), wanted)
            roles = None
        else:  # the concepts config's files, read as they are (role is a class label: its index)
            from builder.schema import CONCEPT_FEATURES

            roles = CONCEPT_FEATURES["role"].names
            rows = (r for path in split_files(self.dataset, "concepts", self.split_name)
                    for r in _read_table(path, ["concept", "role", "set_index", "id"]).to_pylist())
        for r in rows:
            role = r["role"] if roles is None else roles[r["role"]]
            entry = members.setdefault(r["concept"], {"positive": [], "negative": [], "random": {}})
            if role in ("positive", "negative"):
                entry.setdefault(role, []).append(r["id"])
            elif role == "random":
                entry["random"].setdefault(r["set_index"], []).append(r["id"])
        return members

