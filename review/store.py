"""Listeners' verdicts, one JSON line each, appended to `<run dir>/reviews.jsonl`.

A verdict is written with one `write` on a file opened for appending, under an exclusive `flock`, and synced
before the server answers: two servers, threads or browsers appending at once never interleave a line, and a
killed server loses at most the verdict it had not yet answered. A line torn by a crash mid-write is skipped
when read (counted) and the next verdict starts on a line of its own. The latest answer of a reviewer to a
question about a (clip, concept) is the verdict; earlier ones stay in the file as its history.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from builder.reviews import FIELDS, REVIEWS_FILE, Verdict, latest_verdicts, read_verdicts


class ReviewStore:
    """The reviews file of a run directory."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / REVIEWS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, verdict: Verdict) -> None:
        line = json.dumps({k: getattr(verdict.check(), k) for k in FIELDS}, ensure_ascii=False) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a line torn by a crash: start a fresh one
                    line = "\n" + line
                data = line.encode("utf-8")
                if os.write(fd, data) != len(data):
                    raise OSError(f"{self.path}: short write")
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock

    def read(self) -> tuple[list[Verdict], int]:
        """Every verdict in the file, in order, and the number of torn or malformed lines skipped."""
        return read_verdicts(self.path)

    def latest(self, reviewer: str) -> list[Verdict]:
        """A reviewer's latest verdict per (clip, concept, question)."""
        return [v for v in latest_verdicts(self.read()[0]) if v.reviewer == reviewer]


def now() -> float:
    return round(time.time(), 3)
