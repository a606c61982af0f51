"""Nothing silent: checksummed shards, strict presets, one-line errors, the run-directory lock, the Hub out of
reach. (Verified stage records, a moved run directory and a repaired dataset: tests/test_pipeline.py.)"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from builder.musiccaps import read_musiccaps
from core.config import parse_args, read_preset
from core.errors import ConfigError, DataError
from core.io import file_record, folder_mismatch, record_mismatch, write_folder_record
from core.lock import LOCK_NAME, RunLockedError, run_lock
from core.shards import checksum_path, merge_shards, run_sharded, shard_path
from tests.conftest import write_musiccaps

REPO = Path(__file__).resolve().parents[1]
IDS = [f"x-{i:02d}" for i in range(6)]


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte in the middle of a file, keeping its size (the footer, and so the id column, stay readable)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_shard_is_redone_on_resume_and_refused_at_merge(tmp_path):
    calls = []

    def work(k, ids):
        calls.append(k)
        return pa.table({"id": ids, "payload": [f"payload {i} " * 50 for i in ids]})

    run_sharded(IDS, 2, tmp_path, work, manifest={"v": 1})
    assert calls == [0, 1, 2] and checksum_path(shard_path(tmp_path, 1)).is_file()
    flip_byte(shard_path(tmp_path, 1))
    calls.clear()
    run_sharded(IDS, 2, tmp_path, work, manifest={"v": 1})
    assert calls == [1]  # only the corrupt shard is redone
    assert merge_shards(IDS, 2, tmp_path).column("id").to_pylist() == IDS
    flip_byte(shard_path(tmp_path, 2))
    with pytest.raises(DataError, match="shard-00002.parquet: missing, incomplete or corrupt shard"):
        merge_shards(IDS, 2, tmp_path)
    assert not shard_path(tmp_path, 2).exists()  # removed, so that a rerun of its stage redoes it


def test_a_shard_without_its_checksum_counts_as_unfinished(tmp_path):
    calls = []
    run_sharded(IDS, 2, tmp_path, lambda k, ids: calls.append(k) or pa.table({"id": ids}))
    checksum_path(shard_path(tmp_path, 0)).unlink()  # killed between the shard and its checksum
    calls.clear()
    run_sharded(IDS, 2, tmp_path, lambda k, ids: calls.append(k) or pa.table({"id": ids}))
    assert calls == [0]


def test_records_catch_missing_resized_changed_and_added_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"x" * 100)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "c").write_text("ignored")
    record = file_record(tmp_path)
    assert set(record) == {"a.txt", "sub/b.bin"} and record_mismatch(tmp_path, record) is None
    (tmp_path / "a.txt").write_text("hellO")
    assert "a.txt changed" in record_mismatch(tmp_path, record)
    (tmp_path / "a.txt").write_text("hello!")
    assert "a.txt has 6 bytes, 5 when written" in record_mismatch(tmp_path, record)
    (tmp_path / "a.txt").unlink()
    assert "a.txt is missing" in record_mismatch(tmp_path, record)
    (tmp_path / "a.txt").write_text("hello")
    write_folder_record(tmp_path)
    assert folder_mismatch(tmp_path) is None
    (tmp_path / "extra.txt").write_text("?")
    assert "extra.txt is not in its record" in folder_mismatch(tmp_path)


def test_a_misspelt_preset_key_is_refused_with_the_closest_valid_one(tmp_path):
    from generation.sample_tags import SamplingArguments
    from pipeline import validate_preset

    preset = tmp_path / "p.yaml"
    preset.write_text("sample:\n  num_list: 100\n")
    with pytest.raises(
        ConfigError, match=r"p.yaml: unknown key 'num_list' in section 'sample'; did you mean 'num_lists'\?"
    ):
        parse_args(SamplingArguments, "sample", ["--config", str(preset)])
    with pytest.raises(ConfigError, match="unknown key 'num_list' in section 'sample'"):
        validate_preset(preset)
    preset.write_text("musiccaps_cvs: x.csv\nsample: {}\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'musiccaps_cvs' in the top level; did you mean 'musiccaps_csv'\?"
    ):
        validate_preset(preset)
    preset.write_text("smaple: {num_lists: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'smaple' in the top level; did you mean 'sample'\?"):
        validate_preset(preset)


@pytest.mark.parametrize("preset", ["configs/tiny.yaml", "configs/paper.yaml", "tests/micro.yaml"])
def test_every_preset_parses_for_every_stage(preset, monkeypatch, tmp_path):
    import importlib

    from pipeline import STAGES, validate_preset

    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    sections = validate_preset(REPO / preset)
    for stage in STAGES:
        if stage.optional and stage.name not in sections:
            continue
        module = importlib.import_module(stage.module)
        # the paper's SFT asks for bf16, which TrainingArguments refuses on a machine without a GPU: only that is lifted
        hardware = ["--bf16", "false"] if stage.name == "captioner" and not torch.cuda.is_available() else []
        parsed = parse_args(module.ARGUMENTS, stage.name, ["--config", str(REPO / preset), *hardware])
        assert parsed is not None, stage.name
    assert set(read_preset(REPO / preset)) - {"musiccaps_csv"} <= {s.name for s in STAGES}


@pytest.mark.parametrize("preset", ["configs/tiny.yaml", "configs/paper.yaml", "tests/micro.yaml"])
def test_no_preset_names_a_path_outside_the_repository(preset):
    """A clone anywhere runs its presets: every path-like value stays inside the repository (or the run
    directory, or the Hub)."""

    def values(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from values(v)
        elif isinstance(node, list):
            for v in node:
                yield from values(v)
        elif isinstance(node, str):
            yield node

    for value in values(read_preset(REPO / preset)):
        if "/" in value and not value.startswith(("${run_dir}", "hf://")) and "://" not in value:
            resolved = (REPO / value).resolve()
            assert resolved.is_relative_to(REPO) and not Path(value).is_absolute(), (preset, value)


def test_musiccaps_without_the_hub_or_a_local_copy_is_one_line(monkeypatch, tmp_path):
    import builder.musiccaps as musiccaps

    monkeypatch.delenv("CONCEPTCAPS_MUSICCAPS_CSV", raising=False)

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(ConfigError, match="set CONCEPTCAPS_MUSICCAPS_CSV=/path/to/musiccaps-public.csv"):
        musiccaps.resolve_musiccaps()
    bad = write_musiccaps(tmp_path / "other.csv", [{"aspect_list": ["rock"]}])
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda *a, **k: str(bad))
    with pytest.raises(DataError, match="is not the pinned"):
        musiccaps.resolve_musiccaps("hf://google/MusicCaps")
    monkeypatch.setenv("CONCEPTCAPS_MUSICCAPS_CSV", str(bad))
    assert musiccaps.resolve_musiccaps() == bad  # the variable replaces the default, not an explicit path
    assert musiccaps.resolve_musiccaps(str(bad)) == bad


def test_an_empty_and_an_oversized_csv(tmp_path):
    empty = write_musiccaps(tmp_path / "empty.csv", [])
    with pytest.raises(DataError, match="empty.csv: no rows after the header"):
        read_musiccaps(empty)
    big = write_musiccaps(
        tmp_path / "big.csv",
        [{"aspect_list": ["rock"], "caption": "A caption."}, {"aspect_list": ["jazz"], "caption": "x" * 131_073}],
    )
    with pytest.raises(DataError, match=r"big.csv, row 3: unreadable CSV row \(field larger than field limit"):
        read_musiccaps(big)


def cli_run(*args, env=None, cwd=REPO):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


@pytest.mark.slow
def test_a_cli_prints_bad_input_as_one_line_and_the_traceback_with_debug(tmp_path):
    empty = write_musiccaps(tmp_path / "empty.csv", [])
    env = {"CONCEPTCAPS_RUN_DIR": str(tmp_path / "run")}
    out = cli_run("-m", "builder.taxonomy", "--musiccaps_csv", str(empty), env=env)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == f"error: {empty}: no rows after the header"
    assert "Traceback" not in out.stderr
    debug = cli_run("-m", "builder.taxonomy", "--musiccaps_csv", str(empty), "--debug", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_the_run_directory_lock(tmp_path):
    run = tmp_path / "run"
    env = {"CONCEPTCAPS_RUN_DIR": str(run)}
    with run_lock(run, "a test"):
        # a stage started alone on a locked run directory stops at once, naming the holder
        out = cli_run(
            "-m", "builder.taxonomy", "--output", str(tmp_path / "t.json"), env={**env, "CONCEPTCAPS_LOCK_TOKEN": ""}
        )
        assert out.returncode == 2 and f"in use by a test (pid {os.getpid()}" in out.stderr
        assert "Traceback" not in out.stderr and not (tmp_path / "t.json").exists()
        second = cli_run(
            "-m", "pipeline", "--config", "tests/micro.yaml", "--no_show", env={**env, "CONCEPTCAPS_LOCK_TOKEN": ""}
        )
        assert second.returncode == 2 and "in use by a test" in second.stderr and not (run / ".stages").exists()
        # a pipeline given another run directory locks that one only, and help never waits for a lock
        other = cli_run("-m", "pipeline", "--config", "tests/micro.yaml", "--run_dir", str(tmp_path / "other"),
                        "--only", "taxonomy", "--no_show", env={**env, "CONCEPTCAPS_LOCK_TOKEN": ""})  # fmt: skip
        assert other.returncode == 0, other.stderr[-2000:]
        assert (tmp_path / "other" / "taxonomy.json").is_file()
        assert cli_run("-m", "builder.distill", "--help", env={**env, "CONCEPTCAPS_LOCK_TOKEN": ""}).returncode == 0
        with pytest.raises(RunLockedError):
            os.environ.pop("CONCEPTCAPS_LOCK_TOKEN")
            with run_lock(run, "another"):
                pass
    assert not (run / LOCK_NAME).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}", "what": "a killed run"}}')
    out = cli_run("-m", "builder.taxonomy", "--output", str(tmp_path / "t.json"), env=env)
    assert out.returncode == 0 and "taking over the lock of a killed run" in out.stderr
    assert not (run / LOCK_NAME).exists()


def test_push_with_the_hub_out_of_reach(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi

    from builder.push import PushArguments, push_dataset
    from core.errors import PublishError

    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                      "    path: data/train-*\n---\ncard")  # fmt: skip
    (folder / "data").mkdir()
    pq.write_table(pa.table({"id": ["a", "b"]}), folder / "data" / "train-00000.parquet")
    (folder / "build_summary.json").write_text('{"version": "0.1.0"}')
    write_folder_record(folder)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    api = HfApi(endpoint=f"http://127.0.0.1:{port}", token="hf_secret_value")
    with pytest.raises(PublishError, match=f"cannot reach the Hub at http://127.0.0.1:{port}") as e:
        push_dataset(PushArguments(repo_id="someone/cc"), folder, api=api)
    assert "hf_secret_value" not in str(e.value)
    (folder / "README.md").write_text("changed card")
    with pytest.raises(DataError, match="does not match its record: README.md"):
        push_dataset(PushArguments(repo_id="someone/cc", dry_run=True), folder)


def test_provenance_pins_hub_commits_and_names_no_path(tmp_path):
    from core.provenance import hub_file_commit, model_identity

    commit = "0123456789abcdef0123456789abcdef01234567"
    cached = tmp_path / "datasets--google--MusicCaps" / "snapshots" / commit / "musiccaps-public.csv"
    assert hub_file_commit(cached) == commit and hub_file_commit(tmp_path / "musiccaps-public.csv") is None
    assert model_identity("facebook/musicgen-large", "main", commit=commit) == f"facebook/musicgen-large@{commit}"
    assert model_identity("laion/clap-htsat-unfused") == "laion/clap-htsat-unfused"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    local = model_identity(str(tmp_path / "m"), commit=commit)
    assert local.startswith("local model sha256:") and str(tmp_path) not in local
