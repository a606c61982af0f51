"""TCAV validated against ground truth on rendered audio (probing/tcav_validation.py): a classifier learns
which instruments a clip holds, one of them planted in half the clips and every other concept drawn
independently; TCAV must call the planted concept significant after correction, far from 0.5, and at most 5 % of
the independent concepts significant; CAV accuracy per concept is reported (target >= 0.9 for instrument concepts).

    .venv/bin/python -m benchmarks.bench_tcav_ground_truth [--clips 6000] [--layer frames] [--seed 0]
        [--renderer_only | --validation_only]

Also the renderer's own targets: seconds per 30 s clip on one core (>= 40x real time), two processes >= 1.6x one,
and shards bit-identical across reruns and across one and two processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from builder.taxonomy import build_taxonomy
from core.config import DEFAULT_MUSICCAPS
from fixtures.runs import caption_row, write_caption_rows
from generation.symbolic import SymbolicSynthesizer
from probing.tcav_validation import ValidationArguments, run_validation

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ("genre", "mood", "instrument", "tempo")


def speed(taxonomy, clips: int = 12) -> dict:
    synth = SymbolicSynthesizer(taxonomy)
    lists = [
        ["rock", "energetic", "electric guitar", "drum kit", "bass guitar", "fast tempo"],
        ["jazz", "mellow", "piano", "upright bass", "swing feel"],
        ["classical", "calming", "strings", "harp"],
        ["techno", "synthesizer", "drum machine", "synth bass", "four on the floor"],
    ]
    synth.render_row(lists[0], 0, 1.0)  # warm-up: imports
    start = time.process_time()
    for i in range(clips):
        synth.render_row(lists[i % len(lists)], i, 30.0)
    cpu = (time.process_time() - start) / clips
    return {"cpu_seconds_per_30s_clip": round(cpu, 3), "real_time_factor_per_core": round(30.0 / cpu, 1)}


def stage_runs(run_dir: Path, taxonomy, n: int = 192, seconds: float = 30.0) -> dict:
    """The synthesis stage on n rendered clips of `seconds`: one process vs two, and a rerun; the shards' bytes
    compared. Each process pays its start (imports, the soundfont's checksum) once: n must be large enough for
    that not to be the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    taxonomy.save(run_dir / "taxonomy.json")
    pool = [
        ["rock", "electric guitar", "drum kit"],
        ["jazz", "piano", "upright bass"],
        ["pop", "synthesizer", "bass guitar"],
        ["folk", "acoustic guitar", "violin"],
        ["reggae", "organ", "bass guitar", "drum kit"],
        ["classical", "strings", "flute"],
    ]
    rows = []
    for i in range(n):
        tags = pool[i % len(pool)] + [["slow tempo", "medium tempo", "fast tempo"][i % 3]]
        attrs = {c: [t for t in tags if taxonomy.category_of[t] == c] for c in CATEGORIES}
        rows.append(caption_row(f"r-{i:04d}", tags, attrs, str(i)))
    write_caption_rows(run_dir / "captions.parquet", rows)
    env = dict(os.environ, OMP_NUM_THREADS="1", CONCEPTCAPS_RUN_DIR=str(run_dir))

    def once(name: str, processes: int) -> float:
        out = run_dir / name
        cmd = [
            "-m",
            "generation.synthesize",
            f"--captions={run_dir / 'captions.parquet'}",
            f"--output_dir={out}",
            *"--backend symbolic".split(),
            f"--duration_s={seconds}",
            *"--shard_size 8 --batch_size 8".split(),
        ]
        launch = (
            [sys.executable, *cmd]
            if processes == 1
            else [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", *cmd]
        )
        start = time.perf_counter()
        with open(run_dir / f"{name}.log", "w") as log:
            subprocess.run(launch, cwd=REPO, env={**env, "ACCELERATE_USE_CPU": "1"}, check=True, stdout=log, stderr=log)
        return time.perf_counter() - start

    def shard_bytes(name):
        return [p.read_bytes() for p in sorted((run_dir / name).glob("shard-*.parquet"))]

    one, two = once("one", 1), once("two", 2)
    first = shard_bytes("one")
    (run_dir / "one" / "shard-00003.parquet").unlink()
    once("one", 1)  # resumes: redoes the deleted shard
    return {
        "one_process_seconds": round(one, 1),
        "two_process_seconds": round(two, 1),
        "two_process_speedup": round(one / two, 2),
        "shards_identical_one_vs_two_processes": first == shard_bytes("two"),
        "shards_identical_after_rerun": shard_bytes("one") == first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", default="runs/bench/bench_tcav_ground_truth")
    parser.add_argument("--clips", type=int, default=6000)
    parser.add_argument("--layer", default="frames")
    parser.add_argument("--stage_clips", type=int, default=192, help="clips of the process-scaling runs")
    parser.add_argument("--stage_seconds", type=float, default=30.0, help="their length")
    parser.add_argument("--seed", type=int, default=0, help="the validation's seed (lists, rendering, training)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--renderer_only", action="store_true", help="the renderer's targets alone, no validation")
    only.add_argument("--validation_only", action="store_true", help="the validation alone")
    args = parser.parse_args()
    taxonomy, _ = build_taxonomy(DEFAULT_MUSICCAPS)
    renderer = (
        {}
        if args.validation_only
        else {
            **speed(taxonomy),
            **stage_runs(Path(args.run_dir), taxonomy, args.stage_clips, args.stage_seconds),
            "stage_clips": args.stage_clips,
            "stage_seconds": args.stage_seconds,
        }
    )
    if args.renderer_only:
        print(json.dumps(renderer))
        return
    start = time.perf_counter()
    arguments = ValidationArguments(clips=args.clips, layer=args.layer, duration_s=3.0, seed=args.seed)
    report = run_validation(arguments, taxonomy)
    report.pop("arguments")
    report["validation_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({**report, **renderer}))


if __name__ == "__main__":
    main()
