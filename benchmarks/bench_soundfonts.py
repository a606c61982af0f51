"""Which soundfont's samples an independent tagger recognises best, per instrument: every instrument concept with a
musicnn tag rendered alone (no other part playing) with each candidate soundfont, and the ROC-AUC of its tag on its
clips against the clips of the same soundfont whose instruments that tag does not name.

    python -m benchmarks.bench_soundfonts --clips 24 --seconds 8 --output runs/soundfonts.json

Candidates: FluidR3_GM (Debian's fluid-soundfont-gm, MIT) and MuseScore General (musescore-general-soundfont, MIT),
each where installed. Each clip is a list of the instrument, a tempo and a mood drawn at random, played in the
neutral style (and the electric guitar also in rock's and metal's, through their amps: `electric guitar @ rock`),
with the same lists and seeds for every soundfont, so that only the samples differ. Both musicnn models judge
(mean tag probability over the clip's 3 s patches). Prints one JSON line: per instrument and soundfont the AUC
with its 95 % interval per model and their mean, and the soundfont with the higher mean (`best`).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SOUNDFONTS = {
    "FluidR3_GM": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "MuseScore_General": Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
}
VARIANTS = {  # name -> (instrument concept, genre whose style plays it, or None)
    "piano": ("piano", None),
    "acoustic guitar": ("acoustic guitar", None),
    "electric guitar": ("electric guitar", None),
    "electric guitar @ rock": ("electric guitar", "rock"),
    "electric guitar @ metal": ("electric guitar", "metal"),
    "strings": ("strings", None),
    "violin": ("violin", None),
    "cello": ("cello", None),
    "flute": ("flute", None),
    "harp": ("harp", None),
    "synthesizer": ("synthesizer", None),
    "drum kit": ("drum kit", None),
    "acoustic drums": ("acoustic drums", None),
}
TEMPI = ["slow tempo", "medium tempo", "fast tempo"]
MOODS = ["happy", "sad", "energetic", "calming"]


def _render_chunk(job) -> list[dict]:
    import soxr
    import torch

    from builder.taxonomy import build_taxonomy
    from generation.symbolic import SymbolicSynthesizer
    from probing.musicnn import SAMPLING_RATE, load_musicnn

    soundfont, items, seconds, models = job
    torch.set_num_threads(1)
    synth = SymbolicSynthesizer(build_taxonomy()[0], soundfont, voiced=False)  # this soundfont alone
    taggers = {n: load_musicnn(n) for n in models}
    out = []
    for variant, tags, seed in items:
        clip = synth.render_row(tags, seed=seed, duration_s=seconds)
        wave = soxr.resample(clip.wave, synth.sampling_rate, SAMPLING_RATE).astype(np.float32)
        with torch.no_grad():
            probs = {n: t(torch.from_numpy(wave)[None])[0].numpy().tolist() for n, t in taggers.items()}
        out.append({"variant": variant, "probs": probs})
    return out


MARGIN = 0.02  # a soundfont replaces the default only when its mean AUC is higher by this much (else: the default)
# instruments whose MuseScore General samples cost too much to load: FluidSynth decodes an SF3's samples at every
# clip (fresh synthesizer per clip), measured on 1.5 s clips of the instrument alone: piano 0.31 -> 1.36 s of CPU,
# strings 0.03 -> 1.87 s (the guitar, violin, harp and synthesizer cost 0.03-0.06 s more)
TOO_SLOW = {"piano": "MuseScore General's piano costs +1.05 s of CPU per clip", "strings": "its strings +1.84 s"}
TABLE = Path(__file__).resolve().parents[1] / "generation" / "data" / "render_soundfonts.tsv"


def choose(result: dict, default: str = "FluidR3_GM") -> dict[str, tuple[str, str]]:
    """Per instrument concept (its variants' AUCs averaged): the soundfont whose samples the taggers recognise best
    by at least MARGIN over the default, with the figures as the reason; instruments the default plays as well
    are left out (the renderer keeps the default: one soundfont to load is faster)."""
    chosen = {}
    for concept in dict.fromkeys(c for c, _ in VARIANTS.values()):
        variants = [v for v, (c, _) in VARIANTS.items() if c == concept]
        means = {}
        for name in result["variants"][variants[0]]:
            if name != "best" and all(result["variants"][v][name]["mean"] is not None for v in variants):
                means[name] = float(np.mean([result["variants"][v][name]["mean"] for v in variants]))
        best = max(means, key=means.get) if means else default
        if best != default and means[best] >= means.get(default, 0) + MARGIN and concept not in TOO_SLOW:
            figures = ", ".join(f"{n} {m:.3f}" for n, m in means.items())
            chosen[concept] = (best, f"mean tag AUC over {len(variants)} variant(s): {figures}")
    return chosen


def write_table(chosen: dict[str, tuple[str, str]], command: str, path: Path = TABLE) -> None:
    header = path.read_text(encoding="utf-8").splitlines()
    header = [line for line in header if line.startswith("#") and not line.startswith("# Written by")]
    lines = [f"# Written by: {command}"] + [f"{c}\t{name}\t{why}" for c, (name, why) in sorted(chosen.items())]
    path.write_text("\n".join(header[:-1] + lines[:1] + header[-1:] + lines[1:]) + "\n", encoding="utf-8")


def main(argv=None) -> dict:
    from probing.audit import auc_with_interval
    from probing.musicnn import DEFAULT_TAGGERS, MODELS, load_musicnn
    from probing.tagger_tags import concept_tags

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24, help="clips per instrument variant and soundfont")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_TAGGERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--cache", default=None, help="an earlier run's output JSON: choose from it, render nothing")
    parser.add_argument("--write_table", action="store_true", help="write generation/data/render_soundfonts.tsv")
    args = parser.parse_args(argv)
    if args.cache:
        result = json.loads(Path(args.cache).read_text())
        result["chosen"] = choose(result)
        if args.write_table:
            write_table(result["chosen"], "python -m benchmarks.bench_soundfonts " + " ".join(argv or sys.argv[1:]))
        print(json.dumps(result["chosen"]))
        return result
    rng = np.random.default_rng(args.seed)
    items = []
    for variant, (concept, genre) in VARIANTS.items():
        for k in range(args.clips):
            tags = [concept, TEMPI[rng.integers(3)], MOODS[rng.integers(4)], *([genre] if genre else [])]
            items.append((variant, tags, 1000 * len(items) + k))
    fonts = {name: path for name, path in SOUNDFONTS.items() if path.is_file()}
    clips = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for name, path in fonts.items():
            jobs = [(path, items[w :: args.workers], args.seconds, args.models) for w in range(args.workers)]
            clips[name] = [c for part in pool.map(_render_chunk, jobs) for c in part]
    tags = {}
    for model in args.models:
        labels = load_musicnn(model).labels
        tags[model] = {c: labels.index(t) for c, t in concept_tags(MODELS[model].vocabulary, labels).items()}
    result = {"benchmark": "soundfonts", "clips_per_variant": args.clips, "seconds": args.seconds, "variants": {}}
    for variant, (concept, _) in VARIANTS.items():
        entry = {}
        for name, rendered in clips.items():
            entry[name] = {}
            for model in args.models:
                k = tags[model].get(concept)
                if k is None:
                    continue
                pos = np.array([c["probs"][model][k] for c in rendered if c["variant"] == variant])
                # negatives: the instruments the same tag does not name (MTT's guitar names both guitars)
                neg = np.array(
                    [c["probs"][model][k] for c in rendered if tags[model].get(VARIANTS[c["variant"]][0]) != k]
                )
                auc, interval = auc_with_interval(pos, neg, 300, np.random.default_rng(args.seed))
                entry[name][model] = {"auc": round(auc, 3), "interval": [round(v, 3) for v in interval]}
            aucs = [m["auc"] for m in entry[name].values()]
            entry[name]["mean"] = round(float(np.mean(aucs)), 3) if aucs else None
        scored = {n: e["mean"] for n, e in entry.items() if e["mean"] is not None}
        entry["best"] = max(scored, key=scored.get) if scored else None
        result["variants"][variant] = entry
    result["chosen"] = choose(result)
    if args.write_table:
        write_table(result["chosen"], "python -m benchmarks.bench_soundfonts " + " ".join(argv or sys.argv[1:]))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
