"""Run every ConceptCaps stage in order from a preset, into one run directory.

    python -m pipeline --config configs/tiny.yaml                      # the CPU demo
    CONCEPTCAPS_RUN_DIR=runs/paper python -m pipeline --config configs/paper.yaml
    python -m pipeline --config configs/tiny.yaml --force distill      # redo one stage (and what follows)

A stage whose outputs exist and whose inputs and arguments are unchanged is skipped, so a rerun after a
crash resumes at the stage that did not finish (and stages that write shards resume inside themselves).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import yaml

from builder.common import get_logger, load_preset, run_dir, write_json

logger = get_logger("pipeline")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[list[str]], object]  # the stage's CLI entry point, called with argv
    inputs: tuple[str, ...]  # files in the run directory the stage reads
    outputs: tuple[str, ...]  # files or folders it writes there
    args: Callable[[Path], list[str]]  # argv that points the stage at the run directory
    optional: bool = False  # runs only when the preset has a section for it (e.g. tiny_models)


def _stages() -> list[Stage]:
    from builder import assemble, distill, taxonomy
    from evaluation import caption_metrics, clap, genre_classifier, tcav, vae_report
    from generation import caption, sample_tags, synthesize
    from training import tiny_models, train_captioner, train_vae

    return [
        Stage("taxonomy", taxonomy.main, (), ("taxonomy.json",), lambda d: ["--output", str(d / "taxonomy.json")]),
        Stage("distill", distill.main, ("taxonomy.json",), ("distilled.parquet", "musiccaps_tagged.parquet"),
              lambda d: ["--output_dir", str(d)]),
        Stage("vae", train_vae.main, ("musiccaps_tagged.parquet", "taxonomy.json"), ("vae/model.safetensors",),
              lambda d: ["--tagged", str(d / "musiccaps_tagged.parquet"), "--output_dir", str(d / "vae")]),
        Stage("sample", sample_tags.main, ("vae/model.safetensors", "musiccaps_tagged.parquet"), ("tags.parquet",),
              lambda d: ["--vae", str(d / "vae"), "--reference", str(d / "musiccaps_tagged.parquet"),
                         "--output", str(d / "tags.parquet")]),
        Stage("vae_report", vae_report.main, ("vae/model.safetensors", "tags.parquet"), ("vae_report.json",),
              lambda d: ["--vae", str(d / "vae"), "--tagged", str(d / "musiccaps_tagged.parquet"),
                         "--tags", str(d / "tags.parquet"), "--output", str(d / "vae_report.json")]),
        Stage("tiny_models", tiny_models.main, (), ("models",), lambda d: ["--output_dir", str(d / "models")],
              optional=True),
        Stage("captioner", train_captioner.main, ("distilled.parquet",), ("captioner/captioner.json",),
              lambda d: ["--distilled", str(d / "distilled.parquet"), "--output_dir", str(d / "captioner")]),
        Stage("caption", caption.main, ("tags.parquet", "captioner/captioner.json"), ("captions.parquet",),
              lambda d: ["--tags", str(d / "tags.parquet"), "--captioner", str(d / "captioner"),
                         "--output", str(d / "captions.parquet")]),
        Stage("caption_metrics", caption_metrics.main, ("distilled.parquet", "captioner/captioner.json"),
              ("caption_metrics.json",),
              lambda d: ["--distilled", str(d / "distilled.parquet"), "--captioner", str(d / "captioner"),
                         "--report", str(d / "caption_metrics.json")]),
        Stage("synthesize", synthesize.main, ("captions.parquet",), ("audio_shards/_summary.json",),
              lambda d: ["--captions", str(d / "captions.parquet"), "--output_dir", str(d / "audio_shards")]),
        Stage("score", clap.main, ("audio_shards/_manifest.json", "audio_shards/_summary.json"), ("clap_scores/_summary.json",),
              lambda d: ["--audio_dir", str(d / "audio_shards"), "--output_dir", str(d / "clap_scores")]),
        Stage("assemble", assemble.main, ("clap_scores/_summary.json", "captions.parquet", "taxonomy.json"),
              ("dataset/README.md",), lambda d: ["--run_dir", str(d), "--output_dir", str(d / "dataset")]),
        Stage("genre_classifier", genre_classifier.main, ("dataset/build_summary.json",), ("genre_cnn/config.json",),
              lambda d: ["--dataset", str(d / "dataset"), "--output_dir", str(d / "genre_cnn")]),
        Stage("tcav", tcav.main, ("dataset/build_summary.json", "genre_cnn/model.safetensors"), ("tcav_report.json",),
              lambda d: ["--dataset", str(d / "dataset"), "--classifier", str(d / "genre_cnn"),
                         "--output", str(d / "tcav_report.json")]),
    ]


def _fingerprint(stage: Stage, preset: Path, out: Path) -> str:
    """What a stage's outputs depend on: its preset keys and the bytes of its inputs."""
    h = hashlib.sha256(json.dumps(load_preset(preset, stage.name), sort_keys=True, default=str).encode())
    for name in stage.inputs:
        path = out / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


def run_pipeline(preset: str | Path, out: Path, force: Sequence[str] = (), only: Sequence[str] = ()) -> dict:
    """Run (or skip) each stage; returns the summary table as {stage: {status, seconds}}."""
    preset = Path(preset)
    stages = _stages()
    names = [s.name for s in stages]
    unknown = [n for n in (*force, *only) if n not in names]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; stages are {names}")
    state_dir = out / ".stages"
    summary, forced = {}, False
    sections = set(yaml.safe_load(preset.read_text()) or {})
    for stage in stages:
        if (only and stage.name not in only) or (stage.optional and stage.name not in sections):
            continue
        forced = forced or stage.name in force  # a forced stage invalidates the stages after it
        fingerprint = _fingerprint(stage, preset, out)
        state = state_dir / f"{stage.name}.json"
        done = state.is_file() and json.loads(state.read_text()).get("fingerprint") == fingerprint
        if done and not forced and all((out / o).exists() for o in stage.outputs):
            logger.info("stage %s: up to date, skipped", stage.name)
            summary[stage.name] = {"status": "skipped", "seconds": 0.0}
            continue
        logger.info("stage %s: running", stage.name)
        start = time.perf_counter()
        stage.run(["--config", str(preset), *stage.args(out)])
        seconds = time.perf_counter() - start
        write_json(state, {"fingerprint": fingerprint, "seconds": round(seconds, 2)})
        summary[stage.name] = {"status": "ran", "seconds": round(seconds, 2)}
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="preset YAML (configs/tiny.yaml, configs/paper.yaml)")
    parser.add_argument("--run_dir", default=None, help="run directory (default: $CONCEPTCAPS_RUN_DIR or runs/demo)")
    parser.add_argument("--force", nargs="*", default=[], help="stages to redo even if up to date")
    parser.add_argument("--only", nargs="*", default=[], help="run only these stages")
    args = parser.parse_args(argv)
    out = run_dir(args.run_dir)
    summary = run_pipeline(args.config, out, args.force, args.only)
    lines = [f"{'stage':<12} {'status':<8} {'seconds':>8}"] + [
        f"{name:<12} {row['status']:<8} {row['seconds']:>8.1f}" for name, row in summary.items()]
    logger.info("run directory %s\n%s", out, "\n".join(lines))
    if (out / "dataset" / "README.md").is_file():
        show_dataset(out / "dataset")
    return summary


def show_dataset(folder: Path) -> None:
    """Open the assembled dataset with `load_dataset`, as a user would, and print a few rows and one concept's sets."""
    from datasets import load_dataset

    fresh = {"download_mode": "force_redownload"}  # datasets caches a local folder by its name, not its content
    ds = load_dataset(str(folder), **fresh)
    lines = [f"load_dataset({str(folder)!r}): " + ", ".join(f"{s} {len(ds[s])}" for s in ds)]
    for row in ds["train"].select(range(min(3, len(ds["train"])))):
        lines.append(f"  {row['id']}  [{', '.join(row['tags'])}]  clap {row['clap_score']:.3f}\n    {row['caption']}")
    sets = load_dataset(str(folder), "concepts", split="train", **fresh)
    if len(sets):
        roles = sets.features["role"].names
        concept = sets[0]["concept"]
        chosen = sets.filter(lambda r: r["concept"] == concept)
        counts = {role: sum(roles[r] == role for r in chosen["role"]) for role in ("positive", "negative")}
        lines.append(f"concept {concept!r} (train): {counts['positive']} positives, {counts['negative']} negatives, "
                     f"{len(set(chosen['set_index']))} random sets")
    report = folder.parent / "tcav_report.json"
    if report.is_file():
        from evaluation.tcav import format_table

        lines.append("TCAV (tiny random models: this checks the machinery, it carries no musical meaning):")
        lines.append(format_table(json.loads(report.read_text())))
    logger.info("\n".join(lines))


if __name__ == "__main__":
    main()
