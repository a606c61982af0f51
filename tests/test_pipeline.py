"""The whole pipeline on the micro preset; a run killed between and inside stages resumes to the same dataset."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # whole pipeline runs: the full tier only


REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "tests" / "micro.yaml"


def pipeline(run: Path, *extra) -> subprocess.Popen:
    """The pipeline in a process of its own, its log appended to <run>.log (a file, not a pipe: a pipe nobody
    reads while the test waits would stop the run once its buffer filled)."""
    env = dict(os.environ, CONCEPTCAPS_RUN_DIR=str(run))
    log_path = run.parent / f"{run.name}.log"
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--config", str(PRESET), "--no_show", *extra],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    proc.log_path = log_path
    return proc


def log_tail(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()[-3000:]


def finish(proc: subprocess.Popen) -> None:
    proc.wait(timeout=900)
    assert proc.returncode == 0, log_tail(proc)


def kill_when(proc: subprocess.Popen, path: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the pipeline ended before {path} appeared: {log_tail(proc)}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def dataset_content(run: Path) -> dict:
    """Every row of every published file; the run directory's own path (in model paths) written as <run>."""

    def portable(rows):
        return [{k: v.replace(str(run), "<run>") if isinstance(v, str) else v for k, v in r.items()} for r in rows]

    out = {}
    for config in ("data", "audio", "concepts"):
        for path in sorted((run / "dataset" / config).glob("*.parquet")):
            out[f"{config}/{path.name}"] = portable(pq.read_table(path).to_pylist())
    out["captions"] = portable(pq.read_table(run / "captions.parquet").to_pylist())
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    finish(pipeline(run))
    return run


def test_pipeline_end_to_end(reference_run):
    import json

    from conceptcaps import open_dataset

    summary = json.loads((reference_run / "pipeline_summary.json").read_text())
    assert list(summary) == [
        "taxonomy",
        "distill",
        "vae",
        "sample",
        "vae_report",
        "tiny_models",
        "captioner",
        "caption",
        "caption_metrics",
        "synthesize",
        "score",
        "assemble",
        "audit",
        "card",
        "genre_classifier",
        "tcav",
    ]
    assert all(row["status"] == "ran" for row in summary.values())
    ds = open_dataset(str(reference_run / "dataset"))
    assert sum(len(ds[s]) for s in ds) == summary["assemble"]["in"] == 40
    assert json.loads((reference_run / "tcav_report.json").read_text())["results"]
    card = (reference_run / "dataset" / "README.md").read_text()
    assert "the captioner accepted least often" in card and "## Checked by an independent tagger" in card
    sampling = json.loads((reference_run / "dataset" / "build_summary.json").read_text())["sampling"]
    assert f"for the `{sampling['backend']}` backend" in card and "Positives per concept and split" in card
    name, row = next((n, r) for n, r in sampling["positives"].items() if r["train"])
    assert f"| {name} | " in card and sum(
        r["train"] + r["validation"] + r["test"] for r in sampling["positives"].values()
    ) == sum(len(e["tags"]) for s in ds for e in ds[s])
    again = pipeline(reference_run)  # a rerun of a finished run does nothing
    finish(again)
    assert all(
        r["status"] == "skipped" for r in json.loads((reference_run / "pipeline_summary.json").read_text()).values()
    )


def test_killed_between_and_inside_stages_resumes_to_the_same_dataset(reference_run, tmp_path):
    run = tmp_path / "killed"
    kill_when(pipeline(run), run / ".stages" / "sample.json")  # between stages
    proc = pipeline(run)
    kill_when(proc, run / "audio_shards" / "shard-00001.parquet")  # inside synthesis, shards left to do
    assert not (run / "audio_shards" / "_summary.json").exists()
    finish(pipeline(run))
    assert dataset_content(run) == dataset_content(reference_run)


def test_a_moved_run_skips_every_stage_and_damaged_outputs_are_redone(reference_run, tmp_path):
    import json
    import shutil

    from tests.test_reliability import flip_byte

    moved = tmp_path / "moved"
    shutil.copytree(reference_run, moved)
    finish(pipeline(moved))
    summary = json.loads((moved / "pipeline_summary.json").read_text())
    assert all(r["status"] == "skipped" for r in summary.values()), summary
    next((moved / "dataset" / "data").glob("train-*.parquet")).unlink()  # a published file deleted
    flip_byte(moved / "audio_shards" / "shard-00001.parquet")  # a byte flipped inside an audio shard
    finish(pipeline(moved))
    status = {name: r["status"] for name, r in json.loads((moved / "pipeline_summary.json").read_text()).items()}
    assert status["synthesize"] == status["assemble"] == status["card"] == "repaired", status
    assert status["score"] == status["genre_classifier"] == status["tcav"] == "skipped", status
    assert dataset_content(moved) == dataset_content(reference_run)
    published = [p for p in (moved / "dataset").rglob("*") if p.is_file() and ".cache" not in p.parts]
    assert not [
        p for p in published if str(moved).encode() in p.read_bytes() or str(reference_run).encode() in p.read_bytes()
    ]
