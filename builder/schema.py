"""The published dataset's configs and features, and the streaming writer of their parquet files.

Configs:
  default   id, caption, attribute list and one list per category, CLAP score, duration, provenance
  audio     default's columns plus `audio` (Audio, 32 kHz), its sha256 and, for rendered audio, the typed ground truth
            (bpm,
            meter, key, mode, feels, stems with their levels ...) and `midi`
  concepts  concept, category, split, role (positive / negative / random), set_index, id
  reviews   listeners' verdicts: id, concept, question, answer, reviewer (a pseudonym), time, audio sha256
  evidence  what independent judges say of each concept set (`builder.evidence`): concept, split, judge, figure with
            its 95 % interval, n, verdict; rows with an id flag one clip. Written by the audit (`probing.audit`)

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
STEM_FEATURES = {  # one per (instrument concept, General MIDI channel program) of a rendered clip
    "concept": datasets.Value("string"),  # the listed instrument it plays
    "bank": datasets.Value("int32"),  # General MIDI bank (128: percussion)
    "program": datasets.Value("int32"),  # General MIDI program
    "share_db": datasets.Value("float32"),  # the concept's stems' energy over the mix's, in dB
    "soundfont": datasets.Value("string"),  # the soundfont it was played from
}
CHORD_FEATURES = {  # one per chord heard in a rendered clip (generation.arrangement.chord_facts)
    "root": datasets.Value("string"),  # its root's pitch name
    "quality": datasets.Value("string"),  # major, minor, diminished, augmented, major 7, dominant 7 ... or other
    "degree": datasets.Value("int32"),  # the scale degree it stands on (1-7)
    "inversion": datasets.Value("int32"),  # 0 root position, 1 first, 2 second; None: voiced freely over a root bass
    "start_s": datasets.Value("float32"),  # when it starts (a bar's chord, or a theory progression's shorter ones)
}
RENDER_FEATURES = {  # the symbolic backend's ground truth, typed (None for MusicGen audio)
    "bpm": datasets.Value("float32"),
    "meter": datasets.Value("string"),  # "4/4", "3/4", "6/8" ...
    "key": datasets.Value("string"),  # "C# major"
    "mode": datasets.Value("string"),  # "major" or "minor"
    "feels": datasets.Sequence(datasets.Value("string")),  # rhythmic feels played (straight, swing, shuffle ...)
    "genre_rendered": datasets.Value("string"),  # the genre whose arrangement was played (None: a neutral one)
    "style": datasets.Value("string"),  # its style (generation/data/render_styles.tsv), None without a genre
    "form": datasets.Sequence(datasets.Value("string")),  # each bar's section: verse or chorus
    "chords": [CHORD_FEATURES],  # each chord the clip plays, in order
    "progression": datasets.Value("string"),  # the verse's progression in roman numerals ("I-V-vi-IV")
    "theory": datasets.Value("string"),  # a theory clip's kind (progression, chord); None: an attribute list's clip
    "register": datasets.Value("int32"),  # octaves a theory clip's pitched parts were moved by (0 otherwise)
    "room_rt60_s": datasets.Value("float32"),  # the room's reverberation time (0: dry)
    "room_send": datasets.Value("float32"),  # how much of each stem goes to the room
    "amp": datasets.Value("string"),  # the electric guitar's amp: clean, crunch, distorted (None: no electric guitar)
    "stems": [STEM_FEATURES],
    "soundfont": datasets.Value("string"),
    "soundfont_sha256": datasets.Value("string"),
    "renderer": datasets.Value("string"),  # the renderer's revision
    "midi": datasets.Value("binary"),  # the rendered score as a standard MIDI file
}


def render_columns(ground_truth: str | dict | None) -> dict:
    """The typed ground-truth columns of a rendered clip from the synthesis stage's JSON (all None without it)."""
    import json

    truth = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    columns = dict.fromkeys(k for k in RENDER_FEATURES if k != "midi")
    if not truth:
        return columns
    columns.update({k: truth.get(k) for k in columns if k != "stems"})
    columns["stems"] = [
        {
            "concept": i["concept"],
            "bank": int(bank),
            "program": int(program),
            "share_db": float(i["stem_share_db"]),
            "soundfont": i.get("soundfont", truth.get("soundfont")),
        }
        for i in truth.get("instruments", [])
        for bank, program in i["programs"]
    ]
    return columns


CONCEPT_FEATURES = {
    "concept": datasets.Value("string"),
    "category": datasets.Value("string"),
    "split": datasets.Value("string"),
    "role": datasets.ClassLabel(names=["positive", "negative", "random"]),
    "set_index": datasets.Value("int32"),
    "id": datasets.Value("string"),
}
REVIEW_FEATURES = {  # listeners' verdicts (builder.reviews), each on the clip and audio it was given on
    "id": datasets.Value("string"),
    "concept": datasets.Value("string"),
    "question": datasets.Value("string"),  # audible: is the concept audible? caption: is the caption right?
    "answer": datasets.Value("string"),  # yes / no / unsure; right / wrong / unsure
    "reviewer": datasets.Value("string"),  # a pseudonym: the first 8 hex digits of the name's sha256
    "time": datasets.Value("float64"),  # seconds since the epoch
    "audio_sha256": datasets.Value("string"),
    "dataset_version": datasets.Value("string"),  # the version the verdict was given on
}
VERDICTS = ("confirmed", "not confirmed", "contradicted", "no judge")
EVIDENCE_FEATURES = {  # one judge's verdict on one concept set (or, with an id, on one clip of it)
    "concept": datasets.Value("string"),
    "category": datasets.Value("string"),
    "split": datasets.Value("string"),
    "judge": datasets.Value("string"),  # a tagger (MTT_musicnn ...), a signal judge (tempo, mode ...), listeners
    "criterion": datasets.Value("string"),  # the tag, or what the judge's figure should do ("tempo_bpm higher")
    "measure": datasets.Value("string"),  # auc, audible_share, tempo_agrees ...
    "value": datasets.Value("float32"),
    "low": datasets.Value("float32"),  # the 95 % interval
    "high": datasets.Value("float32"),
    "positives": datasets.Value("int32"),
    "negatives": datasets.Value("int32"),
    "verdict": datasets.ClassLabel(names=list(VERDICTS)),
    "id": datasets.Value("string"),  # the clip a per-clip flag is about (None: the concept's set as a whole)
    "note": datasets.Value("string"),
}
CONFIG_DIRS = {
    "default": "data",
    "audio": "audio",
    "concepts": "concepts",
    "reviews": "reviews",
    "evidence": "evidence",
}
CONFIG_FEATURES = {
    "default": datasets.Features(BASE_FEATURES),
    "audio": datasets.Features(
        {
            **BASE_FEATURES,
            "audio": datasets.Audio(sampling_rate=SAMPLING_RATE),
            "audio_sha256": datasets.Value("string"),  # of the encoded bytes: what a verdict names
            **RENDER_FEATURES,
        }
    ),
    "concepts": datasets.Features(CONCEPT_FEATURES),
    "reviews": datasets.Features(REVIEW_FEATURES),
    "evidence": datasets.Features(EVIDENCE_FEATURES),
}


class SplitWriter:
    """One config's split as parquet files of at most about `max_bytes` each.

    Rows are buffered into row groups of `rows_per_group` (or fewer when their binary payload would pass 16 MB:
    a reader of one clip, such as the review app, reads one row group's audio);
    a row that would take the file past its bound starts the next file, and
    files are written as `<split>-<k>.parquet.partial`, renamed to their final `-of-` names by `close()`.
    """

    GROUP_BYTES = 16e6

    def __init__(
        self, folder: Path, split: str, features: datasets.Features, max_bytes: float, rows_per_group: int = 100
    ):
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
        size = _payload(row)
        if self._file_bytes + self._buffer_bytes + size > self.max_bytes:  # the row starts the next file
            self._flush()  # (a file passes its bound only when
            self._close_file()  # one row alone is larger)
        elif self._buffer_bytes + size > self.GROUP_BYTES:
            self._flush()
        self._buffer.append(row)
        self._buffer_bytes += size
        if len(self._buffer) >= self.rows_per_group:
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
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._file_bytes = 0.0

    def close(self) -> list[Path]:
        """Write what is buffered, close the last file and give every file its final name. A split with no rows
        gets no file (datasets cannot read an empty parquet split); the card then lists the config without it."""
        self._flush()
        self._close_file()
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
