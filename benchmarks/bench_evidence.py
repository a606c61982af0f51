"""Which concepts the symbolic renderer carries audibly, at scale: every concept of VAE-sampled lists rendered,
then judged by the audit's judges (`probing.audit`: the musicnn taggers and the signal judges for tempo, mode,
loudness and density), and the rendered ground truth recovered from the audio.

    python -m generation.sample_tags --vae runs/demo/vae --taxonomy runs/demo/taxonomy.json \\
        --synthesis_backend symbolic --num_lists 3400 --min_positives_per_concept 5 --output runs/evidence/tags.parquet
    python -m benchmarks.bench_evidence --lists runs/evidence/tags.parquet --clips 3000 --seconds 10 \\
        --output runs/evidence/report.json --write_table

Each clip is rendered, resampled to 16 kHz and judged in the worker that rendered it (nothing but figures and tag
probabilities leave it). A concept's positives are the clips listing it, its negatives every other clip (the
lists are not matched here, so a judge's figure measures the concept with what co-occurs with it in the VAE's
lists: what the dataset holds). The verdicts use the audit's own rows (`SplitAudit`), so a dataset's evidence
and this benchmark speak the same language. Prints one JSON line: per verdict its concepts, the tempo accuracy
on clips with and without a drum part, the key finder's MIREX score and mode accuracy per style, and each
concept's tag AUC against negatives without the concepts its tag also names (MTT's guitar hears both guitars). With
`--write_table` it writes `generation/data/render_evidence.tsv`, the reviewed table the sampler reads to mark the
concepts that are arranged but not confirmed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from core.log import get_logger

logger = get_logger(__name__)

TABLE = Path(__file__).resolve().parents[1] / "generation" / "data" / "render_evidence.tsv"


def _judge_chunk(job) -> list[dict]:
    """Render and judge one worker's lists: per clip its figures, tag probabilities and ground truth."""
    import soxr
    import torch

    from builder.taxonomy import build_taxonomy
    from generation.symbolic import SymbolicSynthesizer
    from probing.judges import measure
    from probing.musicnn import SAMPLING_RATE, load_musicnn

    lists, seeds, seconds, models = job
    torch.set_num_threads(1)
    synth = SymbolicSynthesizer(build_taxonomy()[0])
    taggers = {}
    for name in models:
        try:
            taggers[name] = load_musicnn(name)
        except Exception as e:  # not converted here: the signal judges still run
            logger.warning("bench_evidence: %s skipped (%s)", name, e)
    out = []
    for tags, seed in zip(lists, seeds):
        clip = synth.render_row(tags, seed=seed, duration_s=seconds)
        if clip.reasons:
            continue
        wave = soxr.resample(clip.wave, synth.sampling_rate, SAMPLING_RATE).astype(np.float32)
        with torch.no_grad():
            probs = {n: t(torch.from_numpy(wave)[None])[0].numpy().round(5).tolist() for n, t in taggers.items()}
        truth = clip.ground_truth
        out.append(
            {
                "id": f"clip{seed:06d}",
                "tags": list(tags),
                "figures": measure(wave, SAMPLING_RATE),
                "probs": probs,
                "truth": {
                    "bpm": truth["bpm"],
                    "key": truth["key"],
                    "mode": truth["mode"],
                    "style": truth["style"] or "neutral",
                    "drums": any(bank == 128 for i in truth["instruments"] for bank, _ in i["programs"]),
                },
            }
        )
    return out


def render_and_judge(lists, seconds: float, workers: int, models, first: int = 0) -> list[dict]:
    """Render and judge `lists` (list k of them seeded and named by first + k) in `workers` processes."""
    seeds = list(range(first, first + len(lists)))
    chunks = [(lists[k::workers], seeds[k::workers], seconds, models) for k in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        return sorted((c for part in pool.map(_judge_chunk, chunks) for c in part), key=lambda c: c["id"])


def enough_clips(lists, target: int, seconds: float, workers: int, models, cached: dict | None) -> dict:
    """{"lists_used", "clips"}: `target` judged clips, rendering the next lists in rounds where a list's clip is
    rejected (an inaudible stem), on top of what `cached` holds."""
    state = cached or {"lists_used": 0, "clips": []}
    while len(state["clips"]) < target and state["lists_used"] < len(lists):
        need = target - len(state["clips"])
        start, stop = state["lists_used"], min(len(lists), state["lists_used"] + int(need * 1.1) + 8)
        state["clips"] += render_and_judge(lists[start:stop], seconds, workers, models, first=start)
        state["lists_used"] = stop
    state["clips"] = state["clips"][:target]
    return state


def verdict_table(clips: list[dict], models, min_examples: int, bootstrap: int, seed: int) -> tuple[list, dict]:
    """The audit's rows for every concept listed by at least `min_examples` clips (positives: the clips listing
    it; negatives: all others), and the ground truth recovered per drums and style."""
    from builder.taxonomy import build_taxonomy
    from probing.audit import AuditArguments, Judged, SplitAudit, truth_summary
    from probing.judges import judge_rules
    from probing.musicnn import MODELS, load_musicnn
    from probing.tagger_tags import concept_tags

    taxonomy = build_taxonomy()[0]
    ids = [c["id"] for c in clips]
    listed = {}
    for c in clips:
        for t in c["tags"]:
            listed.setdefault(t, []).append(c["id"])
    members = {
        concept: {"positive": pos, "negative": sorted(set(ids) - set(pos)), "random": {}}
        for concept, pos in listed.items()
        if len(pos) >= min_examples
    }
    judged = Judged(
        scores={m: {c["id"]: np.array(c["probs"][m]) for c in clips if m in c["probs"]} for m in models},
        overflow={m: 0 for m in models},
        too_short=[],
        figures={c["id"]: c["figures"] for c in clips},
    )
    args = AuditArguments(min_examples=min_examples, bootstrap=bootstrap, seed=seed)
    audit = SplitAudit(args, "benchmark", members, judged, lambda c: taxonomy.category_of.get(c, ""),
                       np.random.default_rng(seed))  # fmt: skip
    for name in models:
        if judged.scores[name]:
            tagger = load_musicnn(name)
            audit.tagger(name, tagger, concept_tags(MODELS[name].vocabulary, tagger.labels))
    truth = {c["id"]: c["truth"] for c in clips}
    rules = judge_rules()
    audit.signals(rules, truth)
    audit.no_judge()
    tempo_concepts = sorted({r.concept for r in rules if r.judge == "tempo"} & set(members))
    return audit.rows, truth_summary(truth, judged.figures, members, tempo_concepts)


def sibling_free(clips: list[dict], models, min_examples: int) -> dict:
    """{concept: {model: AUC}} for each concept with tag siblings (`probing.tagger_tags.tag_siblings`), its tag's
    AUC against the negatives that list none of them: what the tag says of the concept where it can tell."""
    from probing.audit import auc
    from probing.musicnn import MODELS
    from probing.tagger_tags import concept_tags, tag_siblings

    out = {}
    for name in models:
        labels = list(MODELS[name].labels)  # the spec's outputs: no weights loaded for their names
        for concept, tag in concept_tags(MODELS[name].vocabulary, labels).items():
            siblings = tag_siblings(concept)
            pos = [c for c in clips if concept in c["tags"]]
            neg = [c for c in clips if concept not in c["tags"] and not siblings & set(c["tags"])]
            if not siblings or len(pos) < min_examples or len(neg) < min_examples or name not in pos[0]["probs"]:
                continue
            k = labels.index(tag)
            value = auc(np.array([c["probs"][name][k] for c in pos]), np.array([c["probs"][name][k] for c in neg]))
            out.setdefault(concept, {})[name] = round(float(value), 3)
    return out


def write_table(rows: list[dict], command: str, clips: int, path: Path = TABLE) -> None:
    """The reviewed table of the renderer's audible concepts: one row per (concept, judge) set-level verdict."""
    header = [
        "# Which concepts the symbolic renderer carries audibly, measured by benchmarks/bench_evidence.py on",
        f"# {clips} rendered clips of VAE-sampled lists (positives: clips listing the concept; negatives: all others),",
        f"# judged by probing.audit's judges. Written by: {command}",
        "# A concept whose verdict (any judge confirming, none contradicting) is not 'confirmed' is 'arranged, not",
        "# confirmed' in sampling and in the card. Regenerate it when the renderer or the judges change.",
        "# concept\tcategory\tjudge\tcriterion\tauc\tlow\thigh\tpositives\tverdict",
    ]
    lines = [
        "\t".join(
            [
                r["concept"],
                r["category"],
                r["judge"] or "-",
                r["criterion"] or "-",
                *(f"{r[k]:.3f}" if r[k] is not None else "-" for k in ("value", "low", "high")),
                str(r["positives"] or 0),
                r["verdict"],
            ]
        )  # fmt: skip
        for r in rows
        if not r["id"] and r["measure"] in (None, "auc", "tempo_agrees")
    ]
    path.write_text("\n".join(header + lines) + "\n", encoding="utf-8")


def main(argv=None) -> dict:
    from builder.evidence import concept_verdict
    from probing.musicnn import DEFAULT_TAGGERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", required=True, help="tags.parquet of VAE-sampled lists (generation.sample_tags)")
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_TAGGERS))
    parser.add_argument("--min_examples", type=int, default=20, help="fewest clips listing a concept")
    parser.add_argument("--bootstrap", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="a JSON of judged clips to reuse (written when absent)")
    parser.add_argument("--output", default=None, help="the report JSON")
    parser.add_argument("--write_table", action="store_true", help="write generation/data/render_evidence.tsv")
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    start = time.perf_counter()
    cached = json.loads(Path(args.cache).read_text()) if args.cache and Path(args.cache).is_file() else None
    if isinstance(cached, list):  # an earlier run's cache: the first clips * 1.05 lists
        cached = {"lists_used": int(args.clips * 1.05), "clips": cached}
    if cached is None or len(cached["clips"]) < args.clips:
        lists = [list(t) for t in pq.read_table(args.lists, columns=["tags"])["tags"].to_pylist()]
        cached = enough_clips(lists, args.clips, args.seconds, args.workers, args.models, cached)
        if args.cache:
            Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
            Path(args.cache).write_text(json.dumps(cached))
    clips = cached["clips"][: args.clips]
    render_seconds = time.perf_counter() - start
    rows, truth = verdict_table(clips, args.models, args.min_examples, args.bootstrap, args.seed)
    concepts = sorted({r["concept"] for r in rows})
    verdicts = {c: concept_verdict(r for r in rows if r["concept"] == c) for c in concepts}
    by_verdict = {v: sorted(c for c in concepts if verdicts[c] == v) for v in dict.fromkeys(verdicts.values())}
    result = {
        "benchmark": "evidence",
        "clips": len(clips),
        "lists_rendered": cached["lists_used"],
        "seconds_per_clip": args.seconds,
        "render_and_judge_seconds": round(render_seconds, 1),
        "concepts": len(concepts),
        "verdict_counts": {v: len(cs) for v, cs in by_verdict.items()},
        "by_verdict": by_verdict,
        "ground_truth": truth,
        "without_tag_siblings": sibling_free(clips, args.models, args.min_examples),
        "rows": rows,
    }
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1))
    if args.write_table:
        write_table(rows, "python -m benchmarks.bench_evidence " + " ".join(argv or sys.argv[1:]), len(clips))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return result


if __name__ == "__main__":
    main()
