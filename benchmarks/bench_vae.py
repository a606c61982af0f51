"""VAE targets on this machine: training to early stop (paper defaults) < 120 s; sampling 20,000 lists < 30 s.
The sampler's raw output, before its rules reject anything: contradiction rate <= 3 %, >= 90 % unique; at least
180 of the 200 concepts used across the 20,000 kept lists; the rejections by reason and the JS divergence of the
kept lists' marginals against MusicCaps are reported. (The kept lists' own contradiction and uniqueness rates are
0 and 1 by construction: no target is set on them.)

    .venv/bin/python -m benchmarks.bench_vae [--run_dir runs/bench]

Prints one JSON line with the measured values and their ratio to each target (ratio <= 1 meets it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from builder.distill import distill_musiccaps
from builder.musiccaps import read_musiccaps
from builder.taxonomy import build_taxonomy
from core.config import DEFAULT_MUSICCAPS
from core.io import write_parquet
from evaluation.vae_report import sample_metrics
from generation.sample_tags import SamplingArguments, reference_lists, sample_tag_lists
from training.constraints import CONSTRAINTS_NAME, Constraints
from training.train_vae import VAETrainingArguments, load_split_matrices, train_vae
from training.vae import load_checkpoint, multi_hot


def run(run_dir: Path, num_lists: int = 20000) -> dict:
    taxonomy, _ = build_taxonomy(DEFAULT_MUSICCAPS)
    result = distill_musiccaps(read_musiccaps(DEFAULT_MUSICCAPS), taxonomy)
    run_dir.mkdir(parents=True, exist_ok=True)
    tagged = run_dir / "musiccaps_tagged.parquet"
    write_parquet(tagged, result.tagged)
    matrices = load_split_matrices(tagged, taxonomy)
    start = time.perf_counter()
    trained = train_vae(VAETrainingArguments(), taxonomy, matrices, run_dir / "vae")  # paper defaults
    train_s = time.perf_counter() - start
    model, _, _ = load_checkpoint(run_dir / "vae")
    constraints = Constraints.load(run_dir / "vae" / CONSTRAINTS_NAME)
    seen = reference_lists(tagged, taxonomy)
    start = time.perf_counter()
    table, summary = sample_tag_lists(model, taxonomy, constraints, SamplingArguments(num_lists=num_lists), seen)
    sample_s = time.perf_counter() - start
    reference = np.concatenate(list(matrices.values()))
    metrics = sample_metrics(multi_hot(table.to_pylist(), taxonomy), reference, taxonomy)
    raw = summary["raw"]
    return {
        "train_seconds": round(train_s, 1),
        "train_epochs": trained["stopped_epoch"] + 1,
        "train_ratio_to_120s": round(train_s / 120, 3),
        "sample_seconds": round(sample_s, 2),
        "sample_ratio_to_30s": round(sample_s / 30, 3),
        "lists": metrics["n"],
        "draws": raw["draws"],
        "rejected": summary["rejected"],
        "raw_contradiction_rate": round(raw["contradiction_rate"], 4),
        "raw_unique_rate": round(raw["unique_rate"], 4),
        "raw_valid_rate": round(raw["valid_rate"], 4),
        "raw_novel_rate": round(raw["novel_rate"], 4),
        "raw_concepts_used": raw["concepts_used"],
        "jsd_marginals_bits": round(metrics["jsd_marginals_bits"], 4),
        "jsd_pairs_bits": round(metrics["jsd_pairs_bits"], 4),
        "tag_entropy_bits": round(metrics["tag_entropy_bits"], 3),
        "concepts_used": metrics["concepts_used"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", default="runs/bench")
    parser.add_argument("--num_lists", type=int, default=20000)
    args = parser.parse_args()
    print(json.dumps(run(Path(args.run_dir), args.num_lists)))


if __name__ == "__main__":
    main()
