"""The command wrapper every stage's `__main__` uses: one line for an error the user can act on, exit status 2."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import Any, Callable, Sequence

from core.config import run_dir
from core.errors import ConceptCapsError
from core.lock import run_lock


def cli(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, lock: bool = True) -> None:
    """Run a stage's `main(argv)` as a command: an error the user can act on is printed as one line and the process
    exits with status 2; `--debug` shows the traceback instead. With `lock`, the stage holds the run directory's
    lock (`core.lock`; only the main process of a multi-process launch takes it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    main_process = os.environ.get("RANK", "0") == "0"
    try:
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        what = spec.name if spec else main.__module__
        asks_help = bool({"-h", "--help"} & set(argv))  # help reads nothing: a busy run directory does not stop it
        with run_lock(run_dir(), what) if lock and main_process and not asks_help else nullcontext():
            main(argv)
    except ConceptCapsError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ConnectionError as e:  # datasets' "Couldn't reach ... on the Hub": offline, and not in the cache
        if debug:
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"error: {first[:300]}; give a local folder, or run once with Hub access to cache it", file=sys.stderr)
        sys.exit(2)
