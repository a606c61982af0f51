"""The benchmark scripts that other work relies on run end to end at toy size."""


def test_gpu_budget_smoke_runs_every_stage_through_the_project_loaders():
    from benchmarks.gpu_budget import main

    out = main(["--smoke", "--batch_sizes", "1", "2"])
    assert out["device"].startswith("cpu (smoke")
    for stage in ("synthesis", "captioning", "scoring"):
        rows = out["measured"][stage]
        assert [r["batch_size"] for r in rows] == [1, 2] and all(r["items_per_hour"] > 0 for r in rows)
        assert out["paper_scale"][stage]["gpu_hours"] > 0
    assert out["paper_scale"]["sft"]["steps"] == 625 and out["measured"]["sft"][0]["seconds"] > 0
