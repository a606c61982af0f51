"""The paper's TCAV experiment on a real, pretrained classifier: are musicnn's genre outputs sensitive to the
concepts a listener would expect (electric guitar -> rock, violin / piano / strings -> classical, synthesizer ->
electronic, ...)?

    python -m benchmarks.bench_judge_tcav --cache runs/judge_clips.npz  # 3,000 rendered clips of 10 s, both models
    python -m benchmarks.bench_judge_tcav --clips 600 --set_size 30 --models MTT_musicnn   # a quick run
    python -m benchmarks.bench_judge_tcav --lists runs/vae3000/tags.parquet --cache runs/judge_vae.npz  # VAE lists

Clips are rendered by the symbolic backend from attribute lists that draw a genre (of those musicnn has a tag for),
a tempo, a mood and each instrument of a pool independently (rate 0.3), so that a concept's sensitivity is the
classifier's, not a correlation planted in the data. musicnn reads each clip's first 3 s patch (TCAV counts one
directional derivative per clip). For every genre class paired with a musicnn output (`builder/data/tagger_tags.tsv`)
and every concept: `probing.tcav_engine.run_experiment` with K disjoint positive sets, R random sets of clips free
of the concept, the structured null and Welch's test, Bonferroni and Benjamini-Hochberg over every (concept, class)
test of a model, at `net.penultimate`. Five "concepts" made of random clips check the test itself: they should be
significant for at
most 5 % of classes. Prints one JSON line: per model the significant (concept, class) pairs with their TCAV scores
(above 0.5: the concept pushes the class up), which of the expected pairs came out, and the random concepts' rate.
The tagger audit of the same clips comes first (`audit`: per concept paired with a tag, the ROC-AUC of the tag on
clips listing the concept against all others; `--audit_only` stops there). Needs the converted weights
(`python -m probing.convert_musicnn`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from core.log import get_logger
from probing.musicnn import DEFAULT_TAGGERS, MODELS

logger = get_logger(__name__)

GENRES = [
    "rock",
    "classical",
    "electronic",
    "country",
    "metal",
    "jazz",
    "pop",
    "techno",
    "blues",
    "hip hop",
    "folk",
    "ambient",
]
INSTRUMENTS = [
    "piano",
    "electric guitar",
    "acoustic guitar",
    "bass guitar",
    "strings",
    "violin",
    "synthesizer",
    "drum kit",
    "flute",
    "saxophone",
    "organ",
    "trumpet",
]
TEMPI = ["slow tempo", "medium tempo", "fast tempo"]
MOODS = ["energetic", "calming", "happy", "sad", "aggressive"]
EXPECTED = {
    ("electric guitar", "rock"),
    ("electric guitar", "metal"),
    ("violin", "classical"),
    ("piano", "classical"),
    ("strings", "classical"),
    ("synthesizer", "electronic"),
    ("synthesizer", "techno"),
    ("acoustic guitar", "folk"),
    ("acoustic guitar", "country"),
    ("saxophone", "jazz"),
    ("fast tempo", "metal"),
    ("slow tempo", "ambient"),
    ("slow tempo", "classical"),
}


def draw_lists(n: int, rng: np.random.Generator, rate: float) -> list[list[str]]:
    lists = []
    for _ in range(n):
        tags = [GENRES[rng.integers(len(GENRES))], TEMPI[rng.integers(len(TEMPI))], MOODS[rng.integers(len(MOODS))]]
        instruments = [x for x in INSTRUMENTS if rng.random() < rate] or [INSTRUMENTS[rng.integers(len(INSTRUMENTS))]]
        lists.append(tags + instruments)
    return lists


def _render(job):
    from builder.taxonomy import build_taxonomy
    from generation.symbolic import SymbolicSynthesizer
    from probing.musicnn import SAMPLING_RATE

    lists, seeds, seconds = job
    torch.set_num_threads(1)
    synth = SymbolicSynthesizer(build_taxonomy()[0])
    out = []
    for tags, seed in zip(lists, seeds):
        clip = synth.render_row(tags, seed=seed, duration_s=seconds)
        if clip.reasons:
            out.append(None)
            continue
        import soxr

        out.append(soxr.resample(clip.wave, synth.sampling_rate, SAMPLING_RATE).astype(np.float32))
    return out


def render(lists, seconds: float, workers: int) -> list:
    chunks = [(lists[k::workers], list(range(k, len(lists), workers)), seconds) for k in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_render, chunks))
    waves = [None] * len(lists)
    for k, part in enumerate(parts):
        waves[k::workers] = part
    return waves


def experiment(model_name: str, lists, patches: torch.Tensor, args, rng) -> dict:
    from probing.models import musicnn_model
    from probing.tagger_tags import concept_tags
    from probing.tcav_engine import ExperimentDesign, run_experiment

    model = musicnn_model(model_name)
    paired = concept_tags(model.vocabulary, model.output_names)
    classes = {model.output_names.index(paired[g]): g for g in GENRES if g in paired}
    n = len(lists)
    order = [int(i) for i in rng.permutation(n)]
    class_part, pool = order[: n // 3], order[n // 3 :]
    class_ids = {k: [i for i in class_part if g in lists[i]][: args.class_size] for k, g in classes.items()}
    classes = {k: g for k, g in classes.items() if len(class_ids[k]) >= 5}
    half = len(pool) // 2
    positives_pool, random_pool = pool[:half], pool[half:]
    concepts = {c: [i for i in positives_pool if c in lists[i]] for c in args.concepts}
    pools = {c: [i for i in random_pool if c not in lists[i]] for c in args.concepts}
    shuffled = [int(i) for i in rng.permutation(positives_pool)]
    chunk = args.concept_sets * args.set_size
    for r in range(min(args.random_concepts, len(shuffled) // chunk)):  # the test's own false-positive rate
        concepts[f"random clips {r}"], pools[f"random clips {r}"] = shuffled[r * chunk : (r + 1) * chunk], random_pool
    design = ExperimentDesign.of(args, min_sets=2)
    start = time.perf_counter()
    report = run_experiment(
        model.module, args.layer, lambda ids: patches[ids], concepts, pools, {k: class_ids[k] for k in classes}, design
    )
    logger.info(
        "%s: %d tests in %.1f s; left out %s",
        model_name,
        report["tests"],
        time.perf_counter() - start,
        report["left_out"],
    )
    results = report["results"]
    for r in results:
        r["genre"] = classes[r["class"]]
    real = [r for r in results if not r["concept"].startswith("random clips")]
    chance = [r for r in results if r["concept"].startswith("random clips")]

    def pairs(key: str) -> list:
        return sorted(
            ((r["concept"], r["genre"], round(r["score_mean"], 3)) for r in real if r[key]), key=lambda t: (t[1], t[0])
        )

    significant = pairs("significant")
    expected_tested = sorted((c, g) for c, g in EXPECTED if any(r["concept"] == c and r["genre"] == g for r in real))
    return {
        "model": model.name,
        "layer": args.layer,
        "classes": sorted(classes.values()),
        "tests": report["tests"],
        "design": report["design"],
        "detectable_difference": report["detectable_difference"],
        "left_out": report["left_out"],
        "random_sets": report["random_sets"],
        "significant": significant,
        "significant_count": len(significant),
        "significant_fdr": pairs("significant_fdr"),
        "expected_tested": expected_tested,
        "expected_significant_up": sorted(set(expected_tested) & {(c, g) for c, g, s in significant if s > 0.5}),
        "expected_significant_up_fdr": sorted(
            set(expected_tested) & {(c, g) for c, g, s in pairs("significant_fdr") if s > 0.5}
        ),
        "random_concepts_significant_share": sum(r["significant"] for r in chance) / max(len(chance), 1),
        "random_concepts_significant_fdr_share": sum(r["significant_fdr"] for r in chance) / max(len(chance), 1),
        "cav_accuracy": {
            c: round(float(np.mean([r["cav_accuracy"] for r in real if r["concept"] == c])), 3)
            for c in dict.fromkeys(r["concept"] for r in real)
        },
        "scores": {f"{r['concept']} -> {r['genre']}": round(r["score_mean"], 3) for r in real},
        "p_corrected": {f"{r['concept']} -> {r['genre']}": float(f"{r['p_corrected']:.3g}") for r in real},
        "q_value": {f"{r['concept']} -> {r['genre']}": float(f"{r['q_value']:.3g}") for r in real},
    }


def audit_rendered(model_name: str, lists, patches: torch.Tensor, rng) -> dict:
    """The tagger audit on the rendered clips: per concept paired with a tag, the ROC-AUC of the tag's probability
    (each clip's first 3 s patch) on the clips that list the concept against those that do not, with a 95 %
    bootstrap interval; the concepts drawn here have no matched negatives, so every other clip is a negative."""
    from probing.audit import auc_with_interval
    from probing.musicnn import load_musicnn
    from probing.tagger_tags import concept_tags

    tagger = load_musicnn(model_name)
    with torch.no_grad():
        probs = torch.cat(
            [torch.sigmoid(tagger.net(patches[b : b + 64].flatten(0, 1))) for b in range(0, len(patches), 64)]
        ).numpy()
    rows = {}
    drawn = set(GENRES + INSTRUMENTS + TEMPI + MOODS)
    for concept, tag in sorted(concept_tags(MODELS[model_name].vocabulary, tagger.labels).items()):
        if concept not in drawn:
            continue
        has = np.array([concept in t for t in lists])
        k = tagger.labels.index(tag)
        auc, interval = auc_with_interval(probs[has, k], probs[~has, k], 200, rng)
        rows[concept] = {
            "tag": tag,
            "auc": round(auc, 3),
            "interval": [round(v, 3) for v in interval],
            "positives": int(has.sum()),
        }
    aucs = [r["auc"] for r in rows.values()]
    return {
        "concepts": rows,
        "mapped": len(rows),
        "median_auc": float(np.median(aucs)),
        "share_at_least_0.7": sum(a >= 0.7 for a in aucs) / len(aucs),
        "below_0.6": sorted(c for c, r in rows.items() if r["auc"] < 0.6),
        "interval_below_0.5": sorted(c for c, r in rows.items() if r["interval"][1] < 0.5),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_TAGGERS))
    parser.add_argument("--layer", default="net.penultimate")
    parser.add_argument("--set_size", type=int, default=30)
    parser.add_argument("--random_sets", type=int, default=50, help="R (benchmarks/bench_tcav_power.py: the power)")
    parser.add_argument("--concept_sets", type=int, default=10, help="K disjoint positive sets per concept")
    parser.add_argument("--cav", default="mean_difference", help="CAV estimator: mean_difference (FastCAV) or logistic")
    parser.add_argument("--lists", default=None, help="a tags.parquet of VAE-sampled lists (`python -m "
                        "generation.sample_tags --synthesis_backend symbolic`): the dataset's design, instead of "
                        "independent draws")  # fmt: skip
    parser.add_argument("--random_concepts", type=int, default=5)
    parser.add_argument("--class_size", type=int, default=100)
    parser.add_argument("--instrument_rate", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--concepts",
        nargs="+",
        default=INSTRUMENTS + ["slow tempo", "fast tempo"],
        help="concepts tested against every genre class (moods and medium tempo are drawn but not tested)",
    )
    parser.add_argument("--cache", default=None, help="an .npz of the rendered patches: written once, read after")
    parser.add_argument("--audit_only", action="store_true", help="only the tagger audit of the rendered clips")
    args = parser.parse_args(argv)
    from probing.musicnn import MelFrontEnd, log_compress, seconds_for
    from probing.musicnn import patches as to_patches

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    if args.cache and Path(args.cache).is_file():
        cached = np.load(args.cache, allow_pickle=False)
        lists, patches = [json.loads(t) for t in cached["lists"]], torch.from_numpy(cached["patches"])
        render_s, left_out = float(cached["render_seconds"]), int(cached["left_out"])
    else:
        if args.lists:  # what the dataset holds: concepts as the VAE draws them together
            import pyarrow.parquet as pq

            lists = [list(t) for t in pq.read_table(args.lists, columns=["tags"])["tags"].to_pylist()]
            lists = lists[: int(args.clips * 1.12)]
        else:  # independent draws: the classifier's own associations, nothing planted by the data
            lists = draw_lists(int(args.clips * 1.12), rng, args.instrument_rate)
        waves = render(lists, args.seconds, args.workers)
        kept = [(t, w) for t, w in zip(lists, waves) if w is not None][: args.clips]
        render_s, left_out = time.perf_counter() - start, sum(w is None for w in waves)
        lists = [t for t, _ in kept]
        mel, first = MelFrontEnd(), int(seconds_for(1) * 16000)
        with torch.no_grad():  # each clip's first 3 s patch: (clips, 1, 187, 96)
            patches = torch.cat(
                [
                    to_patches(log_compress(mel(torch.from_numpy(np.stack([w[:first] for _, w in kept[b : b + 64]])))))
                    for b in range(0, len(kept), 64)
                ]
            )
        if args.cache:
            np.savez(
                args.cache,
                lists=np.array([json.dumps(t) for t in lists]),
                patches=patches.numpy(),
                render_seconds=render_s,
                left_out=left_out,
            )
    logger.info(
        "%d clips of %.0f s, rendered in %.0f s (%d left out: an inaudible instrument)",
        len(lists),
        args.seconds,
        render_s,
        left_out,
    )
    result = {
        "clips": len(lists),
        "seconds": args.seconds,
        "render_seconds": round(render_s, 1),
        "left_out": left_out,
        "arguments": vars(args),
        "models": {},
    }
    for name in args.models:
        t0 = time.perf_counter()
        result["models"][name] = {"audit": audit_rendered(name, lists, patches, np.random.default_rng(args.seed))}
        if not args.audit_only:
            result["models"][name].update(experiment(name, lists, patches, args, np.random.default_rng(args.seed)))
        result["models"][name]["seconds"] = round(time.perf_counter() - t0, 1)
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
