"""What made an output: package versions and model identities that name no local path."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Sequence

from core.io import sha256_file

PROVENANCE_PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "trl",
    "peft",
    "accelerate",
    "numpy",
    "pyarrow",
    "huggingface_hub",
)


def package_versions(names: Sequence[str] = PROVENANCE_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@lru_cache(maxsize=None)
def folder_sha256(folder: str) -> str:
    """One hash of a folder's files (relative names and contents), independent of where the folder lies."""
    root = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + sha256_file(path).encode())
    return h.hexdigest()


def model_identity(name_or_path: str, revision: str | None = None, commit: str | None = None) -> str:
    """How a model is named in manifests, summaries and the published dataset: a Hub id with the commit it was
    loaded from when known (`loaded_commit`), else the revision asked for; or for a local folder "local model
    sha256:<first 16 hex digits of its content hash>", never its path, so that a published file reveals no
    machine's layout and a moved run directory matches its manifests."""
    path = Path(name_or_path)
    if path.is_dir():
        return f"local model sha256:{folder_sha256(str(path.resolve()))[:16]}"
    pin = commit or revision
    return f"{name_or_path}@{pin}" if pin else str(name_or_path)


def loaded_commit(model) -> str | None:
    """The Hub commit a transformers model's files came from (`config._commit_hash`), or None for a local folder."""
    return getattr(getattr(model, "config", None), "_commit_hash", None)


def hub_file_commit(path) -> str | None:
    """The commit of a file in the Hub cache (`.../snapshots/<commit>/<file>`), or None for any other path."""
    parts = Path(path).parts
    if "snapshots" in parts and parts.index("snapshots") + 1 < len(parts):
        commit = parts[parts.index("snapshots") + 1]
        return commit if len(commit) == 40 else None
    return None


def dataset_identity(name_or_path: str) -> str:
    """How a report names the dataset it read: a Hub id as given, or for a local folder "local dataset
    sha256:<16 hex digits>" of its record of files (`checksums.json`, written by the card stage; else its build
    summary), never its path."""
    path = Path(name_or_path)
    if not path.is_dir():
        return str(name_or_path)
    for record in ("checksums.json", "build_summary.json"):
        if (path / record).is_file():
            return f"local dataset sha256:{sha256_file(path / record)[:16]} ({record})"
    return f"local dataset sha256:{folder_sha256(str(path.resolve()))[:16]}"
