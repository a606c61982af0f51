"""Run every benchmark (each in its own process) and print one table: measured value, target, met or not.

    .venv/bin/python -m benchmarks.run_all [--json out.json]

Each benchmark prints one JSON line of values measured in one run; the ratios are taken inside that run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (benchmark, key, target, predicate)
TARGETS = [
    ("bench_vae", "train_seconds", "VAE training to early stop < 120 s", lambda v: v < 120),
    ("bench_vae", "sample_seconds", "sampling 20,000 lists < 30 s", lambda v: v < 30),
    ("bench_vae", "raw_contradiction_rate", "sampler's raw lists: contradiction rate <= 3 %", lambda v: v <= 0.03),
    ("bench_vae", "raw_unique_rate", "sampler's raw lists: >= 90 % unique", lambda v: v >= 0.90),
    ("bench_vae", "concepts_used", ">= 180 of 200 concepts across 20,000 lists", lambda v: v >= 180),
    ("bench_vae", "raw_valid_rate", "sampler's raw lists reaching 3 categories (reported)", None),
    ("bench_vae", "rejected", "rejections by reason (reported)", None),
    ("bench_vae", "jsd_marginals_bits", "JSD of marginals (reported)", None),
    ("bench_caption", "batched_speedup", "batch 16 >= 4x one at a time", lambda v: v >= 4),
    ("bench_caption", "greedy_identical", "greedy batched == unbatched", lambda v: v is True),
    ("bench_caption", "sft_seconds", "tiny SFT < 120 s", lambda v: v < 120),
    ("bench_caption", "sft_eval_loss_after", "validation loss falls", None),
    (
        "bench_captioner_pairing",
        "consistency_caption",
        "caption-derived SFT pairs passing the checks >= 98 %",
        lambda v: v >= 0.98,
    ),
    (
        "bench_captioner_pairing",
        "acceptance_ratio_b_to_a",
        "caption pairs: >= 2x the first-attempt acceptance",
        lambda v: v is not None and v >= 2,
    ),
    (
        "bench_captioner_pairing",
        "hallucination_ratio_b_to_a",
        "caption pairs: <= half the hallucination",
        lambda v: v is not None and v <= 0.5,
    ),
    (
        "bench_captioner_pairing",
        "guard_hallucination",
        "with the decoding guard: hallucination <= 1 %",
        lambda v: v <= 0.01,
    ),
    ("bench_captioner_pairing", "seconds", "the whole experiment <= 15 min on 2 cores", lambda v: v <= 900),
    (
        "bench_tcav_ground_truth",
        "real_time_factor_per_core",
        "rendering: >= 40x real time per core (30 s clips)",
        lambda v: v >= 40,
    ),
    ("bench_tcav_ground_truth", "two_process_speedup", "rendering: 2 processes >= 1.6x one", lambda v: v >= 1.6),
    (
        "bench_tcav_ground_truth",
        "shards_identical_one_vs_two_processes",
        "rendered shards: 1 process == 2",
        lambda v: v is True,
    ),
    (
        "bench_tcav_ground_truth",
        "shards_identical_after_rerun",
        "rendered shards: rerun == first run",
        lambda v: v is True,
    ),
    (
        "bench_tcav_ground_truth",
        "planted_p_corrected",
        "planted concept: p < 0.01 after correction",
        lambda v: v < 0.01,
    ),
    ("bench_tcav_ground_truth", "planted_score", "planted concept: TCAV score (far from 0.5)", None),
    ("bench_tcav_ground_truth", "false_positive_rate", "independent concepts significant <= 5 %", lambda v: v <= 0.05),
    ("bench_tcav_ground_truth", "instrument_cav_accuracy_min", "instrument CAV accuracy >= 0.9", lambda v: v >= 0.9),
    ("bench_synthesis", "batch8_speedup", "batch 8 >= 4x one at a time (1 thread)", lambda v: v >= 4),
    ("bench_synthesis", "batch8_speedup_2threads", "the same on 2 threads (slower in both modes)", None),
    ("bench_synthesis", "two_process_speedup", "2 CPU processes >= 1.6x one (1 thread each)", lambda v: v >= 1.6),
    ("bench_synthesis", "two_process_speedup_without_load", "the same, model load excluded (steady throughput)", None),
    ("bench_synthesis", "independent_pair_speedup", "machine ceiling: 2 independent processes vs 1", None),
    ("bench_synthesis", "two_process_vs_independent_pair", "2 processes under accelerate vs that ceiling", None),
    ("bench_synthesis", "two_process_vs_one_process_2threads", "2 processes vs 1 process on 2 threads", None),
    ("bench_synthesis", "rerun_fraction", "rerun < 5 % of first run, no model", lambda v: v < 0.05),
    ("bench_synthesis", "rss_ratio_512_to_64", "RSS(512 clips) <= 1.2 x RSS(64)", lambda v: v <= 1.2),
    (
        "bench_synthesis",
        "musicgen_small_cpu_s_per_audio_s",
        "musicgen-small (real size) on CPU, s per s of audio",
        None,
    ),
    ("bench_synthesis", "musicgen_small_batch8_speedup", "musicgen-small (real size): batch 8 vs one at a time", None),
    ("bench_synthesis", "encodec_one_at_a_time_speedup", "real EnCodec on CPU: one clip at a time vs batch 8", None),
]


def run(name: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--run_dir", f"runs/bench/{name}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="also write every measured value here")
    args = parser.parse_args()
    results = {name: run(name) for name in dict.fromkeys(t[0] for t in TARGETS)}
    print(f"| {'benchmark':<16} | {'value':>10} | {'target':<52} | met |")
    print(f"|{'-' * 18}|{'-' * 12}|{'-' * 54}|-----|")
    for name, key, target, ok in TARGETS:
        value = results[name].get(key)
        met = "-" if ok is None else ("yes" if value is not None and ok(value) else "NO")
        print(f"| {name:<16} | {str(value):>10} | {target:<52} | {met:>3} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
