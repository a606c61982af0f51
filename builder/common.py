"""Helpers every stage shares: errors that name their input, atomic writes, run directories, presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

RUN_DIR_ENV = "CONCEPTCAPS_RUN_DIR"
DEFAULT_RUN_DIR = "runs/demo"
CATEGORIES = ("genre", "mood", "instrument", "tempo")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MUSICCAPS_CSV = REPO_ROOT.parent / "shared" / "data" / "musiccaps-public.csv"
PROVENANCE_PACKAGES = (
    "torch", "transformers", "datasets", "trl", "peft", "accelerate", "numpy", "pyarrow", "huggingface_hub",
)


class DataError(ValueError):
    """Bad input: the message names the file, and where known the row and the field."""

    def __init__(self, path: str | os.PathLike | None, message: str, row: int | None = None, field: str | None = None):
        where = [str(path)] if path is not None else []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path, self.row, self.field = path, row, field


def get_logger(name: str) -> logging.Logger:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return logging.getLogger(name)


def run_dir(path: str | os.PathLike | None = None) -> Path:
    """The run directory: `path` if given, else $CONCEPTCAPS_RUN_DIR, else runs/demo. Created if missing."""
    out = Path(path or os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)
    out.mkdir(parents=True, exist_ok=True)
    return out


TMP_SUFFIX = ".tmp"


def remove_temporaries(directory: str | os.PathLike, name_glob: str = "*") -> None:
    """Delete what atomic_path left in `directory` for files named `name_glob` when a process was killed mid-write."""
    for stale in Path(directory).glob(f".{name_glob}.*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the final file the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_parquet(path: str | os.PathLike, table) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions(names: Sequence[str] = PROVENANCE_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def parse_args(dataclass_types, section: str, argv: Sequence[str] | None = None, defaults: dict | None = None,
               parser_class=None):
    """Parse argument dataclass(es) from the command line; `--config preset.yaml` sets defaults first.

    A preset holds shared top-level keys and one mapping per stage (`section`); keys no dataclass has are
    ignored, so one preset serves every stage. Precedence: `defaults` < preset < command line.

    Returns:
        One dataclass instance, or a tuple of them when `dataclass_types` is a tuple.
    """
    from transformers import HfArgumentParser

    types = dataclass_types if isinstance(dataclass_types, tuple) else (dataclass_types,)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = (parser_class or HfArgumentParser)(types, description=types[0].__doc__)
    parser.add_argument("--config", default=None, help="YAML preset whose keys set this stage's defaults")
    names = {f.name for t in types for f in dataclasses.fields(t)}
    parser.set_defaults(**{k: v for k, v in (defaults or {}).items() if k in names})
    known, _ = parser.parse_known_args(argv)
    if known.config:
        preset = load_preset(known.config, section)
        parser.set_defaults(**{k: v for k, v in preset.items() if k in names})
    parsed = parser.parse_args_into_dataclasses(args=argv)[: len(types)]
    return tuple(parsed) if isinstance(dataclass_types, tuple) else parsed[0]


def load_preset(path: str | os.PathLike, section: str | None = None) -> dict[str, Any]:
    """A preset's shared top-level keys, overridden by the keys of its `section` mapping."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise DataError(path, "a preset must be a YAML mapping")
    flat = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    if section is not None:
        sub = raw.get(section) or {}
        if not isinstance(sub, dict):
            raise DataError(path, "must be a mapping", field=section)
        flat.update(sub)
    return {k: _expand(v) for k, v in flat.items()}


def _expand(value: Any) -> Any:
    """Presets may write ${run_dir} for the run directory (e.g. tiny models built inside the run)."""
    if isinstance(value, str) and "${run_dir}" in value:
        return value.replace("${run_dir}", str(run_dir()))
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value
