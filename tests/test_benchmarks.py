"""The benchmark scripts that other work relies on run end to end at toy size."""

import pytest


@pytest.mark.slow
def test_gpu_budget_smoke_runs_every_stage_through_the_project_loaders():
    from benchmarks.gpu_budget import main

    out = main(["--smoke", "--batch_sizes", "1", "2"])
    assert out["device"].startswith("cpu (smoke")
    for stage in ("synthesis", "captioning", "scoring"):
        rows = out["measured"][stage]
        assert [r["batch_size"] for r in rows] == [1, 2]
        assert out["paper_scale"][stage]["gpu_hours"] > 0
    assert out["paper_scale"]["sft"]["steps"] == 625 and out["measured"]["sft"][0]["seconds"] > 0


def test_the_budget_takes_each_stages_best_batch_and_stops_at_an_error():
    from benchmarks.gpu_budget import PAPER, budget

    rows = [
        {"batch_size": 1, "items_per_hour": 100.0},
        {"batch_size": 2, "items_per_hour": 400.0},
        {"batch_size": 4, "error": "CUDA out of memory"},
    ]
    out = budget({"synthesis": rows, "captioning": rows[:1], "scoring": rows, "sft": [{"seconds": 36.0}]}, attempts=1.5)
    assert out["synthesis"] == {"best_batch_size": 2, "gpu_hours": round(PAPER["lists"] * 1.5 / 400, 2)}
    assert out["captioning"] == {"best_batch_size": 1, "gpu_hours": round(PAPER["lists"] * 1.5 / 100, 2)}
    assert out["scoring"]["gpu_hours"] == round(PAPER["clips"] / 400, 2)
    assert out["sft"]["gpu_hours"] == round(out["sft"]["steps"] * 36.0 / 3600, 2)


def test_the_reference_results_are_read_through_our_aliases():
    from benchmarks.compare_reference_tcav import reference_pairs
    from builder.taxonomy import Taxonomy

    guitar = {"cav_accuracy": 0.66, "genre_scores": {"rock": 0.66, "hiphop": 0.4}}
    reference = {"instrument": {"electric guitar": guitar, "no such tag": {"cav_accuracy": 0.7, "genre_scores": {}}}}
    pairs = reference_pairs(reference, Taxonomy.from_concept_table())
    assert set(pairs) == {("electric guitar", "rock"), ("electric guitar", "hip hop")}
    assert (
        pairs["electric guitar", "rock"]["score"] == 0.66 and pairs["electric guitar", "rock"]["cav_accuracy"] == 0.66
    )


@pytest.mark.slow
def test_the_power_benchmark_runs_end_to_end_at_toy_size():
    from benchmarks.bench_tcav_power import main

    out = main("--clips 800 --duration_s 1.5 --epochs 2 --repeats 2 --designs 3x10 --set_size 10".split())
    design = out["designs"]["3x10"]
    assert set(design["power_bonferroni"]) == {"1", "0.5", "0.3", "0.15"} and design["random_concept_tests"] == 10
    assert all(0 <= v <= 1 for v in [*design["power_fdr"].values(), design["false_positive_rate_fdr"]])
    assert design["mean_score"]["1"] >= design["mean_score"]["0.15"]  # a stronger cause moves the score further
