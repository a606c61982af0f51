"""The published dataset's configs and features, and the streaming writer of their parquet files.

Configs:
  default   id, caption, attribute list and one list per category, CLAP score, duration, provenance
  audio     default's columns plus `audio` (Audio, 32 kHz) and, for rendered audio, `ground_truth` and `midi`
  concepts  concept, category, split, role (positive / negative / random), set_index, id

`SplitWriter` writes one config's split as parquet files of bounded size, named as `push_to_hub` names them
(`train-00000-of-00003.parquet`), with the features in the schema metadata as `datasets` writes them, so that
`load_dataset` decodes `audio` as Audio and `role` as a class label. Rows go straight from the run's shards (or a
source dataset) into these files: nothing passes through a datasets cache, and at most one row group per open
file is held in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from core.constants import CATEGORIES, SAMPLING_RATE

BASE_FEATURES = {
    "id": datasets.Value("string"),
    "caption": datasets.Value("string"),
    "tags": datasets.Sequence(datasets.Value("string")),
    **{c: datasets.Sequence(datasets.Value("string")) for c in CATEGORIES},
    "clap_score": datasets.Value("float32"),
    "duration_s": datasets.Value("float32"),
    "caption_model": datasets.Value("string"),
    "audio_model": datasets.Value("string"),
    "audio_model_revision": datasets.Value("string"),
    "generation_params": datasets.Value("string"),
    "seed": datasets.Value("int64"),
}
RENDER_FEATURES = {  # the symbolic backend's ground truth (None for MusicGen audio)
    "ground_truth": datasets.Value("string"),  # JSON: bpm, meter, key, mode, feels, instruments with stem shares, soundfont
    "midi": datasets.Value("binary"),  # the rendered score as a standard MIDI file
}
CONCEPT_FEATURES = {
    "concept": datasets.Value("string"),
    "category": datasets.Value("string"),
    "split": datasets.Value("string"),
    "role": datasets.ClassLabel(names=["positive", "negative", "random"]),
    "set_index": datasets.Value("int32"),
    "id": datasets.Value("string"),
}
CONFIG_DIRS = {"default": "data", "audio": "audio", "concepts": "concepts"}
CONFIG_FEATURES = {
    "default": datasets.Features(BASE_FEATURES),
    "audio": datasets.Features({**BASE_FEATURES, "audio": datasets.Audio(sampling_rate=SAMPLING_RATE), **RENDER_FEATURES}),
    "concepts": datasets.Features(CONCEPT_FEATURES),
}


class SplitWriter:
    """One config's split as parquet files of at most about `max_bytes` each.

    Rows are buffered into row groups of `rows_per_group` (or fewer when their binary payload passes 64 MB or
    what is left of the file's bound) and
    files are written as `<split>-<k>.parquet.partial`, renamed to their final `-of-` names by `close()`.
    """

    GROUP_BYTES = 64e6

    def __init__(self, folder: Path, split: str, features: datasets.Features, max_bytes: float, rows_per_group: int = 100):
        self.folder, self.split, self.features, self.max_bytes = Path(folder), split, features, max_bytes
        self.rows_per_group = rows_per_group
        meta = {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}
        self.schema = features.arrow_schema.with_metadata(meta)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.parts: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_bytes = 0.0
        self._buffer: list[dict] = []
        self._buffer_bytes = 0.0

    def write(self, row: dict) -> None:
        self._buffer.append(row)
        self._buffer_bytes += _payload(row)
        room = min(self.GROUP_BYTES, self.max_bytes - self._file_bytes)  # a file passes its bound by one row at most
        if len(self._buffer) >= self.rows_per_group or self._buffer_bytes >= room:
            self._flush()

    def write_all(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.write(row)

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.parts.append(self.folder / f"{self.split}-{len(self.parts):05d}.parquet.partial")
            self._writer = pq.ParquetWriter(str(self.parts[-1]), self.schema)
            self._file_bytes = 0.0
        columns = {name: [r.get(name) for r in self._buffer] for name in self.features}
        self._writer.write_table(pa.Table.from_pydict(self.features.encode_batch(columns), schema=self.schema))
        self.rows += len(self._buffer)
        self._file_bytes += self._buffer_bytes + 200 * len(self._buffer)
        self._buffer, self._buffer_bytes = [], 0.0
        if self._file_bytes >= self.max_bytes:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Write what is buffered, close the last file and give every file its final name. A split with no rows
        gets no file (datasets cannot read an empty parquet split); the card then lists the config without it."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        n = len(self.parts)
        final = [p.with_name(f"{self.split}-{k:05d}-of-{n:05d}.parquet") for k, p in enumerate(self.parts)]
        for part, name in zip(self.parts, final):
            part.rename(name)
        return final


def _payload(row: dict) -> float:
    """Bytes of a row's binary columns (audio, MIDI): what decides row-group and file sizes."""
    size = 0
    for value in row.values():
        if isinstance(value, dict) and isinstance(value.get("bytes"), bytes):
            size += len(value["bytes"])
        elif isinstance(value, bytes):
            size += len(value)
    return size
