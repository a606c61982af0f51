"""Shared fixtures: the real MusicCaps CSV (from $CONCEPTCAPS_MUSICCAPS_CSV or the Hub, never copied) and small CSV
fixtures."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from core.config import MUSICCAPS_ENV

if os.environ.get(MUSICCAPS_ENV):  # a local MusicCaps: nothing needs the Hub (else MusicCaps is downloaded once)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
# a cache of the test session's own: datasets keys a local folder's cache by its name, not its content
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="conceptcaps-test-hf-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MUSICCAPS_COLUMNS = [
    "ytid",
    "start_s",
    "end_s",
    "audioset_positive_labels",
    "aspect_list",
    "caption",
    "author_id",
    "is_balanced_subset",
    "is_audioset_eval",
]


@pytest.fixture(scope="session")
def musiccaps_csv() -> Path:
    """The real MusicCaps CSV: $CONCEPTCAPS_MUSICCAPS_CSV, else downloaded from the Hub (sha256-checked)."""
    from builder.musiccaps import resolve_musiccaps

    return resolve_musiccaps()


def write_musiccaps(path: Path, rows: list[dict]) -> Path:
    """Write a small MusicCaps-shaped CSV; each row gives ytid, aspect_list (a list) and caption."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MUSICCAPS_COLUMNS)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(
                {
                    "ytid": row.get("ytid", f"vid{i:08d}"),
                    "start_s": row.get("start_s", 30),
                    "end_s": row.get("end_s", 40),
                    "audioset_positive_labels": "[]",
                    "aspect_list": repr(row["aspect_list"]),
                    "caption": row.get("caption", "A caption."),
                    "author_id": 0,
                    "is_balanced_subset": False,
                    "is_audioset_eval": False,
                }
            )
    return path


@pytest.fixture(scope="session")
def taxonomy(musiccaps_csv):
    from builder.taxonomy import build_taxonomy

    return build_taxonomy(musiccaps_csv)[0]


@pytest.fixture(scope="session")
def distilled_dir(tmp_path_factory, musiccaps_csv, taxonomy):
    """A run directory holding taxonomy.json, distilled.parquet and musiccaps_tagged.parquet from real MusicCaps."""
    from builder.distill import distill_musiccaps
    from builder.musiccaps import read_musiccaps
    from core.io import write_parquet

    out = tmp_path_factory.mktemp("run")
    taxonomy.save(out / "taxonomy.json")
    result = distill_musiccaps(read_musiccaps(musiccaps_csv), taxonomy)
    write_parquet(out / "distilled.parquet", result.distilled)
    write_parquet(out / "musiccaps_tagged.parquet", result.tagged)
    return out


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory, distilled_dir, taxonomy):
    """A small VAE trained for a few epochs on the real tagged rows; returns (checkpoint dir, training result)."""
    from training.train_vae import VAETrainingArguments, load_split_matrices, train_vae

    out = tmp_path_factory.mktemp("vae")
    args = VAETrainingArguments(
        hidden_dim=64, latent_dim=16, max_epochs=4, patience=10, batch_size=64, learning_rate=2e-3
    )
    matrices = load_split_matrices(distilled_dir / "musiccaps_tagged.parquet", taxonomy)
    return out, train_vae(args, taxonomy, matrices, out)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, musiccaps_csv):
    """Tiny random-weight models of the real classes (tokenizer trained offline on MusicCaps)."""
    from fixtures.tiny_models import main

    out = tmp_path_factory.mktemp("models")
    main(["--output_dir", str(out), "--musiccaps_csv", str(musiccaps_csv)])
    return out


def sft_argv(model_dir, distilled_dir, output_dir, *extra):
    """Command-line arguments for a seconds-long SFT run of the tiny Llama on CPU."""
    return [
        f"--model_name_or_path={model_dir}",
        f"--distilled={distilled_dir / 'distilled.parquet'}",
        f"--output_dir={output_dir}",
        *(
            "--dtype float32 --bf16 false --use_cpu true --max_train_rows 48 --max_eval_rows 16 "
            "--num_train_epochs 1 --learning_rate 1e-2 --per_device_train_batch_size 16 "
            "--gradient_accumulation_steps 1 --lora_r 8 --lora_alpha 16 --eval_strategy no --save_strategy no "
            "--logging_steps 1 --disable_tqdm true"
        ).split(),
        *extra,
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Marks a test whose body failed (`request.node.failed`): the browser tests then keep a screenshot."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.failed = True
