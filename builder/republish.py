"""Turn a dataset in the paper's published schema into this project's layout, ready for `builder.push`.

    python -m builder.republish --source bsienkiewicz/ConceptCaps --output_dir runs/republished/dataset
    python -m builder.republish --source path/to/local/copy --output_dir out --no_audio    # text configs only
    python -m builder.push --dataset_dir runs/republished/dataset --repo_id you/conceptcaps-sets

Writes the `default`, `audio` and `concepts` configs (`builder.schema`), `taxonomy.json` (every concept of our
reviewed table), the concept-set summary, `build_summary.json` (the source dataset, its revision resolved to a
commit or, for a local folder, a content hash; the rows dropped and the tags left unmapped, with counts) and the
card (the `card.render` stage, run as its own command). The tags are mapped onto our concepts and duplicate ids
dropped as `builder.published`
says; the splits are the source's. The audio is carried over byte for byte, never regenerated, and streamed:
one row group per split is in memory at a time, so the published 178 hours never pass through memory, and
nothing is cached beside the output (the source is read with `streaming=True`).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from builder.published import AUDIO_FIELD, TEXT_FIELDS, PublishedReader, is_published
from builder.schema import BASE_FEATURES, CONFIG_DIRS, CONFIG_FEATURES, RENDER_FEATURES, SplitWriter
from builder.splits import ConceptSetArguments, concept_sets, concepts_with_sets
from core.cli import cli
from core.config import arg, parse_args
from core.constants import SPLITS
from core.errors import DataError
from core.io import sha256_bytes, write_json
from core.log import get_logger
from core.provenance import folder_sha256, package_versions

logger = get_logger(__name__)


@dataclass
class RepublishArguments(ConceptSetArguments):
    """Re-publish a dataset in the paper's schema in this project's layout (configs, concept sets, card)."""

    source: str = arg("bsienkiewicz/ConceptCaps", "Hub dataset id or local folder")
    revision: str | None = arg(None, "Hub revision of the source (default: main, resolved to its commit)")
    output_dir: str = arg("republished", "folder to write (replaced when done)")
    version: str = arg("1.0.0", "version of the re-published dataset")
    no_audio: bool = arg(False, "text configs only (the source's `default` config)")
    max_shard_mb: float = arg(500.0, "largest parquet file")
    repo_id: str = arg("conceptcaps/conceptcaps", "Hub repo named in the card")


def resolve_source(source: str, revision: str | None) -> tuple[str | None, str]:
    """(revision to load, how provenance names it): a Hub revision resolved to its commit hash, or a local
    folder's content hash (no path)."""
    if Path(source).is_dir():
        return None, f"local dataset sha256:{folder_sha256(str(Path(source).resolve()))[:16]}"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from core.hub import require_source

    require_source(source, "dataset")
    try:
        sha = HfApi().dataset_info(source, revision=revision).sha
    except (HfHubHTTPError, OSError) as e:
        raise DataError(source, f"cannot resolve the dataset's revision on the Hub ({type(e).__name__}: {e})") from None
    return sha, sha


def _duration(data: bytes | None) -> float | None:
    if not data:
        return None
    import soundfile as sf

    try:
        return float(sf.info(io.BytesIO(data)).duration)
    except RuntimeError:
        return None


def republish(args: RepublishArguments) -> dict:
    import datasets

    load_revision, revision_name = resolve_source(args.source, args.revision)
    kwargs = {"revision": load_revision} if load_revision else {}
    with_audio = not args.no_audio
    out = Path(args.output_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    max_bytes = args.max_shard_mb * 1e6
    provenance = {
        "caption_model": f"as published in {args.source}",
        "audio_model": f"as published in {args.source}",
        "audio_model_revision": revision_name,
        "generation_params": json.dumps({"source": args.source, "revision": revision_name}),
        "seed": None,
        "clap_score": None,
    }
    reader = PublishedReader()
    examples, no_audio = [], 0
    for split in SPLITS:
        stream = datasets.load_dataset(
            args.source, "audio" if with_audio else "default", split=split, streaming=True, **kwargs
        )
        if not is_published(stream.features or {}):
            raise DataError(
                args.source, f"split {split!r} is not in the published schema: it lacks some of {TEXT_FIELDS}"
            )
        if with_audio:
            stream = stream.cast_column(AUDIO_FIELD, datasets.Audio(decode=False))
            writer = SplitWriter(tmp / CONFIG_DIRS["audio"], split, CONFIG_FEATURES["audio"], max_bytes)
        for index, row in enumerate(stream):
            example = reader.convert_row(row, split, index)
            if example is None:
                continue
            clip = row.get(AUDIO_FIELD) if with_audio else None
            example.update(provenance, duration_s=_duration(clip and clip.get("bytes")))
            if with_audio:
                if not clip or not clip.get("bytes"):
                    no_audio += 1
                    reader.seen.pop(example["id"])  # not kept: a later row with this id may still be
                    continue
                writer.write(
                    {
                        **{k: example[k] for k in BASE_FEATURES},
                        "audio": clip,
                        "audio_sha256": sha256_bytes(clip["bytes"]),
                        **dict.fromkeys(RENDER_FEATURES),
                    }
                )
            examples.append(example)
        if with_audio:
            writer.close()
    reader.warn(args.source)
    if not examples:
        raise DataError(args.source, "no row to re-publish")
    taxonomy = reader.taxonomy
    rows, concept_summary = concept_sets(examples, taxonomy, args)
    for name, items in (("default", examples), ("concepts", rows)):
        for split in SPLITS:
            writer = SplitWriter(tmp / CONFIG_DIRS[name], split, CONFIG_FEATURES[name], max_bytes)
            writer.write_all(r for r in items if r["split"] == split)
            writer.close()
    taxonomy.save(tmp / "taxonomy.json")
    write_json(tmp / "concept_sets_summary.json", concept_summary)
    per_split = {s: sum(e["split"] == s for e in examples) for s in SPLITS}
    report = reader.report()
    rejected = {f"source: {k}": v for k, v in report["dropped"].items()}
    if no_audio:
        rejected["source: no audio bytes"] = no_audio
    summary = {
        "version": args.version,
        "examples": len(examples),
        "per_split": per_split,
        "rejected": rejected,
        "configs": {k: v for k, v in CONFIG_DIRS.items() if with_audio or k != "audio"},
        "clap_model": None,
        "source": {
            "dataset": args.source if not Path(args.source).is_dir() else "a local copy",
            "revision": revision_name,
            "schema": "published (bsienkiewicz/ConceptCaps)",
            **report,
        },
        "concept_set_rows": len(rows),
        "concepts_with_sets": concepts_with_sets(concept_summary),
        "arguments": {k: v for k, v in asdict(args).items() if k not in ("source", "output_dir")},
        "packages": package_versions(),
    }
    write_json(tmp / "build_summary.json", summary)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    # the card is the card stage's work; run as its own command, as the pipeline runs stages (builder imports no card)
    # run from the repository (so that `-m card.render` resolves), on the folder's absolute path (so that a relative
    # --output_dir still names it)
    cmd = [sys.executable, "-m", "card.render", "--dataset", str(out.resolve()), "--repo_id", args.repo_id]
    if subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1]).returncode != 0:
        rerun = f"python -m card.render --dataset {out} --repo_id {args.repo_id}"
        raise DataError(out, f"the card stage failed (its error is above); rerun: {rerun}")
    logger.info(
        "re-published %s (%s) into %s: %d examples %s, %d concept-set rows; dropped %s; %d unmapped tags",
        args.source,
        revision_name,
        out,
        len(examples),
        per_split,
        len(rows),
        report["dropped"],
        len(report["unmapped_tags"]),
    )
    return summary


ARGUMENTS = RepublishArguments


def main(argv: Sequence[str] | None = None) -> dict:
    return republish(parse_args(ARGUMENTS, "republish", argv))


if __name__ == "__main__":
    cli(main, lock=False)
