"""Scale rehearsal: the stages after synthesis on N distinct clips of S seconds, each stage in a process of its
own, with its wall time, peak resident memory and peak extra disk measured in this one run.

    .venv/bin/python -m benchmarks.bench_scale --clips 2000 --seconds 30
    .venv/bin/python -m benchmarks.bench_scale --clips 2000 5000 10000 --seconds 30   # sizes in turn, with ratios

The audio comes from the symbolic renderer: `--base_clips` attribute lists are rendered once (FluidSynth,
FluidR3_GM), and clip i is base clip i mod M turned by a per-clip circular shift and gain, so that N clips are
distinct (no two share bytes) at the cost of a FLAC encode each. They are written as the synthesis stage writes
them (its shard writer, audio checks, manifest and summary), with template captions. Then, each in a child
process: score (the tiny CLAP built from the real architecture's config), assemble (concept sets included), card,
genre_classifier and tcav. Per stage: `seconds`, `peak_rss_mb` (the child's own maximum resident set) and
`peak_disk_mb` (the most the run directory grew while the stage ran, over its size before; the datasets cache is
pointed inside the run directory so that it counts). One JSON line; with several sizes, the ratios of each
stage's memory to its figure at the first size and its time per clip to the first size's are added. Each size's
run directory is removed before the next one unless `--keep`.

Then the researcher's tools on the same dataset: `probe` (layer-wise probes of 8 concepts on a tiny AST built from
its config) and `audit` (the musicnn tagger audit, MTT_musicnn on each clip's first 10 s; only where its weights
are converted). `--stages` measures some of the stages after score, assemble and card (whose `configs:` every reader
needs).

Targets (issue 15): every stage's peak RSS <= 4 GB at full size and within 1.2x of its 2k figure; assembly's disk
peak <= 1.2x the finished dataset; time linear in N. Issues 27 and 32: the same for probe and audit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from core.log import get_logger

REPO = Path(__file__).resolve().parents[1]
logger = get_logger(__name__)
CATEGORIES = ("genre", "mood", "instrument", "tempo")
GENRES = ["rock", "jazz", "pop", "classical", "reggae", "funk"]
MOODS = ["energetic", "mellow", "happy", "calming", "sad"]
INSTRUMENTS = [
    "piano",
    "electric guitar",
    "acoustic guitar",
    "bass guitar",
    "drum kit",
    "strings",
    "synthesizer",
    "organ",
    "flute",
    "violin",
    "saxophone",
    "trumpet",
]
TEMPI = ["slow tempo", "medium tempo", "fast tempo"]


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # renamed or removed while walking
                pass
    return total


class DerivedClips:
    """The synthesis stage's synthesizer interface over M rendered base clips: clip i is base clip i mod M,
    circularly shifted by a per-clip offset and scaled by a per-clip gain (distinct, deterministic, fast)."""

    def __init__(self, taxonomy, lists: list[list[str]], seconds: float):
        from generation.symbolic import SymbolicSynthesizer

        synth = SymbolicSynthesizer(taxonomy)
        self.sampling_rate, self.name, self.revision = synth.sampling_rate, synth.name + " (derived)", synth.revision
        self.expected_samples = int(round(seconds * self.sampling_rate))
        self.base = [synth.render_row(tags, seed=k, duration_s=seconds) for k, tags in enumerate(lists)]
        self.load_seconds = 0.0

    def clips(self, rows, args, seed):
        from generation.symbolic import Clip

        out = []
        for row in rows:
            i = int(row["id"].split("-")[1])
            base = self.base[i % len(self.base)]
            shift = (i // len(self.base)) * 7919 % self.expected_samples
            gain = 0.75 + 0.25 * ((i * 2654435761) % 1000) / 1000
            out.append(
                Clip((np.roll(base.wave, shift) * gain).astype(np.float32), base.ground_truth, base.midi, base.reasons)
            )
        return out


def draw_lists(taxonomy, m: int, seed: int = 0) -> list[list[str]]:
    from generation.symbolic import RenderTables

    tables, rng, lists = RenderTables(taxonomy), np.random.default_rng(seed), []
    while len(lists) < m:
        tags = [
            rng.choice(GENRES),
            rng.choice(MOODS),
            *rng.choice(INSTRUMENTS, size=int(rng.integers(2, 4)), replace=False),
            rng.choice(TEMPI),
        ]
        tags = [str(t) for t in tags]
        if not tables.unrenderable(tags):
            lists.append(tags)
    return lists


def build_source(run: Path, n: int, seconds: float, base_clips: int, shard_size: int) -> dict:
    """taxonomy.json, models/tiny-clap, captions.parquet and audio_shards/ as the stages before score leave them."""

    from builder.taxonomy import build_taxonomy
    from core.shards import run_sharded
    from fixtures.runs import caption_row, write_caption_rows
    from fixtures.tiny_models import build_tiny_clap, musiccaps_texts
    from generation.audio_checks import AudioCheck
    from generation.synthesize import SynthesisArguments, combine_summaries, generation_params, synthesize_rows

    start = time.perf_counter()
    run.mkdir(parents=True, exist_ok=True)
    taxonomy = build_taxonomy()[0]
    taxonomy.save(run / "taxonomy.json")
    build_tiny_clap(run / "models" / "tiny-clap", musiccaps_texts())
    lists = draw_lists(taxonomy, base_clips)
    synth = DerivedClips(taxonomy, lists, seconds)
    quiet = sum(bool(b.reasons) for b in synth.base)
    rows = []
    for i in range(n):
        tags = lists[i % len(lists)]
        attrs = {c: [t for t in tags if taxonomy.category_of[t] == c] for c in CATEGORIES}
        rows.append(caption_row(f"s-{i:06d}", tags, attrs, str(i)))
    write_caption_rows(run / "captions.parquet", rows)
    args = SynthesisArguments(
        backend="symbolic", duration_s=seconds, shard_size=shard_size, batch_size=shard_size, max_attempts=1
    )
    check, by_id = AudioCheck(), {r["id"]: r for r in rows}
    ids = list(by_id)
    run_sharded(
        ids,
        shard_size,
        run / "audio_shards",
        lambda k, shard: synthesize_rows([by_id[i] for i in shard], args, synth, k, check),
        manifest={"model": synth.name, "backend": "derived", **generation_params(args)},
        desc="source clips",
    )
    total = combine_summaries(run / "audio_shards", ids, shard_size, {}, 1)
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "clips_ok": total["ok"],
        "clips_rejected": total["rejected"],
        "base_clips": base_clips,
        "base_clips_with_an_inaudible_stem": quiet,
        "audio_shards_mb": round(folder_bytes(run / "audio_shards") / 2**20, 1),
    }


def measure(run: Path, name: str, module: str, argv: list[str]) -> dict:
    """Run one stage in a child process; sample the run directory's size while it runs."""
    env = {
        **os.environ,
        "CONCEPTCAPS_RUN_DIR": str(run),
        "HF_DATASETS_CACHE": str(run / "hf_cache"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    before = folder_bytes(run)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], folder_bytes(run))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with open(run / f"{name}.log", "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_scale", "--child", module, *argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], folder_bytes(run))
    if proc.returncode != 0:
        raise RuntimeError(f"stage {name} failed; see {run / (name + '.log')}")
    rss = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(rss, 1),
        "peak_disk_mb": round((peak[0] - before) / 2**20, 1),
    }


def child(module: str, argv: list[str]) -> None:
    import importlib

    importlib.import_module(module).main(argv)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


PROBED = ["piano", "electric guitar", "strings", "rock", "jazz", "fast tempo", "slow tempo", "energetic"]


def rehearse(
    n: int, seconds: float, run: Path, base_clips: int, shard_size: int, only: list[str] | None = None
) -> dict:
    from fixtures.tiny_models import build_tiny_ast
    from probing.musicnn import weights_path

    shutil.rmtree(run, ignore_errors=True)
    source = build_source(run, n, seconds, base_clips, shard_size)
    build_tiny_ast(run / "models" / "tiny-ast")
    dataset = run / "dataset"
    stages = {
        "score": (
            "evaluation.score",
            [
                "--audio_dir",
                str(run / "audio_shards"),
                "--output_dir",
                str(run / "clap_scores"),
                "--model",
                str(run / "models" / "tiny-clap"),
            ],
        ),
        "assemble": ("builder.assemble", ["--run_dir", str(run), "--output_dir", str(dataset)]),
        "card": ("card.render", ["--dataset", str(dataset)]),
        "genre_classifier": (
            "probing.genre_classifier",
            ["--dataset", str(dataset), "--output_dir", str(run / "genre_cnn"), "--epochs", "3"],
        ),
        "tcav": (
            "probing.tcav",
            [
                "--dataset",
                str(dataset),
                "--model",
                str(run / "genre_cnn"),
                "--max_concepts",
                "2",
                "--output",
                str(run / "tcav_report.json"),
            ],
        ),
        "probe": (
            "probing.probe",
            [
                f"--dataset={dataset}",
                f"--model={run / 'models' / 'tiny-ast'}",
                *"--concepts".split(),
                *PROBED,
                *"--bootstrap 200".split(),
                f"--output={run / 'probe_report.json'}",
            ],
        ),
        # MTT_musicnn on the first 10 s of every clip of a concept set with a counterpart (when converted here)
        "audit": (
            "probing.audit",
            [
                "--dataset",
                str(dataset),
                "--models",
                "MTT_musicnn",
                "--seconds",
                "10",
                "--output",
                str(run / "tagger_audit.json"),
            ],
        ),
    }
    if not weights_path("MTT_musicnn").is_file():
        del stages["audit"]
    stages = {k: v for k, v in stages.items() if not only or k in only or k in ("score", "assemble", "card")}
    results = {name: measure(run, name, module, argv) for name, (module, argv) in stages.items()}
    dataset_mb = folder_bytes(dataset) / 2**20
    summary = json.loads((dataset / "build_summary.json").read_text())
    return {
        "clips": n,
        "seconds_per_clip": seconds,
        "source": source,
        "examples": summary["examples"],
        "dataset_mb": round(dataset_mb, 1),
        "stages": results,
        "assemble_disk_over_dataset": round(results["assemble"]["peak_disk_mb"] / dataset_mb, 3),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in results.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, nargs="+", default=[2000])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--base_clips", type=int, default=48, help="rendered lists the clips derive from")
    parser.add_argument("--shard_size", type=int, default=64)
    parser.add_argument("--run_dir", default=str(REPO / "runs" / "bench_scale"))
    parser.add_argument("--keep", action="store_true", help="keep each size's run directory")
    parser.add_argument(
        "--stages",
        nargs="*",
        default=None,
        help="stages to measure after score, assemble and card (default: all: genre_classifier tcav probe audit)",
    )
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])
    runs = []
    for n in args.clips:
        run = Path(args.run_dir) / f"n{n}"
        runs.append(rehearse(n, args.seconds, run, args.base_clips, args.shard_size, args.stages))
        logger.info("%d clips: %s", n, json.dumps(runs[-1]))  # each size as it finishes
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    out = {"sizes": runs}
    if len(runs) > 1:
        first, last = runs[0], runs[-1]
        out["rss_ratio_last_to_first"] = {
            s: round(last["stages"][s]["peak_rss_mb"] / first["stages"][s]["peak_rss_mb"], 3) for s in first["stages"]
        }
        out["time_per_clip_ratio_last_to_first"] = {
            s: round(
                (last["stages"][s]["seconds"] / last["clips"]) / (first["stages"][s]["seconds"] / first["clips"]), 3
            )
            for s in first["stages"]
        }
        out["max_rss_ratio_last_to_first"] = max(out["rss_ratio_last_to_first"].values())
    out["max_peak_rss_mb"] = max(r["max_peak_rss_mb"] for r in runs)
    out["max_assemble_disk_over_dataset"] = max(r["assemble_disk_over_dataset"] for r in runs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
