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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq
from trl import ModelConfig, SFTConfig, TrlParser

from core.config import cli, get_logger, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import DataError, ModelLoadError
from core.io import sha256_file, write_json
from core.provenance import package_versions
from training.prompting import PROMPT_VERSION, build_example

logger = get_logger(__name__)

CAPTIONER_META = "captioner.json"
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The paper's recipe, as defaults of TRL's own SFTConfig and ModelConfig fields (a preset or the CLI overrides).
PAPER_DEFAULTS = dict(
    model_name_or_path="meta-llama/Llama-3.1-8B-Instruct", dtype="bfloat16",
    load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True,
    use_peft=True, lora_r=32, lora_alpha=64, lora_dropout=0.05, lora_target_modules=LLAMA_PROJECTIONS,
    learning_rate=6e-5, num_train_epochs=5, max_length=256, per_device_train_batch_size=8,
    gradient_accumulation_steps=2, bf16=True, eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
    logging_steps=10, report_to="none", seed=0,
)


@dataclass
class CaptionerArguments:
    """Data for the caption SFT (the model and training arguments are TRL's ModelConfig and SFTConfig)."""

    distilled: str | None = field(default=None, metadata={"help": "distilled.parquet (default: run dir)"})
    max_train_rows: int | None = field(default=None, metadata={"help": "use only the first N train rows (demo/tests)"})
    max_eval_rows: int | None = field(default=None, metadata={"help": "use only the first N validation rows"})


def load_sft_datasets(distilled, max_train_rows: int | None = None, max_eval_rows: int | None = None):
    """Train and validation datasets of prompt-completion examples from distilled.parquet."""
    from datasets import Dataset

    path = Path(distilled)
    if not path.is_file():
        raise DataError(path, "not found (run `python -m builder.distill` first)")
    rows = pq.read_table(path).to_pylist()
    out = {}
    for split, limit in (("train", max_train_rows), ("validation", max_eval_rows)):
        examples = []
        for i, row in enumerate(r for r in rows if r["split"] == split):
            if limit is not None and len(examples) >= limit:
                break
            if not row["caption"].strip():
                raise DataError(path, "empty caption", row=i, field="caption")
            examples.append(build_example({c: row[c] for c in CATEGORIES}, row["caption"]))
        out[split] = Dataset.from_list(examples)
    return out["train"], out["validation"]


def train_captioner(script_args: CaptionerArguments, training_args, model_args, distilled: Path) -> dict:
    """Run SFT; returns validation losses before and after training."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    train, validation = load_sft_datasets(distilled, script_args.max_train_rows, script_args.max_eval_rows)
    name = model_args.model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision)
    except OSError as e:
        raise ModelLoadError(name, "the base model's tokenizer", e) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    training_args.model_init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype,
                                       **(training_args.model_init_kwargs or {})}
    trainer = SFTTrainer(
        model=name, args=training_args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
        quantization_config=get_quantization_config(model_args), peft_config=get_peft_config(model_args))
    before = trainer.evaluate()["eval_loss"]
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after = trainer.evaluate()["eval_loss"]
    if not (math.isfinite(before) and math.isfinite(after)):
        raise RuntimeError(f"non-finite validation loss (before {before}, after {after})")
    trainer.save_model(training_args.output_dir)
    result = {"eval_loss_before": before, "eval_loss_after": after, "train_rows": len(train), "eval_rows": len(validation),
              "linear4bit_layers": sum(type(m).__name__ == "Linear4bit" for m in trainer.model.modules())}
    if trainer.accelerator.is_main_process:
        write_json(Path(training_args.output_dir) / CAPTIONER_META, {
            "prompt_version": PROMPT_VERSION, "base_model": name, "base_model_revision": model_args.model_revision,
            "peft": bool(model_args.use_peft), "load_in_4bit": bool(model_args.load_in_4bit),
            "model_args": json.loads(json.dumps(asdict(model_args), default=str)), "data": asdict(script_args),
            "distilled_sha256": sha256_file(distilled), "packages": package_versions(), **result,
        })
    logger.info("captioner: validation loss %.4f -> %.4f on %d rows; saved to %s", before, after, len(validation),
                training_args.output_dir)
    return result


ARGUMENTS = (CaptionerArguments, SFTConfig, ModelConfig)  # what this stage's preset section may hold


def parse(argv: Sequence[str] | None = None):
    script_args, training_args, model_args = parse_args(
        ARGUMENTS, "captioner", argv, defaults=PAPER_DEFAULTS, parser_class=TrlParser)
    if training_args.output_dir in (None, "trainer_output"):
        training_args.output_dir = str(run_dir() / "captioner")
    return script_args, training_args, model_args


def main(argv: Sequence[str] | None = None) -> dict:
    script_args, training_args, model_args = parse(argv)
    distilled = Path(script_args.distilled or run_dir() / "distilled.parquet")
    return train_captioner(script_args, training_args, model_args, distilled)


if __name__ == "__main__":
    cli(main)
