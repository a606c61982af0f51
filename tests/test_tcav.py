import pytest
import torch
from torch import nn

from core.errors import ConfigError, DataError
from probing.tcav import format_table
from probing.tcav_engine import check_logits, resolve_layer, tcav_scores, validate_sets

DIRECTION = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]) / 2


class PlantedModel(nn.Module):
    """Class 0's logit grows along DIRECTION everywhere, class 1's falls; along the other four dimensions the
    gradient changes sign from input to input (a quadratic term), so a random direction scores near chance."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Identity()

    def forward(self, x):
        h = self.hidden(x)
        s = h @ DIRECTION + 0.5 * (h[:, 4:] ** 2).sum(1)
        return torch.stack([s, -s], dim=1)


def data(seed: int, n: int = 60, shift: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g) + shift * DIRECTION * 2


@pytest.fixture(scope="module")
def planted_report():
    randoms = [data(100 + i) for i in range(10)]
    concepts = {"planted": data(1, shift=1.5), "random concept": data(2)}
    classes = {0: data(3), 1: data(4)}
    return tcav_scores(PlantedModel(), "hidden", concepts, randoms, classes, seed=0), (concepts, randoms, classes)


def result(report, concept, cls):
    return next(r for r in report["results"] if r["concept"] == concept and r["class"] == cls)


def test_planted_concept_scores_near_one_for_the_class_it_drives_and_is_significant(planted_report):
    report, _ = planted_report
    up, down = result(report, "planted", 0), result(report, "planted", 1)
    assert up["score_mean"] > 0.9 and up["significant"]
    assert down["score_mean"] < 0.1 and down["significant"]
    assert up["cav_accuracy"] > 0.9  # the CAV separates the concept from random activations
    assert 0.2 < up["random_mean"] < 0.8


def test_random_concept_is_not_significant(planted_report):
    report, _ = planted_report
    assert (
        not result(report, "random concept", 0)["significant"]
        and not result(report, "random concept", 1)["significant"]
    )
    # Kim et al.'s Welch test of runs that share one concept set would call it significant
    assert result(report, "random concept", 0)["p_value_runs_ttest"] < 0.01
    assert report["tests"] == 4 and all(r["p_corrected"] == min(1.0, r["p_value"] * 4) for r in report["results"])


def test_identical_under_the_same_seed(planted_report):
    report, (concepts, randoms, classes) = planted_report
    again = tcav_scores(PlantedModel(), "hidden", concepts, randoms, classes, seed=0)
    assert again["results"] == report["results"]
    assert "planted" in format_table({**report, "classes": ["up", "down"]})


def test_bad_layer_logits_and_sets():
    with pytest.raises(ConfigError, match="no layer 'block9'; its layers are \\['hidden'\\]"):
        resolve_layer(PlantedModel(), "block9")

    class NotLogits(nn.Module):
        def forward(self, x):
            return x.sum(1)

    with pytest.raises(ConfigError, match="must return class logits of shape \\(batch, 2\\); it returned \\(2,\\)"):
        check_logits(NotLogits(), torch.randn(4, 8), 2)
    with pytest.raises(DataError, match="'piano' has 2 positives; TCAV needs at least 5"):
        validate_sets("piano", ["a", "b"], [["c"], ["d"]], 5)
    with pytest.raises(DataError, match="random sets of 'piano' contain 1 of its positives"):
        validate_sets("piano", ["a", "b", "c"], [["c", "d"], ["e"]], 2)
    with pytest.raises(ConfigError, match="at least two random sets"):
        tcav_scores(PlantedModel(), "hidden", {"x": data(1)}, [data(2)], {0: data(3)})


def test_streamed_in_batches_equals_one_batch(planted_report):
    """Concept, random and class inputs read batch by batch (as the TCAV stage reads audio) give the results of
    whole tensors: the same CAVs and the same sign counts."""
    report, (concepts, randoms, classes) = planted_report

    def batched(x, size=7):
        return [x[b : b + size] for b in range(0, len(x), size)]

    streamed = tcav_scores(
        PlantedModel(),
        "hidden",
        {k: batched(v) for k, v in concepts.items()},
        [batched(r) for r in randoms],
        {k: batched(v, 11) for k, v in classes.items()},
        seed=0,
    )
    for a, b in zip(streamed["results"], report["results"]):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-9) and a["p_value"] == pytest.approx(b["p_value"])
        assert a["cav_accuracy"] == b["cav_accuracy"]


def test_streamed_classifier_training_equals_in_memory(tmp_path):
    """The genre CNN trained from log-mels kept in a file (`FeatureStore`) is the one trained from a tensor."""
    from probing.features import FeatureStore
    from probing.genre_classifier import fit_classifier

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 16, 20, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    store = FeatureStore(tmp_path / "features.tmp")
    for b in range(0, 40, 9):
        store.append(x[b : b + 9])
    assert len(store) == 40 and torch.equal(store[torch.tensor([3, 0, 39])], x[[3, 0, 39]])
    in_memory, losses = fit_classifier(x, y, 3, 16, 4, 2, 8, 1e-2, seed=0)
    streamed, streamed_losses = fit_classifier(store, y, 3, 16, 4, 2, 8, 1e-2, seed=0)
    store.close()
    assert streamed_losses == losses and not (tmp_path / "features.tmp").exists()
    for (name, a), b in zip(in_memory.state_dict().items(), streamed.state_dict().values()):
        assert torch.equal(a, b), name


def test_several_concept_sets_are_tested_by_their_mean_scores():
    """A concept given as disjoint positive sets: each set scored against every random set, the set means compared
    with the pseudo-concepts' (Welch); a concept made of random examples stays not significant."""
    from probing.tcav_engine import ConceptSets

    randoms = [data(100 + i) for i in range(8)]
    concepts = {
        "planted": ConceptSets([data(1, 30, shift=1.5), data(5, 30, shift=1.5), data(6, 30, shift=1.5)]),
        "random concept": ConceptSets([data(2, 30), data(7, 30), data(8, 30)]),
    }
    model, forwards = PlantedModel(), []
    model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    report = tcav_scores(model, "hidden", concepts, randoms, {0: data(3)}, seed=0)
    assert len(forwards) == 6 + 8 + 1  # each set's activations once (captum alone: once per pair), one class batch
    planted, chance = result(report, "planted", 0), result(report, "random concept", 0)
    assert len(planted["set_means"]) == 3 and len(planted["scores"]) == 3 * 8
    assert planted["score_mean"] > 0.9 and planted["p_corrected"] < 1e-3 and planted["significant"]
    assert not chance["significant"]


def test_cav_fitted_in_the_span_of_its_examples_is_the_full_dimensional_fit():
    """More dimensions than examples (a flattened conv layer): the CAV fitted in an orthonormal basis of the training
    activations' span is the L2-penalised logistic regression fitted on all dimensions."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from probing.tcav_engine import _cav_classifier

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(30, 400, generator=g) + 0.3, torch.randn(30, 400, generator=g)])
    y = torch.cat([torch.ones(30), torch.zeros(30)]).long()
    cav = _cav_classifier(seed=0)
    accuracy = float(cav.train_and_eval([(x, y)])["accs"])
    test = np.random.default_rng(0).permutation(60)[:20]
    train = np.setdiff1d(np.arange(60), test)
    full = LogisticRegression(max_iter=5000, C=1.0, tol=1e-8).fit(x[train].numpy(), y[train].numpy())
    weights = cav.weights()[1].numpy()
    cosine = weights @ full.coef_[0] / np.linalg.norm(weights) / np.linalg.norm(full.coef_[0])
    assert cosine > 0.999 and cav.classes() == [0, 1]
    assert accuracy == float((full.predict(x[test].numpy()) == y[test].numpy()).mean())


def test_frame_classifier_saves_loads_and_names_its_architecture(tmp_path):
    from probing.genre_classifier import MelConfig, fit_classifier, load_classifier, save_classifier

    x, y = torch.randn(12, 16, 40), torch.randint(0, 2, (12,))
    model, _ = fit_classifier(x, y, 2, 16, 4, 1, 4, 1e-2, seed=0, architecture="frames")
    save_classifier(tmp_path / "cnn", model, ["a", "b"], MelConfig(n_mels=16), 4, {})
    loaded, _, classes = load_classifier(tmp_path / "cnn")
    assert type(loaded).__name__ == "FrameCNN" and classes == ["a", "b"] and "frames" in dict(loaded.named_modules())
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ConfigError, match="unknown classifier architecture 'frame'"):
        fit_classifier(x, y, 2, 16, 4, 1, 4, 1e-2, seed=0, architecture="frame")


def test_corrections_bonferroni_and_benjamini_hochberg():
    """Benjamini-Hochberg's q-values by hand: sorted p (0.001, 0.01, 0.02, 0.04, 0.5) give p*m/rank (0.005, 0.025,
    0.0333, 0.05, 0.5), each the minimum of itself and every larger rank's."""
    from probing.tcav_engine import correct

    results = [{"p_value": p} for p in (0.04, 0.001, 0.5, 0.02, 0.01)]
    correct(results, 0.05)
    assert [r["q_value"] for r in results] == pytest.approx([0.05, 0.005, 0.5, 0.1 / 3, 0.025])
    assert [r["p_corrected"] for r in results] == pytest.approx([0.2, 0.005, 1.0, 0.1, 0.05])
    assert [r["significant"] for r in results] == [False, True, False, False, False]
    assert [r["significant_fdr"] for r in results] == [False, True, False, True, True]


def test_mean_difference_cav_agrees_with_the_logistic_one(planted_report):
    """FastCAV (difference of means) points where the logistic CAV points on the planted model, and gives the same
    verdicts."""
    _, (concepts, randoms, classes) = planted_report
    fast = tcav_scores(PlantedModel(), "hidden", concepts, randoms, classes, seed=0, cav="mean_difference")
    slow = tcav_scores(PlantedModel(), "hidden", concepts, randoms, classes, seed=0)
    for a, b in zip(fast["results"], slow["results"]):
        assert a["significant"] == b["significant"], (a["concept"], a["class"])
        assert abs(a["score_mean"] - b["score_mean"]) < 0.15
    assert result(fast, "planted", 0)["cav_accuracy"] > 0.9
    with pytest.raises(ConfigError, match="unknown CAV estimator 'svm'"):
        tcav_scores(PlantedModel(), "hidden", concepts, randoms, classes, cav="svm")


def test_the_experiment_deals_sets_draws_random_sets_free_of_positives_and_corrects():
    """One experiment: K disjoint positive sets, R random sets from the pool free of the concept's positives, every
    (concept, class) corrected together; a concept too small for its sets is left out with the reason."""
    from probing.tcav_engine import ExperimentDesign, run_experiment

    x = torch.cat([data(1, 90, shift=1.5), data(2, 300), data(3, 60)])  # planted 0-89, others 90-389, class 390-449
    seen = []

    def inputs(ids):
        seen.append(list(ids))
        return x[list(ids)]

    concepts = {"planted": list(range(90)), "random concept": list(range(90, 180)), "tiny": [0, 1, 2]}
    # a concept's own pool: examples that do not have it; the planted one's also holds its positives, to be removed
    pools = {"planted": list(range(390)), "random concept": list(range(90, 390)), "tiny": list(range(90, 390))}
    design = ExperimentDesign(concept_sets=3, random_sets=6, set_size=30)
    report = run_experiment(PlantedModel(), "hidden", inputs, concepts, pools, {0: list(range(390, 450))}, design)
    assert report["tests"] == 2 and set(report["left_out"]) == {"tiny"} and "too few" in report["left_out"]["tiny"]
    assert report["random_sets"] == {"planted": 6, "random concept": 6} and report["set_sizes"]["planted"] == 30
    planted, chance = result(report, "planted", 0), result(report, "random concept", 0)
    assert planted["significant"] and planted["significant_fdr"] and len(planted["set_means"]) == 3
    assert not chance["significant"] and not chance["significant_fdr"]
    dealt = seen[1:4]  # after the class: the planted concept's three sets, then its six random sets
    assert sorted(i for s in dealt for i in s) == list(range(90))
    assert not {i for s in seen[4:10] for i in s} & set(range(90))


def test_the_direct_fast_cav_is_captums_with_the_same_estimator(planted_report):
    """FastCAV computed directly (activations and gradients once, CAVs as differences of means) gives the counts and
    accuracies captum gives with the same estimator, pair by pair, the null's pairs in both orders included."""
    from probing.tcav_engine import _captum_counts, _direct_counts

    _, (concepts, randoms, classes) = planted_report
    sets = {(name, 0): x for name, x in concepts.items()}
    randoms = {("random", i): x for i, x in enumerate(randoms[:4])}
    direct = _direct_counts(PlantedModel(), "hidden", sets, randoms, classes, seed=3)
    captum = _captum_counts(PlantedModel(), "hidden", sets, randoms, classes, seed=3, cav="mean_difference")
    assert direct[1] == captum[1] and direct[0] == captum[0]
    assert direct[2] == pytest.approx(captum[2])
    assert len(direct[2]) == 2 * 4 + 4 * 3


def test_the_report_says_the_smallest_difference_it_could_detect():
    from probing.tcav_engine import detectable_difference

    null = [0.2, 0.4, 0.6, 0.8, 0.5]
    small, large = detectable_difference(null, 10, 0.05), detectable_difference(null, 2, 0.05)
    assert 0 < small < large  # more positive sets, a smaller detectable effect
    assert detectable_difference(null, 10, 0.05 / 100) > small  # corrected over more tests, a larger one
    assert detectable_difference([0.5] * 5, 10, 0.05) == 0.0


def test_the_experiment_computes_each_clips_activations_once_for_fastcav(monkeypatch):
    """With FastCAV the experiment computes every clip's activations once, however many sets share it, and gives
    what scoring each concept's sets separately gives."""
    import probing.tcav_engine as engine

    x = torch.cat([data(1, 90, shift=1.5), data(2, 300), data(3, 60)])
    concepts = {"planted": list(range(90)), "random concept": list(range(90, 180))}
    pools = {"planted": list(range(90, 390)), "random concept": list(range(180, 390))}
    design = engine.ExperimentDesign(concept_sets=3, random_sets=20, set_size=30, cav="mean_difference")
    forwards = []
    model = PlantedModel()
    model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    fast = engine.run_experiment(model, "hidden", lambda ids: x[list(ids)], concepts, pools, {0: list(range(390, 450))},
                                 design)  # fmt: skip
    assert sum(forwards) <= 390 + 60  # each clip once, and the class once (its gradients)
    monkeypatch.setattr(engine, "_id_rows", lambda *args: None)  # each concept's sets scored on their own
    slow = engine.run_experiment(PlantedModel(), "hidden", lambda ids: x[list(ids)], concepts, pools,
                                 {0: list(range(390, 450))}, design)  # fmt: skip
    assert [r["scores"] for r in fast["results"]] == [r["scores"] for r in slow["results"]]
    assert [r["p_corrected"] for r in fast["results"]] == pytest.approx([r["p_corrected"] for r in slow["results"]])
    assert fast["random_sets"] == {"planted": 20, "random concept": 20}  # R sets drawn on their own from 300 and 210
