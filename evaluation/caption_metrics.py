"""Caption metrics on the distilled test split: attribute lists of held-out MusicCaps rows -> generated
caption, compared with the human caption. BLEU (sacrebleu), ROUGE-L (rouge-score), BERTScore (bert-score),
MAUVE (mauve-text), plus coverage and hallucination rates from the caption checks, for any backend; the
human captions' own coverage and hallucination rates are reported as a baseline.

    python -m evaluation.caption_metrics --backend template
    python -m evaluation.caption_metrics --backend llm --captioner runs/paper/captioner

The paper reports BERTScore F1 0.8988, BLEU 0.2119, ROUGE-L 0.3906, MAUVE 0.9503 (roberta-large BERTScore,
gpt2-large MAUVE features, the defaults here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from builder.caption_checks import CaptionChecker
from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import DataError
from core.io import write_json
from core.log import get_logger
from generation.caption import CaptionArguments, LLMCaptioner, caption_rows

logger = get_logger(__name__)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score / 100.0


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]))


def bertscore_f1(
    hypotheses: Sequence[str],
    references: Sequence[str],
    model: str = "roberta-large",
    num_layers: int | None = None,
    batch_size: int = 32,
) -> float:
    from bert_score import score

    _, _, f1 = score(
        list(hypotheses),
        list(references),
        model_type=model,
        num_layers=num_layers,
        batch_size=batch_size,
        lang="en" if num_layers is None else None,
        verbose=False,
    )
    return float(f1.mean())


def mauve_score(
    hypotheses: Sequence[str], references: Sequence[str], model: str = "gpt2-large", seed: int = 25, device_id: int = -1
) -> float:
    """MAUVE with mauve's own featurisation (the last token's final hidden state of `model`, which must be a GPT-2
    or BERT family model: mauve loads no other)."""
    import mauve

    return float(
        mauve.compute_mauve(
            p_text=list(references),
            q_text=list(hypotheses),
            featurize_model_name=model,
            device_id=device_id,
            seed=seed,
            verbose=False,
        ).mauve
    )


def check_rates(checker: CaptionChecker, captions: Sequence[str], tag_lists: Sequence[Sequence[str]]) -> dict:
    results = [checker.check(c, t) for c, t in zip(captions, tag_lists)]
    return {
        "coverage_rate": float(np.mean([not r.missing for r in results])),
        "hallucination_rate": float(np.mean([bool(r.hallucinated) for r in results])),
        "pass_rate": float(np.mean([r.ok for r in results])),
        "mean_words": float(np.mean([len(c.split()) for c in captions])),
    }


@dataclass
class CaptionMetricsArguments(CaptionArguments):
    """Caption metrics of a backend on the distilled test split."""

    distilled: str | None = arg(None, "distilled.parquet (default: run dir)")
    split: str = arg("test", "which split's rows to caption")
    max_rows: int | None = arg(None, "only the first N rows of the split")
    bertscore_model: str = arg("roberta-large", "BERTScore encoder (id or path)")
    bertscore_num_layers: int | None = arg(None, "its layer (needed for a path)")
    mauve_model: str = arg("gpt2-large", "MAUVE feature model (id or path)")
    report: str | None = arg(None, "report JSON (default: run dir/caption_metrics.json)")


def evaluate_captions(args: CaptionMetricsArguments, distilled: Path, taxonomy: Taxonomy) -> dict:
    if not distilled.is_file():
        raise DataError(distilled, "not found (run `python -m builder.distill` first)")
    rows = [r for r in pq.read_table(distilled).to_pylist() if r["split"] == args.split][: args.max_rows]
    if not rows:
        raise DataError(distilled, f"no rows in split {args.split!r}")
    for r in rows:
        r["tags"] = [t for c in CATEGORIES for t in r[c]]
    checker = CaptionChecker(taxonomy, min_words=args.min_words, max_words=args.max_words)
    llm = (
        LLMCaptioner(args.captioner or run_dir() / "captioner", args.base_model, args.merged, args.dtype)
        if args.backend == "llm"
        else None
    )
    generated = caption_rows(rows, args, checker, llm, shard=0)
    hyps = [g["caption"] for g in generated]
    refs = [r["caption"] for r in rows]
    tags = [r["tags"] for r in rows]
    report = {
        "backend": args.backend,
        "split": args.split,
        "rows": len(rows),
        "bleu": bleu(hyps, refs),
        "rouge_l": rouge_l(hyps, refs),
        "bertscore_f1": bertscore_f1(hyps, refs, args.bertscore_model, args.bertscore_num_layers),
        "mauve": mauve_score(hyps, refs, args.mauve_model),
        "generated": check_rates(checker, hyps, tags),
        "human_reference": check_rates(checker, refs, tags),
        "models": {"bertscore": args.bertscore_model, "mauve": args.mauve_model, "captioner": generated[0]["model"]},
        "paper": {"bertscore_f1": 0.8988, "bleu": 0.2119, "rouge_l": 0.3906, "mauve": 0.9503},
    }
    return report


ARGUMENTS = CaptionMetricsArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "caption_metrics", argv)
    out = run_dir()
    distilled = Path(args.distilled or out / "distilled.parquet")
    taxonomy = Taxonomy.load(args.taxonomy or distilled.parent / "taxonomy.json")
    report = evaluate_captions(args, distilled, taxonomy)
    write_json(Path(args.report or out / "caption_metrics.json"), report)
    logger.info(
        "caption metrics (%s, %d %s rows): BLEU %.4f, ROUGE-L %.4f, BERTScore F1 %.4f, MAUVE %.4f; "
        "coverage %.3f, hallucination %.3f (human captions: %.3f, %.3f)",
        args.backend,
        report["rows"],
        args.split,
        report["bleu"],
        report["rouge_l"],
        report["bertscore_f1"],
        report["mauve"],
        report["generated"]["coverage_rate"],
        report["generated"]["hallucination_rate"],
        report["human_reference"]["coverage_rate"],
        report["human_reference"]["hallucination_rate"],
    )
    return report


if __name__ == "__main__":
    cli(main)
