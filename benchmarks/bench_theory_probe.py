"""SynTheory's study with ConceptCaps' controls: probe a model layer by layer on every theory family of a rendered
dataset (`builder.theory`), beside the random-init and shuffled-label controls and the handcrafted baseline.

    CONCEPTCAPS_RUN_DIR=runs/theory python -m pipeline --config configs/theory.yaml \\
        --only taxonomy tiny_models sample caption synthesize score assemble card
    python -m benchmarks.bench_theory_probe --dataset runs/theory/dataset --models MTT_musicnn \\
        --output runs/theory/theory_probe.json --heatmap docs/images/theory_probes.png

For each model: `probing.probe` on every theory concept (positives against their matched negatives, trained on
the train split and scored on the test split by balanced accuracy), then ridge probes of the clip's BPM on the
random split and on SynTheory's extrapolation split (train on the middle 70 % of BPMs, test on both tails). The
activation store is shared, so the model runs once per clip for all of it. Prints, per family: the sets' sizes
(positives per split, the largest nuisance divergence after matching), the best layer's mean accuracy, the
random-init and shuffled-label controls and the handcrafted baseline (each feature family); then the targets:
mode from chroma (the raw mean chroma and its key-profile correlations: accuracy, target >= 0.9), BPM from the
tempogram (R² on the random split, target >= 0.8),
at least 50 positives per split and a nuisance JSD <= 0.05 per set; and the wall time (target <= 15 min for one
musicnn model on 2 cores). Writes the JSON report, a markdown table beside it and, with --heatmap, a family x
layer heatmap of the mean accuracy with the controls' rows.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from builder.theory import NUISANCE_JSD_BOUND
from core.log import get_logger
from probing.handcrafted import FAMILIES

logger = get_logger(__name__)

TARGETS = {"mode_from_chroma": 0.9, "bpm_r2_handcrafted": 0.8, "positives_per_split": 50,
           "nuisance_jsd": NUISANCE_JSD_BOUND, "minutes_per_model": 15.0}  # fmt: skip


def set_quality(dataset: Path) -> dict:
    """Per family: the fewest positives of any of its concepts in each split, and the largest nuisance JSD after
    matching (from the assembly's concept-set summary)."""
    from builder.theory import max_jsd

    summary = json.loads((dataset / "concept_sets_summary.json").read_text()).get("theory", {})
    out = defaultdict(lambda: {"min_positives": {}, "max_jsd_after": 0.0, "max_jsd_before": 0.0, "concepts": set()})
    for key, entry in summary.get("concepts", {}).items():
        split, _, name = key.partition("/")
        f = out[entry["family"]]
        f["concepts"].add(name)
        f["min_positives"][split] = min(f["min_positives"].get(split, 1 << 30), entry["positives"])
        f["max_jsd_after"] = max(f["max_jsd_after"], max_jsd(entry))
        f["max_jsd_before"] = max(f["max_jsd_before"], max_jsd(entry, "before"))
    return {family: {**v, "concepts": sorted(v["concepts"])} for family, v in out.items()}


def family_table(report: dict) -> dict:
    """Per family and layer, the mean over its concepts of the accuracy and both controls; per family, the
    handcrafted baseline's mean accuracy per feature family."""
    rows = defaultdict(lambda: defaultdict(list))
    hand = defaultdict(lambda: defaultdict(list))
    for r in report["results"]:
        family = r["concept"].partition("=")[0]
        for measure in ("accuracy", "random_init", "shuffled_labels"):
            rows[family, r["layer"]][measure].append(r[measure])
        if r["layer"] == report["layers"][0]:
            for feature, h in (r.get("handcrafted") or {}).items():
                hand[family][feature].append(h["accuracy"])
    table = {}
    for (family, layer), measures in rows.items():
        table.setdefault(family, {"layers": {}, "handcrafted": {}})["layers"][layer] = {
            m: float(np.mean(v)) for m, v in measures.items()
        }
    for family, features in hand.items():
        table[family]["handcrafted"] = {f: float(np.mean(v)) for f, v in features.items()}
    for family, t in table.items():
        t["best_layer"] = max(t["layers"], key=lambda layer: t["layers"][layer]["accuracy"])
    return table


def mode_by_progression(dataset: Path, cache_root: Path, sampling_rate: int, seconds: float) -> dict[str, float]:
    """Which loops carry their mode: a mode probe (major against minor) on the chroma's key profile, trained on the
    train split's progression clips and scored per named progression on the test split's (balanced accuracy is not
    defined within one progression, whose clips share a mode: plain accuracy)."""
    from builder.reader import AudioSplit
    from probing.activations import ActivationCache, fill_caches
    from probing.handcrafted import handcrafted_model
    from probing.probe import fit_probe

    cache = ActivationCache(cache_root, handcrafted_model(sampling_rate, seconds), "mean")
    data = {}
    for split in ("train", "test"):
        audio = AudioSplit(str(dataset), split)
        rows = audio.metadata([r["id"] for r in audio.rows])
        ids = sorted(i for i, r in rows.items() if r.get("theory") == "progression")
        checksums = fill_caches(audio, ids, ["key"], [cache])
        ids = [i for i in ids if i in checksums]
        x = cache["key"].get([checksums[i] for i in ids])
        data[split] = (
            x,
            np.array([rows[i]["mode"] == "major" for i in ids], int),
            [rows[i]["progression"] for i in ids],
        )
    (x_train, y_train, _), (x_test, y_test, names) = data["train"], data["test"]
    predicted, names = fit_probe(x_train, y_train, x_test, 1.0), np.array(names)
    out = {p: float(np.mean(predicted[names == p] == y_test[names == p])) for p in sorted(set(names))}
    return {**out, "all": float(np.mean(predicted == y_test))}


def run(args) -> dict:
    from builder.reader import read_concept_sets
    from builder.theory import is_theory_concept
    from probing.probe import ProbeArguments, run_probes

    dataset = Path(args.dataset)
    out = Path(args.output)
    concepts = sorted(c for c in read_concept_sets(str(dataset), "train") if is_theory_concept(c))
    if not concepts:
        raise SystemExit(f"{dataset}: no theory concept sets (a rendered dataset's, e.g. configs/theory.yaml's)")
    report = {"dataset": str(dataset.name), "sets": set_quality(dataset), "models": {}, "targets": TARGETS}
    for name in args.models:
        start = time.perf_counter()
        common = dict(model=f"musicnn:{name}", dataset=str(dataset), max_set_size=args.max_set_size,
                      bootstrap=args.bootstrap, cache_dir=str(out.parent / "activations"))  # fmt: skip
        concept_report = run_probes(ProbeArguments(**common, concepts=concepts), out.parent)
        regressions = {split: run_probes(ProbeArguments(**common, target="bpm", target_split=split), out.parent)
                       for split in ("random", "extrapolate")}  # fmt: skip
        families = family_table(concept_report)
        mode = [r for r in concept_report["results"] if r["concept"].startswith("mode=")
                and r["layer"] == concept_report["layers"][0]]  # fmt: skip
        report["models"][name] = {
            "layers": concept_report["layers"],
            "families": families,
            "concepts": concept_report["results"],
            "bpm": {split: r["results"] for split, r in regressions.items()},
            "mode_from_chroma": {
                f: float(np.mean([r["handcrafted"][f]["accuracy"] for r in mode])) for f in ("chroma", "key")
            }
            if mode
            else None,  # fmt: skip
            "bpm_r2_handcrafted": {
                split: max(v["r2"] for v in r["results"][0]["handcrafted"].values()) for split, r in regressions.items()
            },  # fmt: skip
            "bpm_r2_tempogram": {
                split: r["results"][0]["handcrafted"]["tempogram"]["r2"] for split, r in regressions.items()
            },  # fmt: skip
            "seconds": round(time.perf_counter() - start, 1),
            "mode_by_progression": mode_by_progression(
                dataset,
                out.parent / "activations",
                concept_report["handcrafted"]["sampling_rate"],
                concept_report["handcrafted"]["seconds"],
            ),  # fmt: skip
            "model_clips_run": concept_report["clips_run"],
        }
    return report


def markdown(report: dict) -> str:
    lines = []
    sets = report["sets"]
    lines += ["| family | concepts | fewest positives (train / validation / test) | nuisance JSD before → after "
              "(max) |", "|---|---|---|---|"]  # fmt: skip
    for family, s in sorted(sets.items()):
        p = s["min_positives"]
        lines.append(f"| {family} | {len(s['concepts'])} | {p.get('train')} / {p.get('validation')} / {p.get('test')} "
                     f"| {s['max_jsd_before']:.3f} → {s['max_jsd_after']:.3f} |")  # fmt: skip
    for name, m in report["models"].items():
        lines += ["", f"**{name}** ({m['seconds'] / 60:.1f} min): mean balanced accuracy over each family's concepts "
                  "(positives against matched negatives of the family's other values), best layer",
                  "", "| family | best layer | accuracy | random init | shuffled labels | handcrafted: "
                  f"{' / '.join(FAMILIES)} |", "|---|---|---|---|---|---|"]  # fmt: skip
        for family, t in sorted(m["families"].items()):
            best = t["layers"][t["best_layer"]]
            hand = " / ".join(f"{t['handcrafted'].get(f, float('nan')):.2f}" for f in FAMILIES)
            lines.append(f"| {family} | {t['best_layer']} | {best['accuracy']:.3f} | {best['random_init']:.3f} "
                         f"| {best['shuffled_labels']:.3f} | {hand} |")  # fmt: skip
        lines += ["", "| BPM split | layer | R² | 95 % CI | random init | shuffled | handcrafted (best) |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for split, rows in m["bpm"].items():
            for r in rows:
                best = r["handcrafted_best"]
                lines.append(f"| {split} | {r['layer']} | {r['r2']:.3f} | {r['interval'][0]:.3f}-{r['interval'][1]:.3f}"
                             f" | {r['random_init']:.3f} | {r['shuffled_labels']:.3f} | "
                             f"{r['handcrafted'][best]['r2']:.3f} ({best}) |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"].items())
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 3.8), squeeze=False)
    for ax, (name, m) in zip(axes[0], models):
        families = sorted(m["families"])
        labels = m["layers"] + ["random init (best)", "handcrafted (best)"]
        grid = np.full((len(labels), len(families)), np.nan)
        for j, f in enumerate(families):
            t = m["families"][f]
            for i, layer in enumerate(m["layers"]):
                grid[i, j] = t["layers"][layer]["accuracy"]
            grid[-2, j] = max(v["random_init"] for v in t["layers"].values())
            grid[-1, j] = max(t["handcrafted"].values(), default=np.nan)
        image = ax.imshow(grid, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(families)), families, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.8 else "k")
        ax.set_title(f"theory probes: {name} (mean balanced accuracy)", fontsize=9)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="runs/theory/dataset")
    parser.add_argument("--models", nargs="+", default=["MTT_musicnn"])
    parser.add_argument("--max_set_size", type=int, default=500, help="clips per role and split (seeded sample)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--output", default="runs/theory/theory_probe.json")
    parser.add_argument("--heatmap", default=None, help="PNG of the family x layer accuracies")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    if args.heatmap:
        plot(report, Path(args.heatmap))
    logger.info("theory probes:\n%s", table)
    checks = {}
    for name, m in report["models"].items():
        checks[name] = {
            "mode_from_chroma": m["mode_from_chroma"],
            "bpm_r2_handcrafted_random": m["bpm_r2_handcrafted"]["random"],
            "minutes": round(m["seconds"] / 60, 2),
            "mode_by_progression": m["mode_by_progression"],
        }
    checks["fewest_positives"] = min(min(s["min_positives"].values()) for s in report["sets"].values())
    checks["max_nuisance_jsd"] = max(s["max_jsd_after"] for s in report["sets"].values())
    print(json.dumps({"targets": TARGETS, "measured": checks}))
    return report


if __name__ == "__main__":
    main()
