"""The Hub out of reach: every command that can touch it ends at once with one line that names the Hub, what was
to be read and what to do, and exit status 2 (never the client's half-minute of retries and a traceback)."""

import importlib
import socket

import pytest

from core.cli import cli
from core.errors import ConceptCapsError, ConfigError


@pytest.fixture
def no_hub(monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return f"http://127.0.0.1:{port}"


REMEDY = "give a local folder instead, or set HF_HUB_OFFLINE=1 to use a copy already in the cache"
COMMANDS = {
    "probing.probe": "--dataset someone/dataset --model musicnn:MTT_musicnn --output {out}",
    "probing.tcav": "--dataset someone/dataset --model musicnn:MTT_musicnn --output {out}",
    "probing.audit": "--dataset someone/dataset --output {out}",
    "builder.republish": "--source someone/dataset --output_dir {out}",
    "review.app": "--dataset someone/dataset --run_dir {out}",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_reading_a_hub_dataset_says_so_in_one_line(no_hub, tmp_path, monkeypatch, capsys, command):
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    main = importlib.import_module(command).main
    with pytest.raises(SystemExit) as e:
        cli(main, COMMANDS[command].format(out=tmp_path / "out").split(), lock=False)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err
    assert err == (f"error: cannot reach the Hugging Face Hub at {no_hub} ([Errno 111] Connection refused) to read "
                   f"the dataset 'someone/dataset': {REMEDY}")  # fmt: skip


def test_a_hub_model_id_and_musiccaps_say_so_in_one_line(no_hub, tmp_path):
    from builder.musiccaps import download_musiccaps
    from probing.models import load_model

    with pytest.raises(ConceptCapsError) as e:
        load_model("someone/model")
    assert str(e.value).endswith(f"to read the model 'someone/model': {REMEDY}") and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"cannot download musiccaps-public.csv from google/MusicCaps \(cannot reach "
                       r"the Hugging Face Hub at .*\); without Hub access set CONCEPTCAPS_MUSICCAPS_CSV"):  # fmt: skip
        download_musiccaps(str(tmp_path))


def test_a_local_path_that_does_not_exist_is_not_asked_of_the_hub(tmp_path, monkeypatch, capsys):
    from probing.probe import main

    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    missing = tmp_path / "runs" / "demo" / "dataset"
    with pytest.raises(SystemExit) as e:
        cli(main, ["--dataset", str(missing), "--model", "musicnn:MTT_musicnn"], lock=False)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err == (f"error: {missing}: no such file or folder (and not a Hub id, owner/name): "
                                         "give the dataset's path")  # fmt: skip
