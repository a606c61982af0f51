"""Assemble the publishable dataset folder from a run directory's stage outputs.

    python -m builder.assemble --config configs/tiny.yaml
    python -m builder.assemble --output_dir runs/paper/dataset --version 1.0.0

Reads the audio shards, CLAP scores, captions, taxonomy and listeners' verdicts (`reviews.jsonl`, written by the
review app: a clip judged "not audible" for a concept leaves its positive set; `builder.reviews`); validates
them (every accepted id has its caption, attributes, audio and score; no duplicates; counts add up); assigns splits;
builds the concept sets; writes each
config's parquet files named as `push_to_hub` names them (at most `max_shard_mb` each; `builder.schema`), the
audio streamed from the run's shards one shard at a time with no other copy (disk in use: the finished dataset
and the run), then `taxonomy.json`, the concept-set summary and `build_summary.json`. The folder is written
under a temporary name and renamed at the end, so a crash never leaves a complete-looking dataset; the `card`
stage (`card.render`) then writes its README.md (the card, whose YAML tells `load_dataset` where each config is).
"""

from __future__ import annotations

import errno
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from builder.reviews import apply_reviews
from builder.schema import BASE_FEATURES, CONFIG_DIRS, CONFIG_FEATURES, SplitWriter, render_columns
from builder.splits import ConceptSetArguments, assign_example_splits, concept_sets, concepts_with_sets
from builder.taxonomy import Taxonomy
from builder.theory import build_theory_sets, clip_facts, nuisance, theory_counts
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES, SPLITS
from core.errors import DataError
from core.io import read_json, sha256_bytes, write_json
from core.log import get_logger
from core.provenance import package_versions
from core.shards import NOT_RENDERED_NAME, merge_shards, shard_folder_ids, verified_shards

logger = get_logger(__name__)

DATASET_VERSION = "1.0.0"
# what the dataset's build summary keeps of the sampling stage's balancing summary
BALANCE_KEYS = ("per_split", "target_positives", "lists_added", "draws", "unreached", "concepts_below_target",
                "marginal_jsd_before_after", "raw", "time_ratio_to_sampling")  # fmt: skip


@dataclass
class AssembleArguments(ConceptSetArguments):
    """Assemble dataset/ (parquet per config and split, card, taxonomy) from a run directory."""

    run_dir: str | None = arg(None, "run directory (default: $CONCEPTCAPS_RUN_DIR)")
    output_dir: str | None = arg(None, "dataset folder (default: run dir/dataset)")
    version: str = arg(DATASET_VERSION, "dataset version (the Hub tag)")
    split_seed: int = arg(0, "seed of the train/validation/test split")
    max_shard_mb: float = arg(500.0, "largest parquet file")


def load_accepted(run: Path, taxonomy: Taxonomy) -> tuple[list[dict], Counter, list[str]]:
    """Accepted examples joined from audio shards, CLAP scores and captions; rejects counted by reason."""
    audio_dir, score_dir, captions_path = run / "audio_shards", run / "clap_scores", run / "captions.parquet"
    ids, shard_size = shard_folder_ids(audio_dir)
    if len(ids) != len(set(ids)):
        dup = [i for i, n in Counter(ids).items() if n > 1][:5]
        raise DataError(audio_dir, f"duplicate ids across audio shards: {dup}")
    score_rows = merge_shards(ids, shard_size, score_dir).select(["id", "clap_score", "reasons"]).to_pylist()
    scores = {r["id"]: r["clap_score"] for r in score_rows}
    score_rejects = {r["id"]: r["reasons"] for r in score_rows if r["reasons"]}
    if not captions_path.is_file():
        raise DataError(captions_path, "not found")
    captions = {r["id"]: r for r in pq.read_table(captions_path).to_pylist()}
    examples, rejected, shard_files = [], Counter(), []
    meta_columns = [c for c in pq.read_schema(next(audio_dir.glob("shard-*.parquet"))).names if c != "audio"]
    for path in verified_shards(ids, shard_size, audio_dir):
        shard_files.append(str(path.relative_to(run)))
        table = pq.read_table(path, columns=meta_columns)
        audio = pq.read_table(path, columns=["audio"]).column("audio").to_pylist()
        for row, clip in zip(table.to_pylist(), audio):
            if row["status"] != "ok":
                rejected.update(f"audio: {r}" for r in row["reasons"])
                continue
            where = f"id {row['id']!r}"
            if not clip or not clip["bytes"]:
                raise DataError(path, f"{where} is marked ok but has no audio")
            if sha256_bytes(clip["bytes"]) != row["audio_sha256"]:
                raise DataError(
                    path,
                    f"{where}: its audio does not match the checksum it was written with (a corrupt "
                    "clip); it is not copied into the dataset: delete this shard and rerun synthesis",
                )
            if row["id"] not in captions:
                raise DataError(captions_path, f"{where} has audio ({path.name}) but no caption")
            if captions[row["id"]]["caption"] != row["caption"]:
                raise DataError(path, f"{where}: caption differs from captions.parquet")
            if row["id"] in score_rejects:  # a counted skip, like a rejected caption or clip
                rejected.update(f"score: {r}" for r in score_rejects[row["id"]])
                continue
            if scores.get(row["id"]) is None:
                raise DataError(score_dir, f"{where} has audio but no CLAP score; rerun the score stage")
            taxonomy.validate(row["tags"], where=f"{path.name} {where}")
            examples.append(
                {
                    "id": row["id"],
                    "caption": row["caption"],
                    "tags": row["tags"],
                    **{c: row[c] for c in CATEGORIES},
                    "clap_score": scores[row["id"]],
                    "duration_s": row["duration_s"],
                    "caption_model": captions[row["id"]]["model"],
                    "audio_model": row["model"],
                    "audio_model_revision": row["model_revision"],
                    "generation_params": row["generation_params"],
                    "seed": row["seed"],
                    "audio_sha256": row["audio_sha256"],
                    "facts": clip_facts(row.get("ground_truth")),  # a rendered clip's theory facts (builder.theory)
                    "nuisance": nuisance(row, row.get("ground_truth")),
                }
            )
    audio_ids = set(ids)
    not_rendered = read_json(audio_dir / NOT_RENDERED_NAME)  # the symbolic backend's counted skips
    for id_, c in captions.items():
        if c["status"] == "ok" and id_ in not_rendered:
            rejected[f"audio: {not_rendered[id_]}"] += 1
        elif c["status"] == "ok" and id_ not in audio_ids:
            raise DataError(audio_dir, f"id {id_!r} has an accepted caption but no audio; rerun synthesis")
        if c["status"] != "ok":
            rejected.update(f"caption: {r}" for r in c["reasons"])
    return examples, rejected, shard_files


def sampling_report(run: Path, examples: Sequence[dict], taxonomy: Taxonomy) -> dict | None:
    """How the run's attribute lists were sampled (`tags_summary.json`: the backend's excluded concepts with their
    reasons, the marginals' JSD, the balancing) and, per concept, its positives in each split of the accepted
    examples and how many of them were lists drawn to balance it (`tags.parquet`'s `balanced_for`)."""
    sampled = read_json(run / "tags_summary.json")
    if not sampled:
        return None
    tags_path = run / "tags.parquet"
    balanced = {}
    if tags_path.is_file() and "balanced_for" in pq.read_schema(tags_path).names:
        balanced = {
            r["id"]: r["balanced_for"]
            for r in pq.read_table(tags_path, columns=["id", "balanced_for"]).to_pylist()
            if r["balanced_for"]
        }
    positives = {n: {**{s: 0 for s in SPLITS}, "drawn_for_balance": 0} for n in taxonomy.names}
    for e in examples:
        for t in e["tags"]:
            positives[t][e["split"]] += 1
        if e["id"] in balanced:
            positives[balanced[e["id"]]]["drawn_for_balance"] += 1
    backend, balance = sampled.get("backend", {}), sampled.get("balance")
    return {
        "sampling": sampled.get("sampling", "vae"),
        "backend": backend.get("name", "any"),
        "excluded": backend.get("excluded", {}),
        "marginal_jsd_before_after_exclusion": backend.get("marginal_jsd_before_after_exclusion", 0.0),
        "arranged_not_confirmed": backend.get("arranged_not_confirmed", {}),
        "examples_holding_unconfirmed": sum(
            any(t in backend.get("arranged_not_confirmed", {}) for t in e["tags"]) for e in examples
        ),
        "genre_core_added": backend.get("genre_core_added", {}),
        "lists_completed_for_genre": backend.get("lists_completed_for_genre", 0),
        "lists": sampled.get("lists"),
        "balance": {k: balance[k] for k in BALANCE_KEYS if k in balance} if balance else None,
        "positives": positives,
    }


def write_configs(
    run: Path,
    out: Path,
    examples: Sequence[dict],
    concept_rows: Sequence[dict],
    shard_files: Sequence[str],
    max_bytes: float,
    review_rows: Sequence[dict] = (),
) -> dict:
    """Write every config's splits as parquet files in one streaming pass: the default and concepts configs from
    memory (text), the audio config from the run's audio shards, one shard at a time, with no other copy."""
    writers = {
        (name, split): SplitWriter(out / CONFIG_DIRS[name], split, CONFIG_FEATURES[name], max_bytes)
        for name in CONFIG_DIRS
        for split in SPLITS
    }
    by_id = {e["id"]: e for e in examples}
    for e in examples:
        writers["default", e["split"]].write({k: e[k] for k in BASE_FEATURES})
    for r in concept_rows:
        writers["concepts", r["split"]].write(r)
    for r in review_rows:
        writers["reviews", r["split"]].write(r)
    for shard in shard_files:
        present = [c for c in ("id", "audio", "ground_truth", "midi") if c in pq.read_schema(run / shard).names]
        for row in pq.read_table(run / shard, columns=present).to_pylist():
            e = by_id.get(row["id"])
            if e is not None:
                writers["audio", e["split"]].write(
                    {
                        **{k: e[k] for k in BASE_FEATURES},
                        "audio": row["audio"],
                        "audio_sha256": e["audio_sha256"],
                        **render_columns(row.get("ground_truth")),
                        "midi": row.get("midi"),
                    }
                )
    for w in writers.values():
        w.close()
    return {name: {s: writers[name, s].rows for s in SPLITS} for name in CONFIG_DIRS}


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DataError(
            folder,
            f"stage assemble needs about {needed / 1e9:.2f} GB free here, {free / 1e9:.2f} GB is: "
            "free space (or assemble to another --output_dir) and rerun",
        )


def assemble(args: AssembleArguments, run: Path, out: Path) -> dict:
    taxonomy = Taxonomy.load(run / "taxonomy.json")
    examples, rejected, shard_files = load_accepted(run, taxonomy)
    if not examples:
        raise DataError(run / "audio_shards", "no accepted example to assemble")
    splits = assign_example_splits([e["id"] for e in examples], args.split_seed)
    for e in examples:
        e["split"] = splits[e["id"]]
    examples.sort(key=lambda e: e["id"])
    unheard, review_rows, review_summary = apply_reviews(run, examples)
    rows, concept_summary = concept_sets(examples, taxonomy, args, unheard=unheard)
    _, concept_summary["theory"] = build_theory_sets(examples, args, rows)  # rendered clips only
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    check_free_space(tmp, 1.05 * sum((run / f).stat().st_size for f in shard_files))  # the audio, copied once
    try:
        counts = write_configs(run, tmp, examples, rows, shard_files, args.max_shard_mb * 1e6, review_rows)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise DataError(
                tmp,
                "stage assemble: no space left on the device while writing the dataset; the partial "
                "folder was removed: free space and rerun",
            ) from None
        raise
    per_split = {s: sum(e["split"] == s for e in examples) for s in SPLITS}
    if counts["default"] != per_split or counts["audio"] != per_split:  # every accepted clip found its audio
        raise RuntimeError(f"written counts {counts} do not add up to the examples per split {per_split}")
    taxonomy.save(tmp / "taxonomy.json")
    write_json(tmp / "concept_sets_summary.json", concept_summary)
    summary = {
        "version": args.version,
        "examples": len(examples),
        "per_split": per_split,
        "rejected": dict(rejected),
        "configs": CONFIG_DIRS,
        "clap_model": read_json(run / "clap_scores" / "_summary.json").get("model", "CLAP"),
        "caption_acceptance_by_concept": read_json(run / "captions_summary.json").get("acceptance_by_concept", {}),
        "audio_acceptance_by_concept": read_json(run / "audio_shards" / "_summary.json").get(
            "acceptance_by_concept", {}
        ),
        "concept_set_rows": sum(counts["concepts"].values()),
        "concepts_with_sets": concepts_with_sets(concept_summary),
        "theory_sets": theory_counts(concept_summary["theory"]),
        "sampling": sampling_report(run, examples, taxonomy),
        "reviews": review_summary,
        "arguments": {k: v for k, v in asdict(args).items() if k not in ("run_dir", "output_dir")},  # no local path
        "packages": package_versions(),
    }
    write_json(tmp / "build_summary.json", summary)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    logger.info(
        "assembled %s: %d examples %s, concept-set rows %d; rejected %s",
        out,
        len(examples),
        per_split,
        summary["concept_set_rows"],
        dict(rejected),
    )
    return summary


ARGUMENTS = AssembleArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "assemble", argv)
    run = Path(args.run_dir) if args.run_dir else run_dir()
    return assemble(args, run, Path(args.output_dir or run / "dataset"))


if __name__ == "__main__":
    cli(main)
