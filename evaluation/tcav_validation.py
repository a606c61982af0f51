"""TCAV validated against ground truth, on audio the symbolic renderer makes.

Clips are rendered from attribute lists in which one concept is planted (present in half of the clips, drawn
independently of everything else) and every other concept is drawn independently of it: a genre, a tempo and each
of a pool of instruments at random. A classifier (the log-mel CNN of `evaluation.genre_classifier`) learns which
instruments a clip holds, one sigmoid output per pool instrument and the planted one (`multi_label`, the default;
else it tells clips with the planted concept from clips without it). TCAV (`evaluation.tcav`) then tests, for the
planted concept's output, the planted concept and every independent concept, each against random sets of clips:
the planted concept should come out significant after correction with a score far from 0.5, the independent ones
not (their share of significant results is the false-positive rate). CAV accuracy per concept is reported.

Why multi-label and the pooled features (`embedding.1`) by default: a classifier trained on the planted concept
alone has no reason to represent any other instrument, so their CAVs cannot separate them (accuracy near 0.5 was
measured), and after the dense head the class gradient is the same for every clip (the head is linear), so any
direction's TCAV score is 0 or 1 and the random-vs-random null is all-or-nothing.

    from evaluation.tcav_validation import ValidationArguments, run_validation
    report = run_validation(ValidationArguments(clips=600), taxonomy)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from builder.taxonomy import Taxonomy
from core.config import get_logger
from core.errors import ConfigError
from evaluation.audio_data import pad_stack
from evaluation.genre_classifier import LogMel, MelConfig, fit_classifier
from evaluation.tcav import tcav_scores
from generation.symbolic import SymbolicSynthesizer

logger = get_logger(__name__)


@dataclass
class ValidationArguments:
    planted: str = "trumpet"
    instruments: list[str] = field(default_factory=lambda: [
        "piano", "acoustic guitar", "electric guitar", "bass guitar", "strings", "flute", "violin", "organ",
        "synth pad", "drum kit", "saxophone", "hand claps"])
    genres: list[str] = field(default_factory=lambda: ["rock", "jazz", "pop", "classical", "reggae", "funk"])
    tempi: list[str] = field(default_factory=lambda: ["slow tempo", "medium tempo", "fast tempo", "swing feel",
                                                      "waltz time", "four on the floor"])
    instrument_rate: float = 0.3  # each pool instrument's chance to be in a list
    clips: int = 600  # rendered clips: half train the classifier, half make the concept and class sets
    duration_s: float = 4.0
    epochs: int = 12
    learning_rate: float = 1e-3
    channels: int = 16
    layer: str = "embedding.1"  # the pooled convolutional features (64 values), before the dense layers
    multi_label: bool = True  # one output per pool instrument and the planted one (else: planted present or not)
    random_sets: int = 6
    set_size: int = 40
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


def run_validation(args: ValidationArguments, taxonomy: Taxonomy) -> dict:
    rng = np.random.default_rng(args.seed)
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
    to_mel = LogMel(MelConfig(duration_s=args.duration_s))
    with torch.no_grad():
        x = torch.cat([to_mel(pad_stack(waves[b:b + 64], to_mel.samples)) for b in range(0, len(waves), 64)])
    y = torch.tensor([int(args.planted in tags) for tags in lists])
    half = len(lists) // 2
    if args.multi_label:  # every instrument a label: the features must tell each instrument, not the planted one alone
        outputs = [args.planted, *args.instruments]
        labels = torch.tensor([[float(o in tags) for o in outputs] for tags in lists])
        n_outputs, target = len(outputs), 0
    else:
        labels, n_outputs, target = y, 2, 1
    model, losses = fit_classifier(x[:half], labels[:half], n_outputs, to_mel.config.n_mels, args.channels,
                                   args.epochs, 16, args.learning_rate, args.seed)
    with torch.no_grad():
        logits = model(x[half:])
    planted_predicted = logits[:, 0] > 0 if args.multi_label else logits.argmax(1) == 1
    accuracy = float((planted_predicted.long() == y[half:]).float().mean())
    # from the half the classifier never saw: concept and class sets from one part, random sets from the other, so
    # that no clip is in a concept set and a random set at once; each concept's random sets hold none of its
    # positives (as in the tcav stage), and its null comes from those random sets alone
    held = list(range(half, len(lists)))
    pool, others = held[: len(held) // 2], held[len(held) // 2:]
    class_ids = [i for i in pool if y[i] == 1][: 2 * args.set_size]
    tested = [c for c in [args.planted, *args.instruments, *args.genres, *args.tempi]
              if sum(c in lists[i] for i in pool) >= 10][: None if args.max_independent is None else args.max_independent + 1]
    results = []
    for concept in tested:
        positives = [i for i in pool if concept in lists[i]][: args.set_size]
        free = rng.permutation([i for i in others if concept not in lists[i]])
        size = min(args.set_size, len(free) // args.random_sets)
        if size < 5:
            raise ConfigError(f"too few clips without {concept!r} for {args.random_sets} random sets: render more clips")
        randoms = [free[r * size:(r + 1) * size] for r in range(args.random_sets)]
        results += tcav_scores(model, args.layer, {concept: x[positives]}, [x[ids] for ids in randoms],
                               {target: x[class_ids]}, seed=args.seed, alpha=args.alpha)["results"]
    for r in results:  # Bonferroni over every concept tested
        r["p_corrected"] = min(1.0, r["p_value"] * len(results))
        r["significant"] = bool(r["p_corrected"] < args.alpha)
    report = {"results": results, "tests": len(results)}
    by_concept = {r["concept"]: r for r in report["results"]}
    planted = by_concept[args.planted]
    independent = [r for c, r in by_concept.items() if c != args.planted]
    return {
        "planted": args.planted, "clips": len(lists), "left_out_inaudible": inaudible,
        "classifier_held_out_accuracy": accuracy, "classifier_losses": losses,
        "planted_score": planted["score_mean"], "planted_p_corrected": planted["p_corrected"],
        "planted_significant": planted["significant"], "planted_cav_accuracy": planted["cav_accuracy"],
        "independent_concepts": len(independent),
        "independent_significant": sorted(r["concept"] for r in independent if r["significant"]),
        "false_positive_rate": sum(r["significant"] for r in independent) / max(len(independent), 1),
        "cav_accuracy": {c: round(r["cav_accuracy"], 3) for c, r in by_concept.items()},
        "instrument_cav_accuracy_min": min(by_concept[c]["cav_accuracy"] for c in [args.planted, *args.instruments]
                                           if c in by_concept),
        "null_means": {c: [round(v, 3) for v in r["random_concept_means"]] for c, r in by_concept.items()},
        "scores": {c: round(r["score_mean"], 3) for c, r in by_concept.items()},
        "tests": report["tests"], "arguments": asdict(args),
    }
