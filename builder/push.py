"""Publish the assembled dataset folder to a Hugging Face Hub dataset repo, and tag the version.

    python -m builder.push --repo_id you/conceptcaps --dry_run          # what would be uploaded, and where
    python -m builder.push --repo_id you/conceptcaps --private          # create (private), upload, tag

The token comes from $HF_TOKEN or the saved login (`hf auth login`) and never appears in output. Data files go
up first with `upload_large_folder` (resumable: rerun after an interruption), the card (README.md) after them,
and the version tag last, so an interrupted push never looks like a complete version.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.errors import DataError, PublishError
from core.io import file_record, folder_mismatch
from core.log import get_logger

logger = get_logger(__name__)


@dataclass
class PushArguments:
    """Push dataset/ to the Hub."""

    repo_id: str = arg("", "Hub dataset repo, e.g. you/conceptcaps")
    dataset_dir: str | None = arg(None, "assembled folder (default: run dir/dataset)")
    version: str | None = arg(None, "tag (default: the version in build_summary.json)")
    private: bool = arg(False, "create the repo private")
    dry_run: bool = arg(False, "print the plan, upload nothing")
    num_workers: int = arg(4, "upload workers")

    def __post_init__(self):
        if not self.repo_id or "/" not in self.repo_id:
            raise ValueError(f"--repo_id must be 'owner/name', got {self.repo_id!r}")


def push_plan(folder: Path, repo_id: str, version: str) -> dict:
    """What would be uploaded, once the folder is checked against its own record (`checksums.json`, written last
    by the card stage): nothing is uploaded from a folder with a file missing, changed or unrecorded."""
    if not (folder / "README.md").is_file() or not (folder / "build_summary.json").is_file():
        raise DataError(
            folder,
            "not an assembled dataset (no README.md or build_summary.json); run builder.assemble and card.render",
        )
    if why := folder_mismatch(folder):
        raise DataError(
            folder, f"does not match its record: {why}; rerun the pipeline (it redoes what changed) before pushing"
        )
    check_dataset(folder)
    files = sorted(file_record(folder, hash_limit=0, links=False).items())
    return {
        "repo_id": repo_id,
        "repo_type": "dataset",
        "version": version,
        "files": [{"path": path, "bytes": size} for path, (size, _) in files],
        "total_bytes": sum(size for _, (size, _) in files),
        "order": ["data files", "README.md", f"tag {version}"],
    }


def card_configs(folder: Path) -> list[dict]:
    """The `configs:` of the card's YAML front matter (what `load_dataset` reads)."""
    import yaml

    text = (folder / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise DataError(folder / "README.md", "no YAML front matter: the card stage writes it (card.render)")
    try:
        configs = (yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}).get("configs")
    except yaml.YAMLError as e:
        raise DataError(folder / "README.md", f"front matter is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(configs, list) or not configs:
        raise DataError(folder / "README.md", "the front matter declares no configs")
    return configs


def check_dataset(folder: Path) -> None:
    """The dataset's own checks, before anything is uploaded: every split of every config the card declares has
    files, all of them recorded in checksums.json; ids are unique and disjoint across splits; every concept-set row
    names an example of its split."""
    import pyarrow.parquet as pq

    from core.io import FOLDER_RECORD, read_json

    recorded = set(read_json(folder / FOLDER_RECORD).get("files", {}))
    files: dict[tuple[str, str], list[str]] = {}
    for config in card_configs(folder):
        for entry in config.get("data_files") or []:
            name, split, pattern = config.get("config_name"), entry.get("split"), entry.get("path")
            found = sorted(p.relative_to(folder).as_posix() for p in folder.glob(str(pattern)) if p.is_file())
            if not found:
                raise DataError(folder / "README.md", f"config {name!r} declares split {split!r} ({pattern}), "
                                "which matches no file: rerun the pipeline before pushing")  # fmt: skip
            unrecorded = [f for f in found if f not in recorded]
            if unrecorded:
                raise DataError(folder, f"{unrecorded[0]} (config {name!r}) is not in {FOLDER_RECORD}")
            files[name, split] = found

    def ids(config: str, split: str) -> list[str]:
        return [
            i
            for f in files.get((config, split), [])
            for i in pq.read_table(folder / f, columns=["id"])["id"].to_pylist()
        ]

    seen: dict[str, str] = {}
    for split in sorted({s for c, s in files if c == "default"}):
        split_ids = ids("default", split)
        twice = next((i for i, n in Counter(split_ids).items() if n > 1), None)
        duplicate = next((i for i in split_ids if i in seen), twice)
        if duplicate is not None:
            where = seen.get(duplicate, split)
            raise DataError(
                folder, f"id {duplicate!r} is in split {where!r} and again in {split!r}: ids must be unique"
            )
        seen.update(dict.fromkeys(split_ids, split))
        orphans = sorted(set(ids("concepts", split)) - set(split_ids))
        if orphans:
            raise DataError(folder, f"the concepts config's {split} split names {len(orphans)} id(s) the split lacks, "
                            f"e.g. {orphans[0]!r}")  # fmt: skip


def transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's connection errors: huggingface_hub has used requests, httpx and now httpx2."""
    import importlib

    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except ImportError:
            continue
    return tuple(found)


def push_dataset(args: PushArguments, folder: Path, api=None) -> dict:
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    version = (
        args.version or json.loads((folder / "build_summary.json").read_text())["version"]
        if (folder / "build_summary.json").is_file()
        else args.version
    )
    plan = push_plan(folder, args.repo_id, version)
    if args.dry_run:
        lines = [f"  {f['path']}  ({f['bytes']:,} bytes)" for f in plan["files"]]
        logger.info(
            "dry run: would upload %d files (%s bytes) to dataset %s, then tag %s:\n%s",
            len(lines),
            f"{plan['total_bytes']:,}",
            args.repo_id,
            version,
            "\n".join(lines),
        )
        return plan
    token = get_token()
    if not token:
        raise PublishError(f"no Hugging Face token to push to {args.repo_id}: set HF_TOKEN or run `hf auth login`")
    api = api or HfApi(token=token)
    try:
        api.create_repo(args.repo_id, repo_type="dataset", private=args.private, exist_ok=True)
        api.upload_large_folder(
            repo_id=args.repo_id,
            folder_path=str(folder),
            repo_type="dataset",
            ignore_patterns=["README.md", ".cache/**"],
            num_workers=args.num_workers,
        )
        api.upload_file(
            path_or_fileobj=str(folder / "README.md"),
            path_in_repo="README.md",
            repo_id=args.repo_id,
            repo_type="dataset",
            commit_message=f"ConceptCaps {version}: dataset card",
        )
        api.create_tag(args.repo_id, tag=version, repo_type="dataset", tag_message=f"ConceptCaps {version}")
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        hint = " (the token cannot write to this repo)" if status in (401, 403) else ""
        raise PublishError(f"push to dataset {args.repo_id} failed{hint}: HTTP {status}; nothing was tagged") from None
    except (*transport_errors(), OSError) as e:  # no network, DNS, a refused connection, offline mode
        raise PublishError(
            f"push to dataset {args.repo_id} failed: cannot reach the Hub at {api.endpoint} "
            f"({e.__class__.__name__}); nothing was tagged; rerun to resume the upload"
        ) from None
    logger.info("pushed %d files to dataset %s and tagged %s", len(plan["files"]), args.repo_id, version)
    return {**plan, "pushed": True}


ARGUMENTS = PushArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "push", argv)
    return push_dataset(args, Path(args.dataset_dir or run_dir() / "dataset"))


if __name__ == "__main__":
    cli(main)
