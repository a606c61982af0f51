"""Atomic writes, checksums and small table readers."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.errors import DataError

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


def read_json(path: str | os.PathLike) -> dict:
    """A JSON file's object, or {} if there is no such file; a file that is not a JSON object is a DataError."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(value, dict):
        raise DataError(path, f"expected a JSON object, found {type(value).__name__}")
    return value


def write_parquet(path: str | os.PathLike, table) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_tsv(path: str | os.PathLike, n_fields: int) -> list[tuple[int, list[str]]]:
    """Rows of a reviewed tab-separated table with their line numbers; '#' lines and blank lines are comments."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != n_fields:
            raise DataError(path, f"expected {n_fields} tab-separated fields, found {len(parts)}", row=number)
        rows.append((number, [p.strip() for p in parts]))
    return rows


TRANSIENT_PARTS = ("_claims",)  # folders of work in progress, never part of a record


def file_record(
    root: Path, names: Sequence[str] | None = None, hash_limit: int | None = None, links: bool = True
) -> dict[str, list]:
    """{path relative to `root`: [size, sha256]} of every file under `names` (paths relative to `root`; default:
    all of it). Hidden files and folders (temporary files, caches, the lock) and claims are left out; files larger
    than `hash_limit` are recorded by size alone (sha256 None). With `links` False a symbolic link (to a file or a
    folder, which could lie outside `root`) is refused, naming it."""
    root = Path(root)
    files = {}
    for name in names if names is not None else ["."]:
        top = root / name
        if not top.exists():
            raise DataError(top, "expected output missing")
        found = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file() or p.is_symlink())
        for path in sorted(found):
            relative = path.relative_to(root)
            if any(part.startswith(".") or part in TRANSIENT_PARTS for part in relative.parts):
                continue
            if not links and any(
                (root / Path(*relative.parts[: k + 1])).is_symlink() for k in range(len(relative.parts))
            ):
                raise DataError(root, f"{relative.as_posix()} is a symbolic link: a dataset holds its own files, "
                                "never links (copy the file in instead)")  # fmt: skip
            if not path.is_file():
                continue
            size = path.stat().st_size
            files[relative.as_posix()] = [size, sha256_file(path) if hash_limit is None or size <= hash_limit else None]
    return files


def record_mismatch(root: Path, record: dict[str, list]) -> str | None:
    """Why the files under `root` no longer match `record` (missing, resized, changed), or None if they do."""
    for name, (size, digest) in record.items():
        path = Path(root) / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when written"
        if digest is not None and sha256_file(path) != digest:
            return f"{name} changed since it was written (sha256)"
    return None


FOLDER_RECORD = "checksums.json"


def write_folder_record(folder: Path) -> dict[str, list]:
    """Record every file of a finished folder (size and sha256) in its own `checksums.json`, last."""
    folder = Path(folder)
    record = file_record(folder, links=False)  # a link refused before the old record is touched
    record.pop(FOLDER_RECORD, None)
    write_json(folder / FOLDER_RECORD, {"files": record})
    return record


def folder_mismatch(folder: Path) -> str | None:
    """Why a folder no longer matches its own record (a file missing, changed or added), or None."""
    folder = Path(folder)
    recorded = read_json(folder / FOLDER_RECORD).get("files")
    if recorded is None:
        return f"it has no {FOLDER_RECORD} (not a finished folder)"
    if not isinstance(recorded, dict) or not all(isinstance(v, list) and len(v) == 2 for v in recorded.values()):
        return f"its {FOLDER_RECORD} is not a record of files (path: [size, sha256])"
    outside = [n for n in recorded if Path(n).is_absolute() or ".." in Path(n).parts]
    if outside:
        return f"its {FOLDER_RECORD} names {outside[0]!r}, outside the folder"
    extra = sorted(set(file_record(folder, hash_limit=0, links=False)) - set(recorded) - {FOLDER_RECORD})
    if extra:
        return f"{extra[0]} is not in its record ({len(extra)} such files)"
    return record_mismatch(folder, recorded)
