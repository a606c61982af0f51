"""Layer-wise concept probes on any audio model, with controls.

    python -m probing.probe --model MIT/ast-finetuned-audioset-10-10-0.4593 --dataset <repo or folder>
    python -m probing.probe --model musicnn:MTT_musicnn --dataset runs/demo/dataset --concepts piano "fast tempo"
    python -m probing.probe --model runs/demo/genre_cnn --layers block2 block3 --pooling max

For each concept and layer: a linear probe (standardised features, L2 logistic regression) trained on the train
split's positives against their confound-matched negatives, scored on the test split's sets (clips never seen in
training) by balanced accuracy, with a 95 % bootstrap interval over the test clips. Two controls beside every
figure: the same probe on a randomly initialised copy of the same architecture (seeded), and the same probe trained
on shuffled labels. Selectivity is the accuracy minus the random-init control's: what the trained weights add over
what the architecture and the input features give by themselves. A third control, SynTheory's handcrafted
baseline (`probing.handcrafted`): the same probe on log-mel, MFCC, chroma, key-profile and tempogram features of
the same clips, its best family reported beside every figure (`--handcrafted false` leaves it out).

Every layer's activations come from one forward pass per clip and are stored (`probing.activations`): a second
run on the same model and clips decodes and runs nothing. Concept sets are at most `--max_set_size` clips (a seeded
sample), so memory stays flat in the dataset's size. Writes a JSON report, a layer x concept heatmap of selectivity
(PNG) and a markdown table; a concept with too few train or test examples is a counted skip.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from builder.evidence import EvidenceArguments, keep_confirmed
from builder.theory import is_theory_concept, theory_category
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import ConfigError, DataError
from core.hub import require_source
from core.io import write_json, write_text
from core.log import get_logger
from core.provenance import dataset_identity
from probing.activations import ActivationCache, fill_caches
from probing.handcrafted import handcrafted_model
from probing.models import POOLINGS, describe, load_model

logger = get_logger(__name__)


# why a concept has no set in a split, and what gives it one
SKIPPED_REMEDY = (
    "assembly gives a concept sets in a split only when it has at least `min_positives` positives there (the "
    "preset's `assemble` section; the tiny demo's is 5): sample more lists, balance them with `sample`'s "
    "--min_positives_per_concept, or probe another split (--train_split, --test_split); --min_train and --min_test "
    "only lower the probe's own thresholds"
)


@dataclass
class ProbeArguments(EvidenceArguments):
    """Fit layer-wise linear concept probes on a model's activations, with random-init and shuffled-label controls."""

    model: str = arg(
        "", "Hub id or folder of an audio model, a genre CNN folder, musicnn:MTT_musicnn, or pkg.module:factory"
    )
    dataset: str | None = arg(None, "dataset folder or Hub id (default: run dir/dataset)")
    concepts: list[str] = arg(factory=list, help="concepts to probe (default: every concept with sets)")
    layers: list[str] = arg(factory=list, help="layers (default: the model's probing layers)")
    pooling: str = arg("mean", f"pooling of a layer's activations over time: {POOLINGS}")
    seconds: float | None = arg(None, "seconds of each clip the model reads (default: its own)")
    train_split: str = arg("train", "split whose sets train the probes")
    test_split: str = arg("test", "split whose sets score them")
    min_train: int = arg(5, "fewest train positives (and negatives) for a concept")
    min_test: int = arg(5, "fewest test positives (and negatives) for a concept")
    max_set_size: int = arg(500, "at most this many clips per role and split (seeded sample)")
    regularisation: float = arg(1.0, "inverse L2 strength C of the logistic regression")
    bootstrap: int = arg(1000, "bootstrap resamples of the test clips")
    seed: int = arg(0, "seed of sampling, the control's weights, shuffling and bootstrap")
    batch_size: int = arg(16, "clips per forward pass")
    cache_dir: str | None = arg(None, "activation store (default: beside the report, in activations/)")
    handcrafted: bool = arg(True, "the same probe on handcrafted features (probing.handcrafted) beside every figure")
    target: str | None = arg(
        None, "a numeric ground-truth column (bpm ...): ridge-regression probes of it, not concepts"
    )
    target_split: str = arg("random", "with --target: 'random' (the dataset's splits) or 'extrapolate' (SynTheory's: "
                            "train on the middle 70 %% of values, test on both tails)")  # fmt: skip
    output: str | None = arg(None, "report JSON (default: run dir/probe_report.json)")

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required")
        if self.pooling not in POOLINGS:
            raise ValueError(f"--pooling must be one of {POOLINGS}")


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[y == c] == c) for c in (0, 1)]))


def bootstrap_interval(y: np.ndarray, predicted: np.ndarray, n: int, rng: np.random.Generator) -> list[float]:
    """95 % percentile interval of the balanced accuracy over resamples of the test clips (within each class, so
    every resample has both)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    stats = []
    for _ in range(n):
        p, q = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        stats.append(0.5 * (np.mean(predicted[p] == 1) + np.mean(predicted[q] == 0)))
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def fit_probe(x_train, y_train, x_test, regularisation: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=2000))
    probe.fit(x_train, y_train)
    return probe.predict(x_test)


def probe_concept(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    y_train,
    y_test,
    args: ProbeArguments,
    rng: np.random.Generator,
) -> dict:
    """One concept at one layer: `train` and `test` map 'model' and 'control' to activations."""
    predicted = fit_probe(train["model"], y_train, test["model"], args.regularisation)
    control = fit_probe(train["control"], y_train, test["control"], args.regularisation)
    shuffled = fit_probe(train["model"], rng.permutation(y_train), test["model"], args.regularisation)
    accuracy, random_init = balanced_accuracy(y_test, predicted), balanced_accuracy(y_test, control)
    return {
        "accuracy": accuracy,
        "interval": bootstrap_interval(y_test, predicted, args.bootstrap, rng),
        "random_init": random_init,
        "random_init_interval": bootstrap_interval(y_test, control, args.bootstrap, rng),
        "shuffled_labels": balanced_accuracy(y_test, shuffled),
        "selectivity": accuracy - random_init,
    }


def r2_interval(y: np.ndarray, predicted: np.ndarray, n: int, rng: np.random.Generator) -> tuple[float, list[float]]:
    """R² of the predictions and its 95 % percentile interval over resamples of the test clips."""
    from sklearn.metrics import r2_score

    stats = [r2_score(y[i], predicted[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(n))]
    return float(r2_score(y, predicted)), [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def fit_ridge(x_train, y_train, x_test) -> np.ndarray:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    return probe.fit(x_train, y_train).predict(x_test)


def target_sets(args: ProbeArguments, splits: dict, dataset: str, rng: np.random.Generator) -> dict[str, dict]:
    """{train, test: {id: value}} of the target: the dataset's splits, or (extrapolate) every clip of both pooled,
    the middle 70 % of values to train and both tails to test; at most --max_set_size clips per side."""
    values = {}
    for name, split in splits.items():
        rows = split.metadata([r["id"] for r in split.rows])
        known = {i: float(r[args.target]) for i, r in rows.items() if r.get(args.target) is not None}
        if not known:
            have = sorted(k for k, v in next(iter(rows.values()), {}).items() if isinstance(v, (int, float)))
            raise DataError(dataset, f"split {name!r} has no {args.target!r} values: numeric ground truth exists for "
                            f"rendered clips only (numeric columns here: {have})")  # fmt: skip
        values[name] = known
    if args.target_split == "extrapolate":
        pooled = {i: v for known in values.values() for i, v in known.items()}
        lo, hi = np.percentile(list(pooled.values()), [15, 85])
        values = {"train": {i: v for i, v in pooled.items() if lo <= v <= hi},
                  "test": {i: v for i, v in pooled.items() if v < lo or v > hi}}  # fmt: skip
    else:
        values = {"train": values[args.train_split], "test": values[args.test_split]}

    def capped(known):
        ids = sorted(known)
        keep = ids if len(ids) <= args.max_set_size else sorted(rng.choice(ids, args.max_set_size, replace=False))
        return {i: known[i] for i in keep}

    return {side: capped(known) for side, known in values.items()}


def activation_caches(args: ProbeArguments, model, control, out: Path) -> tuple[dict, object]:
    """The model's, the control's and (with --handcrafted) the baseline's activation stores, beside the report
    unless --cache_dir says otherwise; returns ({name: cache}, the baseline model or None)."""
    root = Path(args.cache_dir or Path(args.output or out / "probe_report.json").parent / "activations")
    caches = {
        "model": ActivationCache(root, model, args.pooling),
        "control": ActivationCache(root, control, args.pooling),
    }
    baseline = handcrafted_model(model.sampling_rate, model.seconds) if args.handcrafted else None
    if baseline is not None:
        caches["handcrafted"] = ActivationCache(root, baseline, args.pooling)
    return caches, baseline


def fill_split(split, ids, layers, caches: dict, baseline, batch_size: int) -> dict[str, str]:
    """Every layer of the model and its control for these clips, in one pass; the baseline's own layers in a second
    pass over the same clips. Returns {id: checksum} of the usable clips."""
    checksums = fill_caches(split, ids, layers, [caches["model"], caches["control"]], batch_size)
    if baseline is not None:
        fill_caches(split, ids, baseline.layers, [caches["handcrafted"]], batch_size)
    return checksums


def run_regression(args: ProbeArguments, model, control, layers, splits, dataset: str, out: Path, rng) -> dict:
    """Ridge probes of a numeric target per layer: R² on the test clips with its interval, beside the random-init
    and shuffled-target controls and the handcrafted baseline."""
    if args.target_split not in ("random", "extrapolate"):
        raise ConfigError(f"--target_split must be 'random' or 'extrapolate', not {args.target_split!r}")
    sides = target_sets(args, splits, dataset, rng)
    caches, baseline = activation_caches(args, model, control, out)
    checksums = {}
    wanted = {i for side in sides.values() for i in side}
    for split in splits.values():
        ids = sorted(wanted & {r["id"] for r in split.rows})
        checksums.update(fill_split(split, ids, layers, caches, baseline, args.batch_size))

    def xy(side, which, layer):
        ids = [i for i in sides[side] if i in checksums]
        return caches[which][layer].get([checksums[i] for i in ids]), np.array([sides[side][i] for i in ids])

    def score(which, layer, shuffle=False):
        (x_train, y_train), (x_test, y_test) = xy("train", which, layer), xy("test", which, layer)
        predicted = fit_ridge(x_train, rng.permutation(y_train) if shuffle else y_train, x_test)
        return r2_interval(y_test, predicted, args.bootstrap, rng)

    handcrafted = {f: dict(zip(("r2", "interval"), score("handcrafted", f))) for f in (baseline.layers if baseline
                                                                                         else ())}  # fmt: skip
    results = []
    for layer in layers:
        r2, interval = score("model", layer)
        random_init, _ = score("control", layer)
        shuffled, _ = score("model", layer, shuffle=True)
        best = max(handcrafted, key=lambda f: handcrafted[f]["r2"]) if handcrafted else None
        results.append({"target": args.target, "layer": layer, "r2": r2, "interval": interval,
                        "random_init": random_init, "shuffled_labels": shuffled, "selectivity": r2 - random_init,
                        "handcrafted": handcrafted, "handcrafted_best": best,
                        "train": len(sides["train"]), "test": len(sides["test"])})  # fmt: skip
    return {
        "model": describe(model),
        "control": describe(control),
        "handcrafted": describe(baseline) if baseline is not None else None,
        "dataset": dataset_identity(dataset),
        "target": args.target,
        "target_split": args.target_split,
        "layers": layers,
        "pooling": args.pooling,
        "results": results,
        "forward_calls": {k: v.forward_calls for k, v in caches.items()},
        "clips_run": {k: v.clips_run for k, v in caches.items()},
        "arguments": {**asdict(args), "dataset": None, "evidence_from": None},
    }


def run_probes(args: ProbeArguments, out: Path) -> dict:
    from builder.reader import AudioSplit

    dataset = args.dataset or str(out / "dataset")
    require_source(dataset, "dataset")  # before any model is loaded: a dataset out of reach is one line at once
    model = load_model(args.model, args.seconds)
    layers = model.check_layers(args.layers or model.layers)
    if not layers:
        raise ConfigError(f"{model.name} names no probing layers; give --layers")
    control = model.random_init(args.seed)
    rng = np.random.default_rng(args.seed)
    splits = {name: AudioSplit(dataset, name) for name in dict.fromkeys((args.train_split, args.test_split))}
    if args.target:
        return run_regression(args, model, control, layers, splits, dataset, out, rng)
    wanted = [splits[args.train_split].resolve(c) for c in args.concepts]
    members = {name: split.concept_sets(wanted or None) for name, split in splits.items()}
    concepts = wanted or sorted(set(members[args.train_split]) | set(members[args.test_split]))
    left_out = {}  # with --confirmed_only: a concept must be confirmed in both splits
    for name in splits:
        members[name], why = keep_confirmed(args, dataset, name, members[name])
        for c, reason in why.items():
            left_out.setdefault(c, reason)
    category_of = {
        concept: category
        for split in splits.values()
        for r in split.rows
        for category in CATEGORIES
        for concept in r[category]
    }
    category_of.update({c: theory_category(c) for c in concepts if is_theory_concept(c)})

    def capped(ids):
        ids = sorted(ids)
        return ids if len(ids) <= args.max_set_size else sorted(rng.choice(ids, args.max_set_size, replace=False))

    sets, skipped = {}, defaultdict(list)
    for c in concepts:
        if c in left_out:
            skipped[left_out[c]].append(c)
            continue
        tr, te = members[args.train_split].get(c), members[args.test_split].get(c)
        why = [f"no concept set in the {name} split" for name, entry in ((args.train_split, tr), (args.test_split, te))
               if entry is None]  # fmt: skip
        why += [f"fewer than --min_{kind} ({least}) {role}s in the {name} split"
                for kind, name, entry, least in (("train", args.train_split, tr, args.min_train),
                                                 ("test", args.test_split, te, args.min_test))
                for role in ("positive", "negative") if entry is not None and len(entry[role]) < least]  # fmt: skip
        if why:
            skipped["; ".join(why)].append(c)
            continue
        sets[c] = {
            args.train_split: {r: capped(tr[r]) for r in ("positive", "negative")},
            args.test_split: {r: capped(te[r]) for r in ("positive", "negative")},
        }
    if not sets:
        raise DataError(dataset, f"no concept has enough examples to probe ({dict(skipped)})")
    caches, baseline = activation_caches(args, model, control, out)
    checksums = {}
    for name, split in splits.items():
        ids = sorted({i for s in sets.values() for role in s[name].values() for i in role})
        checksums.update(fill_split(split, ids, layers, caches, baseline, args.batch_size))
        logger.info(
            "probe: %s split, %d clips; model run on %d, control on %d",
            name,
            len(ids),
            caches["model"].clips_run,
            caches["control"].clips_run,
        )

    results = []
    for c, s in sets.items():

        def xy(split_name, which, layer):
            pos, neg = ([i for i in s[split_name][r] if i in checksums] for r in ("positive", "negative"))
            store = caches[which][layer]
            x = store.get([checksums[i] for i in pos + neg])
            return x, np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)]

        handcrafted = {}
        for family in baseline.layers if baseline is not None else ():
            (x_train, y_train), (x_test, y_test) = (xy(n, "handcrafted", family) for n in (args.train_split,
                                                                                          args.test_split))  # fmt: skip
            predicted = fit_probe(x_train, y_train, x_test, args.regularisation)
            handcrafted[family] = {"accuracy": balanced_accuracy(y_test, predicted),
                                   "interval": bootstrap_interval(y_test, predicted, args.bootstrap, rng)}  # fmt: skip
        for layer in layers:
            train, test = {}, {}
            for which in ("model", "control"):
                train[which], y_train = xy(args.train_split, which, layer)
                test[which], y_test = xy(args.test_split, which, layer)
            row = probe_concept(train, test, y_train, y_test, args, rng)
            if handcrafted:  # the third control: the best feature family, and whether the layer beats it
                best = max(handcrafted, key=lambda f: handcrafted[f]["accuracy"])
                row.update(handcrafted=handcrafted, handcrafted_best=best,
                           over_handcrafted=row["accuracy"] - handcrafted[best]["accuracy"])  # fmt: skip
            results.append(
                {
                    "concept": c,
                    "category": category_of.get(c),
                    "layer": layer,
                    **row,
                    "train": {"positive": int(y_train.sum()), "negative": int(len(y_train) - y_train.sum())},
                    "test": {"positive": int(y_test.sum()), "negative": int(len(y_test) - y_test.sum())},
                }
            )
    report = {
        "model": describe(model),
        "control": describe(control),
        "handcrafted": describe(baseline) if baseline is not None else None,
        "dataset": dataset_identity(dataset),
        "dataset_schema": "published" if splits[args.train_split].published else "conceptcaps",
        "layers": layers,
        "pooling": args.pooling,
        "results": results,
        "skipped": {reason: names for reason, names in skipped.items()},
        "skipped_remedy": SKIPPED_REMEDY if skipped else None,
        "skipped_count": sum(len(v) for v in skipped.values()),
        "skipped_clips": {name: split.skip_report() for name, split in splits.items() if split.skipped},
        "forward_calls": {k: v.forward_calls for k, v in caches.items()},
        "clips_run": {k: v.clips_run for k, v in caches.items()},
        "arguments": {**asdict(args), "dataset": None, "evidence_from": None},  # paths: see "dataset"
    }
    return report


def format_markdown(report: dict) -> str:
    lines = [
        f"Probes on {report['model']['name']} (pooling: {report['pooling']}). Accuracy is balanced accuracy on "
        "the test split with its 95 % bootstrap interval; random init and shuffled labels are the controls; "
        "selectivity = accuracy - random init; handcrafted is the same probe on the best handcrafted feature "
        "family (SynTheory's baseline).",
        "",
        "| concept | layer | accuracy | 95 % CI | random init | shuffled labels | selectivity | handcrafted (best) "
        "| train +/- | test +/- |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        hand = (f"{r['handcrafted'][r['handcrafted_best']]['accuracy']:.3f} ({r['handcrafted_best']})"
                if r.get("handcrafted") else "-")  # fmt: skip
        lines.append(
            f"| {r['concept']} | {r['layer']} | {r['accuracy']:.3f} | {r['interval'][0]:.3f}-{r['interval'][1]:.3f} "
            f"| {r['random_init']:.3f} | {r['shuffled_labels']:.3f} | {r['selectivity']:+.3f} | {hand} "
            f"| {r['train']['positive']}/{r['train']['negative']} | {r['test']['positive']}/{r['test']['negative']} |"
        )
    if report["skipped"]:
        lines += [
            "",
            "Skipped: " + "; ".join(f"{reason}: {', '.join(names)}" for reason, names in report["skipped"].items()),
            "",
            f"A concept without a set: {report['skipped_remedy']}.",
        ]
    return "\n".join(lines) + "\n"


def plot_heatmap(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concepts = list(dict.fromkeys(r["concept"] for r in report["results"]))
    layers = report["layers"]
    grid = np.full((len(layers), len(concepts)), np.nan)
    for r in report["results"]:
        grid[layers.index(r["layer"]), concepts.index(r["concept"])] = r["selectivity"]
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(concepts) + 2), max(3, 0.35 * len(layers) + 1.5)))
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-0.5, vmax=0.5, aspect="auto")
    ax.set_xticks(range(len(concepts)), concepts, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, label="selectivity (accuracy - random init)")
    ax.set_title(f"Concept probes: {report['model']['name'][:60]}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")  # long layer names and the colour bar's label stay inside
    plt.close(fig)


ARGUMENTS = ProbeArguments


def format_regression(report: dict) -> str:
    lines = [
        f"Ridge probes of {report['target']} on {report['model']['name']} (pooling: {report['pooling']}; split: "
        f"{report['target_split']}). R² on the test clips with its 95 % bootstrap interval; random init and shuffled "
        "targets are the controls; handcrafted is the best of the handcrafted feature families.",
        "",
        "| layer | R² | 95 % CI | random init | shuffled | handcrafted (best) | train | test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        best = r["handcrafted_best"]
        hand = f"{r['handcrafted'][best]['r2']:.3f} ({best})" if best else "-"
        interval = f"{r['interval'][0]:.3f}-{r['interval'][1]:.3f}"
        lines.append(f"| {r['layer']} | {r['r2']:.3f} | {interval} | {r['random_init']:.3f} | "
                     f"{r['shuffled_labels']:.3f} | {hand} | {r['train']} | {r['test']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_regression(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(rows) + 2), 3.5))
    x = np.arange(len(rows))
    ax.errorbar(x, [r["r2"] for r in rows], yerr=np.abs(np.array([r["interval"] for r in rows]).T
                - [r["r2"] for r in rows]), fmt="o-", label="model")  # fmt: skip
    ax.plot(x, [r["random_init"] for r in rows], "s--", label="random init")
    ax.plot(x, [r["shuffled_labels"] for r in rows], "x:", label="shuffled targets")
    if rows and rows[0]["handcrafted_best"]:
        ax.axhline(rows[0]["handcrafted"][rows[0]["handcrafted_best"]]["r2"], color="grey", lw=0.8,
                   label=f"handcrafted ({rows[0]['handcrafted_best']})")  # fmt: skip
    ax.set_xticks(x, [r["layer"] for r in rows], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"R² of {report['target']}")
    ax.set_title(f"{report['target']} ({report['target_split']} split): {report['model']['name'][:50]}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "probe", argv)
    out = run_dir()
    report = run_probes(args, out)
    output = Path(args.output or out / "probe_report.json")
    write_json(output, report)
    if args.target:
        write_text(output.with_suffix(".md"), format_regression(report))
        plot_regression(report, output.with_suffix(".png"))
        logger.info("probes of %s:\n%s", args.target, format_regression(report))
    else:
        write_text(output.with_suffix(".md"), format_markdown(report))
        plot_heatmap(report, output.with_suffix(".png"))
        logger.info(
            "probes: %d results, %d concepts skipped; model forward calls %d\n%s",
            len(report["results"]),
            report["skipped_count"],
            report["forward_calls"]["model"],
            format_markdown(report),
        )
    logger.info("probe: wrote %s (and its .md table and .png plot)", output)
    return report


if __name__ == "__main__":
    cli(main, lock=False)
