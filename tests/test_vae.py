import math

import numpy as np
import pytest
import torch

from builder.taxonomy import Concept, Taxonomy
from core.errors import DataError
from evaluation.vae_report import collapse_warning, reconstruction_metrics, sample_metrics
from evaluation.vae_report import main as report_main
from fixtures.runs import accelerate_cpu
from generation.sample_tags import SamplingArguments, SamplingExhaustedError, reference_lists, sample_tag_lists
from generation.sample_tags import main as sample_main
from training import train_vae as train_module
from training.constraints import CONSTRAINTS_NAME, Constraints
from training.train_vae import NonFiniteLossError, VAETrainingArguments, load_split_matrices, train_vae
from training.vae import load_checkpoint, multi_hot, vae_loss


def test_loss_matches_its_definition():
    torch.manual_seed(0)
    x = (torch.rand(4, 6) < 0.5).float()
    logits, mu, logvar = torch.randn(4, 6), torch.randn(4, 3), torch.randn(4, 3)
    total, bce, kl = vae_loss(logits, x, mu, logvar, beta=0.25)
    p = torch.sigmoid(logits)
    expected_bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum(1).mean()
    expected_kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(1).mean()
    assert torch.allclose(bce, expected_bce, atol=1e-5) and torch.allclose(kl, expected_kl, atol=1e-5)
    assert torch.allclose(total, expected_bce + 0.25 * expected_kl, atol=1e-5)
    assert vae_loss(logits, x, torch.zeros(4, 3), torch.zeros(4, 3), 1.0)[2].item() == 0.0


def test_training_loss_falls_and_checkpoint_round_trips(tiny_vae, taxonomy, distilled_dir):
    path, result = tiny_vae
    history = result["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["validation_loss"] < history[0]["validation_loss"]
    model, trained_on, meta = load_checkpoint(path)  # from the folder alone
    assert trained_on.fingerprint() == taxonomy.fingerprint()
    assert meta["model"]["latent_dim"] == 16 and meta["best_epoch"] == result["best_epoch"]
    z = torch.randn(5, 16)
    again, _, _ = load_checkpoint(path, taxonomy)
    assert torch.equal(model.decode(z), again.decode(z))
    x = load_split_matrices(distilled_dir / "musiccaps_tagged.parquet", taxonomy)["validation"]
    assert math.isclose(
        train_module.evaluate_loss(model, torch.from_numpy(x), 0.25), result["best_validation_loss"], rel_tol=1e-4
    )


def test_sampling_is_seeded_and_obeys_the_rules(tiny_vae, distilled_dir):
    path, _ = tiny_vae
    model, taxonomy, _ = load_checkpoint(path)
    constraints = Constraints.load(path / CONSTRAINTS_NAME)
    seen = reference_lists(distilled_dir / "musiccaps_tagged.parquet", taxonomy)
    args = SamplingArguments(num_lists=300, seed=3, batch_size=256)
    a, summary = sample_tag_lists(model, taxonomy, constraints, args, seen)
    b, _ = sample_tag_lists(model, taxonomy, constraints, args, seen)
    c, _ = sample_tag_lists(
        model, taxonomy, constraints, SamplingArguments(num_lists=300, seed=4, batch_size=256), seen
    )
    assert a.equals(b) and not a.equals(c)
    rows = a.to_pylist()
    assert len({r["id"] for r in rows}) == 300 and len({tuple(r["tags"]) for r in rows}) == 300
    for r in rows:
        assert sum(bool(r[cat]) for cat in ("genre", "mood", "instrument", "tempo")) >= 3
        assert not constraints.violations(r["tags"])
        assert tuple(r["tags"]) not in seen
    assert summary["lists"] == 300 and sum(summary["rejected"].values()) + 300 == summary["considered"]


def test_contradiction_rules(taxonomy):
    constraints = Constraints({"tempo level": ["slow tempo", "fast tempo"]}, [("classical", "electronic drums")])
    assert constraints.violations(["classical", "slow tempo", "fast tempo"]) == [
        "exclusive (tempo level): 'slow tempo' and 'fast tempo'"
    ]
    assert constraints.violations(["electronic drums", "classical"]) == [
        "never co-occur: 'electronic drums' and 'classical'"
    ]
    assert constraints.violations(["classical", "slow tempo", "piano"]) == []
    m = constraints.forbidden_matrix(taxonomy)
    assert (
        m[taxonomy.index["slow tempo"], taxonomy.index["fast tempo"]]
        and not m[taxonomy.index["piano"], taxonomy.index["classical"]]
    )


def test_learned_constraints_from_real_rows(tiny_vae):
    constraints = Constraints.load(tiny_vae[0] / CONSTRAINTS_NAME)
    pairs = {frozenset(p) for p in constraints.forbidden_pairs}
    assert frozenset(("classical", "electronic drums")) in pairs
    assert frozenset(("acoustic drums", "hi hats")) not in pairs  # a reviewed exception
    assert "medium tempo" in constraints.exclusive_groups["tempo level"]


def test_sample_metrics_and_report(tiny_vae, distilled_dir, taxonomy, tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    path, _ = tiny_vae
    tags = tmp_path / "tags.parquet"
    sample_main(
        [
            "--vae",
            str(path),
            "--reference",
            str(distilled_dir / "musiccaps_tagged.parquet"),
            "--output",
            str(tags),
            "--num_lists",
            "200",
        ]
    )
    report = report_main(
        ["--vae", str(path), "--tagged", str(distilled_dir / "musiccaps_tagged.parquet"), "--tags", str(tags)]
    )
    s, sampler = report["sample"], report["sampler"]
    assert s["n"] == 200 and sampler["lists"] == 200
    # every draw the sampler considered was kept or rejected for a counted reason
    assert sampler["lists"] + sum(sampler["rejected"].values()) <= sampler["draws"] == sampler["raw"]["draws"]
    raw = sampler["raw"]
    assert 0 < raw["unique_rate"] <= 1 and raw["concepts_used"] >= s["concepts_used"]
    # the divergence tells a sample of MusicCaps itself from lists drawn uniformly at random
    rng = np.random.default_rng(0)
    uniform = (rng.random((200, len(taxonomy.names))) < s["mean_tags_per_list"] / len(taxonomy.names)).astype(
        np.float32
    )
    reference = np.concatenate(list(load_split_matrices(distilled_dir / "musiccaps_tagged.parquet", taxonomy).values()))
    half = sample_metrics(reference[::2], reference, taxonomy)["jsd_marginals_bits"]
    assert (
        half < 0.2 * sample_metrics(uniform, reference, taxonomy)["jsd_marginals_bits"]
        and s["jsd_marginals_bits"] > half
    )
    assert (tmp_path / "vae_report.json").is_file()


def test_collapse_warning(taxonomy, distilled_dir, tmp_path):
    matrices = load_split_matrices(distilled_dir / "musiccaps_tagged.parquet", taxonomy)
    args = VAETrainingArguments(hidden_dim=32, latent_dim=8, max_epochs=3, beta=200.0, batch_size=256)
    train_vae(args, taxonomy, matrices, tmp_path)
    model, _, _ = load_checkpoint(tmp_path)
    report = reconstruction_metrics(model, matrices["validation"])
    assert report["active_units"] == 0
    assert "POSTERIOR COLLAPSE" in collapse_warning(report, 2)
    healthy = dict(report, active_units=5)
    assert collapse_warning(healthy, 2) is None


def test_nan_loss_stops_naming_epoch_and_batch_and_keeps_checkpoint(taxonomy, distilled_dir, tmp_path, monkeypatch):
    matrices = load_split_matrices(distilled_dir / "musiccaps_tagged.parquet", taxonomy)
    calls = {"n": 0}
    real_loss = train_module.vae_loss
    steps_per_epoch = math.ceil(len(matrices["train"]) / 256)

    def poisoned(logits, x, mu, logvar, beta):
        total, bce, kl = real_loss(logits, x, mu, logvar, beta)
        if logits.requires_grad:
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 3:  # epoch 1, batch 2
                return total * float("nan"), bce, kl
        return total, bce, kl

    monkeypatch.setattr(train_module, "vae_loss", poisoned)
    args = VAETrainingArguments(hidden_dim=32, latent_dim=8, max_epochs=5, batch_size=256)
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 2"):
        train_vae(args, taxonomy, matrices, tmp_path)
    model, _, meta = load_checkpoint(tmp_path)  # the epoch-0 checkpoint is intact
    assert meta["best_epoch"] == 0


def test_taxonomy_mismatch_is_an_error(tiny_vae, taxonomy):
    other = Taxonomy([Concept(c.name, c.category, c.aliases, c.rows) for c in reversed(taxonomy.concepts)])
    with pytest.raises(DataError, match="trained on another taxonomy"):
        load_checkpoint(tiny_vae[0], other)


def test_exhausted_sampling_ends_with_a_message(tiny_vae):
    model, taxonomy, _ = load_checkpoint(tiny_vae[0])
    args = SamplingArguments(num_lists=50, min_categories=4, max_draws_per_list=1, batch_size=16, temperature=0.01)
    with pytest.raises(SamplingExhaustedError, match="unique valid lists after 50 draws"):
        sample_tag_lists(model, taxonomy, Constraints.load(tiny_vae[0] / CONSTRAINTS_NAME), args)


def test_missing_or_corrupt_checkpoint(tiny_vae, tmp_path):
    import shutil

    broken = tmp_path / "vae"
    shutil.copytree(tiny_vae[0], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match="model.safetensors: corrupt"):
        load_checkpoint(broken)
    (broken / "config.json").unlink()
    with pytest.raises(DataError, match="config.json: missing"):
        load_checkpoint(broken)


def test_multi_hot_order(taxonomy):
    x = multi_hot([{"genre": ["rock"], "mood": [], "instrument": ["piano"], "tempo": []}], taxonomy)
    assert x.sum() == 2 and x[0, taxonomy.index["rock"]] == 1 and x[0, taxonomy.index["piano"]] == 1


@pytest.mark.slow
def test_two_processes_keep_the_effective_batch_and_record_it(distilled_dir, tmp_path):
    """Under `accelerate launch` with 2 processes the VAE trains on the preset's batch (split across them), not
    a batch twice as large; the checkpoint says so."""
    import json
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", CONCEPTCAPS_RUN_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    cmd = [
        *accelerate_cpu(2),
        "-m",
        "training.train_vae",
        f"--tagged={distilled_dir / 'musiccaps_tagged.parquet'}",
        f"--taxonomy={distilled_dir / 'taxonomy.json'}",
        f"--output_dir={tmp_path / 'vae'}",
        *"--hidden_dim 32 --latent_dim 8 --max_epochs 2 --batch_size 64".split(),
    ]
    subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, timeout=600)
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert (
        config["effective_batch_size"] == 64 and config["num_processes"] == 2 and config["per_process_batch_size"] == 32
    )


def test_balancing_draws_lists_for_short_concepts(tiny_vae, distilled_dir):
    from generation.sample_tags import GenreCore, planned_positives

    model, taxonomy, _ = load_checkpoint(tiny_vae[0])
    constraints = Constraints.load(tiny_vae[0] / CONSTRAINTS_NAME)
    seen = reference_lists(distilled_dir / "musiccaps_tagged.parquet", taxonomy)
    args = SamplingArguments(
        num_lists=150,
        seed=0,
        batch_size=256,
        synthesis_backend="symbolic",
        min_positives_per_concept=1,
        max_draws_per_list=10,
    )
    table, summary = sample_tag_lists(model, taxonomy, constraints, args, seen)
    balance, target = summary["balance"], planned_positives(1)
    assert balance["target_positives"] == target > 1
    rows = table.to_pylist()
    plain = [r for r in rows if r["balanced_for"] is None]
    drawn = [r for r in rows if r["balanced_for"] is not None]
    assert len(plain) == 150 and len(drawn) == balance["lists_added"] == sum(balance["drawn_for"].values()) > 0
    excluded = set(summary["backend"]["excluded"])
    counts = {n: sum(n in r["tags"] for r in rows) for n in taxonomy.names}
    for r in drawn:  # the same rules as the VAE's own lists, and the concept it was drawn for is in it
        assert r["balanced_for"] in r["tags"] and not constraints.violations(r["tags"]) and r["instrument"]
        assert tuple(r["tags"]) not in seen and not excluded & set(r["tags"])
    assert len({tuple(r["tags"]) for r in rows}) == len(rows)
    # carried concepts no judge confirmed at scale (generation/data/render_evidence.tsv) are marked and counted
    unconfirmed = summary["backend"]["arranged_not_confirmed"]
    assert unconfirmed and not excluded & set(unconfirmed) and "cello" not in unconfirmed
    holding = sum(any(t in unconfirmed for t in r["tags"]) for r in rows)
    assert summary["backend"]["lists_holding_unconfirmed"] == holding > 0
    # every list holding a genre of the core table has each of its slots filled; what was added is recorded
    core = GenreCore(taxonomy.names, summary["backend"]["excluded"])
    index = {n: i for i, n in enumerate(taxonomy.names)}
    for r in rows:
        for g in (g for g in r["genre"] if index[g] in core.slots):
            assert all(any(taxonomy.names[a] in r["tags"] for a in slot) for slot in core.slots[index[g]]), r
        assert set(r["added_for_genre"]) <= set(r["instrument"])
    assert summary["backend"]["lists_completed_for_genre"] == sum(bool(r["added_for_genre"]) for r in rows) > 0
    assert sum(summary["backend"]["genre_core_added"].values()) == sum(len(r["added_for_genre"]) for r in rows)
    for n in taxonomy.names:  # every carried concept reached the target or is reported with why not
        if n not in excluded:
            assert counts[n] >= target or balance["unreached"][n]["positives"] == counts[n]
    assert (
        balance["concepts_below_target"]["after"]
        == len(balance["unreached"])
        < balance["concepts_below_target"]["before"]
    )
    assert 0 <= balance["marginal_jsd_before_after"] <= 1 and 0 <= balance["raw"]["contradiction_rate"] <= 1
    again, _ = sample_tag_lists(model, taxonomy, constraints, args, seen)
    assert again.equals(table)


def test_planned_positives_cover_the_smallest_split():
    from builder.splits import assign_example_splits
    from generation.sample_tags import planned_positives

    assert planned_positives(0) == 0
    t = planned_positives(50)
    assert 333 < t < 500  # 50 / 0.15 is the mean; the margin covers the split's spread
    reached = 0
    for seed in range(200):  # a concept with t positives among 3000 examples, split as the assembly splits
        ids = [f"x{i:05d}" for i in range(3000)]
        split = assign_example_splits(ids, seed)
        reached += min(sum(split[i] == s for i in ids[:t]) for s in ("train", "validation", "test")) >= 50
    assert reached / 200 > 0.9
