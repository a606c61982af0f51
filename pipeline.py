"""Run every ConceptCaps stage in order from a preset, into one run directory.

    python -m pipeline --config configs/tiny.yaml                          # the CPU demo
    CONCEPTCAPS_RUN_DIR=runs/paper python -m pipeline --config configs/paper.yaml \\
        --launch "accelerate launch --config_file configs/accelerate/multi_gpu.yaml"
    python -m pipeline --config configs/tiny.yaml --force distill          # redo a stage and what follows it
    python -m pipeline --config configs/tiny.yaml --only synthesize score  # run some stages

A stage is done when its record (`.stages/<stage>.json`, written last and atomically: its fingerprint and the
name, size and sha256 of every file it wrote) matches its inputs, arguments and files. A done stage is skipped;
one whose files no longer match their record (deleted, truncated, changed) runs again and resumes, saying why;
one that did not finish (a crash, a kill) runs again and resumes inside itself where it writes shards; one whose
inputs or arguments changed (or that is forced) has its outputs removed first. Fingerprints hold preset values
as written (`${run_dir}` unexpanded) and inputs by content, so a run directory copied or moved elsewhere
resumes with every finished stage skipped. One pipeline (or stage) at a time holds a run directory's lock. With
`--launch`, the stages
that can use several processes (VAE, captioner, captioning, synthesis, scoring) run under that launcher;
the others run in this process. Every stage can still be run on its own (`python -m <module> --help`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from core.cli import cli
from core.config import REPO_ROOT, RUN_DIR_ENV, field_names, load_preset, read_preset, run_dir, unknown_key_error
from core.errors import ConceptCapsError, ConfigError
from core.io import file_record, read_json, record_mismatch, write_json
from core.lock import run_lock
from core.log import get_logger

logger = get_logger("pipeline")


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # its entry point: `python -m <module>`, whose main(argv) this calls
    inputs: tuple[str, ...]  # files in the run directory ("repo:" files, "cache:" files) whose bytes it depends on
    outputs: tuple[str, ...]  # the files and folders it writes there; its record lists every file in them
    args: Callable[[Path], list[str]]  # argv pointing it at the run directory
    clean: tuple[str, ...] = ()  # removed before a rerun caused by changed inputs, arguments or --force
    optional: bool = False  # runs only when the preset has a section for it
    distributed: bool = False  # may run under --launch
    report: Callable[[Path], tuple] = lambda d: ("", "", {})  # (items in, items out, rejects by reason)


def _r_distill(d):
    s = read_json(d / "distill_summary.json")
    return s.get("musiccaps_rows", ""), s.get("distilled_rows", ""), s.get("skipped", {})


def _r_sample(d):
    s = read_json(d / "tags_summary.json")
    return s.get("considered", ""), s.get("lists", ""), s.get("rejected", {})


def _r_caption(d):
    s = read_json(d / "captions_summary.json")
    return s.get("captions", ""), s.get("ok", ""), s.get("rejected_by_reason", {})


def _r_synth(d):
    s = read_json(d / "audio_shards" / "_summary.json")
    return s.get("clips", ""), s.get("ok", ""), {**s.get("rejected_by_reason", {}), **s.get("captions_skipped", {})}


def _r_assemble(d):
    s = read_json(d / "dataset" / "build_summary.json")
    return s.get("examples", ""), s.get("per_split", ""), s.get("rejected", {})


AUDIT_MODELS = ("MTT_musicnn", "MSD_musicnn")  # the audit's default taggers, whose converted weights it depends on

STAGES = [
    Stage(
        "taxonomy",
        "builder.taxonomy",
        ("repo:builder/data/concepts.tsv", "repo:builder/data/spelling.tsv"),
        ("taxonomy.json",),
        lambda d: ["--output", str(d / "taxonomy.json")],
        report=lambda d: ("", len(read_json(d / "taxonomy.json").get("concepts", [])), {}),
    ),
    Stage(
        "distill",
        "builder.distill",
        ("taxonomy.json",),
        ("distilled.parquet", "musiccaps_tagged.parquet", "distill_summary.json"),
        lambda d: ["--taxonomy", str(d / "taxonomy.json"), "--output_dir", str(d)],
        report=_r_distill,
    ),
    Stage(
        "vae",
        "training.train_vae",
        ("musiccaps_tagged.parquet", "taxonomy.json"),
        ("vae",),
        lambda d: ["--tagged", str(d / "musiccaps_tagged.parquet"), "--output_dir", str(d / "vae")],
        clean=("vae",),
        distributed=True,
        report=lambda d: ("", f"best epoch {read_json(d / 'vae' / 'config.json').get('best_epoch', '?')}", {}),
    ),
    Stage(
        "sample",
        "generation.sample_tags",
        ("vae/model.safetensors", "musiccaps_tagged.parquet"),
        ("tags.parquet", "tags_summary.json"),
        lambda d: [
            "--vae",
            str(d / "vae"),
            "--reference",
            str(d / "musiccaps_tagged.parquet"),
            "--output",
            str(d / "tags.parquet"),
        ],
        report=_r_sample,
    ),
    Stage(
        "vae_report",
        "evaluation.vae_report",
        ("vae/model.safetensors", "tags.parquet"),
        ("vae_report.json",),
        lambda d: [
            "--vae",
            str(d / "vae"),
            "--tagged",
            str(d / "musiccaps_tagged.parquet"),
            "--tags",
            str(d / "tags.parquet"),
            "--output",
            str(d / "vae_report.json"),
        ],
    ),
    Stage(
        "tiny_models",
        "fixtures.tiny_models",
        (),
        ("models",),
        lambda d: ["--output_dir", str(d / "models")],
        clean=("models",),
        optional=True,
    ),
    Stage(
        "captioner",
        "training.train_captioner",
        ("distilled.parquet",),
        ("captioner",),
        lambda d: ["--distilled", str(d / "distilled.parquet"), "--output_dir", str(d / "captioner")],
        clean=("captioner",),
        distributed=True,
        report=lambda d: (
            "",
            "val loss {eval_loss_before:.3f}->{eval_loss_after:.3f}".format(
                **read_json(d / "captioner" / "captioner.json")
            )
            if (d / "captioner" / "captioner.json").is_file()
            else "",
            {},
        ),
    ),
    Stage(
        "caption",
        "generation.caption",
        ("tags.parquet", "captioner/captioner.json"),
        ("captions.parquet", "captions_summary.json", "captions_shards"),
        lambda d: [
            "--tags",
            str(d / "tags.parquet"),
            "--taxonomy",
            str(d / "taxonomy.json"),
            "--captioner",
            str(d / "captioner"),
            "--output",
            str(d / "captions.parquet"),
        ],
        clean=("captions_shards", "captions.parquet"),
        distributed=True,
        report=_r_caption,
    ),
    Stage(
        "caption_metrics",
        "evaluation.caption_metrics",
        ("distilled.parquet", "captioner/captioner.json"),
        ("caption_metrics.json",),
        lambda d: [
            "--distilled",
            str(d / "distilled.parquet"),
            "--captioner",
            str(d / "captioner"),
            "--report",
            str(d / "caption_metrics.json"),
        ],
    ),
    Stage(
        "synthesize",
        "generation.synthesize",
        ("captions.parquet",),
        ("audio_shards",),
        lambda d: ["--captions", str(d / "captions.parquet"), "--output_dir", str(d / "audio_shards")],
        clean=("audio_shards",),
        distributed=True,
        report=_r_synth,
    ),
    Stage(
        "score",
        "evaluation.score",
        ("audio_shards/_manifest.json", "audio_shards/_summary.json"),
        ("clap_scores",),
        lambda d: ["--audio_dir", str(d / "audio_shards"), "--output_dir", str(d / "clap_scores")],
        clean=("clap_scores",),
        distributed=True,
        report=lambda d: ("", read_json(d / "clap_scores" / "_summary.json").get("clips", ""), {}),
    ),
    Stage(
        "assemble",
        "builder.assemble",
        (
            "clap_scores/_summary.json",
            "captions.parquet",
            "taxonomy.json",
            "reviews.jsonl",
        ),  # listeners' verdicts (python -m review): new ones reassemble
        ("dataset",),
        lambda d: ["--run_dir", str(d), "--output_dir", str(d / "dataset")],
        report=_r_assemble,
    ),
    Stage(
        "fad",
        "evaluation.fad",
        ("dataset/build_summary.json",),
        ("fad_report.json",),
        lambda d: [
            "--dataset",
            str(d / "dataset"),
            "--clap_dir",
            str(d / "clap_scores"),
            "--output",
            str(d / "fad_report.json"),
        ],
        optional=True,
    ),
    Stage(
        "audit",
        "probing.audit",
        ("dataset/build_summary.json", *(f"cache:musicnn/{m}.json" for m in AUDIT_MODELS)),
        ("tagger_audit.json", "tagger_audit.png", "dataset/evidence"),
        lambda d: ["--dataset", str(d / "dataset"), "--output", str(d / "tagger_audit.json")],
        report=lambda d: (
            "",
            len(read_json(d / "tagger_audit.json").get("models", {})),
            {f"skipped: {m}": "not converted" for m in read_json(d / "tagger_audit.json").get("skipped_models", {})},
        ),
    ),
    Stage(
        "card",
        "card.render",
        ("dataset/build_summary.json", "fad_report.json", "tagger_audit.json"),
        ("dataset/README.md", "dataset/images", "dataset/checksums.json"),
        lambda d: [
            "--dataset",
            str(d / "dataset"),
            *(["--fad_report", str(d / "fad_report.json")] if (d / "fad_report.json").is_file() else []),
            *(["--tagger_audit", str(d / "tagger_audit.json")] if (d / "tagger_audit.json").is_file() else []),
        ],
    ),
    Stage(
        "genre_classifier",
        "probing.genre_classifier",
        ("dataset/build_summary.json",),
        ("genre_cnn",),
        lambda d: ["--dataset", str(d / "dataset"), "--output_dir", str(d / "genre_cnn")],
    ),
    Stage(
        "tcav",
        "probing.tcav",
        ("dataset/build_summary.json", "genre_cnn/model.safetensors"),
        ("tcav_report.json", "tcav_report.png"),
        lambda d: [
            "--dataset",
            str(d / "dataset"),
            "--model",
            str(d / "genre_cnn"),
            "--output",
            str(d / "tcav_report.json"),
        ],
        report=lambda d: ("", len(read_json(d / "tcav_report.json").get("results", [])), {}),
    ),
]
STAGE_NAMES = [s.name for s in STAGES]


def _fingerprint(stage: Stage, preset: Path, out: Path) -> str:
    """What a stage's outputs depend on: its preset keys as written and the bytes of its inputs."""
    h = hashlib.sha256(json.dumps(load_preset(preset, stage.name, expand=False), sort_keys=True, default=str).encode())
    for name in stage.inputs:
        if name.startswith("cache:"):  # a file of the user's cache (converted weights): its record, not its bytes
            from probing.musicnn import cache_dir

            path = cache_dir() / name[len("cache:") :]
        else:
            path = REPO_ROOT / name[len("repo:") :] if name.startswith("repo:") else out / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


HASH_LIMIT = 16 << 20  # files up to this size are hashed in a stage's record and checked by hash; larger ones by size


def stage_arguments(stage: Stage) -> set[str]:
    return field_names(importlib.import_module(stage.module).ARGUMENTS)


def validate_preset(preset: Path) -> dict:
    """Every section must be a stage, every key of a section one of that stage's arguments, and every top-level
    key an argument of some stage; the first fault is an error naming the preset, the section and the key."""
    raw = read_preset(preset)
    known = {stage.name: stage_arguments(stage) for stage in STAGES}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in known:
                raise unknown_key_error(preset, None, key, set(known))
            for sub in value:
                if sub not in known[key]:
                    raise unknown_key_error(preset, key, sub, known[key])
        elif not any(key in names for names in known.values()):
            raise unknown_key_error(preset, None, key, set().union(*known.values()) | set(known))
    return raw


def _run_stage(stage: Stage, argv: list[str], launch: str | None) -> None:
    if launch and stage.distributed:
        cmd = [*shlex.split(launch), "-m", stage.module, *argv]
        logger.info("stage %s: %s", stage.name, " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            raise ConceptCapsError(
                f"stage {stage.name} failed under the launcher (its error is above); rerun to resume"
            )
    else:
        try:
            importlib.import_module(stage.module).main(argv)
        finally:
            release_accelerator_memory()


def release_accelerator_memory() -> None:
    """After a stage run in this process: drop what it left unreferenced and hand its GPU memory back, so that the
    next stage (or another process on the same GPU) does not find it taken."""
    import gc

    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def run_pipeline(
    preset: str | Path, out: Path, force: Sequence[str] = (), only: Sequence[str] = (), launch: str | None = None
) -> dict:
    """Run (or skip) each stage in order; returns {stage: {status, seconds, in, out, rejects}}."""
    preset = Path(preset)
    unknown = [n for n in (*force, *only) if n not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {STAGE_NAMES}")
    sections = set(validate_preset(preset))
    state_dir = out / ".stages"
    summary, invalidated = {}, False
    for stage in STAGES:
        if (only and stage.name not in only) or (stage.optional and stage.name not in sections):
            continue
        fingerprint = _fingerprint(stage, preset, out)
        state_path = state_dir / f"{stage.name}.json"
        state = read_json(state_path)
        changed = bool(state) and state.get("fingerprint") != fingerprint
        invalidated = invalidated or stage.name in force  # a forced stage invalidates the stages after it
        damaged = record_mismatch(out, state.get("outputs", {})) if state and not changed and not invalidated else None
        if state and not changed and not invalidated and not damaged:
            status, seconds = "skipped", state.get("seconds", 0.0)
        else:
            if changed or invalidated:  # start over; an unfinished or damaged stage resumes instead
                for name in stage.clean:
                    _remove(out / name)
            elif damaged:
                logger.warning(
                    "stage %s: its outputs no longer match its record (%s); running it again", stage.name, damaged
                )
            state_path.unlink(missing_ok=True)
            logger.info("stage %s: running", stage.name)
            start = time.perf_counter()
            _run_stage(stage, ["--config", str(preset), *stage.args(out)], launch)
            seconds = round(time.perf_counter() - start, 2)
            write_json(
                state_path,
                {
                    "fingerprint": fingerprint,
                    "seconds": seconds,
                    "outputs": file_record(out, stage.outputs, HASH_LIMIT),
                },
            )
            status = "ran" if not damaged else "repaired"
            invalidated = invalidated or changed
        items_in, items_out, rejects = stage.report(out)
        summary[stage.name] = {
            "status": status,
            "seconds": seconds,
            "in": items_in,
            "out": items_out,
            "rejects": rejects,
        }
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{'stage':<17} {'status':<8} {'seconds':>8} {'in':>8} {'out':>24}  rejects"]
    for name, row in summary.items():
        rejects = ", ".join(f"{k}: {v}" for k, v in row["rejects"].items()) or "-"
        out = row["out"] if not isinstance(row["out"], dict) else "/".join(str(v) for v in row["out"].values())
        lines.append(
            f"{name:<17} {row['status']:<8} {row['seconds']:>8.1f} {str(row['in']):>8} {str(out):>24}  {rejects}"
        )
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
        lines.append(
            f"concept {concept!r} (train): {counts['positive']} positives, {counts['negative']} negatives, "
            f"{len(set(chosen['set_index']))} random sets"
        )
    report = folder.parent / "tcav_report.json"
    if report.is_file():
        from probing.tcav import format_table

        lines.append("TCAV (a small CNN trained briefly on a tiny dataset: this checks the machinery):")
        lines.append(format_table(json.loads(report.read_text())))
    logger.info("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="preset YAML (configs/tiny.yaml, configs/paper.yaml)")
    parser.add_argument("--run_dir", default=None, help="run directory (default: $CONCEPTCAPS_RUN_DIR or runs/demo)")
    parser.add_argument("--force", nargs="*", default=[], help="stages to redo (and every stage after them)")
    parser.add_argument("--only", nargs="*", default=[], help="run only these stages")
    parser.add_argument(
        "--launch", default=None, help="launcher for multi-process stages, e.g. 'accelerate launch ...'"
    )
    parser.add_argument("--no_show", action="store_true", help="do not open the dataset at the end")
    args = parser.parse_args(argv)
    if args.run_dir:
        os.environ[RUN_DIR_ENV] = args.run_dir  # presets' ${run_dir} and every stage use it
    out = run_dir(args.run_dir)
    with run_lock(out, "python -m pipeline"):
        summary = run_pipeline(args.config, out, args.force, args.only, args.launch)
    write_json(out / "pipeline_summary.json", summary)
    logger.info("run directory %s\n%s", out, format_summary(summary))
    if not args.no_show and (out / "dataset" / "README.md").is_file():
        show_dataset(out / "dataset")
    return summary


if __name__ == "__main__":
    cli(main, lock=False)  # main holds the lock of the run directory it is given (--run_dir), not the default's
