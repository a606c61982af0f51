"""Power and calibration of the TCAV experiment (`probing.tcav_engine.run_experiment`) on the planted-cause
experiment's clips and classifier (`probing.tcav_validation`): how often a cause of known strength comes out
significant after correction, and how often a "concept" of random clips does, for designs of K positive sets and
R random sets.

    python -m benchmarks.bench_tcav_power                                  # 3,000 clips of 4 s; 3x10 and 10x50
    python -m benchmarks.bench_tcav_power --clips 800 --repeats 3 --designs 3x10   # a quick run

The clips are rendered and the classifier trained once (the validation's first half); every repeat then deals new
sets from the held-out half. Strength is the share of a concept set's clips that carry the planted instrument (the
rest are clips without it): 1.0 is the planted concept as the validation tests it, lower shares are weaker causes.
Each repeat tests, at the planted output, one concept per strength and `--random_concepts` concepts made of random
clips, corrected together (Bonferroni and Benjamini-Hochberg). Power per strength: the share of repeats in which
the concept is significant; false-positive rate: the share of random concepts significant. CAVs are FastCAV's
(the difference of means); `--agreement` refits the first design's first repeat with the logistic CAV and
reports how often the two verdicts agree and how their scores correlate. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None) -> dict:
    from builder.taxonomy import build_taxonomy
    from probing.tcav_engine import ExperimentDesign, run_experiment
    from probing.tcav_validation import ValidationArguments, prepare_validation

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--duration_s", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--set_size", type=int, default=30)
    parser.add_argument("--designs", nargs="+", default=["3x10", "10x50"], help="K x R")
    parser.add_argument("--strengths", nargs="+", type=float, default=[1.0, 0.5, 0.3, 0.15])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--random_concepts", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--agreement", action="store_true", help="also the logistic CAV on one run (slow)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    validation = ValidationArguments(clips=args.clips, duration_s=args.duration_s, epochs=args.epochs, seed=args.seed)
    prepared = prepare_validation(validation, build_taxonomy()[0], np.random.default_rng(args.seed))
    prepare_s = time.perf_counter() - start
    lists, planted_name = prepared.lists, validation.planted
    carriers = [i for i in prepared.pool if planted_name in lists[i]]
    others = [i for i in prepared.pool if planted_name not in lists[i]]
    free = [i for i in prepared.others if planted_name not in lists[i]]  # random sets for the planted concepts

    def inputs(ids):
        return prepared.x[list(ids)]

    def run(k: int, r: int, repeat: int, cav: str) -> dict:
        rng = np.random.default_rng([args.seed, repeat, k, r])
        n = k * args.set_size
        concepts, pools = {}, {}
        for s in args.strengths:
            carry = int(round(s * n))
            ids = list(rng.choice(carriers, carry, replace=False)) + list(rng.choice(others, n - carry, replace=False))
            concepts[f"strength {s:g}"], pools[f"strength {s:g}"] = [int(i) for i in ids], free
        for q in range(args.random_concepts):
            concepts[f"random clips {q}"] = [int(i) for i in rng.choice(prepared.pool, n, replace=False)]
            pools[f"random clips {q}"] = prepared.others
        design = ExperimentDesign(k, r, args.set_size, alpha=args.alpha, cav=cav, seed=repeat)
        return run_experiment(prepared.model, validation.layer, inputs, concepts, pools,
                              {prepared.target: prepared.class_ids}, design)  # fmt: skip

    out = {"clips": len(lists), "classifier_held_out_accuracy": round(prepared.per_output[0], 3),
           "carriers_in_pool": len(carriers), "prepare_seconds": round(prepare_s, 1), "designs": {}}  # fmt: skip
    for name in args.designs:
        k, r = (int(v) for v in name.split("x"))
        t0, runs = time.perf_counter(), []
        for repeat in range(args.repeats):
            runs.append({row["concept"]: row for row in run(k, r, repeat, "mean_difference")["results"]})
        chance = [row for run_ in runs for c, row in run_.items() if c.startswith("random clips")]
        out["designs"][name] = {
            "power_bonferroni": {
                f"{s:g}": float(np.mean([run_[f"strength {s:g}"]["significant"] for run_ in runs]))
                for s in args.strengths
            },  # fmt: skip
            "power_fdr": {
                f"{s:g}": float(np.mean([run_[f"strength {s:g}"]["significant_fdr"] for run_ in runs]))
                for s in args.strengths
            },  # fmt: skip
            "false_positive_rate_bonferroni": float(np.mean([row["significant"] for row in chance])),
            "false_positive_rate_fdr": float(np.mean([row["significant_fdr"] for row in chance])),
            "random_concept_tests": len(chance),
            "mean_score": {
                f"{s:g}": round(float(np.mean([run_[f"strength {s:g}"]["score_mean"] for run_ in runs])), 3)
                for s in args.strengths
            },  # fmt: skip
            "detectable_difference": round(
                float(np.median([row["detectable_difference"] for run_ in runs for row in run_.values()])), 3
            ),  # fmt: skip
            "seconds_per_repeat": round((time.perf_counter() - t0) / args.repeats, 1),
        }
    if args.agreement:
        k, r = (int(v) for v in args.designs[0].split("x"))
        t0 = time.perf_counter()
        fast, slow = run(k, r, 0, "mean_difference")["results"], run(k, r, 0, "logistic")["results"]
        scores = np.array([[a["score_mean"], b["score_mean"]] for a, b in zip(fast, slow)])
        same = [a["significant"] == b["significant"] for a, b in zip(fast, slow)]
        out["agreement"] = {"design": args.designs[0], "tests": len(fast), "same_verdict": float(np.mean(same)),
                            "score_correlation": round(float(np.corrcoef(scores.T)[0, 1]), 3),
                            "logistic_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    out["arguments"] = vars(args)
    sys.stdout.write(json.dumps(out) + "\n")
    return out


if __name__ == "__main__":
    main()
