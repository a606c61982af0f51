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
