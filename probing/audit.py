"""The audit: do independent judges hear what each concept set's label says? Their verdicts are the dataset's
`evidence` config.

    python -m probing.audit --dataset runs/demo/dataset --output runs/demo/tagger_audit.json

Judges: pretrained musicnn taggers for concepts paired with a tag (`builder/data/tagger_tags.tsv`), and the signal
judges of `probing.judges` (tempo, mode, loudness, note density) for the concepts `builder/data/concept_judges.tsv`
gives them. Per concept, split and judge: the ROC-AUC of the judge's figure on the concept's positives against its
confound-matched negatives with a 95 % bootstrap interval, and a verdict (`builder.evidence`: confirmed,
not confirmed, contradicted; "no judge" where none speaks); listeners' verdicts of the review app add the share
judged audible. For rendered clips the signal judges are also checked against the ground truth (MIREX tempo
accuracy with and without a drum part, key score and mode accuracy per style), and each positive of a tempo
concept with no drum part whose estimated tempo disagrees with the rendered one is flagged (a row with its id).
Each clip is decoded once for every judge, batch by batch, and only a few figures per clip are kept, so memory is
flat in the dataset's size (`benchmarks/bench_audit_memory.py`). A model whose converted weights are missing is a
counted skip (`python -m probing.convert_musicnn`); a clip shorter than one 3 s patch is not tagged (counted) but
still judged by the signal judges. Writes the report JSON and a plot, and for a folder assembly wrote, its
`evidence` config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from builder.evidence import (
    CONFIRMED,
    CONTRADICTED,
    NO_JUDGE,
    NOT_CONFIRMED,
    concept_verdict,
    interval_verdict,
    write_evidence,
)
from builder.reader import assembled_layout, open_file, split_files
from builder.schema import VERDICTS
from builder.splits import FAMILY_SUFFIX
from builder.theory import theory_category
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import SPLITS
from core.errors import ConfigError, DataError
from core.hub import require_source
from core.io import write_json
from core.log import get_logger
from core.provenance import dataset_identity
from probing.musicnn import DEFAULT_TAGGERS, MODELS

logger = get_logger(__name__)


@dataclass
class AuditArguments:
    """Audit every concept set with pretrained musicnn taggers (ROC-AUC of the paired tag, positives vs negatives)."""

    dataset: str | None = arg(None, "dataset folder or Hub id (default: run dir/dataset)")
    models: list[str] = arg(
        factory=lambda: list(DEFAULT_TAGGERS), help="musicnn models (MTT_musicnn, MSD_musicnn, MTT_vgg, MSD_vgg)"
    )
    weights_dir: str | None = arg(None, "converted weights (default: ~/.cache/conceptcaps/musicnn)")
    seconds: float = arg(30.0, "at most this many seconds of each clip are tagged")
    min_examples: int = arg(5, "fewest positives (and negatives) for a concept's AUC")
    bootstrap: int = arg(1000, "bootstrap resamples")
    seed: int = arg(0, "seed of the bootstrap")
    batch_size: int = arg(8, "clips tagged at a time")
    signal_judges: bool = arg(
        True, "also judge with tempo, mode, loudness and density (builder/data/concept_judges.tsv)"
    )
    write_evidence: bool = arg(True, "write the verdicts as the dataset's `evidence` config (a folder assembly wrote)")
    output: str | None = arg(None, "report JSON (default: run dir/tagger_audit.json)")


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC of scores of positives against negatives, ties counting half (Mann-Whitney, from ranks)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_with_interval(pos: np.ndarray, neg: np.ndarray, n: int, rng: np.random.Generator) -> tuple[float, list[float]]:
    """ROC-AUC and a 95 % percentile bootstrap interval resampling positives and negatives separately."""
    stats = [auc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n)]
    return auc(pos, neg), [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [float((centre - half) / (1 + z * z / n)), float((centre + half) / (1 + z * z / n))]


@dataclass
class Judged:
    """What the judges made of a split's clips: tag probabilities {model: {id: probs}}, float16 overflow bins per
    model, the clips too short for musicnn, and the signal judges' figures {id: probing.judges.measure(...)}."""

    scores: dict
    overflow: dict
    too_short: list
    figures: dict


def judge_clips(audio, ids: Sequence[str], taggers: dict, seconds: float, batch_size: int, signals: bool) -> Judged:
    """Every judge on every clip, each clip decoded once (at musicnn's 16 kHz): the taggers in batches of equal
    lengths, the signal judges clip by clip. Clips shorter than one 3 s patch are a counted skip for the taggers
    (musicnn, like its original, has nothing to tag in them); the signal judges still measure them."""
    from probing.features import pad_stack
    from probing.judges import measure
    from probing.musicnn import SAMPLING_RATE, seconds_for

    shortest = int(np.ceil(seconds_for(1) * SAMPLING_RATE))
    judged = Judged({name: {} for name in taggers}, {name: 0 for name in taggers}, [], {})
    batch: list[tuple[str, np.ndarray]] = []

    def flush():
        wave = pad_stack([w for _, w in batch], max(len(w) for _, w in batch))
        with torch.no_grad():
            for name, tagger in taggers.items():
                probs = tagger(wave).numpy()
                judged.overflow[name] += int(tagger.overflow_bins(wave).sum())
                judged.scores[name].update({id_: p for (id_, _), p in zip(batch, probs)})
        batch.clear()

    for id_, wave in audio.clips(list(dict.fromkeys(ids)), seconds, SAMPLING_RATE):
        if signals:
            judged.figures[id_] = measure(wave, SAMPLING_RATE)
        if not taggers:
            continue
        if len(wave) < shortest:
            judged.too_short.append(id_)
            continue
        if batch and len(wave) != len(batch[0][1]):
            flush()  # clips of other lengths go in batches of their own: no padding changes a clip's patches
        batch.append((id_, wave))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return judged


def ground_truth(audio, ids: Sequence[str]) -> dict[str, dict]:
    """{id: bpm, key, mode, style, drums} of the rendered clips among `ids` (none for MusicGen or published audio)."""
    if audio.published:
        return {}
    return {
        id_: {
            "bpm": row["bpm"],
            "key": row["key"],
            "mode": row["mode"],
            "style": row.get("style") or "neutral",
            "drums": any(s["bank"] == 128 for s in row.get("stems") or []),
        }
        for id_, row in audio.metadata(ids).items()
        if row.get("bpm")
    }


def truth_summary(truth: dict, figures: dict, members: dict, tempo_concepts: Sequence[str]) -> dict:
    """How well the signal judges recover a split's rendered ground truth: MIREX tempo accuracy (1: within 4 %;
    2: octave errors allowed) on clips with and without a drum part and per tempo concept's positives, and the
    MIREX key score and mode accuracy per style."""
    from probing.judges import key_score, tempo_agrees

    clips = [i for i in truth if i in figures]

    def tempo(ids):
        ids = list(ids)
        if not ids:
            return {"clips": 0}
        exact = sum(tempo_agrees(figures[i]["tempo_bpm"], truth[i]["bpm"], octaves=False) for i in ids)
        octave = sum(tempo_agrees(figures[i]["tempo_bpm"], truth[i]["bpm"]) for i in ids)
        return {
            "clips": len(ids),
            "accuracy1": exact / len(ids),
            "accuracy2": octave / len(ids),
            "accuracy2_interval": wilson(octave, len(ids)),
        }

    def key(ids):
        ids = list(ids)
        return {
            "clips": len(ids),
            "mirex": float(
                np.mean([key_score(f"{figures[i]['tonic']} {figures[i]['mode']}", truth[i]["key"]) for i in ids])
            ),
            "mode_accuracy": float(np.mean([figures[i]["mode"] == truth[i]["mode"] for i in ids])),
        }

    keyed = [i for i in clips if truth[i]["key"]]  # a theory chord clip has a root, not a key
    styles = sorted({truth[i]["style"] for i in keyed})
    return {
        "tempo": {
            "all": tempo(clips),
            "with_drums": tempo(i for i in clips if truth[i]["drums"]),
            "without_drums": tempo(i for i in clips if not truth[i]["drums"]),
            "per_concept": {
                c: {
                    "with_drums": tempo(
                        i for i in members[c]["positive"] if i in figures and i in truth and truth[i]["drums"]
                    ),
                    "without_drums": tempo(
                        i for i in members[c]["positive"] if i in figures and i in truth and not truth[i]["drums"]
                    ),
                }
                for c in tempo_concepts
                if c in members
            },
        },
        "key": {"all": key(keyed), "per_style": {s: key(i for i in keyed if truth[i]["style"] == s) for s in styles}}
        if keyed
        else {},
    }


def base(concept: str) -> str:
    """A family's set is judged as the concept it is named after."""
    return concept.removesuffix(FAMILY_SUFFIX)


def evidence_row(concept: str, category: str, split: str, judge: str, criterion: str, **fields) -> dict:
    """One row of the `evidence` config (builder.schema.EVIDENCE_FEATURES); figures absent are None."""
    from builder.schema import EVIDENCE_FEATURES

    row = dict.fromkeys(EVIDENCE_FEATURES)
    row.update(concept=concept, category=category, split=split, judge=judge, criterion=criterion, note="")
    row.update(fields)
    return row


def listener_rows(dataset: str, split: str, category_of) -> list[dict]:
    """Listeners' verdicts of the review app (the dataset's `reviews` config): per concept, the share of clips
    judged audible among those judged yes or no, with its Wilson interval."""
    try:
        files = split_files(dataset, "reviews", split)
    except DataError:
        return []  # no verdicts in this split (the config is written only where listeners gave some)
    counts: dict[str, dict] = {}
    for path in files:
        with open_file(path) as handle:
            for r in pq.read_table(handle, columns=["concept", "question", "answer", "reviewer"]).to_pylist():
                if r["question"] == "audible" and r["answer"] in ("yes", "no"):
                    entry = counts.setdefault(r["concept"], {"yes": 0, "no": 0, "reviewers": set()})
                    entry[r["answer"]] += 1
                    entry["reviewers"].add(r["reviewer"])
    rows = []
    for concept, e in sorted(counts.items()):
        n = e["yes"] + e["no"]
        interval = wilson(e["yes"], n)
        rows.append(
            evidence_row(
                concept,
                category_of(concept),
                split,
                "listeners",
                "judged audible",
                measure="audible_share",
                value=e["yes"] / n,
                low=interval[0],
                high=interval[1],
                positives=n,
                verdict=interval_verdict(interval),
                note=f"{n} verdicts from {len(e['reviewers'])} listeners",
            )
        )
    return rows


class SplitAudit:
    """One split's verdicts: every judge's row for each concept set, built from the judged clips."""

    def __init__(self, args: AuditArguments, split: str, members: dict, judged: Judged, category, rng):
        self.args, self.split, self.members, self.judged, self.category, self.rng = (
            args, split, members, judged, category, rng
        )  # fmt: skip
        self.rows: list[dict] = []

    def row(self, concept: str, judge: str, criterion: str, **fields) -> dict:
        self.rows.append(evidence_row(concept, self.category(concept), self.split, judge, criterion, **fields))
        return self.rows[-1]

    def auc_row(self, concept: str, judge: str, criterion: str, score, have, note: str) -> dict:
        """The AUC of `score(id)` on the concept's positives against its negatives (those in `have`), with its
        interval and verdict; too few examples is a row saying so."""
        pos, neg = ([i for i in self.members[concept][role] if i in have] for role in ("positive", "negative"))
        n = self.args.min_examples
        if len(pos) < n or len(neg) < n:
            return self.row(concept, judge, criterion, positives=len(pos), negatives=len(neg),
                            verdict=NOT_CONFIRMED, note=f"fewer than {n} positives or negatives judged")  # fmt: skip
        value, interval = auc_with_interval(
            np.array([score(i) for i in pos]), np.array([score(i) for i in neg]), self.args.bootstrap, self.rng
        )
        return self.row(concept, judge, criterion, measure="auc", value=value, low=interval[0], high=interval[1],
                        positives=len(pos), negatives=len(neg), verdict=interval_verdict(interval),
                        note=note)  # fmt: skip

    def tagger(self, name: str, tagger, tags: dict) -> dict:
        """The tagger's rows, and {concept: AUC, interval, top-5 share ...} for the report's per-model table."""
        scores, table = self.judged.scores[name], {}
        for concept in sorted(self.members):
            tag = tags.get(base(concept))
            if tag is None:
                continue
            k = tagger.labels.index(tag)
            row = self.auc_row(concept, name, tag, lambda i: scores[i][k], scores, "")
            if row["measure"] is None:
                continue
            pos = [i for i in self.members[concept]["positive"] if i in scores]
            top5 = float(np.mean([k in np.argsort(-scores[i])[:5] for i in pos]))
            row["note"] = f"tag {tag!r} in the top 5 of {top5:.0%} of positives"
            table[concept] = {"tag": tag, "auc": row["value"], "interval": [row["low"], row["high"]],
                              "positives": row["positives"], "negatives": row["negatives"], "top5_share": top5,
                              "verdict": row["verdict"]}  # fmt: skip
        return table

    def signals(self, rules, truth: dict) -> None:
        """The signal judges' rows; for tempo on rendered clips also agreement with the rendered bpm, and a flag on
        each positive without a drum part whose estimate disagrees (a clip a listener cannot tap along to)."""
        from probing.judges import tempo_agrees

        figures = self.judged.figures
        for concept in sorted(self.members):
            for rule in (r for r in rules if r.concept == base(concept)):
                self.auc_row(concept, rule.judge, f"{rule.judge}: {rule.expect}",
                             lambda i, rule=rule: rule.score(figures[i]), figures, rule.reason)  # fmt: skip
                rendered = [i for i in self.members[concept]["positive"] if i in truth and i in figures]
                if rule.judge != "tempo" or len(rendered) < self.args.min_examples:
                    continue
                agree = {i: tempo_agrees(figures[i]["tempo_bpm"], truth[i]["bpm"]) for i in rendered}
                interval = wilson(sum(agree.values()), len(agree))
                self.row(concept, "tempo", "agrees with the rendered bpm", measure="tempo_agrees",
                         value=sum(agree.values()) / len(agree), low=interval[0], high=interval[1],
                         positives=len(agree), verdict=interval_verdict(interval),
                         note="share of positives whose estimate is within 4 % of the rendered bpm (octave errors "
                         "allowed): a majority must carry it")  # fmt: skip
                for i in rendered:
                    if not agree[i] and not truth[i]["drums"]:
                        est, bpm = figures[i]["tempo_bpm"], truth[i]["bpm"]
                        self.row(concept, "tempo", "agrees with the rendered bpm", measure="tempo_bpm",
                                 value=est, verdict=NOT_CONFIRMED, id=i,
                                 note=f"no drum part; estimated {est:.0f} bpm, rendered {bpm:.0f}")  # fmt: skip

    def no_judge(self) -> None:
        judged = {r["concept"] for r in self.rows}
        for concept in sorted(set(self.members) - judged):
            self.row(concept, "", "", verdict=NO_JUDGE, note="no tagger tag and no signal judge speaks for it")


def load_taggers(args: AuditArguments) -> tuple[dict, dict]:
    """{name: tagger} of the models asked for whose weights are converted, and {name: why not} for the others."""
    from probing.musicnn import load_musicnn

    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown musicnn model(s) {unknown}; choose from {list(MODELS)}")
    taggers, skipped = {}, {}
    for name in args.models:
        try:
            taggers[name] = load_musicnn(name, args.weights_dir)
        except ConfigError as e:  # not converted here: a counted skip, the step runs everywhere
            skipped[name] = str(e)
    if not taggers:
        logger.warning("audit: no musicnn weights (%s); the signal judges only", "; ".join(skipped.values()))
    return taggers, skipped


def run_audit(args: AuditArguments, out: Path) -> dict:
    from builder.reader import AudioSplit
    from probing.judges import judge_rules
    from probing.tagger_tags import concept_tags

    dataset = args.dataset or str(out / "dataset")
    require_source(dataset, "dataset")  # before any model is loaded: a dataset out of reach is one line at once
    taggers, skipped = load_taggers(args)
    rules = judge_rules() if args.signal_judges else ()
    rng = np.random.default_rng(args.seed)
    pairs = {name: concept_tags(MODELS[name].vocabulary, tagger.labels) for name, tagger in taggers.items()}
    report = {
        "dataset": dataset_identity(dataset),
        "models": {
            name: {"revision": t.revision, "splits": {}, "float16_overflow_bins": 0, "no_counterpart": []}
            for name, t in taggers.items()
        },
        "skipped_models": skipped,
        "verdicts": list(VERDICTS),
        "clips_too_short": {},
        "ground_truth": {},
        "evidence": [],
    }
    concepts_seen, read = set(), 0
    for split in SPLITS:
        try:
            audio = AudioSplit(dataset, split)
        except DataError as e:
            if "has no split" not in str(e):
                raise
            logger.info("audit: %s", e)  # a dataset assembled without clips in this split
            continue
        read += 1
        members = audio.concept_sets()
        concepts_seen |= set(members)
        spoken = [c for c in members if any(base(c) in p for p in pairs.values()) or any(r.concept == base(c)
                                                                                      for r in rules)]  # fmt: skip
        ids = sorted({i for c in spoken for role in ("positive", "negative") for i in members[c][role]})
        judged = judge_clips(audio, ids, taggers, args.seconds, args.batch_size, bool(rules))
        if audio.skipped:
            report.setdefault("skipped_clips", {})[split] = audio.skip_report()
        if judged.too_short:
            report["clips_too_short"][split] = len(judged.too_short)
            logger.warning("audit: %s: %d of %d clips are shorter than musicnn's 3 s patch; not tagged", split,
                           len(judged.too_short), len(ids))  # fmt: skip

        def category(concept: str, taxonomy=audio.taxonomy) -> str:
            return taxonomy.category_of.get(base(concept), theory_category(concept))

        verdicts = SplitAudit(args, split, members, judged, category, rng)
        for name, tagger in taggers.items():
            report["models"][name]["float16_overflow_bins"] += judged.overflow[name]
            report["models"][name]["splits"][split] = verdicts.tagger(name, tagger, pairs[name])
        truth = ground_truth(audio, ids) if rules else {}
        verdicts.signals(rules, truth)
        if not audio.published:
            verdicts.rows += listener_rows(dataset, split, verdicts.category)
        verdicts.no_judge()
        report["evidence"] += verdicts.rows
        if truth:
            tempo_concepts = sorted({c for c in members for r in rules if r.judge == "tempo" and r.concept == base(c)})
            report["ground_truth"][split] = truth_summary(truth, judged.figures, members, tempo_concepts)
    if not read:
        raise DataError(dataset, "no split with audio to audit")
    for name in taggers:
        report["models"][name]["no_counterpart"] = sorted(c for c in concepts_seen if base(c) not in pairs[name])
    report["summary"] = summary_rows(report)
    report["concept_verdicts"] = {
        split: {c: concept_verdict(r for r in report["evidence"] if r["split"] == split and r["concept"] == c)
                for c in sorted({r["concept"] for r in report["evidence"] if r["split"] == split})}
        for split in SPLITS
    }  # fmt: skip
    return report


def summary_rows(report: dict) -> list[dict]:
    """One row per (model, concept): the AUC per split, the share of positives with the tag in their top 5 over all
    splits, and the worst of the splits' verdicts (every split must confirm for "confirmed")."""
    order = {CONFIRMED: 0, NOT_CONFIRMED: 1, CONTRADICTED: 2}
    rows = []
    for name, entry in report["models"].items():
        concepts = sorted({c for split in entry["splits"].values() for c in split})
        for c in concepts:
            per_split = {s: v[c] for s, v in entry["splits"].items() if c in v}
            worst = max((r["verdict"] for r in per_split.values()), key=order.get)
            positives = sum(r["positives"] for r in per_split.values())
            top5 = sum(r["top5_share"] * r["positives"] for r in per_split.values()) / positives
            rows.append(
                {
                    "model": name,
                    "concept": c,
                    "tag": next(iter(per_split.values()))["tag"],
                    "splits": per_split,
                    "top5": top5,
                    "verdict": worst,
                }
            )
    return rows


def plot_audit(report: dict, path: Path) -> None:
    """Every judge's AUC per concept and split with its interval: a panel per tagger and one for the signal
    judges."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.get("evidence", []) if r["measure"] == "auc" and not r.get("id")]
    panels = list(report["models"]) + (
        ["signal judges"] if any(r["judge"] not in report["models"] for r in rows) else []
    )
    if not rows:  # still a figure: the stage's outputs are the same whatever it found
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "audit: no (judge, concept) pair had enough examples", ha="center", va="center")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return

    def labels(panel):
        mine = [
            r
            for r in rows
            if (r["judge"] == panel) or (panel == "signal judges" and r["judge"] not in report["models"])
        ]
        return mine, list(dict.fromkeys(f"{r['concept']} ({r['criterion']})" for r in mine))

    height = max(len(labels(p)[1]) for p in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), max(3, 0.28 * height + 1.5)), squeeze=False)
    colors = {"train": "C0", "validation": "C1", "test": "C2"}
    for ax, panel in zip(axes[0], panels):
        mine, names = labels(panel)
        seen = set()
        for r in mine:
            y = names.index(f"{r['concept']} ({r['criterion']})") + {"train": -0.15, "validation": 0.0}.get(
                r["split"], 0.15
            )
            ax.errorbar(
                r["value"],
                y,
                xerr=[[r["value"] - r["low"]], [r["high"] - r["value"]]],
                fmt="o",
                ms=3,
                color=colors.get(r["split"], "C3"),
                label=None if r["split"] in seen else r["split"],
            )
            seen.add(r["split"])
        ax.axvline(0.5, color="grey", lw=0.8)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("ROC-AUC, positives vs matched negatives (95 % CI)")
        ax.set_title(panel, fontsize=9)
        if seen:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def evidence_lines(report: dict) -> list[str]:
    """The verdict of every concept per split, then how well the signal judges recover the rendered truth."""
    lines = []
    for split, verdicts in report["concept_verdicts"].items():
        if verdicts:
            counts = {v: sum(x == v for x in verdicts.values()) for v in VERDICTS}
            lines.append(f"{split}: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    for split, t in report["ground_truth"].items():
        tempo = t["tempo"]
        lines.append(
            f"{split}: tempo within 4 % (octaves allowed) on clips with drums {_share(tempo['with_drums'])}, "
            f"without {_share(tempo['without_drums'])}"
            + (
                f"; key MIREX {t['key']['all']['mirex']:.2f}, mode {t['key']['all']['mode_accuracy']:.0%}"
                if t["key"]
                else ""
            )
        )
    return lines


def _share(entry: dict) -> str:
    return f"{entry['accuracy2']:.0%} of {entry['clips']}" if entry["clips"] else "no clips"


ARGUMENTS = AuditArguments


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "audit", argv)
    out = run_dir()
    report = run_audit(args, out)
    output = Path(args.output or out / "tagger_audit.json")
    dataset = args.dataset or str(out / "dataset")
    if args.write_evidence and assembled_layout(dataset) is not None:
        written = write_evidence(Path(dataset), report["evidence"])
        logger.info("audit: %d evidence rows written to %s (render the card again to list them: python -m "
                    "card.render --dataset %s --tagger_audit %s)", sum(written.values()), Path(dataset) / "evidence",
                    dataset, output)  # fmt: skip
    write_json(output, report)
    plot_audit(report, output.with_suffix(".png"))
    rows = report.get("summary", [])
    lines = [
        f"{r['model']:<12} {r['concept']:<22} {r['tag']:<16} "
        + "  ".join(
            f"{s} {v['auc']:.2f} [{v['interval'][0]:.2f}, {v['interval'][1]:.2f}]" for s, v in r["splits"].items()
        )
        + f"  {r['verdict']}"
        for r in rows
    ]
    logger.info(
        "tagger audit: %d (model, concept) rows; skipped models: %s\n%s\nevidence per concept:\n%s",
        len(rows),
        list(report["skipped_models"]) or "none",
        "\n".join(lines),
        "\n".join(evidence_lines(report)),
    )
    logger.info("audit: wrote %s (and its .png plot)", output)
    return report


if __name__ == "__main__":
    cli(main)
