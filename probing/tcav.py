"""TCAV on any model's outputs with the dataset's concept sets.

    python -m probing.tcav --model runs/demo/genre_cnn --layer block2 --concepts "electric guitar" piano
    python -m probing.tcav --model musicnn:MSD_musicnn --layer net.penultimate --classes rock jazz classical \\
        --concepts "electric guitar" piano violin synthesizer --concept_sets 3
    python -m probing.tcav --model MIT/ast-finetuned-audioset-10-10-0.4593 \\
        --layer backbone.audio_spectrogram_transformer.encoder.layers.8 --classes "Rock music" jazz \\
        --concepts "electric guitar"

Classes are any of the model's output names or any taxonomy concept; the reviewed table
`builder/data/tagger_tags.tsv` pairs a tagger's outputs with concepts where the names differ (AudioSet's
"Rock music" is our `rock`, MSD's "Hip-Hop" our `hip hop`); a genre CNN of this project has concepts as outputs.
A class's examples are the clips whose attribute lists hold its concept; its score is the output the concept is
paired with. The experiment (K disjoint positive sets per concept, R random sets of the split's random-set
clips free of its positives, the structured null, Welch's test, Bonferroni and Benjamini-Hochberg over every
(concept, class) test) is `probing.tcav_engine.run_experiment`. Writes a JSON report, a table in the log and a
plot (non-significant hatched).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from builder.evidence import EvidenceArguments, keep_confirmed
from builder.theory import is_theory_concept
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.errors import ConfigError, DataError
from core.hub import require_source
from core.io import write_json
from core.log import get_logger
from core.provenance import dataset_identity
from probing.models import ProbedModel, describe, load_model
from probing.tagger_tags import concept_tags
from probing.tcav_engine import (
    CAV_ESTIMATORS,
    ExperimentDesign,
    check_logits,
    resolve_layer,
    run_experiment,
    validate_sets,
)

logger = get_logger(__name__)


@dataclass
class TCAVArguments(EvidenceArguments):
    """Run TCAV for concepts of a dataset on any model's outputs."""

    dataset: str | None = arg(None, "dataset folder or Hub id (default: run dir/dataset)")
    model: str | None = arg(
        None,
        "genre CNN folder (default: run dir/genre_cnn), musicnn:MTT_musicnn, a Hub audio classifier, "
        "or pkg.module:factory",
    )
    layer: str = arg("block2", "layer name (the model's named modules)")
    classes: list[str] = arg(
        factory=list,
        help="output names or taxonomy concepts (default: every output paired with a genre that has examples)",
    )
    max_classes: int = arg(8, "with no --classes, at most this many (most examples first)")
    concepts: list[str] = arg(factory=list, help="concepts to test (default: the largest sets)")
    max_concepts: int = arg(4, "with no --concepts, test this many of the largest")
    split: str = arg("train", "split whose concept sets and examples are used")
    seconds: float | None = arg(None, "seconds of each clip the model reads (default: its own)")
    min_examples: int = arg(5, "fewest positives (and per random set) for a concept")
    alpha: float = arg(0.05, "significance level after correction (Bonferroni; and FDR)")
    seed: int = arg(0, "seed of CAV training")
    batch_size: int = arg(32, "clips decoded and differentiated at a time")
    concept_sets: int = arg(
        10,
        "K (default: benchmarks/bench_tcav_power.py): deal each concept's positives into this many disjoint sets, "
        "tested together (Welch's test of their mean scores against the random pseudo-concepts'); 1: one set",
    )
    random_sets: int = arg(50, "R: random sets, drawn from the split's random-set clips free of the positives")
    cav: str = arg("mean_difference", f"CAV estimator: one of {sorted(CAV_ESTIMATORS)} (mean_difference: FastCAV)")
    correction: str = arg("bonferroni", "which correction the table and plot mark: bonferroni (family-wise) or fdr "
                          "(Benjamini-Hochberg); the report holds both")  # fmt: skip
    max_set_size: int = arg(
        500,
        "at most this many examples of a concept, random set or class (a seeded sample): CAV training "
        "holds a set's activations in memory, which must not grow with the dataset",
    )
    output: str | None = arg(None, "report JSON (default: run dir/tcav_report.json)")

    def __post_init__(self):
        if self.correction not in ("bonferroni", "fdr"):
            raise ValueError(f"--correction must be bonferroni or fdr, not {self.correction!r}")
        if self.cav not in CAV_ESTIMATORS:
            raise ValueError(f"--cav must be one of {sorted(CAV_ESTIMATORS)}, not {self.cav!r}")


def resolve_classes(
    model: ProbedModel, wanted: Sequence[str], genre_counts: dict[str, int], max_classes: int, min_examples: int
) -> list[tuple[int, str]]:
    """[(output index, concept)] for the classes asked for (output names or concepts), or by default every output
    paired with a genre of the split that has `min_examples` clips, most clips first."""
    if not model.output_names:
        raise ConfigError(f"{model.name} has no output head: TCAV needs output scores (probe its layers instead)")
    outputs = model.output_names
    paired = concept_tags(model.vocabulary, outputs)  # concept -> output
    concept_of = {o: c for c, o in paired.items()}
    if not wanted:
        chosen = sorted((c for c in paired if genre_counts.get(c, 0) >= min_examples), key=lambda c: -genre_counts[c])
        if not chosen:
            raise DataError(
                None,
                f"none of {model.name}'s outputs is paired with a concept that has {min_examples}+ "
                f"clips in the split; give --classes",
            )
        return [(outputs.index(paired[c]), c) for c in chosen[:max_classes]]
    classes = []
    for name in wanted:
        if name in outputs:
            if name not in concept_of:
                raise ConfigError(
                    f"output {name!r} of {model.name} is paired with no concept in "
                    f"builder/data/tagger_tags.tsv, so it has no class examples; name a concept instead"
                )
            classes.append((outputs.index(name), concept_of[name]))
        elif name in paired:
            classes.append((outputs.index(paired[name]), name))
        else:
            raise ConfigError(
                f"{name!r} is neither an output of {model.name} nor a concept paired with one "
                f"(paired: {sorted(paired)[:20]}{'...' if len(paired) > 20 else ''})"
            )
    return classes


def check_one_row_per_clip(model: ProbedModel, layer: str, inputs) -> None:
    """TCAV counts directional derivatives per clip: the layer must give one row per clip (musicnn, reading several
    3 s patches, gives one per patch)."""
    import torch

    rows = []
    hook = resolve_layer(model.module, layer).register_forward_hook(lambda m, a, out: rows.append(out.shape[0]))
    try:
        with torch.no_grad():
            model.module(inputs[:2])
    finally:
        hook.remove()
    if rows and rows[0] != len(inputs[:2]):
        raise ConfigError(
            f"layer {layer!r} gives {rows[0] // len(inputs[:2])} rows per clip; TCAV needs one: read "
            f"less of each clip (--seconds, for musicnn at most one 3 s patch)"
        )


def run_tcav(args: TCAVArguments, out: Path) -> dict:
    from builder.reader import AudioSplit
    from probing.features import StoreBatches, model_inputs

    dataset = args.dataset or str(out / "dataset")
    require_source(dataset, "dataset")  # before any model is loaded: a dataset out of reach is one line at once
    model = load_model(args.model or str(out / "genre_cnn"), args.seconds)
    resolve_layer(model.module, args.layer)
    audio = AudioSplit(dataset, args.split)
    wanted = [audio.resolve(c) for c in args.concepts]  # a published dataset's concepts may use either taxonomy's names
    members, left_out = keep_confirmed(args, dataset, args.split, audio.concept_sets(wanted or None))
    if left_out:
        logger.info("tcav: left out by evidence: %s", left_out)
    semantic = [c for c in members if not is_theory_concept(c)]  # theory families (builder.theory): when asked for
    chosen = wanted or sorted(semantic, key=lambda c: -len(members[c]["positive"]))[: args.max_concepts]
    missing = [c for c in chosen if c not in members]
    if missing:
        why = [f"{c}: {left_out.get(c, 'no concept set')}" for c in missing]
        raise DataError(dataset, f"concept(s) not tested in split {args.split!r}: {'; '.join(why)}")
    genre_counts: dict[str, int] = {}  # the default classes are genres
    for r in audio.rows:
        for c in r["genre"]:
            genre_counts[c] = genre_counts.get(c, 0) + 1
    classes = resolve_classes(
        model,
        [audio.resolve(c) if c not in (model.output_names or []) else c for c in args.classes],
        genre_counts,
        args.max_classes,
        args.min_examples,
    )
    rng = np.random.default_rng(args.seed)

    def capped(ids: Sequence[str], most: int = args.max_set_size) -> list[str]:
        return list(ids) if len(ids) <= most else sorted(rng.choice(ids, most, replace=False))

    for c in chosen:
        validate_sets(c, members[c]["positive"], list(members[c]["random"].values()), args.min_examples, dataset)
        members[c]["positive"] = capped(members[c]["positive"])
    # one null for every concept: random sets drawn from the tested concepts' random-set clips (none names its
    # concept), free of every tested concept's positives
    pool = capped(sorted({i for c in chosen for s in members[c]["random"].values() for i in s}),
                  args.max_set_size * args.random_sets)  # fmt: skip
    class_ids = {k: capped([r["id"] for r in audio.rows if c in r["tags"]]) for k, c in classes}
    needed = (
        [i for c in chosen for i in members[c]["positive"]]
        + list(pool)
        + [i for ids in class_ids.values() for i in ids]
    )
    output = Path(args.output or out / "tcav_report.json")
    # the model inputs of every clip used, in one pass over the split, kept in a file while TCAV reads them
    store, row_of = model_inputs(
        audio,
        needed,
        model.preprocess,
        model.samples,
        output.with_name(output.name + ".features.tmp"),
        sampling_rate=model.sampling_rate,
    )
    # a clip the reader skipped (listed in the report) is in no set: every id the experiment sees has one row
    positives = {c: [i for i in members[c]["positive"] if i in row_of] for c in chosen}
    pool = [i for i in pool if i in row_of]
    class_ids = {k: [i for i in ids if i in row_of] for k, ids in class_ids.items()}
    try:

        def inputs(ids: Sequence[str]) -> StoreBatches:
            return StoreBatches(store, [row_of[i] for i in ids], args.batch_size)

        first = next(iter(inputs(next(ids for ids in class_ids.values() if ids))))
        check_logits(model.module, first, len(model.output_names))
        check_one_row_per_clip(model, args.layer, first)
        design = ExperimentDesign.of(args)
        report = run_experiment(model.module, args.layer, inputs, positives, pool, class_ids, design)
    finally:
        store.close()
    if not report["results"]:
        raise DataError(dataset, f"no concept could be tested: {report['left_out']}")
    report["skipped_clips"] = audio.skip_report()
    report["left_out_by_evidence"] = left_out
    report["correction"] = args.correction
    report.update(
        layer=args.layer,
        classes=list(model.output_names),
        class_concepts={str(k): c for k, c in classes},
        model=describe(model),
        split=args.split,
        dataset=dataset_identity(dataset),
        arguments={**asdict(args), "model": None, "dataset": None, "evidence_from": None},
    )
    if audio.reader is not None:
        report["source"] = {"schema": "published", **audio.reader.report()}
    return report


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    concepts = list(dict.fromkeys(r["concept"] for r in results))
    tested = list(dict.fromkeys(r["class"] for r in results))  # output indices; report["classes"] names them
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(concepts) * len(tested) / 3), 4))
    width = 0.8 / max(len(tested), 1)
    for j, k in enumerate(tested):
        cls = report["classes"][k]
        rows = [next(r for r in results if r["concept"] == c and r["class"] == k) for c in concepts]
        xs = np.arange(len(concepts)) + j * width
        bars = ax.bar(xs, [r["score_mean"] for r in rows], width, yerr=[r["score_std"] for r in rows], label=cls)
        for bar, r in zip(bars, rows):
            if not significant(report, r):
                bar.set_hatch("//")
                bar.set_alpha(0.4)
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(len(concepts)) + 0.4 - width / 2, concepts, rotation=20)
    ax.set_ylabel("TCAV score")
    ax.set_title(f"TCAV at {report['layer']}\n(hatched: not significant, {report.get('correction', 'bonferroni')})",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")  # the two-line title stays inside
    plt.close(fig)


def significant(report: dict, row: dict) -> bool:
    """Whether a result is significant under the report's chosen correction."""
    return row["significant_fdr"] if report.get("correction") == "fdr" else row["significant"]


def format_table(report: dict) -> str:
    head = (
        f"{'concept':<22} {'class':<14} {'TCAV':>6} {'random':>7} {'p Bonf':>8} {'q BH':>8} {'CAV acc':>8}  significant"
    )
    lines = [head]
    for r in report["results"]:
        lines.append(
            f"{r['concept']:<22} {report['classes'][r['class']]:<14} {r['score_mean']:>6.3f} {r['random_mean']:>7.3f} "
            f"{r['p_corrected']:>8.4f} {r.get('q_value', float('nan')):>8.4f} {r['cav_accuracy']:>8.3f}  "
            f"{'yes' if significant(report, r) else 'no'}"
        )
    tests, correction = report.get("tests", len(report["results"])), report.get("correction", "bonferroni")
    detectable = report.get("detectable_difference") or float("nan")
    lines.append(
        f"{tests} tests corrected ({correction}); smallest detectable difference from random: {detectable:.3f}"
    )
    return "\n".join(lines)


ARGUMENTS = TCAVArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "tcav", argv)
    out = run_dir()
    report = run_tcav(args, out)
    output = Path(args.output or out / "tcav_report.json")
    write_json(output, report)
    plot_report(report, output.with_suffix(".png"))
    logger.info("TCAV at layer %s (%s split)\n%s", args.layer, args.split, format_table(report))
    logger.info("tcav: wrote %s (and its .png plot)", output)
    return report


if __name__ == "__main__":
    cli(main)
