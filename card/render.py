"""Render the dataset card (README.md) and its plots from the assembled data.

The card is rendered through huggingface_hub's DatasetCard and DatasetCardData from `card/template.md`; its YAML
holds the licence, task categories, size and the `configs:` that tell `load_dataset` where each config's
parquet files are.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from builder.common import CATEGORIES
from builder.taxonomy import Taxonomy

TEMPLATE = Path(__file__).resolve().parent / "template.md"
SPLITS = ("train", "validation", "test")


def size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def configs_metadata() -> list[dict]:
    from builder.assemble import CONFIG_DIRS

    return [{"config_name": name, "data_files": [{"split": s, "path": f"{folder}/{s}-*"} for s in SPLITS],
             **({"default": True} if name == "default" else {})} for name, folder in CONFIG_DIRS.items()]


def _stats(values: Sequence[float], digits: int = 4) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), digits), "std": round(float(v.std()), digits), "min": round(float(v.min()), digits),
            "median": round(float(np.median(v)), digits), "max": round(float(v.max()), digits)}


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

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([e["clap_score"] for e in examples], bins=30)
    ax.set_xlabel("CLAP cosine (audio, caption)")
    ax.set_ylabel("clips")
    fig.tight_layout()
    fig.savefig(images / "clap_histogram.png", dpi=80)
    plt.close(fig)


def render_card(folder: Path, examples: Sequence[dict], taxonomy: Taxonomy, concept_summary: dict, summary: dict,
                run: Path, repo_id: str) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    from conceptcaps import _CITATION

    plot_all(examples, taxonomy, folder / "images")
    counts = Counter(t for e in examples for t in e["tags"])
    card_data = DatasetCardData(
        license="cc-by-4.0", language=["en"], pretty_name="ConceptCaps",
        task_categories=["text-to-audio", "audio-classification"],
        tags=["music", "interpretability", "tcav", "concepts", "synthetic", "musiccaps"],
        size_categories=[size_category(len(examples))], source_datasets=["google/MusicCaps"],
        configs=configs_metadata(),
    )
    sets = concept_summary["concepts"].values()
    clap_model = _clap_model(run)
    first = examples[0]
    card = DatasetCard.from_template(
        card_data, template_path=str(TEMPLATE), repo_id=repo_id, version=summary["version"],
        n_concepts=len(taxonomy.concepts), taxonomy_version=taxonomy.version, per_split=summary["per_split"],
        total=len(examples), caption_words=_stats([len(e["caption"].split()) for e in examples], 1),
        clap=_stats([e["clap_score"] for e in examples]), clap_model=clap_model, fad=summary.get("fad_per_split"),
        taxonomy_table={c: ", ".join(f"{x.name} ({counts[x.name]})" for x in taxonomy.by_category(c)) for c in CATEGORIES},
        min_positives=summary["arguments"]["min_positives"], num_random_sets=summary["arguments"]["num_random_sets"],
        concepts_with_sets=summary["concepts_with_sets"],
        jsd_before=_mean([s["jsd_other_categories_before"] for s in sets]),
        jsd_after=_mean([s["jsd_other_categories_after"] for s in sets]),
        audio_model=first["audio_model"], audio_revision=first["audio_model_revision"], caption_model=first["caption_model"],
        generation_params=first["generation_params"], rejected=summary["rejected"] or "none",
        packages=", ".join(f"{k} {v}" for k, v in summary["packages"].items()), citation=_CITATION,
    )
    card.save(folder / "README.md")
    return str(card)


def _mean(values) -> str:
    v = [x for x in values if x == x]  # drop NaN
    return f"{np.mean(v):.4f}" if v else "n/a"


def _clap_model(run: Path) -> str:
    path = run / "clap_scores" / "_summary.json"
    return json.loads(path.read_text()).get("model", "CLAP") if path.is_file() else "CLAP"
