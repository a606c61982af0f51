import errno
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.shards import CLAIMS_NAME, merge_shards, run_sharded


class ThreadState:
    """Stands in for accelerate's PartialState: one per thread, sharing a barrier."""

    def __init__(self, index: int, barrier: threading.Barrier):
        self.process_index, self.num_processes, self.is_main_process = index, barrier.parties, index == 0
        self.barrier = barrier

    def wait_for_everyone(self):
        self.barrier.wait(timeout=60)


def table(k, ids):
    return pa.table({"id": ids, "shard": [k] * len(ids)})


IDS = [f"x-{i:02d}" for i in range(8)]  # 4 shards of 2


def test_a_faster_process_takes_the_shards_a_slower_one_has_not_started(tmp_path):
    """Process 0 is held in its first shard until process 1 has finished three: process 1 must take shard 2
    (process 0's by round-robin) instead of leaving it to wait."""
    barrier, release, started = threading.Barrier(2), threading.Event(), threading.Event()
    by_process = {0: [], 1: []}
    counts = {}

    def worker(p):
        def work(k, ids):
            if p == 0 and k == 0:
                started.set()
                assert release.wait(timeout=60)
            assert started.wait(timeout=60)  # else process 1 may claim every shard before process 0 claims one
            by_process[p].append(k)
            if p == 1 and len(by_process[1]) == 3:
                release.set()
            return table(k, ids)

        counts[p] = run_sharded(IDS, 2, tmp_path, work, ThreadState(p, barrier))

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert by_process == {0: [0], 1: [1, 3, 2]}
    assert counts[0]["done"] + counts[1]["done"] == 4
    assert merge_shards(IDS, 2, tmp_path).column("id").to_pylist() == IDS
    assert not (tmp_path / CLAIMS_NAME).exists()  # claims are cleared when every process is done


def test_a_process_slower_than_the_others_needs_no_collective_wait(tmp_path):
    """The main process is held in its shard until process 1 has returned from `run_sharded`: with a barrier at the
    end, process 1 could not return and the run would stall (and, under a process group, time out). The only
    collective call is the short one at the start."""
    barrier, returned, started = threading.Barrier(2), threading.Event(), threading.Event()
    calls = {0: 0, 1: 0}

    class Counting(ThreadState):
        def wait_for_everyone(self):
            calls[self.process_index] += 1
            super().wait_for_everyone()

    counts = {}

    def worker(p):
        def work(k, ids):
            if p == 0:
                started.set()
                assert returned.wait(timeout=60), "process 1 never returned: it waited for the slow process"
            assert started.wait(timeout=60)  # else process 1 may claim every shard before process 0 claims one
            return table(k, ids)

        counts[p] = run_sharded(IDS, 2, tmp_path, work, Counting(p, barrier))
        if p == 1:
            returned.set()

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert counts[0]["done"] == 1 and counts[1]["done"] == 3 and calls == {0: 1, 1: 1}
    assert merge_shards(IDS, 2, tmp_path).column("id").to_pylist() == IDS
    assert not (tmp_path / CLAIMS_NAME).exists()


def test_the_main_process_stops_when_another_process_failed(tmp_path):
    barrier = threading.Barrier(2)
    errors = {}
    failing = threading.Event()

    def worker(p):
        def work(k, ids):
            if p == 1:
                failing.set()
                raise ValueError("bad shard")
            failing.wait(timeout=60)  # else process 0 may claim every shard before process 1 claims one
            return table(k, ids)

        try:
            run_sharded(IDS, 2, tmp_path, work, ThreadState(p, barrier))
        except Exception as e:
            errors[p] = e

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert isinstance(errors[1], ValueError)
    assert "process 1 stopped (failed: ValueError('bad shard'))" in str(errors[0])


def test_stale_claims_and_temporary_files_of_a_killed_run_are_cleared(tmp_path):
    calls = []

    def work(k, ids):
        calls.append(k)
        if k == 2:
            raise KeyboardInterrupt  # killed while working on shard 2
        return table(k, ids)

    try:
        run_sharded(IDS, 2, tmp_path, work)
    except KeyboardInterrupt:
        pass
    assert (tmp_path / CLAIMS_NAME / "shard-00002").exists()
    (tmp_path / ".shard-00002.parquet.k1ll3d.tmp").write_bytes(b"half a shard")  # what SIGKILL leaves mid-write
    calls.clear()
    counts = run_sharded(IDS, 2, tmp_path, lambda k, ids: calls.append(k) or table(k, ids))
    assert calls == [2, 3] and counts == {"shards": 4, "done": 2, "skipped": 2}
    assert pq.read_table(tmp_path / "shard-00002.parquet").column("shard").to_pylist() == [2, 2]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_full_disk_stops_with_a_clear_error_and_keeps_finished_shards(tmp_path, monkeypatch):
    real_write = pq.write_table

    def write_table(t, where, **kwargs):
        if t.column("shard")[0].as_py() == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(t, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    with pytest.raises(OSError, match=r"shard-00002\.parquet.*rerun") as e:
        run_sharded(IDS, 2, tmp_path, table)
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != CLAIMS_NAME) == [
        "shard-00000.parquet",
        "shard-00000.parquet.sha256",
        "shard-00001.parquet",
        "shard-00001.parquet.sha256",
    ]  # no half-written temporary file is left
    monkeypatch.setattr(pq, "write_table", real_write)
    assert run_sharded(IDS, 2, tmp_path, table) == {"shards": 4, "done": 2, "skipped": 2}
