"""Run every ConceptCaps stage in order from a preset, into one run directory.

    python -m pipeline --config configs/tiny.yaml                          # the CPU demo
    CONCEPTCAPS_RUN_DIR=runs/paper python -m pipeline --config configs/paper.yaml \\
        --launch "accelerate launch --config_file configs/accelerate/multi_gpu.yaml"
    python -m pipeline --config configs/tiny.yaml --force distill          # redo a stage and what follows it
    python -m pipeline --config configs/tiny.yaml --only synthesize score  # run some stages

A stage whose outputs exist and whose inputs and arguments are unchanged is skipped. A stage that did not
finish (a crash, a kill) runs again on rerun and resumes inside itself where it writes shards; a stage whose
inputs or arguments changed (or that is forced) has its outputs removed first. With `--launch`, the stages
that can use several processes (VAE, captioner, captioning, synthesis, scoring) run under that launcher;
the others run in this process. Every stage can still be run on its own (`python -m <module> --help`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import yaml

from core.config import REPO_ROOT, cli, get_logger, load_preset, run_dir
from core.io import write_json

logger = get_logger("pipeline")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # its entry point: `python -m <module>`, whose main(argv) this calls
    inputs: tuple[str, ...]  # files in the run directory (or "repo:" files) whose bytes it depends on
    outputs: tuple[str, ...]  # what it writes there; all must exist for it to count as done
    args: Callable[[Path], list[str]]  # argv pointing it at the run directory
    clean: tuple[str, ...] = ()  # removed before a rerun caused by changed inputs, arguments or --force
    optional: bool = False  # runs only when the preset has a section for it
    distributed: bool = False  # may run under --launch
    report: Callable[[Path], tuple] = lambda d: ("", "", {})  # (items in, items out, rejects by reason)


def _r_distill(d):
    s = _read(d / "distill_summary.json")
    return s.get("musiccaps_rows", ""), s.get("distilled_rows", ""), s.get("skipped", {})


def _r_sample(d):
    s = _read(d / "tags_summary.json")
    return s.get("considered", ""), s.get("lists", ""), s.get("rejected", {})


def _r_caption(d):
    s = _read(d / "captions_summary.json")
    return s.get("captions", ""), s.get("ok", ""), s.get("rejected_by_reason", {})


def _r_synth(d):
    s = _read(d / "audio_shards" / "_summary.json")
    return s.get("clips", ""), s.get("ok", ""), {**s.get("rejected_by_reason", {}), **s.get("captions_skipped", {})}


def _r_assemble(d):
    s = _read(d / "dataset" / "build_summary.json")
    return s.get("examples", ""), s.get("per_split", ""), s.get("rejected", {})


STAGES = [
    Stage("taxonomy", "builder.taxonomy", ("repo:builder/data/concepts.tsv", "repo:builder/data/spelling.tsv"),
          ("taxonomy.json",), lambda d: ["--output", str(d / "taxonomy.json")],
          report=lambda d: ("", len(_read(d / "taxonomy.json").get("concepts", [])), {})),
    Stage("distill", "builder.distill", ("taxonomy.json",), ("distilled.parquet", "musiccaps_tagged.parquet"),
          lambda d: ["--taxonomy", str(d / "taxonomy.json"), "--output_dir", str(d)], report=_r_distill),
    Stage("vae", "training.train_vae", ("musiccaps_tagged.parquet", "taxonomy.json"), ("vae/model.safetensors",),
          lambda d: ["--tagged", str(d / "musiccaps_tagged.parquet"), "--output_dir", str(d / "vae")],
          clean=("vae",), distributed=True,
          report=lambda d: ("", f"best epoch {_read(d / 'vae' / 'config.json').get('best_epoch', '?')}", {})),
    Stage("sample", "generation.sample_tags", ("vae/model.safetensors", "musiccaps_tagged.parquet"), ("tags.parquet",),
          lambda d: ["--vae", str(d / "vae"), "--reference", str(d / "musiccaps_tagged.parquet"),
                     "--output", str(d / "tags.parquet")], report=_r_sample),
    Stage("vae_report", "evaluation.vae_report", ("vae/model.safetensors", "tags.parquet"), ("vae_report.json",),
          lambda d: ["--vae", str(d / "vae"), "--tagged", str(d / "musiccaps_tagged.parquet"),
                     "--tags", str(d / "tags.parquet"), "--output", str(d / "vae_report.json")]),
    Stage("tiny_models", "fixtures.tiny_models", (), ("models/tiny-llama", "models/tiny-musicgen", "models/tiny-clap"),
          lambda d: ["--output_dir", str(d / "models")], clean=("models",), optional=True),
    Stage("captioner", "training.train_captioner", ("distilled.parquet",), ("captioner/captioner.json",),
          lambda d: ["--distilled", str(d / "distilled.parquet"), "--output_dir", str(d / "captioner")],
          clean=("captioner",), distributed=True,
          report=lambda d: ("", "val loss {eval_loss_before:.3f}->{eval_loss_after:.3f}".format(
              **_read(d / "captioner" / "captioner.json")) if (d / "captioner" / "captioner.json").is_file() else "", {})),
    Stage("caption", "generation.caption", ("tags.parquet", "captioner/captioner.json"), ("captions.parquet",),
          lambda d: ["--tags", str(d / "tags.parquet"), "--taxonomy", str(d / "taxonomy.json"),
                     "--captioner", str(d / "captioner"), "--output", str(d / "captions.parquet")],
          clean=("captions_shards", "captions.parquet"), distributed=True, report=_r_caption),
    Stage("caption_metrics", "evaluation.caption_metrics", ("distilled.parquet", "captioner/captioner.json"),
          ("caption_metrics.json",),
          lambda d: ["--distilled", str(d / "distilled.parquet"), "--captioner", str(d / "captioner"),
                     "--report", str(d / "caption_metrics.json")]),
    Stage("synthesize", "generation.synthesize", ("captions.parquet",), ("audio_shards/_summary.json",),
          lambda d: ["--captions", str(d / "captions.parquet"), "--output_dir", str(d / "audio_shards")],
          clean=("audio_shards",), distributed=True, report=_r_synth),
    Stage("score", "evaluation.score", ("audio_shards/_manifest.json", "audio_shards/_summary.json"),
          ("clap_scores/_summary.json",),
          lambda d: ["--audio_dir", str(d / "audio_shards"), "--output_dir", str(d / "clap_scores")],
          clean=("clap_scores",), distributed=True,
          report=lambda d: ("", _read(d / "clap_scores" / "_summary.json").get("clips", ""), {})),
    Stage("assemble", "builder.assemble", ("clap_scores/_summary.json", "captions.parquet", "taxonomy.json"),
          ("dataset/build_summary.json",), lambda d: ["--run_dir", str(d), "--output_dir", str(d / "dataset")],
          report=_r_assemble),
    Stage("fad", "evaluation.fad", ("dataset/build_summary.json",), ("fad_report.json",),
          lambda d: ["--dataset", str(d / "dataset"), "--clap_dir", str(d / "clap_scores"),
                     "--output", str(d / "fad_report.json")], optional=True),
    Stage("card", "card.render", ("dataset/build_summary.json", "fad_report.json"), ("dataset/README.md",),
          lambda d: ["--dataset", str(d / "dataset"),
                     *(["--fad_report", str(d / "fad_report.json")] if (d / "fad_report.json").is_file() else [])]),
    Stage("genre_classifier", "evaluation.genre_classifier", ("dataset/build_summary.json",), ("genre_cnn/config.json",),
          lambda d: ["--dataset", str(d / "dataset"), "--output_dir", str(d / "genre_cnn")]),
    Stage("tcav", "evaluation.tcav", ("dataset/build_summary.json", "genre_cnn/model.safetensors"), ("tcav_report.json",),
          lambda d: ["--dataset", str(d / "dataset"), "--classifier", str(d / "genre_cnn"),
                     "--output", str(d / "tcav_report.json")],
          report=lambda d: ("", len(_read(d / "tcav_report.json").get("results", [])), {})),
]
STAGE_NAMES = [s.name for s in STAGES]


def _fingerprint(stage: Stage, preset: Path, out: Path) -> str:
    """What a stage's outputs depend on: its preset keys and the bytes of its inputs."""
    h = hashlib.sha256(json.dumps(load_preset(preset, stage.name), sort_keys=True, default=str).encode())
    for name in stage.inputs:
        path = REPO_ROOT / name[len("repo:"):] if name.startswith("repo:") else out / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


def _run_stage(stage: Stage, argv: list[str], launch: str | None) -> None:
    if launch and stage.distributed:
        cmd = [*shlex.split(launch), "-m", stage.module, *argv]
        logger.info("stage %s: %s", stage.name, " ".join(cmd))
        subprocess.run(cmd, check=True)
    else:
        importlib.import_module(stage.module).main(argv)


def run_pipeline(preset: str | Path, out: Path, force: Sequence[str] = (), only: Sequence[str] = (),
                 launch: str | None = None) -> dict:
    """Run (or skip) each stage in order; returns {stage: {status, seconds, in, out, rejects}}."""
    preset = Path(preset)
    unknown = [n for n in (*force, *only) if n not in STAGE_NAMES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; stages are {STAGE_NAMES}")
    sections = set(yaml.safe_load(preset.read_text()) or {})
    state_dir = out / ".stages"
    summary, invalidated = {}, False
    for stage in STAGES:
        if (only and stage.name not in only) or (stage.optional and stage.name not in sections):
            continue
        fingerprint = _fingerprint(stage, preset, out)
        state_path = state_dir / f"{stage.name}.json"
        state = _read(state_path)
        outputs_exist = all((out / o).exists() for o in stage.outputs)
        changed = bool(state) and state.get("fingerprint") != fingerprint
        invalidated = invalidated or stage.name in force  # a forced stage invalidates the stages after it
        if state and not changed and not invalidated and outputs_exist:
            status, seconds = "skipped", state.get("seconds", 0.0)
        else:
            if changed or invalidated:  # start over; an unfinished stage (no state) resumes instead
                for name in stage.clean:
                    shutil.rmtree(out / name, ignore_errors=True) if (out / name).is_dir() else (out / name).unlink(missing_ok=True)
            state_path.unlink(missing_ok=True)
            logger.info("stage %s: running", stage.name)
            start = time.perf_counter()
            _run_stage(stage, ["--config", str(preset), *stage.args(out)], launch)
            seconds = round(time.perf_counter() - start, 2)
            write_json(state_path, {"fingerprint": fingerprint, "seconds": seconds})
            status = "ran"
            invalidated = invalidated or changed
        items_in, items_out, rejects = stage.report(out)
        summary[stage.name] = {"status": status, "seconds": seconds, "in": items_in, "out": items_out, "rejects": rejects}
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{'stage':<17} {'status':<8} {'seconds':>8} {'in':>8} {'out':>24}  rejects"]
    for name, row in summary.items():
        rejects = ", ".join(f"{k}: {v}" for k, v in row["rejects"].items()) or "-"
        out = row["out"] if not isinstance(row["out"], dict) else "/".join(str(v) for v in row["out"].values())
        lines.append(f"{name:<17} {row['status']:<8} {row['seconds']:>8.1f} {str(row['in']):>8} {str(out):>24}  {rejects}")
    total = sum(r["seconds"] for r in summary.values())
    lines.append(f"{'total':<17} {'':<8} {total:>8.1f}")
    return "\n".join(lines)


def show_dataset(folder: Path) -> None:
    """Open the assembled dataset with `load_dataset`, as a user would; print a few rows, one concept's sets and
    the TCAV table."""
    from conceptcaps import open_dataset

    ds = open_dataset(str(folder))
    lines = [f"load_dataset({str(folder)!r}): " + ", ".join(f"{s} {len(ds[s])}" for s in ds)]
    for row in ds["train"].select(range(min(3, len(ds["train"])))):
        lines.append(f"  {row['id']}  [{', '.join(row['tags'])}]  clap {row['clap_score']:.3f}\n    {row['caption']}")
    sets = open_dataset(str(folder), "concepts", split="train")
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


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="preset YAML (configs/tiny.yaml, configs/paper.yaml)")
    parser.add_argument("--run_dir", default=None, help="run directory (default: $CONCEPTCAPS_RUN_DIR or runs/demo)")
    parser.add_argument("--force", nargs="*", default=[], help="stages to redo (and every stage after them)")
    parser.add_argument("--only", nargs="*", default=[], help="run only these stages")
    parser.add_argument("--launch", default=None, help="launcher for multi-process stages, e.g. 'accelerate launch ...'")
    parser.add_argument("--no_show", action="store_true", help="do not open the dataset at the end")
    args = parser.parse_args(argv)
    if args.run_dir:
        import os

        os.environ["CONCEPTCAPS_RUN_DIR"] = args.run_dir  # presets' ${run_dir} and every stage use it
    out = run_dir(args.run_dir)
    summary = run_pipeline(args.config, out, args.force, args.only, args.launch)
    write_json(out / "pipeline_summary.json", summary)
    logger.info("run directory %s\n%s", out, format_summary(summary))
    if not args.no_show and (out / "dataset" / "README.md").is_file():
        show_dataset(out / "dataset")
    return summary


if __name__ == "__main__":
    cli(main)
