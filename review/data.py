"""What the review app reads of a dataset: pages of a concept set, each clip's metadata and encoded audio, and its
spectrogram, all bounded by the page: nothing is decoded that the page does not show.

A dataset is a folder `builder.assemble` wrote, a Hub id, or a dataset in the paper's published schema (its
concept sets are then built here with assembly's rules, once per split). A page reads its clips' metadata (one
row group each, without audio) and one concept's rows of the concepts config; a clip's audio is read (one row
group's audio, at most 16 MB) only when the browser asks for it. Clips are addressed by split and id,
never by a path: an id the split lacks is an error, so no request can reach a file outside the dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from core.constants import CATEGORIES, SPLITS
from core.errors import DataError

PAGE_SIZE = 12
ROLES = ("positive", "negative", "random")
SHOWN = (
    "caption",
    "clap_score",
    "bpm",
    "meter",
    "key",
    "feels",
    "genre_rendered",
    "style",
    "stems",
    "audio_sha256",
)  # when present


class LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class ReviewData:
    """One dataset, opened lazily split by split."""

    def __init__(self, dataset: str):
        from core.hub import require_source

        require_source(dataset, "dataset")
        self.dataset = dataset
        local = Path(
            dataset
        )  # a folder is named by its last two parts (runs/demo/dataset: demo/dataset), never a full path
        self.name = f"{local.resolve().parent.name}/{local.name}" if local.exists() else dataset
        summary = Path(dataset) / "build_summary.json"
        self.version = (
            json.loads(summary.read_text()).get("version", "unknown") if summary.is_file() else _revision(dataset)
        )
        sets_summary = Path(dataset) / "concept_sets_summary.json"
        self._set_summary = json.loads(sets_summary.read_text()) if sets_summary.is_file() else None
        self._splits: dict[str, object] = {}
        self._members: dict[tuple[str, str], dict] = {}
        self._published: dict[str, dict] = {}
        self._rows: dict[str, dict] = {}
        self._clips = LRU(4 * PAGE_SIZE)  # (split, id) -> (encoded audio, sha256)
        self._sha = LRU(4096)  # (split, id) -> audio sha256
        self._lock = threading.Lock()

    def split(self, name: str):
        from builder.reader import AudioSplit

        if name not in SPLITS:
            raise DataError(self.dataset, f"unknown split {name!r}: one of {list(SPLITS)}")
        with self._lock:
            if name not in self._splits:
                self._splits[name] = AudioSplit(self.dataset, name)
            return self._splits[name]

    def concepts(self, split: str) -> list[str]:
        """The concepts with sets in a split (from the summary assembly wrote, else from the sets themselves)."""
        if self._set_summary is not None:
            return sorted(
                key.split("/", 1)[1] for key in self._set_summary.get("concepts", {}) if key.startswith(split + "/")
            )
        return sorted(self._published_sets(split))

    def _published_sets(self, split: str) -> dict:
        """A published-schema dataset's sets, built once per split with assembly's rules."""
        if split not in self._published:
            self._published[split] = self.split(split).concept_sets()
        return self._published[split]

    def members(self, split: str, concept: str, role: str) -> list[str]:
        """The ids of a concept's set in a split, in the dataset's order (random: all its random sets, set by set)."""
        if role not in ROLES:
            raise DataError(self.dataset, f"unknown role {role!r}: one of {list(ROLES)}")
        audio = self.split(split)
        if audio.published:
            entry = self._published_sets(split).get(concept)
        else:  # only this concept's rows of the concepts config are read
            entry = self._members.get((split, concept))
            if entry is None:
                entry = self._read_members(split, concept)
                with self._lock:
                    self._members.clear()  # one concept at a time: memory stays flat in the number of concepts
                    self._members[split, concept] = entry
        if entry is None:
            raise DataError(self.dataset, f"split {split!r} has no sets for {concept!r}")
        if role == "random":
            return [i for k in sorted(entry["random"]) for i in entry["random"][k]]
        return list(entry[role])

    def _read_members(self, split: str, concept: str) -> dict:
        from builder.reader import read_concept_sets

        return read_concept_sets(self.dataset, split, [concept]).get(
            concept, {"positive": [], "negative": [], "random": {}}
        )

    def page(self, split: str, concept: str, role: str, page: int, size: int = PAGE_SIZE) -> tuple[list[dict], int]:
        """The clips of one page of a concept set, with their metadata and audio sha256; and the number of pages."""
        ids = self.members(split, concept, role)
        pages = max(1, -(-len(ids) // size))
        page = min(max(page, 0), pages - 1)
        wanted = ids[page * size : (page + 1) * size]
        rows = self.metadata(split, wanted)
        for row in rows:
            self._sha[split, row["id"]] = row.get("audio_sha256") or self.encoded(split, row["id"])[1]
        return rows, pages

    def audio_sha256(self, split: str, id_: str) -> str:
        """The sha256 of a clip's encoded audio: from the audio config's column (a dataset without it: hashed)."""
        if (split, id_) not in self._sha:
            row = self.metadata(split, [id_])[0]
            self._sha[split, id_] = row.get("audio_sha256") or self.encoded(split, id_)[1]
        return self._sha[split, id_]

    def metadata(self, split: str, ids: Sequence[str]) -> list[dict]:
        """Each id's row of the audio config without its audio and MIDI, in the order given."""
        audio = self.split(split)
        self._check(audio, ids)
        rows = audio.metadata(ids)
        if split not in self._rows:  # the split's attribute lists (mapped onto our concepts for a published one)
            self._rows[split] = {r["id"]: r for r in audio.rows}
        out = []
        for id_ in ids:
            row, lists = rows[id_], self._rows[split][id_]
            out.append(
                {
                    "id": id_,
                    "categories": {c: list(lists.get(c) or []) for c in CATEGORIES},
                    **{k: row.get(k) for k in SHOWN if row.get(k) is not None},
                }
            )
        return out

    def encoded(self, split: str, id_: str) -> tuple[bytes, str]:
        """A clip's encoded audio and its sha256 (the last few pages' clips are kept)."""
        key = (split, id_)
        with self._lock:
            if key in self._clips:
                self._clips.move_to_end(key)
                return self._clips[key]
        audio = self.split(split)
        self._check(audio, [id_])
        data = next(audio.encoded([id_], strict=True))[1]  # bytes that differ from the recorded sha256: an error
        with self._lock:
            return self._clips.put(key, (data, hashlib.sha256(data).hexdigest()))

    def wave(self, split: str, id_: str, seconds: float, sampling_rate: int) -> np.ndarray:
        """A clip's first `seconds` decoded through the reader's checked path (`ClipError` for a bad clip)."""
        data, _ = self.encoded(split, id_)
        return self.split(split).decode(id_, data, seconds, sampling_rate, strict=True)

    def _check(self, audio, ids: Sequence[str]) -> None:
        missing = [i for i in ids if i not in audio.position]
        if missing:
            raise KeyError(missing[0])

    def has(self, split: str, id_: str) -> bool:
        try:
            return split in SPLITS and id_ in self.split(split).position
        except DataError:  # a split without audio
            return False


def _revision(dataset: str) -> str:
    """A dataset without our build summary: its Hub commit (what a verdict was given on), else "unversioned"."""
    if Path(dataset).exists():
        return "unversioned"
    try:
        import huggingface_hub

        return "commit " + huggingface_hub.HfApi().dataset_info(dataset).sha[:12]
    except Exception:  # offline, or no such dataset: the verdicts still name the dataset
        return "unversioned"


def media_type(data: bytes) -> str:
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"RIFF":
        return "audio/wav"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:3] == b"ID3" or data[:2] == b"\xff\xfb":
        return "audio/mpeg"
    return "application/octet-stream"


def log_mel_db(wave: np.ndarray) -> np.ndarray:
    """A 16 kHz waveform's log-mel power in dB, (96 bands, frames): musicnn's front end, as the tagger hears it."""
    import torch

    from probing.musicnn import MelFrontEnd

    with torch.no_grad():
        mel = MelFrontEnd()(torch.from_numpy(np.asarray(wave, dtype=np.float32)[None]))[0].numpy().T
    return 10 * np.log10(np.maximum(mel, 1e-10))


def spectrogram_png(wave: np.ndarray) -> bytes:
    """A log-mel spectrogram of a 16 kHz waveform as a PNG, the top 80 dB shown."""
    from matplotlib import colormaps
    from PIL import Image

    db = log_mel_db(wave)
    db = np.clip((db - (db.max() - 80)) / 80, 0, 1)
    rgb = (colormaps["magma"](db[::-1])[..., :3] * 255).astype(np.uint8)
    image = Image.fromarray(rgb).resize((min(600, max(200, rgb.shape[1])), 96))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
