"""TCAV (Kim et al., 2018) on concept sets, through captum.concept: the statistics and the one experiment every
caller runs (`run_experiment`: the CLI and pipeline stage `probing.tcav`, the planted-cause validation
`probing.tcav_validation`, the musicnn experiment `benchmarks.bench_judge_tcav`).

For each concept and each of R random sets: a linear CAV (logistic regression through captum's Classifier
interface, held-out accuracy reported) separating the layer's activations of the concept's positives from those
of the random set; the TCAV score per class is the share of that class's examples whose directional derivative
of the class logit along the CAV is positive. The null comes from random-vs-random runs: each random set in turn
plays the concept against the other random sets, giving R pseudo-concept mean scores; a two-sided t-test
(prediction form) asks whether the concept's mean score could be one of them, Bonferroni-corrected for the number
of (concept, class) tests. With m > 1 disjoint positive sets per concept (`ConceptSets`) Welch's test compares
their m mean scores with the R pseudo-concepts' (`concept_test`): far more power when a random set's score swings
widely, as it does on a small CNN (`probing.tcav_validation`). (Kim et al.'s Welch test of the R runs is
reported too, as `p_value_runs_ttest`: it treats runs that share one concept set as independent, and calls even a
random set of examples significant.) Over a family of tests `correct` adds Bonferroni's family-wise correction and
Benjamini-Hochberg's false-discovery-rate one.

A CAV is a logistic regression (`cav="logistic"`) or the difference of the two sets' mean activations
(`cav="mean_difference"`, FastCAV, Schmalwasser et al., ICML 2025): no fitting, so hundreds of CAVs cost little.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError, DataError


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        names = [n for n in modules if n]
        raise ConfigError(f"the model has no layer {layer!r}; its layers are {names[:40]}")
    return modules[layer]


def check_logits(model: nn.Module, inputs: torch.Tensor, n_classes: int) -> None:
    with torch.no_grad():
        out = model(inputs[:2])
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != n_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the classifier must return class logits of shape (batch, {n_classes}); it returned {shape}")


def validate_sets(
    concept: str, positives: Sequence[str], random_sets: Sequence[Sequence[str]], min_examples: int, source=None
) -> None:
    """A concept needs `min_examples` positives, and random sets that contain none of them."""
    if len(positives) < min_examples:
        raise DataError(
            source, f"concept {concept!r} has {len(positives)} positives; TCAV needs at least {min_examples}"
        )
    overlap = set(positives) & {i for s in random_sets for i in s}
    if overlap:
        raise DataError(
            source, f"random sets of {concept!r} contain {len(overlap)} of its positives, e.g. {sorted(overlap)[:3]}"
        )


def _split(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A seeded (test, train) split of n examples, a third held out by default."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return order[:n_test], order[n_test:]


def _mean_difference(x: np.ndarray, is_a: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, float]:
    """FastCAV on the training part of `x`: the difference of the two sets' means (toward set a), and its held-out
    accuracy with the threshold halfway between the projected means."""
    test, train = _split(len(x), seed, test_fraction)
    mean_a, mean_b = x[train][is_a[train]].mean(0), x[train][~is_a[train]].mean(0)
    direction = mean_a - mean_b
    threshold = float((mean_a + mean_b) @ direction / 2)
    return direction, float(((x[test] @ direction > threshold) == is_a[test]).mean())


def _fast_cav_classifier(seed: int, test_fraction: float = 0.33):
    """A captum `Classifier` whose CAV is the difference of the two sets' mean activations on the training part
    (FastCAV), its threshold halfway between the projected means; accuracy on the held-out part."""
    from captum.concept._utils.classifier import Classifier

    class MeanDifferenceClassifier(Classifier):
        def __init__(self):
            self.coef, self.labels = None, []

        def train_and_eval(self, dataloader, **kwargs):
            x = torch.cat([b[0] for b in dataloader]).float().cpu().numpy()
            y = torch.cat([b[1] for b in dataloader]).cpu().numpy()
            self.labels = sorted({int(v) for v in y})
            if len(self.labels) != 2:
                raise DataError(None, f"a CAV needs two sets of activations; got labels {self.labels}")
            self.coef, accuracy = _mean_difference(x, y == self.labels[1], seed, test_fraction)
            return {"accs": torch.tensor(accuracy)}

        def weights(self):
            coef = torch.tensor(self.coef, dtype=torch.float32)
            return torch.stack([-coef, coef])

        def classes(self):
            return self.labels

    return MeanDifferenceClassifier()


def _cav_classifier(seed: int, test_fraction: float = 0.33):
    """A captum `Classifier` fitting a logistic-regression CAV with held-out accuracy.

    captum's default SGD classifier reports a wrong accuracy for two concepts (argmax over its single output
    column is always class 0, so it reports the class balance); this one is deterministic and reports the
    accuracy on a held-out third of the activations.
    """
    from captum.concept._utils.classifier import Classifier
    from sklearn.linear_model import LogisticRegression

    class LogisticCAVClassifier(Classifier):
        def __init__(self):
            self.lm = LogisticRegression(max_iter=1000, C=1.0)

        def train_and_eval(self, dataloader, **kwargs):
            x = torch.cat([b[0] for b in dataloader]).float().cpu().numpy()
            y = torch.cat([b[1] for b in dataloader]).cpu().numpy()
            test, train = _split(len(y), seed, test_fraction)
            # fewer examples than dimensions (a flattened conv layer: tens of thousands): the L2-penalised fit's
            # weights lie in the span of the training activations, so it is fitted, exactly, in an orthonormal
            # basis of that span (n values per example, not d) and mapped back
            basis = np.linalg.qr(x[train].T)[0] if x.shape[1] > len(train) else np.eye(x.shape[1])
            self.lm.fit(x[train] @ basis, y[train])
            self.coef = basis @ self.lm.coef_[0]
            predicted = (x[test] @ self.coef + self.lm.intercept_[0] > 0).astype(int)
            return {"accs": torch.tensor(float((self.lm.classes_[predicted] == y[test]).mean()))}

        def weights(self):
            coef = torch.tensor(self.coef, dtype=torch.float32)
            return torch.stack([-coef, coef])

        def classes(self):
            return [int(c) for c in self.lm.classes_]  # plain ints: captum reloads CAVs with weights_only=True

    return LogisticCAVClassifier()


CAV_ESTIMATORS = {"logistic": _cav_classifier, "mean_difference": _fast_cav_classifier}  # seed -> captum Classifier


def _prediction_t_test(concept_mean: float, null_means: Sequence[float]) -> float:
    """Two-sided p-value that the concept's mean score is a draw from the distribution of random pseudo-concepts'
    mean scores (a t prediction interval, df = R - 1).

    Kim et al. compare a concept's R scores with R random-vs-random scores as if independent, but the concept's
    runs share one concept set and so are correlated: even a random set of examples then looks significant.
    Here each random set in turn plays the concept against the others, so the null has the same structure.
    """
    from scipy.stats import t

    null = np.asarray(null_means, dtype=float)
    spread = null.std(ddof=1) * np.sqrt(1 + 1 / len(null))
    if spread == 0:
        return 1.0 if concept_mean == null.mean() else 0.0
    return float(2 * t.sf(abs(concept_mean - null.mean()) / spread, df=len(null) - 1))


def _welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t-test of two samples (two-sided p)."""
    from scipy.stats import ttest_ind

    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    with warnings.catch_warnings():  # one sample's values all equal (a concept's sets all scoring 1.0) is fine
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


def concept_test(set_means: Sequence[float], null_means: Sequence[float]) -> float:
    """p-value that a concept's positive sets score like random sets: with one set, the prediction t-test of its
    mean score against the pseudo-concepts' means; with m disjoint sets (independent draws of the concept, as the
    pseudo-concepts are independent draws of random examples), Welch's test of the m set means against them.

    A random set's mean score varies a lot from set to set (its chance make-up decides the sign of most
    directional derivatives at once), so one set can rarely be told from the null: with m sets the test asks
    whether the concept's sets are consistently where random sets only occasionally are.
    """
    return _prediction_t_test(set_means[0], null_means) if len(set_means) == 1 else _welch(set_means, null_means)


class ConceptSets(list):
    """Disjoint positive sets of one concept, each given as model inputs: a concept's value in `tcav_scores`."""


def _batches(x) -> Iterable[torch.Tensor]:
    """Model inputs as batches: a tensor is one batch; anything else is an iterable of batches."""
    return [x] if isinstance(x, torch.Tensor) else x


def _tcav_class():
    """captum's TCAV, computing each concept's activations once. Its `load_cavs` asks `AV.exists` for a concept's
    activations with the layer and the identifier in the order `AV` had before captum's PR #801 swapped them, never
    finds them, and so recomputes both sets' activations for every (concept, random) pair: with R random sets a
    random set's activations were computed 2R - 1 times, which was nine tenths of a validation run's time."""
    from captum.concept import TCAV

    class OnceTCAV(TCAV):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.activated: set[tuple] = set()

        def generate_activation(self, layers, concept) -> None:
            key = (concept.id, tuple([layers] if isinstance(layers, str) else layers))
            if key not in self.activated:
                super().generate_activation(layers, concept)
                self.activated.add(key)

    return OnceTCAV


RANDOM_ID = 1_000_000  # captum concept ids of random sets; concept sets count up from 0


def _captum_counts(model, layer, sets: dict, randoms: list, class_inputs: dict, seed: int, cav: str):
    """Positive directional-derivative counts per class and (set, random set) pair, and each pair's CAV accuracy,
    through captum's TCAV: the CAV fitted by `CAV_ESTIMATORS[cav]`."""
    from captum.concept import Concept
    from transformers import set_seed

    with tempfile.TemporaryDirectory() as cache:
        set_seed(seed)  # captum draws its train/test split from global state
        ids = {key: RANDOM_ID + i if key[0] == "random" else i for i, key in enumerate([*sets, *randoms])}
        if len(sets) >= RANDOM_ID:
            raise ConfigError(f"too many concept sets ({len(sets)}): at most {RANDOM_ID - 1}")
        concept = {
            key: Concept(ids[key], "-".join(map(str, key)), _batches(x)) for key, x in {**sets, **randoms}.items()
        }
        pairs = _pairs(sets, randoms)
        tcav = _tcav_class()(model, layers=[layer], classifier=CAV_ESTIMATORS[cav](seed), save_path=cache)
        set_seed(seed)
        experimental = [[concept[a], concept[b]] for a, b in pairs]
        tcav.compute_cavs(experimental)  # once: every class and batch uses the same CAVs
        positive, totals = {}, {}
        for k, inputs in class_inputs.items():
            counts, total = dict.fromkeys(pairs, 0), 0
            for x in _batches(inputs):
                out = tcav.interpret(x, experimental_sets=experimental, target=k)
                for a, b in pairs:
                    # captum gives the share as float32: back to a whole count, so batches add up exactly
                    share = float(out[f"{ids[a]}-{ids[b]}"][layer]["sign_count"][0])
                    counts[a, b] += round(share * len(x))
                total += len(x)
            positive[k], totals[k] = counts, total
        accuracy = {(a, b): float(tcav.cavs[f"{ids[a]}-{ids[b]}"][layer].stats["accs"]) for a, b in pairs}
    return positive, totals, accuracy


def _pairs(sets: dict, randoms: dict) -> list[tuple]:
    """Every concept set against every random set, then the null: each random set against each other one."""
    return [(c, r) for c in sets for r in randoms] + [(a, b) for a in randoms for b in randoms if a != b]


def _layer_rows(model: nn.Module, module: nn.Module, x: torch.Tensor, target: int | None = None) -> np.ndarray:
    """The layer's activations of a batch, one flattened row per example (as captum stores them); with `target`,
    the gradients of that output with respect to them instead."""
    seen = []
    hook = module.register_forward_hook(lambda m, args, out: seen.append(out))
    try:
        if target is None:
            with torch.no_grad():
                model(x)
            return seen[0].reshape(len(x), -1).float().numpy()
        if x.is_floating_point() and not x.requires_grad:  # a layer that passes its input on needs the input's graph
            x = x.detach().requires_grad_(True)
        out = model(x)
        (grad,) = torch.autograd.grad(out[:, target].sum(), seen[0])
        return grad.reshape(len(x), -1).float().numpy()
    finally:
        hook.remove()


def _direct_counts(model, layer, sets: dict, randoms: list, class_inputs: dict, seed: int):
    """What `_captum_counts` gives for the difference-of-means CAV (FastCAV), computed directly: each set's
    activations and each class's gradients once, then `_fast_counts`."""
    module = resolve_layer(model, layer)
    acts = {key: np.concatenate([_layer_rows(model, module, x) for x in _batches(v)]) for key, v in
            {**sets, **randoms}.items()}  # fmt: skip
    grads = {k: np.concatenate([_layer_rows(model, module, x, target=k) for x in _batches(v)])
             for k, v in class_inputs.items()}  # fmt: skip
    return _fast_counts(acts, list(sets), list(randoms), grads, seed)


def _fast_counts(acts: dict, sets: list, randoms: list, grads: dict, seed: int, test_fraction: float = 0.33):
    """Positive directional-derivative counts per class and (set, random set) pair, and each pair's held-out CAV
    accuracy, for difference-of-means CAVs: every CAV a difference of two means, every directional derivative a
    matrix product, hundreds of CAVs in a second. `acts`: set key -> its activations (rows); `grads`: class ->
    its examples' gradients at the same layer."""
    pairs = _pairs(sets, randoms)
    directions, accuracy = [], {}
    for a, b in pairs:  # each CAV points toward the first set: the concept (or the random set playing it)
        first = np.r_[np.ones(len(acts[a]), bool), np.zeros(len(acts[b]), bool)]
        direction, accuracy[a, b] = _mean_difference(np.concatenate([acts[a], acts[b]]), first, seed, test_fraction)
        directions.append(direction)
    directions = np.stack(directions)
    positive = {k: dict(zip(pairs, (g @ directions.T > 0).sum(0).tolist())) for k, g in grads.items()}
    return positive, {k: len(g) for k, g in grads.items()}, accuracy


def tcav_scores(
    model: nn.Module,
    layer: str,
    concept_inputs: dict,
    random_inputs: list,
    class_inputs: dict,
    seed: int = 0,
    alpha: float = 0.05,
    cav: str = "logistic",
) -> dict:
    """TCAV scores with significance for every (concept, class).

    Every input is a tensor of model inputs or an iterable of such batches (`probing.features.StoreBatches`),
    read batch by batch: directional derivatives are taken one batch at a time and the sign counts summed.

    Args:
        concept_inputs: concept name -> model inputs of its positives, or a `ConceptSets` of several disjoint
            positive sets (tested by `concept_test` on their mean scores).
        random_inputs: R model inputs, the random sets (R >= 2).
        class_inputs: class index -> model inputs of that class's examples.
        cav: a key of `CAV_ESTIMATORS`: "logistic" through captum, "mean_difference" (FastCAV) computed directly.
    Returns:
        {"results": [{concept, class, score_mean, score_std, set_means, random_mean, p_value, p_corrected,
        significant, cav_accuracy, detectable_difference}], "tests": n}
    """
    if len(random_inputs) < 2:
        raise ConfigError("TCAV needs at least two random sets")
    if cav not in CAV_ESTIMATORS:
        raise ConfigError(f"unknown CAV estimator {cav!r}: one of {sorted(CAV_ESTIMATORS)}")
    resolve_layer(model, layer)
    model.eval()
    sets = {}
    for name, x in concept_inputs.items():
        given = list(x) if isinstance(x, ConceptSets) else [x]
        if not given:
            raise ConfigError(f"concept {name!r} has no positive set")
        sets.update({(name, k): s for k, s in enumerate(given)})
    randoms = {("random", i): x for i, x in enumerate(random_inputs)}
    counts = _direct_counts if cav == "mean_difference" else partial(_captum_counts, cav=cav)
    positive, totals, accuracy = counts(model, layer, sets, randoms, class_inputs, seed)
    R, tests = len(randoms), len(concept_inputs) * len(class_inputs)
    results = _statistics(list(concept_inputs), list(sets), list(randoms), positive, totals, accuracy, alpha, tests)
    return {"results": results, "tests": tests, "alpha": alpha, "random_runs": R}


def _statistics(names, sets, randoms, positive, totals, accuracy, alpha: float, tests: int) -> list[dict]:
    """Every (concept, class) result from the counts: scores per (set, random set) pair, the structured null, the
    concept's test and its Bonferroni correction over `tests`."""
    results = []
    for k in totals:

        def score(a, b):
            return positive[k][a, b] / totals[k]

        null_runs = [score(a, b) for a in randoms for b in randoms if a != b]
        null_means = [float(np.mean([score(a, b) for b in randoms if b != a])) for a in randoms]
        for name in names:
            mine = [key for key in sets if key[0] == name]
            per_set = [[score(c, r) for r in randoms] for c in mine]
            scores = [v for runs in per_set for v in runs]
            set_means = [float(np.mean(runs)) for runs in per_set]
            p = concept_test(set_means, null_means)
            p_corrected = min(1.0, p * tests)
            results.append(
                {
                    "concept": name,
                    "class": int(k),
                    "score_mean": float(np.mean(scores)),
                    "score_std": float(np.std(scores)),
                    "scores": scores,
                    "set_means": set_means,
                    "random_mean": float(np.mean(null_runs)),
                    "random_concept_means": null_means,
                    "p_value": p,
                    "p_corrected": p_corrected,
                    "significant": bool(p_corrected < alpha),
                    "p_value_runs_ttest": _welch(scores, null_runs),
                    "cav_accuracy": float(np.mean([accuracy[c, r] for c in mine for r in randoms])),
                    "class_examples": totals[k],
                    "detectable_difference": detectable_difference(null_means, len(mine), alpha / tests),
                }
            )
    return results


def detectable_difference(null_means: Sequence[float], k: int, alpha: float, power: float = 0.8) -> float:
    """The smallest difference between a concept's mean TCAV score and the random pseudo-concepts' that K set
    means would show at level `alpha` (two-sided, already corrected) with the given power, the sets' scores
    spreading as the null's do: (t(1 - alpha/2) + t(power)) * sd * sqrt(1/K + 1/R)."""
    from scipy.stats import t

    r = len(null_means)
    sd = float(np.std(null_means, ddof=1)) if r > 1 else 0.0
    df = max(k + r - 2, 1)
    return float((t.ppf(1 - alpha / 2, df) + t.ppf(power, df)) * sd * np.sqrt(1 / max(k, 1) + 1 / r))


def correct(results: list[dict], alpha: float) -> None:
    """Multiple-testing corrections over every result of a family, in place: Bonferroni's family-wise one
    (`p_corrected`, `significant`) and Benjamini-Hochberg's false-discovery-rate one (`q_value`,
    `significant_fdr`)."""
    m = len(results)
    order = sorted(range(m), key=lambda i: results[i]["p_value"])
    q, running = [0.0] * m, 1.0
    for rank in range(m, 0, -1):  # step-up: the smallest p * m / rank at or above each rank
        i = order[rank - 1]
        running = min(running, results[i]["p_value"] * m / rank)
        q[i] = running
    for r, q_value in zip(results, q):
        r["p_corrected"] = min(1.0, r["p_value"] * m)
        r["significant"] = bool(r["p_corrected"] < alpha)
        r["q_value"] = min(1.0, q_value)
        r["significant_fdr"] = bool(r["q_value"] < alpha)


@dataclass
class ExperimentDesign:
    """How a TCAV experiment deals its sets and tests them."""

    concept_sets: int = 3  # K: disjoint positive sets per concept, tested together (`concept_test`)
    random_sets: int = 10  # R: random sets per concept, free of its positives
    set_size: int | None = None  # examples per set; None: a concept's positives dealt into K sets of equal size
    min_sets: int = 1  # a concept with fewer positive sets than this is left out (counted)
    min_examples: int = 5  # fewest examples in a set
    alpha: float = 0.05
    cav: str = "logistic"  # a key of CAV_ESTIMATORS
    seed: int = 0

    @classmethod
    def of(cls, args, **overrides) -> "ExperimentDesign":
        """The design a caller's arguments hold (the fields they share by name), with `overrides`."""
        from dataclasses import fields

        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}, **overrides)


class _Rows:
    """Activation rows of examples by id, over an index built once: `rows[ids]` stacks them."""

    def __init__(self, index: dict, matrix: np.ndarray):
        self.index, self.matrix = index, matrix

    def __getitem__(self, ids) -> np.ndarray:
        return self.matrix[[self.index[i] for i in ids]]


def _id_rows(model, layer, inputs, runs, classes) -> tuple[_Rows, dict]:
    """FastCAV's inputs for a whole experiment: the layer's activations of every example any set holds, each
    computed once however many sets share it, and every class's gradients, once."""
    module = resolve_layer(model, layer)
    model.eval()
    needed = list(dict.fromkeys(i for tested, randoms in runs for group in [*tested.values(), randoms]
                                for s in group for i in s))  # fmt: skip
    if not needed:
        return _Rows({}, np.zeros((0, 0), np.float32)), {}
    matrix = np.concatenate([_layer_rows(model, module, x) for b in range(0, len(needed), 256)
                             for x in _batches(inputs(needed[b : b + 256]))])  # fmt: skip
    grads = {k: np.concatenate([_layer_rows(model, module, x, target=k) for x in _batches(inputs(list(ids)))])
             for k, ids in classes.items() if len(ids)}  # fmt: skip
    return _Rows({i: n for n, i in enumerate(needed)}, matrix), grads


def deal(ids: Sequence, design: ExperimentDesign, rng: np.random.Generator) -> list[list]:
    """A concept's positives dealt into at most K disjoint sets (in a seeded order): of `set_size` each, or all of
    them in K sets of equal size with at least `min_examples` each."""
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    if design.set_size:
        m = min(design.concept_sets, len(ids) // design.set_size)
        return [shuffled[k * design.set_size : (k + 1) * design.set_size] for k in range(m)]
    m = max(1, min(design.concept_sets, len(ids) // design.min_examples)) if len(ids) >= design.min_examples else 0
    return [sorted(shuffled[k::m]) for k in range(m)]


def run_experiment(
    model: nn.Module,
    layer: str,
    inputs: Callable[[list], object],
    concepts: Mapping[str, Sequence],
    random_pool: Sequence | Mapping[str, Sequence],
    classes: Mapping[int, Sequence],
    design: ExperimentDesign,
) -> dict:
    """The TCAV experiment: for every concept, K disjoint positive sets and R random sets drawn from the same data
    free of its positives, scored for every class, then corrected over every (concept, class) test.

    Args:
        inputs: a list of example ids -> their model inputs (a tensor, or an iterable of batches).
        concepts: concept name -> ids of its positives ("concepts" of random examples check the test itself).
        random_pool: concept -> the ids its own random sets are drawn from (e.g. the examples whose attributes do
            not list it); or one pool for every concept, from which R random sets free of every tested concept's
            positives are drawn once, so that all concepts share one null and one pass over each class.
        classes: output index -> ids of the examples whose directional derivatives are counted.
    Returns:
        {"results": [... `tcav_scores` rows with `correct`'s fields], "tests", "alpha", "left_out": {concept:
        reason}, "random_sets": {concept: R used}, "set_sizes": {concept: examples per set}, "design"}
    """
    rng = np.random.default_rng(design.seed)
    left_out, dealt = {}, {}
    for name, ids in concepts.items():
        sets = deal(list(ids), design, rng)
        if len(sets) < max(design.min_sets, 1):
            size = design.set_size or design.min_examples
            left_out[name] = f"{len(ids)} positives, too few for {max(design.min_sets, 1)} set(s) of {size}"
        else:
            dealt[name] = sets

    def random_sets(pool: Sequence, exclude: set, size: int) -> list[list]:
        """R sets of `size` from the pool free of `exclude`: disjoint where the pool holds R of them, else each
        drawn on its own (sets may then share examples, as TCAV's random sets from a large pool do)."""
        free = [i for i in (pool[j] for j in rng.permutation(len(pool))) if i not in exclude]
        if len(free) < 2 * size:
            return []
        if len(free) >= design.random_sets * size:
            return [free[j * size : (j + 1) * size] for j in range(design.random_sets)]
        return [
            [free[j] for j in sorted(rng.choice(len(free), size, replace=False))] for _ in range(design.random_sets)
        ]

    if isinstance(random_pool, Mapping):
        runs = [({name: sets}, random_sets(random_pool[name], set(concepts[name]), len(sets[0])))
                for name, sets in dealt.items()]  # fmt: skip
    else:
        size = design.set_size or min((len(sets[0]) for sets in dealt.values()), default=1)
        runs = [(dealt, random_sets(random_pool, {i for ids in concepts.values() for i in ids}, size))]
    results, random_counts, sizes = [], {}, {}
    rows = _id_rows(model, layer, inputs, runs, classes) if design.cav == "mean_difference" else None
    class_inputs = None if rows else {k: inputs(list(ids)) for k, ids in classes.items() if len(ids)}
    for tested, randoms in runs:
        if len(randoms) < 2:
            left_out.update({n: "too few examples free of the positives for two random sets" for n in tested})
            continue
        random_counts.update(dict.fromkeys(tested, len(randoms)))
        sizes.update({name: len(sets[0]) for name, sets in tested.items()})
        if rows is not None:  # FastCAV: every clip's activations and every class's gradients computed once
            acts, grads = rows
            keyed = {(name, j): s for name, sets in tested.items() for j, s in enumerate(sets)}
            concept_keys = list(keyed)
            keyed.update({("random", j): s for j, s in enumerate(randoms)})
            random_keys = [k for k in keyed if k not in concept_keys]
            counts = _fast_counts({key: acts[ids] for key, ids in keyed.items()}, concept_keys, random_keys, grads,
                                  design.seed)  # fmt: skip
            results += _statistics(list(tested), concept_keys, random_keys, *counts, design.alpha,
                                   len(tested) * len(grads))  # fmt: skip
            continue
        out = tcav_scores(
            model,
            layer,
            {name: ConceptSets(inputs(s) for s in sets) for name, sets in tested.items()},
            [inputs(s) for s in randoms],
            class_inputs,
            seed=design.seed,
            alpha=design.alpha,
            cav=design.cav,
        )
        results += out["results"]
    correct(results, design.alpha)
    for r in results:  # over the whole family's tests, as the correction is
        r["detectable_difference"] = detectable_difference(r["random_concept_means"], len(r["set_means"]),
                                                           design.alpha / max(len(results), 1))  # fmt: skip
    detectable = [r["detectable_difference"] for r in results]
    return {
        "results": results,
        "tests": len(results),
        # the smallest difference from the random pseudo-concepts' mean score that this K and R detect with power
        # 0.8 after Bonferroni over every test (median over the (concept, class) tests)
        "detectable_difference": float(np.median(detectable)) if detectable else None,
        "alpha": design.alpha,
        "left_out": left_out,
        "random_sets": random_counts,
        "set_sizes": sizes,
        "design": asdict(design),
    }
