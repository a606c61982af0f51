"""The reader of a ConceptCaps dataset: a split's rows, clips and concept sets, read straight from its parquet
files, for this project's layout and for the paper's published schema (`builder.published`), which it recognises
from the dataset's features.

Nothing holds a split's audio in memory, and nothing copies it: the split's files (a local folder's, or the Hub's
through `hf://`) are read with pyarrow one row group at a time, in storage order; only the clips asked for are
decoded, and only the seconds a caller looks at. `conceptcaps.py` is the public face over it; probing, the review
app and the card read datasets through it.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Iterator, Sequence

import datasets
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from core.constants import CATEGORIES, SAMPLING_RATE, SPLITS
from core.errors import ConfigError, DataError


def open_dataset(path: str, config: str = "default", split: str | None = None, **kwargs):
    """`load_dataset` for a Hub id or a local folder. For a local folder, the cache lives inside it: datasets keys
    a local folder's cache by the folder's name, so two folders named alike would otherwise share (and mix up)
    one cache."""
    if Path(path).is_dir():
        kwargs.setdefault("cache_dir", str(Path(path) / ".cache"))
    return datasets.load_dataset(str(path), config, split=split, **kwargs)


def published_reader(path: str, split: str, **kwargs):
    """A `PublishedReader` that has read the ids of the splits before `split` (from the text config), so that an
    id already kept there is dropped from this one."""
    from builder.published import TEXT_FIELDS, PublishedReader

    reader = PublishedReader()
    for earlier in SPLITS[: SPLITS.index(split)]:
        rows = open_dataset(path, "default", split=earlier, **kwargs).select_columns(list(TEXT_FIELDS))
        for _ in reader.convert(rows, earlier):
            pass
    return reader


def is_published_dataset(path: str, split: str = "train", **kwargs) -> bool:
    """Whether a dataset is in the paper's published schema, from its default config's features."""
    from builder.published import is_published

    return is_published(open_dataset(path, "default", split=split, **kwargs).features)


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


def open_file(path: str):
    """A binary file handle for a local path or an `hf://` URL (read by range requests)."""
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

        self.dataset, self.split_name = dataset, split
        self.published = is_published_dataset(dataset, split)
        self.audio_column = AUDIO_FIELD if self.published else "audio"
        columns = list(TEXT_FIELDS) if self.published else ["id", "tags", *CATEGORIES]
        self.files = split_files(dataset, "audio", split)
        source, self._where = [], []  # per source row: (file, row group, row within the group)
        for f, path in enumerate(self.files):
            with open_file(path) as handle:
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

    def clips(
        self, ids: Sequence[str], seconds: float | None = None, sampling_rate: int = SAMPLING_RATE
    ) -> Iterator[tuple[str, np.ndarray]]:
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
            with open_file(self.files[f]) as handle:
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
                    raise DataError(
                        self.files[f],
                        f"split {self.split_name!r}, id {id_!r}, field {self.audio_column!r}: no audio bytes",
                    )
                yield id_, clip["bytes"]

    def metadata(self, ids: Sequence[str]) -> dict[str, dict]:
        """{id: its row without the audio and MIDI columns}, reading only those ids' row groups."""
        out = {}
        for _, parquet, g, rows in self._row_groups(ids):
            columns = [c for c in parquet.schema_arrow.names if c not in (self.audio_column, "midi")]
            table = parquet.read_row_group(g, columns=columns)
            out.update((id_, table.slice(r, 1).to_pylist()[0]) for r, id_ in rows)
        return out

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
        config, or for a published dataset sets built here with assembly's rules."""
        if not self.published:
            return read_concept_sets(self.dataset, self.split_name, concepts)
        from builder.splits import ConceptSetArguments, concept_sets

        wanted = None if not concepts else [self.resolve(c) for c in concepts]
        rows, _ = concept_sets(self.rows, self.reader.taxonomy, ConceptSetArguments(), wanted)
        return group_members(rows)


def group_members(rows) -> dict[str, dict]:
    """Concept-set rows (concept, role name, set_index, id) grouped as {concept: {"positive", "negative", "random":
    {set index: [ids]}}}, ids in the order given."""
    members: dict[str, dict] = {}
    for r in rows:
        entry = members.setdefault(r["concept"], {"positive": [], "negative": [], "random": {}})
        if r["role"] == "random":
            entry["random"].setdefault(r["set_index"], []).append(r["id"])
        else:
            entry[r["role"]].append(r["id"])
    return members


def read_concept_sets(dataset: str, split: str, concepts: Sequence[str] | None = None) -> dict[str, dict]:
    """A split's concept sets from the dataset's `concepts` config (only the rows of `concepts` when given, read
    with a parquet filter), grouped by `group_members`. The one reader of a split's concept sets."""
    from builder.schema import CONCEPT_FEATURES

    names = CONCEPT_FEATURES["role"].names  # role is a class label: its index is stored
    filters = [("concept", "in", list(concepts))] if concepts else None
    rows = []
    for path in split_files(dataset, "concepts", split):
        with open_file(path) as handle:
            table = pq.read_table(handle, columns=["concept", "role", "set_index", "id"], filters=filters)
        rows += [{**r, "role": names[r["role"]]} for r in table.to_pylist()]
    return group_members(rows)
