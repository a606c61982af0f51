"""Work split into shards by id, shared by every stage that runs under `accelerate launch`.

Items are sorted by id and cut into shards of a fixed size. Processes claim shards as they go: a claim is a
file created exclusively under `_claims/`, so each shard is taken by exactly one process, and a process that
runs faster (or a resumed run where only some processes' shards are unfinished) takes more of them. Each
process first works through the shards k with k % num_processes == its index, then helps with the others from
the far end. Seeds derive from the shard index, never from the process, so who did a shard does not change it.
Each shard is written atomically (temporary name, then rename), then its checksum beside it
(`shard-NNNNN.parquet.sha256`: sha256 and size); nothing is gathered in memory. A rerun skips every shard whose
bytes match their checksum and whose file holds exactly the ids it should, and redoes a missing, partial or
corrupt one (a flipped byte included); merging checks the same, so a corrupt shard never reaches the dataset. A process
that runs out of shards writes its done file and returns; the main process waits for every done file (not at a
collective barrier, which would time out while the slowest process finishes a long shard), then merges. Across
machines the folder must be on a
shared filesystem (it must be anyway, for the merge); one launch at a time writes a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import DataError
from core.io import remove_temporaries, sha256_file, write_json, write_parquet, write_text
from core.log import get_logger

logger = get_logger(__name__)


def make_shards(ids: Sequence[str], shard_size: int) -> list[list[str]]:
    ordered = sorted(ids)
    if len(set(ordered)) != len(ordered):
        raise DataError(None, "duplicate ids in the input")
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


def shard_path(directory: Path, index: int) -> Path:
    return Path(directory) / f"shard-{index:05d}.parquet"


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_shard(path: Path, table: pa.Table) -> None:
    """The shard, atomically, then its checksum: a shard without a matching checksum is not finished."""
    write_parquet(path, table)
    write_text(checksum_path(path), f"{sha256_file(path)} {path.stat().st_size}\n")


def shard_checksum_error(path: Path) -> str | None:
    """Why a shard's bytes do not match its checksum, or None if they do."""
    record = checksum_path(path)
    if not record.is_file():
        return "no checksum (the process stopped before finishing it)"
    try:
        digest, size = record.read_text().split()
    except ValueError:
        return "unreadable checksum"
    if path.stat().st_size != int(size):
        return f"{path.stat().st_size} bytes, {size} when written"
    if sha256_file(path) != digest:
        return "its bytes changed since it was written (sha256 mismatch)"
    return None


def _discard(path: Path, why: str) -> bool:
    logger.warning("shard %s: %s; it will be redone", path, why, main_process_only=False)
    path.unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)
    return False


def shard_is_complete(path: Path, ids: Sequence[str]) -> bool:
    """True if the shard file exists, matches its checksum, reads, and holds exactly `ids` (in order). A bad file is
    removed, so that its stage redoes it."""
    if not path.is_file():
        return False
    if why := shard_checksum_error(path):
        return _discard(path, why)
    try:
        found = pq.read_table(path, columns=["id"]).column("id").to_pylist()
    except Exception as e:  # truncated or corrupt parquet: any reader error means redo
        return _discard(path, f"unreadable ({e.__class__.__name__})")
    if found != list(ids):
        return _discard(path, "holds other ids than expected")
    return True


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (base seed, shard, attempt...), stable across runs and machines."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


MANIFEST_NAME = "_manifest.json"
NOT_RENDERED_NAME = "_not_rendered.json"  # {id: reason} of accepted captions a synthesis backend declined, counted


def check_manifest(directory: Path, manifest: dict, is_main_process: bool = True) -> None:
    """Shards made with other arguments must not be mixed with new ones: record the arguments beside the
    shards on the first run and refuse to resume with different ones."""
    path = Path(directory) / MANIFEST_NAME
    manifest = json.loads(json.dumps(manifest, sort_keys=True, default=str))
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != manifest:
            changed = sorted(k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k))
            raise DataError(
                path,
                f"these shards were made with other arguments ({changed}); delete {directory} "
                "to start over, or write to another output",
            )
    elif is_main_process:
        write_json(path, manifest)


class _SingleProcess:
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass


CLAIMS_NAME = "_claims"


def _claim(claims: Path, k: int) -> bool:
    try:
        os.close(os.open(claims / f"shard-{k:05d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def run_sharded(
    ids: Sequence[str],
    shard_size: int,
    directory: Path,
    work: Callable[[int, list[str]], pa.Table],
    state=None,
    manifest: dict | None = None,
    desc: str = "shards",
) -> dict:
    """Run `work(shard_index, ids)` for every unfinished shard this process claims, writing each result atomically.

    Args:
        state: accelerate's PartialState (process_index, num_processes, is_main_process, wait_for_everyone);
            None for one process. Every process must call this function.
        manifest: what the shards depend on (arguments, models); a rerun with a different one is an error.
    Returns:
        Counts of shards in all, done and skipped (already complete) by this process; the rest were claimed by
        other processes.
    """
    state = state or _SingleProcess()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        check_manifest(directory, {**manifest, "shard_size": shard_size}, state.is_main_process)
    claims = directory / CLAIMS_NAME
    if state.is_main_process:  # claims and half-written files left by a killed run: clear them before anyone claims
        shutil.rmtree(claims, ignore_errors=True)
        claims.mkdir()
        remove_temporaries(directory, "shard-*.parquet*")
    state.wait_for_everyone()
    from tqdm.auto import tqdm

    shards = make_shards(ids, shard_size)
    n, p = state.num_processes, state.process_index
    order = [k for k in range(len(shards)) if k % n == p] + [k for k in reversed(range(len(shards))) if k % n != p]
    done = skipped = 0
    failure = None
    try:
        # the main process's bar counts the shard files every process has finished
        with tqdm(total=len(shards), desc=desc, unit="shard", disable=not state.is_main_process) as bar:
            for k in order:
                if not _claim(claims, k):
                    continue
                path = shard_path(directory, k)
                if shard_is_complete(path, shards[k]):
                    skipped += 1
                else:
                    table = work(k, shards[k])
                    if table.column("id").to_pylist() != shards[k]:
                        raise RuntimeError(f"shard {k}: the work returned other ids than it was given")
                    try:
                        write_shard(path, table)
                    except OSError as e:  # a full disk, say: the finished shards stay, a rerun resumes from them
                        raise OSError(
                            e.errno,
                            f"{path}: could not write this shard ({e.strerror or e}); the finished "
                            "shards are kept: fix the cause and rerun to resume",
                        ) from e
                    done += 1
                bar.n = sum(shard_path(directory, j).is_file() for j in range(len(shards)))
                bar.refresh()
    except BaseException as e:
        failure = e
        raise
    finally:  # say this process is done (or why it stopped), for the main process's wait
        write_text(claims / f"done-{p:03d}", "ok" if failure is None else f"failed: {failure!r}"[:500])
    if state.is_main_process:
        wait_for_processes(claims, n)
        shutil.rmtree(claims, ignore_errors=True)
    return {"shards": len(shards), "done": done, "skipped": skipped}


def wait_for_processes(claims: Path, num_processes: int, poll_s: float = 0.5) -> None:
    """The main process waits for every process's done file, with no collective call: a process group's barrier
    times out (30 minutes by default) while the slowest process finishes a long shard, and would crash the run
    as its largest stage ends. A process that stopped on an error says so in its file, and the wait ends there."""
    import time

    last_report = time.monotonic()
    while True:
        files = {q: claims / f"done-{q:03d}" for q in range(num_processes)}
        finished = {q: f.read_text() for q, f in files.items() if f.is_file()}
        failed = {q: why for q, why in finished.items() if why != "ok"}
        if failed:
            q, why = next(iter(failed.items()))
            raise RuntimeError(f"process {q} stopped ({why}); its finished shards are kept: rerun to resume")
        if len(finished) == num_processes:
            return
        if time.monotonic() - last_report > 300:
            logger.info("waiting for processes %s to finish their shards", sorted(set(files) - set(finished)))
            last_report = time.monotonic()
        time.sleep(poll_s)


def verified_shards(ids: Sequence[str], shard_size: int, directory: Path) -> list[Path]:
    """Every shard's path, in order, once each is checked complete and uncorrupted (a bad one is removed, so that a
    rerun of its stage redoes it)."""
    paths = []
    for k, shard_ids in enumerate(make_shards(ids, shard_size)):
        path = shard_path(directory, k)
        if not shard_is_complete(path, shard_ids):
            raise DataError(
                path,
                "missing, incomplete or corrupt shard (removed if it was there); rerun the stage "
                "that writes it to redo it",
            )
        paths.append(path)
    return paths


def merge_shards(ids: Sequence[str], shard_size: int, directory: Path) -> pa.Table:
    """Concatenate all shards in order, checking that every id is present exactly once."""
    tables = [pq.read_table(path) for path in verified_shards(ids, shard_size, directory)]
    return pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.string())})


class Lazy:
    """A model loaded on first use, so that a rerun with every shard done loads none."""

    def __init__(self, load: Callable[[], object]):
        self._load, self._value = load, None

    def __call__(self):
        if self._value is None:
            self._value = self._load()
        return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None


def shard_folder_ids(directory: Path) -> tuple[list[str], int]:
    """Every id in a shard folder (shards in order) and the folder's shard size, from its manifest."""
    directory = Path(directory)
    manifest = directory / MANIFEST_NAME
    if not manifest.is_file():
        raise DataError(manifest, "missing: not a shard folder (run the stage that writes it first)")
    shard_size = int(json.loads(manifest.read_text())["shard_size"])
    ids = []
    for path in sorted(directory.glob("shard-*.parquet")):
        try:
            ids += pq.read_table(path, columns=["id"]).column("id").to_pylist()
        except Exception as e:
            raise DataError(path, f"unreadable shard ({e.__class__.__name__}); rerun the stage that wrote it") from None
    return ids, shard_size
