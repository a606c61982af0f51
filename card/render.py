"""The `card` stage: render the dataset card (README.md) and its plots into an assembled dataset folder.

    python -m card.render --dataset runs/demo/dataset --repo_id you/conceptcaps [--fad_report runs/demo/fad_report.json]

The card is rendered through huggingface_hub's DatasetCard and DatasetCardData from `card/template.md`; its YAML
holds the licence, task categories, size and the `configs:` that tell `load_dataset` where each config's
parquet files are. It renders what it is given: the folder's own `build_summary.json`, `taxonomy.json`,
`concept_sets_summary.json` and default-config parquet files, and an optional FAD report.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from builder.evidence import concept_verdict, read_evidence
from builder.taxonomy import Taxonomy
from builder.theory import NUISANCE_JSD_BOUND, max_jsd, theory_counts
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES, CITATION, DATA_LICENSE, SPLITS
from core.errors import ConfigError, DataError
from core.io import read_json, write_folder_record
from core.log import get_logger
from core.retry import least_accepted, most_rejected

TEMPLATE = Path(__file__).resolve().parent / "template.md"
logger = get_logger(__name__)


def size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def configs_metadata(config_dirs: dict[str, str], root: Path) -> list[dict]:
    """The card's `configs:`: each config's splits that have files (a split without rows, such as a small
    split's concept sets, has none)."""
    configs = [
        {
            "config_name": name,
            "data_files": [
                {"split": s, "path": f"{folder}/{s}-*"} for s in SPLITS if any((root / folder).glob(f"{s}-*.parquet"))
            ],
            **({"default": True} if name == "default" else {}),
        }
        for name, folder in config_dirs.items()
    ]
    return [c for c in configs if c["data_files"]]  # a config with no rows at all (no reviews yet) is not listed


def dataset_info_metadata(config_dirs: dict[str, str], root: Path) -> list[dict]:
    """The card's `dataset_info:` per config: each split's rows and bytes, read from its parquet files' footers.
    `load_dataset` keys its cache of a folder with a card on these (its `configs:` patterns stay the same when a
    folder is regenerated in place), and checks the rows it reads against them."""
    infos = []
    for config in configs_metadata(config_dirs, root):
        folder = root / config_dirs[config["config_name"]]
        splits = []
        for entry in config["data_files"]:
            files = sorted(folder.glob(f"{entry['split']}-*.parquet"))
            splits.append({"name": entry["split"], "num_bytes": sum(f.stat().st_size for f in files),
                           "num_examples": sum(pq.ParquetFile(f).metadata.num_rows for f in files)})  # fmt: skip
        size = sum(s["num_bytes"] for s in splits)
        infos.append({"config_name": config["config_name"], "splits": splits, "download_size": size,
                      "dataset_size": size})  # fmt: skip
    return infos


def _stats(values: Sequence[float], digits: int = 4) -> dict:
    v = np.asarray(values, dtype=float)
    return {
        "mean": round(float(v.mean()), digits),
        "std": round(float(v.std()), digits),
        "min": round(float(v.min()), digits),
        "median": round(float(np.median(v)), digits),
        "max": round(float(v.max()), digits),
    }


def plot_all(examples: Sequence[dict], taxonomy: Taxonomy, images: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images.mkdir(parents=True, exist_ok=True)
    counts = Counter(t for e in examples for t in e["tags"])
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    for ax, category in zip(axes.flat, CATEGORIES):
        top = sorted(((counts[c.name], c.name) for c in taxonomy.by_category(category)), reverse=True)[:20]
        ax.barh([n for _, n in top][::-1], [k for k, _ in top][::-1])
        ax.set_title(f"{category} (top 20)")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(images / "concept_frequency.png", dpi=80)
    plt.close(fig)

    top = [n for n, _ in counts.most_common(30)]
    index = {n: i for i, n in enumerate(top)}
    co = np.zeros((len(top), len(top)))
    for e in examples:
        present = [index[t] for t in e["tags"] if t in index]
        for i in present:
            for j in present:
                co[i, j] += 1
    fig, ax = plt.subplots(figsize=(10, 9))
    ax.imshow(np.log1p(co), cmap="viridis")
    ax.set_xticks(range(len(top)), top, rotation=90, fontsize=7)
    ax.set_yticks(range(len(top)), top, fontsize=7)
    ax.set_title("co-occurrence of the 30 most frequent concepts (log 1 + count)")
    fig.tight_layout()
    fig.savefig(images / "cooccurrence.png", dpi=80)
    plt.close(fig)

    scores = [e["clap_score"] for e in examples if e["clap_score"] is not None]
    if not scores:  # a re-published dataset that was not scored here
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=30)
    ax.set_xlabel("CLAP cosine (audio, caption)")
    ax.set_ylabel("clips")
    fig.tight_layout()
    fig.savefig(images / "clap_histogram.png", dpi=80)
    plt.close(fig)


LICENSES = {
    "cc-by-sa-4.0": "CC BY-SA 4.0. The captions and attribute lists derive from MusicCaps' captions and aspect lists "
    "(CC BY-SA 4.0, Google LLC), whose ShareAlike term requires adaptations to carry the same licence.",
    "cc-by-4.0": "CC BY 4.0, as the paper publishes ConceptCaps. Note that the captions and attribute lists derive "
    "from MusicCaps (CC BY-SA 4.0, Google LLC), whose ShareAlike term applies to adaptations.",
}


def render_card(
    folder: Path,
    examples: Sequence[dict],
    taxonomy: Taxonomy,
    concept_summary: dict,
    summary: dict,
    repo_id: str,
    license: str = DATA_LICENSE,
    fad: dict | None = None,
    audit: dict | None = None,
    judge_tcav: dict | None = None,
) -> str:
    """Write README.md and images/ into `folder`; returns the card's text.

    Args:
        examples: rows of the default config (caption, tags, clap_score, provenance columns).
        summary: the folder's build_summary.json (version, per_split, configs, clap_model, rejected, ...).
        fad: FAD per split against a reference set (evaluation.fad), if measured.
        audit: the tagger audit (probing.audit's report), if run.
        judge_tcav: benchmarks.bench_judge_tcav's report (TCAV on musicnn's genre outputs), if run.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    if license not in LICENSES:
        raise ConfigError(f"unknown licence {license!r}; choose one of {sorted(LICENSES)}")
    plot_all(examples, taxonomy, folder / "images")
    counts = Counter(t for e in examples for t in e["tags"])
    scores = [e["clap_score"] for e in examples if e["clap_score"] is not None]
    card_data = DatasetCardData(
        license=license,
        language=["en"],
        pretty_name="ConceptCaps",
        task_categories=["text-to-audio", "audio-classification"],
        tags=["music", "interpretability", "tcav", "concepts", "synthetic", "musiccaps"],
        size_categories=[size_category(len(examples))],
        source_datasets=["google/MusicCaps", *([summary["source"]["dataset"]] if "source" in summary else [])],
        configs=configs_metadata(summary["configs"], folder),
        dataset_info=dataset_info_metadata(summary["configs"], folder),
    )
    sets = [v for v in concept_summary["concepts"].values() if not v.get("family")]
    families = sorted({k.split("/", 1)[1] for k, v in concept_summary["concepts"].items() if v.get("family")})
    removed = Counter()
    for v in sets:
        removed.update(v.get("removed_by_relation", {}))
    first = examples[0]
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        repo_id=repo_id,
        version=summary["version"],
        n_concepts=len(taxonomy.concepts),
        taxonomy_version=taxonomy.version,
        per_split=summary["per_split"],
        total=len(examples),
        caption_words=_stats([len(e["caption"].split()) for e in examples], 1),
        clap=_stats(scores) if scores else None,
        clap_model=summary["clap_model"],
        fad=fad,
        source=summary.get("source"),
        taxonomy_table={
            c: ", ".join(f"{x.name} ({counts[x.name]})" for x in taxonomy.by_category(c)) for c in CATEGORIES
        },
        min_positives=summary["arguments"]["min_positives"],
        num_random_sets=summary["arguments"]["num_random_sets"],
        concepts_with_sets=summary["concepts_with_sets"],
        jsd_before=_mean([s["jsd_other_categories_before"] for s in sets]),
        jsd_after=_mean([s["jsd_other_categories_after"] for s in sets]),
        audio_model=first["audio_model"],
        audio_revision=first["audio_model_revision"],
        caption_model=first["caption_model"],
        generation_params=first["generation_params"],
        rejected=summary["rejected"] or "none",
        packages=", ".join(f"{k} {v}" for k, v in summary["packages"].items()),
        citation=CITATION,
        license_text=LICENSES[license],
        least_captioned=least_accepted(summary.get("caption_acceptance_by_concept", {})),
        musiccaps=taxonomy.source,
        most_rejected_audio=most_rejected(summary.get("audio_acceptance_by_concept", {})),
        rendered=first["audio_model"].startswith("symbolic"),
        soundfont_credit=json.loads(first["generation_params"]).get("soundfont_credit", "a soundfont"),
        **audit_fields(audit),
        **evidence_fields(folder, audit),
        **sampling_fields(summary.get("sampling"), taxonomy),
        removed_by_relation=dict(removed),
        families=families,
        theory=theory_fields(concept_summary.get("theory")),
        judge_tcav=judge_tcav,
        reviews=summary.get("reviews"),
        **judge_audit_fields(judge_tcav, taxonomy),
    )
    card.save(folder / "README.md")
    return str(card)


LIMITS = Path(__file__).resolve().parents[1] / "generation" / "data" / "render_limits.tsv"


def theory_fields(theory: dict | None) -> dict | None:
    """The card's theory section from the concept-set summary's `theory` part (builder.theory); None without sets."""
    if not theory or not theory.get("concepts"):
        return None
    entries = list(theory["concepts"].values())
    after = [max_jsd(e) for e in entries]
    return {
        "families": theory["families"],
        "counts": theory_counts(theory),
        "jsd_before": f"{np.mean([max_jsd(e, 'before') for e in entries]):.3f}",
        "jsd_after": f"{np.mean(after):.3f}",
        "jsd_largest": f"{max(after):.3f}",
        "above": sum(a > NUISANCE_JSD_BOUND for a in after),
        "bound": NUISANCE_JSD_BOUND,
        "sets": len(entries),
        "fewest": min(e["positives"] for e in entries),
        "theory_clips": theory.get("theory_clips"),
    }


def judge_audit_fields(judge: dict | None, taxonomy: Taxonomy) -> dict:
    """The template's view of bench_judge_tcav's tagger audit: per model its figures, and each mapped genre below
    0.7 for some model with the reviewed reason it is not reached (render_limits.tsv)."""
    audits = {
        name: {**m["audit"], "at_least": sum(r["auc"] >= 0.7 for r in m["audit"]["concepts"].values())}
        for name, m in (judge or {}).get("models", {}).items()
        if m.get("audit")
    }
    if not audits:
        return {"judge_audit": None, "judge_genres_short": []}
    from core.io import read_tsv

    reasons = {concept: reason for _, (concept, reason) in read_tsv(LIMITS, 2)}
    short: dict[str, list[str]] = {}
    for name, a in audits.items():
        for concept, r in a["concepts"].items():
            if taxonomy.category_of.get(concept) == "genre" and r["auc"] < 0.7:
                short.setdefault(concept, []).append(f"{name} {r['auc']:.2f}")
    return {
        "judge_audit": audits,
        "judge_genres_short": [
            (g, ", ".join(m), reasons.get(g, "no reason recorded")) for g, m in sorted(short.items())
        ],
    }


def sampling_fields(sampling: dict | None, taxonomy: Taxonomy) -> dict:
    """The template's view of how the lists were sampled (build_summary's `sampling`; absent in re-published
    datasets): the report, the splits, and one row per concept in taxonomy order."""
    if not sampling:
        return {"sampling": None}
    positives = sampling["positives"]
    rows = [(c.name, c.category, positives[c.name]) for c in taxonomy.concepts if c.name in positives
            and (sampling.get("sampling") != "theory" or any(positives[c.name][s] for s in SPLITS))]  # fmt: skip
    return {"sampling": sampling, "sampling_splits": SPLITS, "sampling_rows": rows}


def evidence_fields(folder: Path, audit: dict | None) -> dict:
    """The template's view of the dataset's `evidence` config: per concept its category, its verdict per split and
    each judge's figure in the first split; counts of verdicts, per-clip flags, and how well the signal judges
    recover the rendered ground truth (from the audit's report)."""
    try:
        rows = read_evidence(str(folder))
    except DataError:  # assembled before the evidence config existed
        rows = []
    if not rows:
        return {"evidence": None}
    splits = [s for s in SPLITS if any(r["split"] == s for r in rows)]
    category = {r["concept"]: r["category"] for r in rows}
    order = {c: i for i, c in enumerate(CATEGORIES)}
    table = []
    for concept in sorted(category, key=lambda c: (order.get(category[c], len(order)), c)):
        mine = [r for r in rows if r["concept"] == concept and not r["id"]]
        present = {r["split"] for r in mine}
        figures = [
            f"{r['judge']} {r['criterion'].split(': ', 1)[-1]} {r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
            for r in mine
            if r["split"] == splits[0] and r["measure"]
        ]
        verdicts = {s: concept_verdict(r for r in mine if r["split"] == s) if s in present else "-" for s in splits}
        table.append({"concept": concept, "category": category[concept], "verdicts": verdicts,
                      "figures": "; ".join(figures) or "-"})  # fmt: skip
    first = [t["verdicts"][splits[0]] for t in table]
    return {
        "evidence": table,
        "evidence_splits": splits,
        "evidence_counts": {v: first.count(v) for v in dict.fromkeys(first)},
        "evidence_flags": sum(1 for r in rows if r["id"]),
        "ground_truth": (audit or {}).get("ground_truth", {}).get(splits[0]),
    }


def audit_fields(audit: dict | None) -> dict:
    """The template's view of the tagger audit (probing.audit's report): its rows, the splits in order, counts."""
    if not audit:
        return {"audit": None, "audit_skipped": None, "audit_models": []}
    rows = audit.get("summary", [])
    splits = [s for s in ("train", "validation", "test") if any(s in r["splits"] for r in rows)]
    return {
        "audit": rows,
        "audit_splits": splits,
        "audit_confirmed": sum(r["verdict"] == "confirmed" for r in rows),
        "audit_no_counterpart": {name: e["no_counterpart"] for name, e in audit["models"].items()},
        "audit_skipped": "; ".join(audit.get("skipped_models", {}).values()) or None,
        "audit_too_short": sum(audit.get("clips_too_short", {}).values()),
        "audit_models": list(audit["models"]),
    }


def _mean(values) -> str:
    v = [x for x in values if x == x]  # drop NaN
    return f"{np.mean(v):.4f}" if v else "n/a"


def read_examples(folder: Path, config_dir: str) -> list[dict]:
    """Every row of a config's parquet files (all splits) in an assembled folder."""
    files = sorted((folder / config_dir).glob("*.parquet"))
    if not files:
        raise DataError(folder / config_dir, "no parquet files: not an assembled dataset (run builder.assemble)")
    return [row for path in files for row in pq.read_table(path).to_pylist()]


@dataclass
class CardArguments:
    """Render README.md (the dataset card) and its plots into an assembled dataset folder."""

    dataset: str | None = arg(None, "assembled dataset folder (default: run dir/dataset)")
    repo_id: str = arg("conceptcaps/conceptcaps", "Hub repo named in the card")
    license: str = arg(DATA_LICENSE, f"data licence: {' or '.join(LICENSES)}")
    fad_report: str | None = arg(None, "FAD per split (evaluation.fad) to show")
    tagger_audit: str | None = arg(None, "the tagger audit (probing.audit) to show")
    judge_tcav: str | None = arg(
        None, "the JSON of benchmarks.bench_judge_tcav (TCAV on musicnn's genre outputs) to show"
    )


ARGUMENTS = CardArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(ARGUMENTS, "card", argv)
    folder = Path(args.dataset or run_dir() / "dataset")
    summary = read_json(folder / "build_summary.json")
    if not summary:
        raise DataError(folder / "build_summary.json", "missing: not an assembled dataset (run builder.assemble)")
    fad = None
    if args.fad_report:
        if not Path(args.fad_report).is_file():
            raise DataError(args.fad_report, "FAD report not found (make it with `python -m evaluation.fad`)")
        fad = read_json(args.fad_report)["fad_per_split"]
    audit = None
    if args.tagger_audit:
        audit = read_json(args.tagger_audit)
        if not audit:
            raise DataError(args.tagger_audit, "tagger audit not found (make it with `python -m probing.audit`)")
        plot = Path(args.tagger_audit).with_suffix(".png")
        if plot.is_file():
            (folder / "images").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plot, folder / "images" / "tagger_audit.png")
    judge_tcav = None
    if args.judge_tcav:
        judge_tcav = read_json(args.judge_tcav)
        if not judge_tcav.get("models"):
            raise DataError(args.judge_tcav, "no TCAV results (make them with `python -m benchmarks.bench_judge_tcav`)")
    text = render_card(
        folder,
        read_examples(folder, summary["configs"]["default"]),
        Taxonomy.load(folder / "taxonomy.json"),
        read_json(folder / "concept_sets_summary.json"),
        summary,
        args.repo_id,
        args.license,
        fad,
        audit,
        judge_tcav,
    )
    write_folder_record(folder)  # last: the record of the finished folder, which the push verifies
    logger.info("wrote the card of %s (%d characters)", folder, len(text))
    return text


if __name__ == "__main__":
    cli(main)
