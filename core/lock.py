"""One run at a time per run directory: an exclusive lock file naming its holder (pid, host, start).

The pipeline takes the lock and hands it to the stages it starts (in this process or under a launcher) through
the environment; a stage run alone takes it itself. A second pipeline or stage on the same directory fails at
once, naming the holder. A lock whose holder died on this host is taken over, saying so; one held from another
host cannot be checked from here and must be removed by hand once that run is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import ConceptCapsError

LOCK_NAME = ".lock"
TOKEN_ENV = "CONCEPTCAPS_LOCK_TOKEN"


class RunLockedError(ConceptCapsError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def run_lock(run: Path, what: str = "pipeline") -> Iterator[None]:
    """Hold the run directory's lock for the block (re-entrant for the stages of the run that holds it)."""
    from core.log import get_logger

    path = Path(run) / LOCK_NAME
    token = os.environ.get(TOKEN_ENV)
    if token and _holder(path).get("token") == token:  # a stage of the run that holds the lock
        yield
        return
    Path(run).mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "token": token,
    }
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = _holder(path)
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                get_logger(__name__).warning(
                    "%s: taking over the lock of %s (pid %s, since %s), which is no longer running",
                    path,
                    holder.get("what"),
                    holder["pid"],
                    holder.get("since"),
                )
                path.unlink(missing_ok=True)
                continue
            if not holder:  # being written this instant, or unreadable
                raise RunLockedError(
                    f"{path}: the run directory is locked (unreadable lock file); if no run is using "
                    "it, delete the file"
                ) from None
            raise RunLockedError(
                f"{run}: in use by {holder.get('what')} (pid {holder.get('pid')} on {holder.get('host')}, since "
                f"{holder.get('since')}); wait for it to finish, or use another run directory"
                + ("" if holder.get("host") == me["host"] else f" (if that run is gone, delete {path})")
            ) from None
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = token  # the stages this run starts inherit it
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        if _holder(path).get("token") == token:
            path.unlink(missing_ok=True)
