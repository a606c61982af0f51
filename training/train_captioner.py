"""Fine-tune the caption LLM with TRL's SFTTrainer: attribute list (chat prompt) -> MusicCaps caption.

Defaults are the paper's: Llama 3.1 8B Instruct, QLoRA (4-bit nf4, double quantisation, bf16 compute), LoRA
r = 32 on every attention and MLP projection, lr 6e-5, 5 epochs, max length 256. The loss covers the
completion (the caption) only: the dataset is in TRL's prompt-completion form, whose collator masks the
prompt tokens (labels -100).

    # QLoRA, the paper's run (one GPU; the launch topology lives in configs/accelerate/*.yaml)
    accelerate launch --config_file configs/accelerate/single_gpu.yaml -m training.train_captioner \\
        --distilled runs/paper/distilled.parquet --output_dir runs/paper/captioner
    # plain LoRA or a full fine-tune: flags, not another code path
    python -m training.train_captioner --load_in_4bit false --use_peft true ...
    python -m training.train_captioner --load_in_4bit false --use_peft false ...
    # the tiny CPU demo
    python -m training.train_captioner --config configs/tiny.yaml

Writes the adapter (or model), the tokenizer and `captioner.json` (prompt version, base model, arguments).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq
from trl import ModelConfig, SFTConfig, TrlParser

from builder.caption_checks import CaptionChecker
from builder.prompting import PROMPT_VERSION, build_example
from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import ConfigError, DataError, ModelLoadError
from core.io import sha256_file, write_json
from core.log import get_logger
from core.provenance import package_versions

logger = get_logger(__name__)

CAPTIONER_META = "captioner.json"
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The paper's recipe, as defaults of TRL's own SFTConfig and ModelConfig fields (a preset or the CLI overrides).
PAPER_DEFAULTS = dict(
    model_name_or_path="meta-llama/Llama-3.1-8B-Instruct",
    dtype="bfloat16",
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    use_bnb_nested_quant=True,
    use_peft=True,
    lora_r=32,
    lora_alpha=64,
    lora_dropout=0.05,
    lora_target_modules=LLAMA_PROJECTIONS,
    learning_rate=6e-5,
    num_train_epochs=5,
    max_length=256,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=2,
    bf16=True,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=1,
    logging_steps=10,
    report_to="none",
    seed=0,
)


PAIRINGS = ("caption", "aspects")
MIN_CATEGORIES = 3


@dataclass
class CaptionerArguments:
    """Data for the caption SFT (the model and training arguments are TRL's ModelConfig and SFTConfig)."""

    distilled: str | None = arg(None, "distilled.parquet (default: run dir)")
    taxonomy: str | None = arg(None, "taxonomy.json (default: beside distilled.parquet)")
    pairing: str = arg(
        "caption",
        "each example's attribute list: 'caption' (the concepts its caption names, negation-aware, so that "
        "every pair passes the caption checks) or 'aspects' (the concepts of its MusicCaps aspect list)",
    )
    min_categories: int = arg(
        MIN_CATEGORIES, "with pairing=caption: categories a caption must name, else the row is dropped (counted)"
    )
    max_train_rows: int | None = arg(None, "use only the first N train rows (demo/tests)")
    max_eval_rows: int | None = arg(None, "use only the first N validation rows")
    effective_batch_size: int | None = arg(
        None,
        "examples per optimiser step over all processes (default: per_device_train_batch_size x "
        "gradient_accumulation_steps, the recipe as written for one process); kept whatever the number of "
        "processes by scaling gradient accumulation",
    )

    def __post_init__(self):
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, not {self.pairing!r}")


def training_pairs(
    rows: list[dict], taxonomy: Taxonomy, pairing: str, min_categories: int = MIN_CATEGORIES
) -> tuple[list[dict], dict]:
    """(attributes per category, caption) pairs and their statistics.

    With `pairing="caption"` the attributes are the concepts the caption names (all four categories, negated
    mentions excluded), so the model learns to name exactly what it is given; rows whose caption names fewer than
    `min_categories` categories, or whose length the checks would reject, are dropped and counted. With "aspects",
    the row's aspect-derived lists as they are.
    The statistics: rows kept and dropped, the share of pairs that pass the caption checks (coverage,
    hallucination, negation, length, echo), and the mean Jaccard similarity of the two pairings' lists.
    """
    checker = CaptionChecker(taxonomy)
    pairs, dropped, jaccard = [], Counter(), []
    for row in rows:
        aspects = [t for c in CATEGORIES for t in row[c]]
        named = sorted(checker.named_concepts(row["caption"]), key=taxonomy.index.__getitem__)
        union = set(aspects) | set(named)
        jaccard.append(len(set(aspects) & set(named)) / len(union) if union else 1.0)
        tags = named if pairing == "caption" else aspects
        attributes = {c: [t for t in tags if taxonomy.category_of[t] == c] for c in CATEGORIES}
        if pairing == "caption" and sum(bool(v) for v in attributes.values()) < min_categories:
            dropped[f"fewer than {min_categories} categories named"] += 1
            continue
        words = len(row["caption"].split())
        if pairing == "caption" and not checker.min_words <= words <= checker.max_words:
            dropped[f"outside {checker.min_words}-{checker.max_words} words"] += 1  # a length the checks would reject
            continue
        pairs.append({"attributes": attributes, "tags": tags, "caption": row["caption"]})
    passing = sum(checker.check(p["caption"], p["tags"]).ok for p in pairs)
    return pairs, {
        "rows": len(rows),
        "pairs": len(pairs),
        "dropped": dict(dropped),
        "training_pair_consistency": passing / max(len(pairs), 1),
        "mean_jaccard_caption_vs_aspects": sum(jaccard) / max(len(jaccard), 1),
    }


def load_sft_datasets(
    distilled,
    taxonomy: Taxonomy,
    pairing: str = "caption",
    min_categories: int = MIN_CATEGORIES,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
):
    """Train and validation datasets of prompt-completion examples from distilled.parquet, and the pairing's
    statistics per split."""
    from datasets import Dataset

    path = Path(distilled)
    if not path.is_file():
        raise DataError(path, "not found (run `python -m builder.distill` first)")
    rows = pq.read_table(path).to_pylist()
    out, stats = {}, {}
    for split, limit in (("train", max_train_rows), ("validation", max_eval_rows)):
        chosen = [r for r in rows if r["split"] == split]
        for i, row in enumerate(chosen):
            if not row["caption"].strip():
                raise DataError(path, "empty caption", row=i, field="caption")
        pairs, stats[split] = training_pairs(chosen, taxonomy, pairing, min_categories)
        out[split] = Dataset.from_list([build_example(p["attributes"], p["caption"]) for p in pairs[:limit]])
    return out["train"], out["validation"], stats


def recipe_batch(per_device: int, accumulation: int, processes: int, effective: int | None = None) -> dict:
    """Per-device batch and gradient accumulation that keep the recipe's effective batch on `processes` processes.

    The recipe's effective batch is `effective`, or per_device x accumulation as written for one process. Each
    process then takes effective / processes examples per step, in as few accumulation steps as the per-device
    batch allows (lowered to a divisor of that share when it does not divide it).
    """
    effective = effective or per_device * accumulation
    if effective % processes:
        raise ConfigError(
            f"captioner: the effective batch {effective} does not divide evenly among {processes} "
            "processes; set --effective_batch_size to a multiple of the process count"
        )
    share = effective // processes
    device = max(d for d in range(1, min(per_device, share) + 1) if share % d == 0)
    return {
        "effective_batch_size": effective,
        "num_processes": processes,
        "per_device_train_batch_size": device,
        "gradient_accumulation_steps": share // device,
    }


def train_captioner(script_args: CaptionerArguments, training_args, model_args, distilled: Path) -> dict:
    """Run SFT; returns validation losses before and after training."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    taxonomy = Taxonomy.load(script_args.taxonomy or Path(distilled).parent / "taxonomy.json")
    train, validation, pair_stats = load_sft_datasets(
        distilled,
        taxonomy,
        script_args.pairing,
        script_args.min_categories,
        script_args.max_train_rows,
        script_args.max_eval_rows,
    )
    logger.info(
        "captioner: %s pairing, %d train pairs, %.1f %% of them pass the caption checks",
        script_args.pairing,
        pair_stats["train"]["pairs"],
        100 * pair_stats["train"]["training_pair_consistency"],
    )
    name = model_args.model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision)
    except OSError as e:
        raise ModelLoadError(name, "the base model's tokenizer", e) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = recipe_batch(
        training_args.per_device_train_batch_size,
        training_args.gradient_accumulation_steps,
        training_args.world_size,
        script_args.effective_batch_size,
    )
    training_args.per_device_train_batch_size = batch["per_device_train_batch_size"]
    training_args.gradient_accumulation_steps = batch["gradient_accumulation_steps"]
    logger.info(
        "captioner: effective batch %d = %d processes x %d per device x %d accumulation steps",
        batch["effective_batch_size"],
        batch["num_processes"],
        batch["per_device_train_batch_size"],
        batch["gradient_accumulation_steps"],
    )
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    trainer = SFTTrainer(
        model=name,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    before = trainer.evaluate()["eval_loss"]
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after = trainer.evaluate()["eval_loss"]
    if not (math.isfinite(before) and math.isfinite(after)):
        raise RuntimeError(f"non-finite validation loss (before {before}, after {after})")
    trainer.save_model(training_args.output_dir)
    result = {
        "eval_loss_before": before,
        "eval_loss_after": after,
        "train_rows": len(train),
        "eval_rows": len(validation),
        "linear4bit_layers": sum(type(m).__name__ == "Linear4bit" for m in trainer.model.modules()),
    }
    if trainer.accelerator.is_main_process:
        write_json(
            Path(training_args.output_dir) / CAPTIONER_META,
            {
                "prompt_version": PROMPT_VERSION,
                "base_model": name,
                "base_model_revision": model_args.model_revision,
                "peft": bool(model_args.use_peft),
                "load_in_4bit": bool(model_args.load_in_4bit),
                "model_args": json.loads(json.dumps(asdict(model_args), default=str)),
                "data": asdict(script_args),
                "distilled_sha256": sha256_file(distilled),
                "packages": package_versions(),
                **result,
                "pairing": script_args.pairing,
                "training_pair_consistency": pair_stats["train"]["training_pair_consistency"],
                "pairs": pair_stats,
                "batch": batch,
            },
        )
    logger.info(
        "captioner: validation loss %.4f -> %.4f on %d rows; saved to %s",
        before,
        after,
        len(validation),
        training_args.output_dir,
    )
    return result


ARGUMENTS = (CaptionerArguments, SFTConfig, ModelConfig)  # what this stage's preset section may hold


def parse(argv: Sequence[str] | None = None):
    script_args, training_args, model_args = parse_args(
        ARGUMENTS, "captioner", argv, defaults=PAPER_DEFAULTS, parser_class=TrlParser
    )
    if training_args.output_dir in (None, "trainer_output"):
        training_args.output_dir = str(run_dir() / "captioner")
    return script_args, training_args, model_args


def main(argv: Sequence[str] | None = None) -> dict:
    script_args, training_args, model_args = parse(argv)
    distilled = Path(script_args.distilled or run_dir() / "distilled.parquet")
    return train_captioner(script_args, training_args, model_args, distilled)


if __name__ == "__main__":
    cli(main)
