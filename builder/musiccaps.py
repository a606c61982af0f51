"""Read the MusicCaps CSV (`google/MusicCaps` on the Hub) into typed rows, naming the row of any fault."""

from __future__ import annotations

import ast
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from core.config import DEFAULT_MUSICCAPS, MUSICCAPS_ENV
from core.errors import ConfigError, DataError
from core.io import sha256_file

MUSICCAPS_REPO = "google/MusicCaps"
MUSICCAPS_FILE = "musiccaps-public.csv"
REQUIRED_COLUMNS = ("ytid", "start_s", "end_s", "aspect_list", "caption")
MAX_FIELD_CHARS = 65_536  # the longest MusicCaps field is under 2,000 characters; a longer one is a broken file


@dataclass(frozen=True)
class MusicCapsRow:
    line: int  # line number in the CSV (1 is the header), for error messages
    ytid: str
    start_s: int
    end_s: int
    aspect_list: tuple[str, ...]
    caption: str

    @property
    def id(self) -> str:
        """Stable, unique id: the YouTube id and the clip's start second."""
        return f"{self.ytid}_{self.start_s:05d}"


# the content of google/MusicCaps' musiccaps-public.csv that every figure of this project was measured on: a
# download is checked against it (the Hub's copy changing under a pinned sha256 is an error, not a new taxonomy)
MUSICCAPS_SHA256 = "bce5500709e6b129e070cbffc28caefe6b3d6977b2073493ee9b48806096c034"
MUSICCAPS_HELP = (
    f"MusicCaps CSV: a local path, or {DEFAULT_MUSICCAPS} (downloaded, sha256-checked); ${MUSICCAPS_ENV} "
    f"replaces the default with a local copy"
)


def download_musiccaps(cache_dir: str | None = None) -> Path:
    """Fetch the CSV from the Hub and check its sha256; without network, one line naming the variable to set."""
    from huggingface_hub import hf_hub_download

    from core.hub import HubUnreachable, require_hub

    try:
        require_hub(f"{MUSICCAPS_REPO}'s {MUSICCAPS_FILE}")
        path = Path(hf_hub_download(MUSICCAPS_REPO, MUSICCAPS_FILE, repo_type="dataset", cache_dir=cache_dir))
    except Exception as e:  # offline, no Hub access, a proxy: whatever the client raises, the remedy is the same
        why = str(e).split(" to read ")[0] if isinstance(e, HubUnreachable) else type(e).__name__
        raise ConfigError(
            f"cannot download {MUSICCAPS_FILE} from {MUSICCAPS_REPO} ({why}); without Hub "
            f"access set {MUSICCAPS_ENV}=/path/to/{MUSICCAPS_FILE} (or pass --musiccaps_csv)"
        ) from None
    if sha256_file(path) != MUSICCAPS_SHA256:
        raise DataError(
            path,
            f"sha256 {sha256_file(path)[:16]}... is not the pinned {MUSICCAPS_SHA256[:16]}... of "
            f"{MUSICCAPS_REPO}'s {MUSICCAPS_FILE}",
        )
    return path


def resolve_musiccaps(path: str | os.PathLike | None = None) -> Path:
    """The MusicCaps CSV: the default (`hf://google/MusicCaps`) is ${MUSICCAPS_ENV} where set, else the Hub's
    file (downloaded, checked); any other value is a local path."""
    path = str(path or DEFAULT_MUSICCAPS)
    if path == DEFAULT_MUSICCAPS and os.environ.get(MUSICCAPS_ENV):
        path = os.environ[MUSICCAPS_ENV]
    if path.startswith("hf://"):
        return download_musiccaps()
    if not Path(path).is_file():
        raise DataError(
            path, f"file not found (a MusicCaps CSV: set {MUSICCAPS_ENV} or --musiccaps_csv to a local copy)"
        )
    return Path(path)


def _parse_int(value: str | None, path, line: int, field: str) -> int:
    try:
        number = float(value)  # MusicCaps writes whole seconds, sometimes as "30.0"
    except (TypeError, ValueError):
        raise DataError(path, f"not a number: {value!r}", row=line, field=field) from None
    if number != int(number) or number < 0:
        raise DataError(path, f"not a whole, non-negative second: {value!r}", row=line, field=field)
    return int(number)


def parse_aspect_list(value: str | None, path, line: int) -> tuple[str, ...]:
    """MusicCaps stores aspects as a Python list literal; parse it without evaluating code."""
    try:
        parsed = ast.literal_eval(value) if value is not None else None
    except (ValueError, SyntaxError):
        raise DataError(path, f"not a list literal: {str(value)[:80]!r}", row=line, field="aspect_list") from None
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(a, str) for a in parsed):
        raise DataError(path, f"expected a list of strings, got {str(value)[:80]!r}", row=line, field="aspect_list")
    return tuple(parsed)


def read_musiccaps(path: str | os.PathLike) -> list[MusicCapsRow]:
    """Read and validate every row of a MusicCaps CSV.

    Raises:
        DataError: empty or non-UTF-8 file, a missing column, a malformed row or field, a duplicate id.
    """
    path = resolve_musiccaps(path)
    if not path.is_file():
        raise DataError(path, "file not found (get it from the Hub dataset google/MusicCaps)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 (byte {e.start})", row=line) from None
    if not text.strip():
        raise DataError(path, "file is empty")
    limit = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        return _read_rows(csv.DictReader(io.StringIO(text, newline="")), path)
    finally:
        csv.field_size_limit(limit)


def _read_rows(reader: csv.DictReader, path: Path) -> list[MusicCapsRow]:
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {reader.fieldnames}", row=1)
    rows: list[MusicCapsRow] = []
    seen: dict[str, int] = {}
    records = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as e:  # a field over the limit, an unterminated quote...
            raise DataError(
                path,
                f"unreadable CSV row ({e}; a MusicCaps caption is at most a few thousand characters)",
                row=reader.line_num + 1,
            ) from None  # line_num counts the lines read before this one
        line = reader.line_num
        if None in record or any(record[c] is None for c in REQUIRED_COLUMNS):
            raise DataError(path, f"expected {len(reader.fieldnames)} fields", row=line)
        ytid = record["ytid"].strip()
        if not ytid:
            raise DataError(path, "empty", row=line, field="ytid")
        row = MusicCapsRow(
            line=line,
            ytid=ytid,
            start_s=_parse_int(record["start_s"], path, line, "start_s"),
            end_s=_parse_int(record["end_s"], path, line, "end_s"),
            aspect_list=parse_aspect_list(record["aspect_list"], path, line),
            caption=record["caption"],
        )
        if row.id in seen:
            raise DataError(path, f"duplicate id {row.id!r} (first at row {seen[row.id]})", row=line, field="ytid")
        seen[row.id] = line
        rows.append(row)
    if not rows:
        raise DataError(path, "no rows after the header")
    return rows
