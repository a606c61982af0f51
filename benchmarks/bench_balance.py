"""Balancing at paper scale: how many concepts have enough positives in every split, before and after
`--min_positives_per_concept`, and what it costs. Target: every concept the backend carries has >= K (50)
positives in each split of 24,000 lists (the paper preset's count), at <= 2x the sampling time.

    .venv/bin/python -m benchmarks.bench_balance [--run_dir runs/bench] [--backends any symbolic] [--per_split 50]

Trains the β-VAE on MusicCaps with the paper defaults (as bench_vae), samples the lists once without and once
with balancing (same seed), splits the lists' ids with the dataset's own `assign_example_splits`, and counts each
carried concept's positives per split. Caption and audio rejections, which come later, are not simulated: a
concept at the target here can still fall short in the dataset (the card's per-concept table shows the final
counts). Prints one JSON line per backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from builder.assemble import BALANCE_KEYS
from builder.distill import distill_musiccaps
from builder.musiccaps import read_musiccaps
from builder.splits import assign_example_splits
from builder.taxonomy import build_taxonomy
from core.config import DEFAULT_MUSICCAPS
from core.constants import SPLITS
from core.io import write_parquet
from generation.sample_tags import SamplingArguments, backend_coverage, reference_lists, sample_tag_lists
from training.constraints import CONSTRAINTS_NAME, Constraints
from training.train_vae import VAETrainingArguments, load_split_matrices, train_vae
from training.vae import load_checkpoint


def split_positives(rows: list[dict], names: list[str]) -> dict[str, dict[str, int]]:
    """Per concept, its lists in each split of the dataset's id-based split."""
    split_of = assign_example_splits([r["id"] for r in rows])
    counts = {n: dict.fromkeys(SPLITS, 0) for n in names}
    for r in rows:
        for t in r["tags"]:
            counts[t][split_of[r["id"]]] += 1
    return counts


def measure(model, taxonomy, constraints, seen, backend: str, num_lists: int, per_split: int) -> dict:
    carried = [n for n in taxonomy.names if n not in backend_coverage(backend, taxonomy).excluded]
    out = {"backend": backend, "lists": num_lists, "per_split": per_split, "carried": len(carried)}
    for label, k in (("before", 0), ("after", per_split)):
        start = time.perf_counter()
        table, summary = sample_tag_lists(
            model,
            taxonomy,
            constraints,
            SamplingArguments(num_lists=num_lists, synthesis_backend=backend, min_positives_per_concept=k),
            seen,
        )
        seconds = time.perf_counter() - start
        counts = split_positives(table.to_pylist(), taxonomy.names)
        short = sorted(n for n in carried if min(counts[n].values()) < per_split)
        out[label] = {
            "lists": table.num_rows,
            "seconds": round(seconds, 2),
            "concepts_at_target": len(carried) - len(short),
            "short": short,
            "min_in_a_split": int(min(min(counts[n].values()) for n in carried)),
        }
        if k:
            b = summary["balance"]
            # what the dataset keeps of it (the draws' raw rates as balance_raw), but the per-split plan
            kept = {k2: b[k2] for k2 in BALANCE_KEYS if k2 not in ("per_split", "raw", "time_ratio_to_sampling")}
            out[label].update(kept, balance_raw=b["raw"])
            out["time_ratio_to_sampling"] = round(b["time_ratio_to_sampling"], 3)
            out["time_ratio_to_2x"] = round(b["time_ratio_to_sampling"] / 2, 3)
        else:
            out[label]["raw"] = {k2: summary["raw"][k2] for k2 in ("contradiction_rate", "unique_rate", "valid_rate")}
    out["share_at_target_before_after"] = [
        round(out[x]["concepts_at_target"] / len(carried), 3) for x in ("before", "after")
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", default="runs/bench")
    parser.add_argument("--num_lists", type=int, default=24000)
    parser.add_argument("--per_split", type=int, default=50)
    parser.add_argument("--backends", nargs="+", default=["any", "symbolic"])
    parser.add_argument("--reuse_vae", action="store_true", help="sample from run_dir/vae if it is there")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    taxonomy, _ = build_taxonomy(DEFAULT_MUSICCAPS)
    run_dir.mkdir(parents=True, exist_ok=True)
    tagged = run_dir / "musiccaps_tagged.parquet"
    write_parquet(tagged, distill_musiccaps(read_musiccaps(DEFAULT_MUSICCAPS), taxonomy).tagged)
    if not (args.reuse_vae and (run_dir / "vae" / CONSTRAINTS_NAME).is_file()):
        train_vae(VAETrainingArguments(), taxonomy, load_split_matrices(tagged, taxonomy), run_dir / "vae")
    model, _, _ = load_checkpoint(run_dir / "vae")
    constraints = Constraints.load(run_dir / "vae" / CONSTRAINTS_NAME)
    seen = reference_lists(tagged, taxonomy)
    for backend in args.backends:
        sys.stdout.write(
            json.dumps(measure(model, taxonomy, constraints, seen, backend, args.num_lists, args.per_split)) + "\n"
        )
        sys.stdout.flush()  # one JSON line per backend, as each is measured


if __name__ == "__main__":
    main()
