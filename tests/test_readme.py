"""The README executed: every bash and python block is marked `<!-- readme-test: run -->` or `<!-- readme-test:
skip: why -->`, and every runnable block runs as written, offline, in a fresh folder, against a small dataset in
our schema at `runs/demo/dataset` (`<repo or folder>`), with a local tiny AST where the README names the Hub's."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- readme-test: (run|skip: .+?) -->\n```(bash|python)\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```(bash|python)\n", re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(marker, language, code) of every bash and python block of the README."""
    return [(m.group(1), m.group(2), m.group(3)) for m in MARKER.finditer((REPO / "README.md").read_text())]


def test_every_command_block_says_whether_it_runs():
    text = (REPO / "README.md").read_text()
    assert len(blocks()) == len(FENCE.findall(text)), "a bash or python block of the README has no readme-test marker"
    assert sum(marker == "run" for marker, _, _ in blocks()) >= 5


def clicks(k: int, example: dict, seconds: float):
    """A clip whose tempo is heard (fast 150 bpm or slow 70 bpm clicks over a drum stem) and a piano partial."""
    from core.constants import SAMPLING_RATE

    bpm = 150.0 if "fast tempo" in example["tempo"] else 70.0
    rng = np.random.default_rng(k)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    wave = 0.05 * np.sin(2 * np.pi * (110 + 7 * (k % 40)) * t)
    burst = np.exp(-np.arange(1600) / 250) * rng.standard_normal(1600)
    for start in np.arange(0, seconds, 60 / bpm):
        i = int(start * SAMPLING_RATE)
        wave[i : i + 1600] += 0.4 * burst[: len(wave) - i]
    stems = [{"concept": "drum kit", "bank": 128, "program": 0, "share_db": 0.0}]
    return wave.astype(np.float32), {"bpm": bpm, "meter": "4/4", "key": "C major", "mode": "major", "style": "rock",
                                     "stems": stems}  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh folder: the dataset the README's snippets open, audited so that it carries its evidence."""
    from fixtures.reviewable import write_card, write_reviewable
    from fixtures.tiny_models import build_tiny_ast
    from probing.audit import main as audit

    root = tmp_path_factory.mktemp("readme")
    dataset = root / "runs" / "demo" / "dataset"
    write_reviewable(dataset, rows=320, seconds=3.1, render=clicks, families=True)
    audit([f"--dataset={dataset}", "--models", "MTT_musicnn", "--bootstrap=100", f"--output={root / 'audit.json'}"])
    write_card(dataset)  # after the audit: its evidence config is listed
    build_tiny_ast(root / "tiny-ast")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("index", [i for i, (marker, _, _) in enumerate(blocks()) if marker == "run"])
def test_a_runnable_block_runs_as_written(workspace, index):
    _, language, code = blocks()[index]
    code = code.replace("<repo or folder>", "runs/demo/dataset")
    code = code.replace("MIT/ast-finetuned-audioset-10-10-0.4593", str(workspace / "tiny-ast"))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", CONCEPTCAPS_RUN_DIR="runs/demo")
    if language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code.replace(".venv/bin/python", sys.executable)]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README block {index}:\n{code}\n{done.stderr[-3000:]}"
