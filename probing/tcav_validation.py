"""TCAV validated against ground truth, on audio the symbolic renderer makes.

Clips are rendered from attribute lists in which one concept is planted (present in half of the clips, drawn
independently of everything else) and every other concept is drawn independently of it: a genre, a tempo and each
of a pool of instruments at random. A classifier learns which instruments a clip holds, one sigmoid output per
pool instrument and the planted one (`multi_label`, the default; else it tells clips with the planted concept from
clips without it). TCAV (`probing.tcav_engine`) then tests, for the planted concept's output, the planted concept and
every independent concept, each against random sets of clips free of its positives: the planted concept should
come out significant after correction with a score far from 0.5, the independent ones not (their share of
significant results is the false-positive rate). "Concepts" made of random clips check the test itself. CAV
accuracy per concept is reported.

What it takes (why each default is what it is; the measurements are in docs/benchmarks.md):
- A classifier whose gradients differ from clip to clip: `FrameCNN` (per-step logits pooled over time) at its
  per-step layer `frames`. After `GenreCNN`'s average pooling the class gradient is nearly the same for every
  clip, so a direction's TCAV score is 0 or 1 for the whole class and the random-vs-random null all or nothing.
- Multi-label training: a classifier trained on the planted concept alone has no reason to represent any other
  instrument, so their CAVs cannot separate them.
- Several disjoint positive sets per concept (`concept_sets`, tested by `probing.tcav_engine.concept_test`): a
  random set's mean score swings widely from set to set, so one set of the planted concept could not be told
  from a lucky random set after correction.
- Instruments that sound like themselves: the renderer keeps every note in its instrument's real range (a melody
  above it was missed by the classifier itself).
- Large sets: a CAV at `frames` learns a sparsely sounding instrument (piano chords) slowly from small sets.

    from probing.tcav_validation import ValidationArguments, run_validation
    report = run_validation(ValidationArguments(clips=6000), taxonomy)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from builder.taxonomy import Taxonomy
from core.errors import ConfigError
from core.log import get_logger
from generation.symbolic import SymbolicSynthesizer
from probing.features import pad_stack
from probing.genre_classifier import LogMel, MelConfig, fit_classifier
from probing.tcav_engine import ExperimentDesign, run_experiment

logger = get_logger(__name__)


@dataclass
class ValidationArguments:
    planted: str = "trumpet"
    instruments: list[str] = field(
        default_factory=lambda: [
            "piano",
            "acoustic guitar",
            "electric guitar",
            "bass guitar",
            "strings",
            "flute",
            "violin",
            "organ",
            "synth pad",
            "drum kit",
            "saxophone",
            "hand claps",
        ]
    )
    genres: list[str] = field(default_factory=lambda: ["rock", "jazz", "pop", "classical", "reggae", "funk"])
    tempi: list[str] = field(
        default_factory=lambda: [
            "slow tempo",
            "medium tempo",
            "fast tempo",
            "swing feel",
            "waltz time",
            "four on the floor",
        ]
    )
    instrument_rate: float = 0.3  # each pool instrument's chance to be in a list
    clips: int = 6000  # rendered clips: half train the classifier, half make the concept and class sets
    duration_s: float = 4.0
    epochs: int = 12
    learning_rate: float = 1e-3
    channels: int = 16
    architecture: str = "frames"  # FrameCNN: per-step logits pooled over time (see probing.genre_classifier)
    layer: str = "frames"  # each 0.32 s step's features, after the per-step dense layer (4 * channels per step)
    multi_label: bool = True  # one output per pool instrument and the planted one (else: planted present or not)
    random_sets: int = 10
    set_size: int = 90  # clips per concept set and per random set (fewer where too few are free)
    concept_sets: int = 3  # disjoint positive sets per concept, tested together (probing.tcav_engine.concept_test)
    class_size: int = 80  # clips with the planted concept whose directional derivatives are counted
    random_concepts: int = 5  # "concepts" made of random clips: the test's own false-positive rate
    alpha: float = 0.05
    max_independent: int | None = None  # test only the first N independent concepts (quick runs)
    seed: int = 0


def draw_lists(args: ValidationArguments, rng: np.random.Generator, n: int) -> list[list[str]]:
    """Attribute lists: the planted concept in half, everything else independent of it (and of each other)."""
    lists = []
    for i in range(n):
        tags = [args.genres[rng.integers(len(args.genres))], args.tempi[rng.integers(len(args.tempi))]]
        tags += [x for x in args.instruments if rng.random() < args.instrument_rate]
        if i % 2 == 0:
            tags.append(args.planted)
        if len(tags) == 2:  # no instrument at all: give it one, drawn like the others
            tags.append(args.instruments[rng.integers(len(args.instruments))])
        lists.append(tags)
    order = rng.permutation(len(lists))
    return [lists[i] for i in order]


@dataclass
class Prepared:
    """What the validation tests on: the trained classifier, every clip's log-mel, the lists, and the held-out
    clips dealt into the class's clips, a part for concept sets (`pool`) and a part for random sets (`others`)."""

    model: torch.nn.Module
    x: torch.Tensor
    lists: list[list[str]]
    target: int
    outputs: list[str]
    per_output: list[float]
    losses: list[float]
    inaudible: int
    class_ids: list[int]
    pool: list[int]
    others: list[int]


def prepare_validation(args: ValidationArguments, taxonomy: Taxonomy, rng: np.random.Generator) -> Prepared:
    """Render the clips, train the classifier on half of them, deal the other half (see the module docstring)."""
    synth = SymbolicSynthesizer(taxonomy)
    # as in the synthesis stage, a clip with an inaudible listed instrument is left out: every label is audible
    lists, waves, inaudible = [], [], 0
    for i, tags in enumerate(draw_lists(args, rng, 2 * args.clips)):
        clip = synth.render_row(tags, seed=args.seed * 100_000 + i, duration_s=args.duration_s)
        if clip.reasons:
            inaudible += 1
            continue
        lists.append(tags)
        waves.append(clip.wave)
        if len(lists) == args.clips:
            break
    logger.info("rendered %d clips (%d left out: an inaudible instrument)", len(lists), inaudible)
    to_mel = LogMel(MelConfig(duration_s=args.duration_s))
    with torch.no_grad():
        x = torch.cat([to_mel(pad_stack(waves[b : b + 64], to_mel.samples)) for b in range(0, len(waves), 64)])
    y = torch.tensor([int(args.planted in tags) for tags in lists])
    half = len(lists) // 2
    if args.multi_label:  # every instrument a label: the features must tell each instrument, not the planted one alone
        outputs = [args.planted, *args.instruments]
        labels = torch.tensor([[float(o in tags) for o in outputs] for tags in lists])
        n_outputs, target = len(outputs), 0
    else:
        labels, n_outputs, target = y, 2, 1
    model, losses = fit_classifier(
        x[:half],
        labels[:half],
        n_outputs,
        to_mel.config.n_mels,
        args.channels,
        args.epochs,
        16,
        args.learning_rate,
        args.seed,
        args.architecture,
    )
    with torch.no_grad():
        logits = torch.cat([model(x[b : b + 256]) for b in range(half, len(lists), 256)])
    predicted = logits > 0 if args.multi_label else (logits.argmax(1) == 1)[:, None]
    truth = labels[half:] if args.multi_label else y[half:, None]
    per_output = ((predicted.float() == truth).float().mean(0)).tolist()
    logger.info(
        "classifier: loss %.3f -> %.3f, held-out accuracy %s", losses[0], losses[-1], [round(a, 3) for a in per_output]
    )
    # from the half the classifier never saw: the class's clips, then concept sets from one part and random sets
    # from the other, so that no clip is in two of them; each concept's random sets hold none of its positives
    # (as in the tcav stage), and its null comes from those random sets alone
    held = list(range(half, len(lists)))
    class_ids = [i for i in held if y[i] == 1][: args.class_size]
    in_class = set(class_ids)
    rest = [i for i in held if i not in in_class]
    return Prepared(model, x, lists, target, outputs if args.multi_label else [args.planted], per_output, losses,
                    inaudible, class_ids, rest[: len(rest) // 2], rest[len(rest) // 2 :])  # fmt: skip


def run_validation(args: ValidationArguments, taxonomy: Taxonomy) -> dict:
    rng = np.random.default_rng(args.seed)
    prepared = prepare_validation(args, taxonomy, rng)
    model, x, lists, pool, others = prepared.model, prepared.x, prepared.lists, prepared.pool, prepared.others
    target, class_ids, per_output, losses = prepared.target, prepared.class_ids, prepared.per_output, prepared.losses
    candidates = [args.planted, *args.instruments, *args.genres, *args.tempi]
    tested = [c for c in candidates if sum(c in lists[i] for i in pool) >= args.set_size]
    tested = tested[: None if args.max_independent is None else args.max_independent + 1]
    if args.planted not in tested:
        raise ConfigError(f"fewer than {args.set_size} clips with {args.planted!r} to test: render more clips")

    design = ExperimentDesign.of(args)
    # a concept's random sets: clips of the other part whose lists do not hold it
    concepts = {c: [i for i in pool if c in lists[i]] for c in tested}
    pools = {c: [i for i in others if c not in lists[i]] for c in tested}
    # the test's own calibration: "concepts" whose sets are random clips, against random sets of clips
    shuffled = [int(i) for i in rng.permutation(pool)]
    chunk = args.concept_sets * args.set_size
    for k in range(args.random_concepts):
        if len(shuffled[k * chunk : (k + 1) * chunk]) >= args.set_size:
            concepts[f"random clips {k}"] = shuffled[k * chunk : (k + 1) * chunk]
            pools[f"random clips {k}"] = others
    report = run_experiment(model, args.layer, lambda ids: x[ids], concepts, pools, {target: class_ids}, design)
    results = [r for r in report["results"] if not r["concept"].startswith("random clips")]
    chance_results = [r for r in report["results"] if r["concept"].startswith("random clips")]
    for r in results:
        logger.info(
            "%s: TCAV %.3f, p %.3g (uncorrected), CAV accuracy %.3f",
            r["concept"],
            r["score_mean"],
            r["p_value"],
            r["cav_accuracy"],
        )
    tests = report["tests"]
    by_concept = {r["concept"]: r for r in results}
    planted = by_concept[args.planted]
    independent = [r for c, r in by_concept.items() if c != args.planted]
    instruments = [c for c in [args.planted, *args.instruments] if c in by_concept]
    return {
        "planted": args.planted,
        "clips": len(lists),
        "left_out_inaudible": prepared.inaudible,
        "classifier_held_out_accuracy": per_output[0],
        "classifier_losses": losses,
        "classifier_held_out_accuracy_per_output": dict(zip(prepared.outputs, [round(a, 3) for a in per_output])),
        "planted_score": planted["score_mean"],
        "planted_p_corrected": planted["p_corrected"],
        "planted_significant": planted["significant"],
        "planted_cav_accuracy": planted["cav_accuracy"],
        "independent_concepts": len(independent),
        "independent_significant": sorted(r["concept"] for r in independent if r["significant"]),
        "false_positive_rate": sum(r["significant"] for r in independent) / max(len(independent), 1),
        "random_concepts": len(chance_results),
        "random_concepts_significant": sum(r["significant"] for r in chance_results),
        "random_concepts_significant_fdr": sum(r["significant_fdr"] for r in chance_results),
        "random_concepts_p_below_alpha_uncorrected": sum(r["p_value"] < args.alpha for r in chance_results),
        "cav_accuracy": {c: round(r["cav_accuracy"], 3) for c, r in by_concept.items()},
        "instrument_cav_accuracy_min": min(by_concept[c]["cav_accuracy"] for c in instruments),
        "instrument_cav_accuracy_at_least_0.9": sum(by_concept[c]["cav_accuracy"] >= 0.9 for c in instruments),
        "instruments_tested": len(instruments),
        "set_means": {c: [round(v, 3) for v in r["set_means"]] for c, r in by_concept.items()},
        "null_means": {c: [round(v, 3) for v in r["random_concept_means"]] for c, r in by_concept.items()},
        "scores": {c: round(r["score_mean"], 3) for c, r in by_concept.items()},
        "p_corrected": {r["concept"]: float(f"{r['p_corrected']:.3g}") for r in results + chance_results},
        "q_value": {r["concept"]: float(f"{r['q_value']:.3g}") for r in results + chance_results},
        "left_out": report["left_out"],
        "tests": tests,
        "arguments": asdict(args),
    }
