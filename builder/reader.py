"""The reader of a ConceptCaps dataset: a split's rows, clips and concept sets, read straight from its parquet
files, for this project's layout and for the paper's published schema (`builder.published`), which it recognises
from the dataset's features.

Nothing holds a split's audio in memory, and nothing copies it: the split's files (a local folder's, or the Hub's
through `hf://`) are read with pyarrow one row group at a time, in storage order; only the clips asked for are
decoded, and only the seconds a caller looks at. Every clip goes through one checked path (`AudioSplit.encoded`,
`decode`, `clips`): its bytes must match the row's `audio_sha256` where the dataset records one, decode, and not
be silent. A clip that fails is a counted, reported skip (`skipped`, `skip_report`), named by split, id and
file, or with `strict` a one-line error. `conceptcaps.py` is the public face over it; probing, the review
app and the card read datasets through it.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import datasets
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from core.constants import CATEGORIES, SAMPLING_RATE, SPLITS
from core.errors import ConfigError, DataError
from core.hub import require_source
from core.log import get_logger

logger = get_logger(__name__)

SILENT_PEAK = 1e-5  # a decoded clip whose every sample stays below this is silence, not music


class ClipError(DataError):
    """A clip that cannot be used: its bytes differ from the recorded sha256, it cannot be decoded, or it is
    silent. The message names the file, the split and the id."""


def open_dataset(path: str, config: str = "default", split: str | None = None, **kwargs):
    """`load_dataset` for a Hub id or a local folder. For a local folder, the cache lives inside it: datasets keys
    a local folder's cache by the folder's name, so two folders named alike would otherwise share (and mix up)
    one cache."""
    if Path(path).is_dir():
        kwargs.setdefault("cache_dir", str(Path(path) / ".cache"))
    else:
        require_source(str(path), "dataset")
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
    layout = assembled_layout(dataset)
    if layout is not None:
        if config not in layout:
            raise DataError(dataset, f"no {config!r} config (it has {sorted(layout)})")
        files = sorted(str(p) for p in (Path(dataset) / layout[config]).glob(f"{split}-*.parquet"))
        if not files:
            raise DataError(Path(dataset) / layout[config], f"config {config!r} has no split {split!r}")
        return files
    require_source(dataset, "dataset")
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
                try:
                    parquet = pq.ParquetFile(handle)
                except (OSError, ValueError) as e:  # not parquet, or its footer damaged
                    raise DataError(path, f"not a readable parquet file ({str(e).splitlines()[0][:160]})") from None
                missing = [c for c in (*columns, self.audio_column) if c not in parquet.schema_arrow.names]
                if missing:
                    raise DataError(path, f"no column(s) {missing}: not this dataset's audio config")
                read = columns + (["audio_sha256"] if "audio_sha256" in parquet.schema_arrow.names else [])
                source += parquet.read(columns=read).to_pylist()
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
        self.sha256 = {r["id"]: r["audio_sha256"] for r in source if r.get("audio_sha256")}  # where recorded
        self.skipped: dict[str, str] = {}  # id -> why its clip was skipped

    def _file_name(self, f: int) -> str:
        """A file as reports name it: a Hub URL, or the path inside a local dataset folder (never a local path)."""
        path = self.files[f]
        if "://" in path:
            return path
        try:
            return str(Path(path).resolve().relative_to(Path(self.dataset).resolve()))
        except ValueError:  # a data file outside the folder (a card's configs may point anywhere)
            return Path(path).name

    def _bad(self, id_: str, reason: str, strict: bool) -> None:
        """A clip that failed a check: an error with `strict`, else a logged, counted skip."""
        message = f"split {self.split_name!r}, id {id_!r}: {reason}"
        file = self._file_name(self._where[self.position[id_]][0])
        if strict:
            raise ClipError(file, message)
        if id_ not in self.skipped:
            logger.warning("%s: %s; skipped", file, message)
        self.skipped[id_] = reason

    def skip_report(self) -> dict:
        """The clips skipped so far: how many, by reason, and each id's reason."""
        return {"count": len(self.skipped), "by_reason": dict(Counter(r.split(" (")[0] for r in self.skipped.values())),
                "clips": dict(sorted(self.skipped.items()))}  # fmt: skip

    def decode(self, id_: str, data: bytes, seconds: float | None = None, sampling_rate: int = SAMPLING_RATE,
               strict: bool = False) -> np.ndarray | None:  # fmt: skip
        """A clip's waveform (mono float32 at `sampling_rate`, its first `seconds`), or None for a clip that cannot
        be decoded or is silent (a counted skip; an error with `strict`)."""
        try:
            wave = read_wave(data, seconds, sampling_rate)
        except Exception as e:  # libsndfile, soxr: whatever the bytes make them raise
            reason = f"undecodable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
            self._bad(id_, reason, strict)
            return None
        if not len(wave) or float(np.abs(wave).max()) < SILENT_PEAK:
            where = "" if seconds is None else f" in its first {seconds:g} s"
            self._bad(id_, f"silent{where}", strict)
            return None
        return wave

    def clips(
        self, ids: Sequence[str], seconds: float | None = None, sampling_rate: int = SAMPLING_RATE, strict: bool = False
    ) -> Iterator[tuple[str, np.ndarray]]:
        """(id, waveform) for every usable id, in storage order: each needed row group is read once; a clip that
        fails a check is skipped and counted (`skipped`), or with `strict` an error."""
        for id_, data in self.encoded(ids, strict):
            wave = self.decode(id_, data, seconds, sampling_rate, strict)
            if wave is not None:
                yield id_, wave

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

    def encoded(self, ids: Sequence[str], strict: bool = False) -> Iterator[tuple[str, bytes]]:
        """(id, encoded audio bytes) for every usable id, in storage order, nothing decoded: a clip without bytes,
        or whose bytes differ from its recorded sha256, is skipped and counted (an error with `strict`)."""
        for f, parquet, g, rows in self._row_groups(ids):
            column = self._read_group(f, parquet, g, [self.audio_column]).column(0)
            for r, id_ in rows:
                clip = column[r].as_py()
                data = clip.get("bytes") if clip else None
                if not data:
                    self._bad(id_, f"no audio bytes in {self.audio_column!r}", strict)
                elif id_ in self.sha256 and hashlib.sha256(data).hexdigest() != self.sha256[id_]:
                    self._bad(id_, "its audio bytes do not match the recorded audio_sha256", strict)
                else:
                    yield id_, data

    def _read_group(self, f: int, parquet: pq.ParquetFile, g: int, columns: list[str]):
        """One row group's columns; a damaged file is one line naming it (a byte flipped in a page, a cut-off
        download): the split cannot be read further, so it stops here."""
        try:
            return parquet.read_row_group(g, columns=columns)
        except (OSError, ValueError) as e:  # pyarrow: corrupt compressed data, bad page headers, truncation
            reason = str(e).splitlines()[0][:160]
            raise DataError(self._file_name(f), f"row group {g} cannot be read ({reason}); re-download or regenerate "
                            "the dataset (its checksums.json names each file's sha256)") from None  # fmt: skip

    def metadata(self, ids: Sequence[str]) -> dict[str, dict]:
        """{id: its row without the audio and MIDI columns}, reading only those ids' row groups."""
        out = {}
        for f, parquet, g, rows in self._row_groups(ids):
            columns = [c for c in parquet.schema_arrow.names if c not in (self.audio_column, "midi")]
            table = self._read_group(f, parquet, g, columns)
            out.update((id_, table.slice(r, 1).to_pylist()[0]) for r, id_ in rows)
        return out

    @cached_property
    def taxonomy(self):
        """The names a concept is resolved against: the published reader's, else the taxonomy.json assembly wrote
        beside the data, else the reviewed concept table."""
        from builder.taxonomy import Taxonomy

        own = Path(self.dataset) / "taxonomy.json"
        if self.published:
            return self.reader.taxonomy
        return Taxonomy.load(own) if own.is_file() else Taxonomy.from_concept_table()

    def resolve(self, concept: str) -> str:
        """Our concept for a name (a concept, an alias, for a published dataset one of the paper's tags; a family's
        name as it is); a name no taxonomy knows is a ConfigError with the closest concepts, never "too few
        examples"."""
        import difflib

        from builder.splits import FAMILY_SUFFIX
        from builder.theory import is_theory_concept

        if is_theory_concept(concept):  # "mode=minor": a theory family's concept (builder.theory), as it is
            if self.published:
                raise ConfigError(
                    f"{concept!r} is a theory concept: those exist only for rendered clips, whose ground truth "
                    "states them (builder/theory.py); this dataset's audio has none"
                )
            return concept
        taxonomy = self.taxonomy
        base = concept.removesuffix(FAMILY_SUFFIX)
        found = taxonomy.concept_for(base)
        if found is None:
            close = difflib.get_close_matches(base, taxonomy.names, n=3)
            raise ConfigError(
                f"{concept!r} is not a concept of the taxonomy (nor an alias of one: "
                f"builder/data/concepts.tsv){'; did you mean ' + ' or '.join(close) + '?' if close else ''}"
            )
        return found + (FAMILY_SUFFIX if base != concept else "")

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
