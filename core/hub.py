"""Whether the Hugging Face Hub can be reached, asked once and quickly before a command reads a dataset or a
model by Hub id: the client's own retries take half a minute to give up and end in a traceback that names
neither the Hub nor what was being read."""

from __future__ import annotations

import re
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from core.errors import ConceptCapsError, DataError

CONNECT_TIMEOUT_S = 3.0


class HubUnreachable(ConceptCapsError, ConnectionError):
    """The Hub cannot be reached: the message names what was to be read and what to do instead."""


@lru_cache(maxsize=None)
def _unreachable(endpoint: str) -> str | None:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as e:  # no DNS, refused, unreachable, timed out
        return str(e) or type(e).__name__


def require_hub(what: str) -> None:
    """Raise HubUnreachable (one line: the endpoint, the reason, the remedy) unless the Hub answers; in offline mode
    (HF_HUB_OFFLINE=1) nothing is asked: the cached copy is used or the client says it has none."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    reason = _unreachable(constants.ENDPOINT)
    if reason:
        raise HubUnreachable(
            f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} ({reason}) to read {what}: give a local "
            "folder instead, or set HF_HUB_OFFLINE=1 to use a copy already in the cache"
        )


def require_source(name: str, what: str) -> None:
    """`name` is a local path that exists, or a Hub id (owner/name) and the Hub answers; a path that exists nowhere
    (a typo, a run directory elsewhere) is one line saying so, not a question to the Hub."""
    if Path(name).exists():
        return
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(name)):
        raise DataError(name, f"no such file or folder (and not a Hub id, owner/name): give the {what}'s path")
    require_hub(f"the {what} {str(name)!r}")
