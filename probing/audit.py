"""The tagger audit: does an independent, pretrained tagger (musicnn, trained on real music) hear what each
concept set's label says?

    python -m probing.audit --dataset runs/demo/dataset --output runs/demo/tagger_audit.json

For every concept paired with a musicnn tag (`builder/data/tagger_tags.tsv`; concepts with no counterpart are
listed as such), per split: the ROC-AUC of the tag's probability (the clip's mean over its 3 s patches) on the
concept's positives against its confound-matched negatives, with a 95 % bootstrap interval, and the share of
positives whose tag is among the clip's five most probable. A concept whose interval includes 0.5 is "not
confirmed by an independent tagger"; one whose interval lies below 0.5 is "contradicted". A model whose converted
weights are missing is a counted skip (`python -m probing.convert_musicnn` makes them), so the pipeline step runs
everywhere. Clips are decoded once for all models, batch by batch, and only the tag scores (50 per clip and
model) are kept, so memory is flat in the dataset's size. A clip shorter than one 3 s patch cannot be tagged: it is
a counted skip (`clips_too_short`). Writes a JSON report and a plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import SPLITS
from core.errors import ConfigError, DataError
from core.hub import require_source
from core.io import write_json
from core.log import get_logger
from probing.musicnn import DEFAULT_TAGGERS, MODELS

logger = get_logger(__name__)

NOT_CONFIRMED = "not confirmed by an independent tagger"
CONTRADICTED = "contradicted by an independent tagger"


@dataclass
class AuditArguments:
    """Audit every concept set with pretrained musicnn taggers (ROC-AUC of the paired tag, positives vs negatives)."""

    dataset: str | None = arg(None, "dataset folder or Hub id (default: run dir/dataset)")
    models: list[str] = arg(
        factory=lambda: list(DEFAULT_TAGGERS), help="musicnn models (MTT_musicnn, MSD_musicnn, MTT_vgg, MSD_vgg)"
    )
    weights_dir: str | None = arg(None, "converted weights (default: ~/.cache/conceptcaps/musicnn)")
    seconds: float = arg(30.0, "at most this many seconds of each clip are tagged")
    min_examples: int = arg(5, "fewest positives (and negatives) for a concept's AUC")
    bootstrap: int = arg(1000, "bootstrap resamples")
    seed: int = arg(0, "seed of the bootstrap")
    batch_size: int = arg(8, "clips tagged at a time")
    output: str | None = arg(None, "report JSON (default: run dir/tagger_audit.json)")


def auc_with_interval(pos: np.ndarray, neg: np.ndarray, n: int, rng: np.random.Generator) -> tuple[float, list[float]]:
    """ROC-AUC of scores of positives against negatives (ties count half), and a 95 % percentile bootstrap
    interval resampling positives and negatives separately."""

    def auc(p, q):
        greater = (p[:, None] > q[None, :]).mean()
        ties = (p[:, None] == q[None, :]).mean()
        return float(greater + 0.5 * ties)

    stats = [auc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n)]
    return auc(pos, neg), [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def verdict(interval: Sequence[float]) -> str:
    if interval[1] < 0.5:
        return CONTRADICTED
    return NOT_CONFIRMED if interval[0] <= 0.5 else "confirmed"


def tag_clips(audio, ids: Sequence[str], taggers: dict, seconds: float, batch_size: int) -> tuple[dict, dict, list]:
    """{model: {id: tag probabilities}} and {model: float16 overflow bins} for every clip, decoded once, and the
    clips shorter than one 3 s patch (musicnn, like its original, has nothing to tag in them: a counted skip)."""
    from probing.features import pad_stack
    from probing.musicnn import SAMPLING_RATE, seconds_for

    shortest = int(np.ceil(seconds_for(1) * SAMPLING_RATE))
    too_short: list[str] = []

    scores = {name: {} for name in taggers}
    overflow = {name: 0 for name in taggers}
    batch: list[tuple[str, np.ndarray]] = []

    def flush():
        wave = pad_stack([w for _, w in batch], max(len(w) for _, w in batch))
        with torch.no_grad():
            for name, tagger in taggers.items():
                probs = tagger(wave).numpy()
                overflow[name] += int(tagger.overflow_bins(wave).sum())
                scores[name].update({id_: p for (id_, _), p in zip(batch, probs)})
        batch.clear()

    for id_, wave in audio.clips(list(dict.fromkeys(ids)), seconds, SAMPLING_RATE):
        if len(wave) < shortest:
            too_short.append(id_)
            continue
        if batch and len(wave) != len(batch[0][1]):
            flush()  # clips of other lengths go in batches of their own: no padding changes a clip's patches
        batch.append((id_, wave))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return scores, overflow, too_short


def run_audit(args: AuditArguments, out: Path) -> dict:
    from builder.reader import AudioSplit
    from probing.musicnn import load_musicnn
    from probing.tagger_tags import concept_tags

    dataset = args.dataset or str(out / "dataset")
    require_source(dataset, "dataset")  # before any model is loaded: a dataset out of reach is one line at once
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown musicnn model(s) {unknown}; choose from {list(MODELS)}")
    taggers, skipped = {}, {}
    for name in args.models:
        try:
            taggers[name] = load_musicnn(name, args.weights_dir)
        except ConfigError as e:  # not converted here: a counted skip, the step runs everywhere
            skipped[name] = str(e)
    report = {"models": {}, "skipped_models": skipped, "verdicts": [NOT_CONFIRMED, CONTRADICTED], "clips_too_short": {}}
    if not taggers:
        logger.warning("tagger audit: no musicnn weights (%s); skipped", "; ".join(skipped.values()))
        return report
    rng = np.random.default_rng(args.seed)
    pairs = {name: concept_tags(MODELS[name].vocabulary, tagger.labels) for name, tagger in taggers.items()}
    for name, tagger in taggers.items():
        report["models"][name] = {
            "revision": tagger.revision,
            "splits": {},
            "float16_overflow_bins": 0,
            "no_counterpart": [],
            "too_few_examples": {},
        }
    concepts_seen, read = set(), 0
    for split in SPLITS:
        try:
            audio = AudioSplit(dataset, split)
        except DataError as e:
            if "has no split" not in str(e):
                raise
            logger.info("tagger audit: %s", e)  # a dataset assembled without clips in this split
            continue
        read += 1
        members = audio.concept_sets()
        concepts_seen |= set(members)
        mapped = {c for p in pairs.values() for c in p if c in members}
        ids = sorted({i for c in mapped for role in ("positive", "negative") for i in members[c][role]})
        scores, overflow, too_short = tag_clips(audio, ids, taggers, args.seconds, args.batch_size)
        if audio.skipped:
            report.setdefault("skipped_clips", {})[split] = audio.skip_report()
        if too_short:
            report["clips_too_short"][split] = len(too_short)
            logger.warning(
                "tagger audit: %s: %d of %d clips are shorter than musicnn's 3 s patch; skipped",
                split,
                len(too_short),
                len(ids),
            )
        for name, tagger in taggers.items():
            entry = report["models"][name]
            entry["float16_overflow_bins"] += overflow[name]
            rows = {}
            for concept, tag in sorted(pairs[name].items()):
                if concept not in members:
                    continue
                pos, neg = (
                    [i for i in members[concept][role] if i in scores[name]] for role in ("positive", "negative")
                )
                if len(pos) < args.min_examples or len(neg) < args.min_examples:
                    entry["too_few_examples"].setdefault(split, []).append(concept)
                    continue
                k = tagger.labels.index(tag)
                p = np.array([scores[name][i][k] for i in pos])
                q = np.array([scores[name][i][k] for i in neg])
                auc, interval = auc_with_interval(p, q, args.bootstrap, rng)
                top5 = float(np.mean([k in np.argsort(-scores[name][i])[:5] for i in pos]))
                rows[concept] = {
                    "tag": tag,
                    "auc": auc,
                    "interval": interval,
                    "positives": len(pos),
                    "negatives": len(neg),
                    "top5_share": top5,
                    "verdict": verdict(interval),
                }
            entry["splits"][split] = rows
    if not read:
        raise DataError(dataset, "no split with audio to audit")
    for name in taggers:
        report["models"][name]["no_counterpart"] = sorted(c for c in concepts_seen if c not in pairs[name])
    report["summary"] = summary_rows(report)
    return report


def summary_rows(report: dict) -> list[dict]:
    """One row per (model, concept): the AUC per split, the share of positives with the tag in their top 5 over all
    splits, and the worst of the splits' verdicts (every split must confirm for "confirmed")."""
    order = {"confirmed": 0, NOT_CONFIRMED: 1, CONTRADICTED: 2}
    rows = []
    for name, entry in report["models"].items():
        concepts = sorted({c for split in entry["splits"].values() for c in split})
        for c in concepts:
            per_split = {s: v[c] for s, v in entry["splits"].items() if c in v}
            worst = max((r["verdict"] for r in per_split.values()), key=order.get)
            positives = sum(r["positives"] for r in per_split.values())
            top5 = sum(r["top5_share"] * r["positives"] for r in per_split.values()) / positives
            rows.append(
                {
                    "model": name,
                    "concept": c,
                    "tag": next(iter(per_split.values()))["tag"],
                    "splits": per_split,
                    "top5": top5,
                    "verdict": worst,
                }
            )
    return rows


def plot_audit(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.get("summary", [])
    models = list(report["models"])
    if not rows:  # still a figure: the stage's outputs are the same whatever it found
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "tagger audit: "
            + ("no (tagger, concept) pair had enough examples" if models else "skipped (no converted musicnn weights)"),
            ha="center",
            va="center",
        )
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return
    fig, axes = plt.subplots(
        1, len(models), figsize=(5 * len(models), max(3, 0.28 * len(rows) / len(models) + 1.5)), squeeze=False
    )
    for ax, name in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == name]
        for y, r in enumerate(mine):
            for dy, (split, v) in zip((-0.15, 0.0, 0.15), r["splits"].items()):
                ax.errorbar(
                    v["auc"],
                    y + dy,
                    xerr=[[v["auc"] - v["interval"][0]], [v["interval"][1] - v["auc"]]],
                    fmt="o",
                    ms=3,
                    color={"train": "C0", "validation": "C1", "test": "C2"}.get(split, "C3"),
                    label=split if y == 0 else None,
                )
        ax.axvline(0.5, color="grey", lw=0.8)
        ax.set_yticks(range(len(mine)), [f"{r['concept']} ({r['tag']})" for r in mine], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("ROC-AUC, positives vs matched negatives (95 % CI)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


ARGUMENTS = AuditArguments


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "audit", argv)
    out = run_dir()
    report = run_audit(args, out)
    output = Path(args.output or out / "tagger_audit.json")
    write_json(output, report)
    plot_audit(report, output.with_suffix(".png"))
    rows = report.get("summary", [])
    lines = [
        f"{r['model']:<12} {r['concept']:<22} {r['tag']:<16} "
        + "  ".join(
            f"{s} {v['auc']:.2f} [{v['interval'][0]:.2f}, {v['interval'][1]:.2f}]" for s, v in r["splits"].items()
        )
        + f"  {r['verdict']}"
        for r in rows
    ]
    logger.info(
        "tagger audit: %d (model, concept) rows; skipped models: %s\n%s",
        len(rows),
        list(report["skipped_models"]) or "none",
        "\n".join(lines),
    )
    return report


if __name__ == "__main__":
    cli(main)
