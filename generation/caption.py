"""Write a caption for every attribute list, check it, and retry or reject it.

    python -m generation.caption --config configs/tiny.yaml                       # template backend
    python -m generation.caption --backend llm --captioner runs/demo/captioner    # the fine-tuned LLM
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m generation.caption --backend llm ...

Work is split into shards of `shard_size` ids across accelerate processes; each shard is written atomically to
`captions/` and a rerun skips finished shards. Every caption is checked (coverage, hallucination, length,
prompt echo); a failed one is regenerated with a new seed up to `max_attempts` times, then kept with status
`rejected` and its reasons. The main process merges the shards into `captions.parquet`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from builder.caption_checks import HALLUCINATION_CATEGORIES, CaptionChecker
from builder.prompting import PROMPT_VERSION, build_messages
from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import DataError, ModelLoadError
from core.io import sha256_file, write_json, write_parquet
from core.log import distributed_state, get_logger
from core.provenance import loaded_commit, model_identity
from core.retry import acceptance_by_concept, generate_with_retries, tally
from core.shards import Lazy, derive_seed, merge_shards, run_sharded
from generation.decoding import ForbiddenForms, FormTokens, WordEnds, generated_repetition_penalty
from generation.template_captioner import template_caption

logger = get_logger(__name__)

CAPTION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("tags", pa.list_(pa.string())),
        *[(c, pa.list_(pa.string())) for c in CATEGORIES],
        ("caption", pa.string()),
        ("status", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("missing", pa.list_(pa.string())),
        ("hallucinated", pa.list_(pa.string())),
        ("attempts", pa.int32()),
        ("seed", pa.int64()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("theory", pa.string()),  # a theory clip's facts, passed on to the renderer (generation.theory_lists)
    ]
)


@dataclass
class CaptionArguments:
    """Caption attribute lists (tags.parquet) into captions.parquet."""

    tags: str | None = arg(None, "tags.parquet (default: run dir)")
    taxonomy: str | None = arg(None, "taxonomy.json (default: run dir)")
    output: str | None = arg(None, "captions.parquet (default: run dir)")
    backend: str = arg("template", "'template' or 'llm'")
    captioner: str | None = arg(None, "fine-tuned captioner folder (default: run dir/captioner)")
    base_model: str | None = arg(None, "override the base model recorded in captioner.json")
    merged: bool = arg(
        False,
        "merge the LoRA adapter into the base model in `dtype` (faster per token; 16 GB per process for "
        "an 8B model) instead of the default: the 4-bit base (as trained, about 5.5 GB) with the adapter beside it",
    )
    dtype: str = arg("auto", "model dtype: auto, bfloat16, float32")
    batch_size: int = arg(16, "captions generated at once")
    shard_size: int = arg(64, "ids per shard (unit of resume and of work split)")
    max_new_tokens: int = arg(
        192,
        "generation length bound (a 90-word caption is about 130 Llama-3 tokens); a caption cut at it is "
        "rejected as truncated",
    )
    guard: bool = arg(
        True, "keep the LLM from writing genres and instruments its list does not hold (generation/decoding.py)"
    )
    do_sample: bool = arg(True, "sample (True) or greedy (False)")
    temperature: float = arg(0.7, "sampling temperature")
    top_k: int = arg(50, "top-k sampling")
    top_p: float = arg(0.97, "nucleus sampling")
    repetition_penalty: float = arg(1.2, "repetition penalty on generated tokens only")
    max_attempts: int = arg(3, "generations per caption before it is rejected")
    min_words: int = arg(8, "shortest acceptable caption")
    max_words: int = arg(90, "longest acceptable caption")
    seed: int = arg(0, "base seed; each batch and attempt derives its own")

    def __post_init__(self):
        if self.backend not in ("template", "llm"):
            raise ValueError(f"backend must be 'template' or 'llm', not {self.backend!r}")
        if self.max_attempts < 1 or self.batch_size < 1 or self.shard_size < 1:
            raise ValueError("max_attempts, batch_size and shard_size must be positive")


def read_tag_lists(path, taxonomy: Taxonomy) -> list[dict]:
    """Rows of tags.parquet, validated: a non-empty list of known concepts per row, unique ids."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found (run `python -m generation.sample_tags` first)")
    rows = pq.read_table(path).to_pylist()
    seen = set()
    for i, row in enumerate(rows):
        if row["id"] in seen:
            raise DataError(path, f"duplicate id {row['id']!r}", row=i, field="id")
        seen.add(row["id"])
        if not row.get("tags"):
            raise DataError(path, "empty attribute list", row=i, field="tags")
        unknown = [t for t in row["tags"] if t not in taxonomy.index]
        if unknown:
            raise DataError(path, f"concept(s) not in the taxonomy: {unknown}", row=i, field="tags")
        for c in CATEGORIES:
            row[c] = [t for t in row["tags"] if taxonomy.category_of[t] == c]
    return rows


class LLMCaptioner:
    """The fine-tuned LLM (base model + LoRA adapter, or a full model), generating in left-padded batches."""

    def __init__(self, path, base_model: str | None = None, merged: bool = False, dtype: str = "auto", device=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        path = Path(path)
        meta_path = path / "captioner.json"
        if not meta_path.is_file():
            raise DataError(
                meta_path, "missing: not a captioner folder (train one with `python -m training.train_captioner`)"
            )
        self.meta = json.loads(meta_path.read_text())
        if str(self.meta.get("prompt_version")) != PROMPT_VERSION:
            raise DataError(
                meta_path, f"prompt version {self.meta.get('prompt_version')} != this code's {PROMPT_VERSION}"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        except (OSError, ValueError) as e:
            raise ModelLoadError(path, "the tokenizer", e) from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        is_adapter = (path / "adapter_config.json").is_file()
        # the adapter on the 4-bit base it was trained on (QLoRA), unless a merged model is asked for
        quantized = is_adapter and not merged and bool(self.meta.get("load_in_4bit"))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # straight onto this process's device: no full copy in host memory per process
        kwargs = {"dtype": getattr(torch, dtype) if dtype != "auto" else "auto", "device_map": {"": self.device}}
        if quantized:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16,
            )
        name = (base_model or self.meta["base_model"]) if is_adapter else str(path)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                name, revision=self.meta.get("base_model_revision") if is_adapter else None, **kwargs
            )
        except OSError as e:
            raise ModelLoadError(name, "the model", e) from None
        base_commit = loaded_commit(model)
        if is_adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path)
            if merged:
                model = model.merge_and_unload()  # one matmul per layer instead of two at generation
        self.quantized = quantized
        self.model = model.eval()
        base = model_identity(name, self.meta.get("base_model_revision") if is_adapter else None, commit=base_commit)
        self.name = f"{base} + LoRA {model_identity(str(path))}" if is_adapter else base
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = [
            *(eos if isinstance(eos, list) else [eos] if eos is not None else []),
            self.tokenizer.eos_token_id,
        ]
        self._form_tokens = None

    def guard(self, tag_lists: Sequence[Sequence[str]], matcher) -> ForbiddenForms:
        """The decoding guard for a batch: per list, the genres and instruments it does not hold may not be written
        (their token sequences, and their forms as the checks read the text); its own concepts' forms stay free."""
        if self._form_tokens is None:
            self._form_tokens = FormTokens(self.tokenizer, matcher, HALLUCINATION_CATEGORIES)
            self._word_ends = WordEnds.of(self.tokenizer, matcher.taxonomy.normalise, self.eos_ids)
        forms = self._form_tokens
        return ForbiddenForms(
            [forms.banned_for(tags) for tags in tag_lists],
            0,  # its prompt length is set by generate
            [forms.allowed_for(tags) for tags in tag_lists],
            self._word_ends,
            [forms.banned_forms(tags) for tags in tag_lists],
            [forms.allowed_forms(tags) for tags in tag_lists],
        )

    def generate(
        self, attributes: Sequence[dict], args: CaptionArguments, seed: int, guard: ForbiddenForms | None = None
    ) -> list[Caption]:
        """One caption per attribute list; `guard`: what the rows may not write (`LLMCaptioner.guard`)."""
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(build_messages(a), add_generation_prompt=True, tokenize=False)
            for a in attributes
        ]
        # the chat template already starts with the BOS token
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_length = inputs["input_ids"].shape[1]  # left padding: every row's prompt ends here
        processors = (
            [generated_repetition_penalty(args.repetition_penalty, prompt_length)]
            if args.repetition_penalty != 1.0
            else []
        )
        if guard is not None:
            guard.prompt_length = prompt_length
            processors.append(guard)
        torch.manual_seed(seed)  # sampling draws from torch alone; seeds are 63-bit, more than numpy takes
        sampling = (
            dict(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
            if args.do_sample
            else dict(do_sample=False, temperature=None, top_k=None, top_p=None)
        )
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=args.max_new_tokens,
                logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=True,
                **sampling,
            )
        new = out[:, prompt_length:]
        ends = set(self.eos_ids)
        finished = [any(t in ends for t in row) for row in new.tolist()]
        return [
            Caption(t.strip(), not done)
            for t, done in zip(self.tokenizer.batch_decode(new, skip_special_tokens=True), finished)
        ]


@dataclass(frozen=True)
class Caption:
    text: str
    truncated: bool = False  # generation stopped at max_new_tokens, before the end of the caption


def caption_rows(
    rows: list[dict], args: CaptionArguments, checker: CaptionChecker, llm: LLMCaptioner | None, shard: int
) -> list[dict]:
    """Caption, check and retry one shard's rows; returns output records in input order."""

    def generate(batch: list[dict], seed: int) -> list[Caption]:
        attrs = [{c: r[c] for c in CATEGORIES} for r in batch]
        if llm is None:
            return [Caption(template_caption(a, r["id"])) for a, r in zip(attrs, batch)]
        guard = llm.guard([r["tags"] for r in batch], checker.matcher) if args.guard else None
        return llm.generate(attrs, args, seed, guard)

    attempts = generate_with_retries(
        rows,
        generate,
        lambda row, caption: checker.check(caption.text, row["tags"], caption.truncated),
        seed_of=lambda attempt, offset: derive_seed(args.seed, shard, attempt, offset),
        batch_size=args.batch_size,
        max_attempts=args.max_attempts,
        deterministic=llm is None,
    )  # the template ignores its seed
    return [
        {
            "id": row["id"],
            "tags": row["tags"],
            **{c: row[c] for c in CATEGORIES},
            "caption": a.output.text,
            "status": "ok" if a.verdict.ok else "rejected",
            "reasons": list(a.verdict.reasons),
            "missing": list(a.verdict.missing),
            "hallucinated": list(a.verdict.hallucinated),
            "attempts": a.attempt,
            "seed": a.seed,
            "backend": args.backend,
            "model": llm.name if llm else "template",
            "prompt_version": PROMPT_VERSION,
            "theory": row.get("theory"),
        }
        for row, a in zip(rows, attempts)
    ]


TEMPLATE_KEYS = ("backend", "shard_size", "min_words", "max_words", "seed")
LLM_KEYS = (
    "base_model",
    "merged",
    "dtype",
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "max_attempts",
    "batch_size",
    "guard",
)


def caption_manifest(args: CaptionArguments) -> dict:
    """What a shard's captions depend on (paths excluded; the adapter by its checksum)."""
    manifest = {k: getattr(args, k) for k in TEMPLATE_KEYS}
    if args.backend == "llm":
        manifest.update({k: getattr(args, k) for k in LLM_KEYS})
        folder = Path(args.captioner or run_dir() / "captioner")
        weights = [p for p in (folder / "adapter_model.safetensors", folder / "model.safetensors") if p.is_file()]
        manifest["weights_sha256"] = sha256_file(weights[0]) if weights else None
    return manifest


def run_captioning(args: CaptionArguments, tags_path: Path, taxonomy: Taxonomy, output: Path) -> dict:
    state = distributed_state()
    rows = read_tag_lists(tags_path, taxonomy)
    by_id = {r["id"]: r for r in rows}
    checker = CaptionChecker(taxonomy, min_words=args.min_words, max_words=args.max_words)
    llm = Lazy(
        lambda: LLMCaptioner(
            args.captioner or run_dir() / "captioner", args.base_model, args.merged, args.dtype, device=state.device
        )
    )

    def work(k: int, ids: list[str]) -> pa.Table:
        model = llm() if args.backend == "llm" else None
        return pa.Table.from_pylist(
            caption_rows([by_id[i] for i in ids], args, checker, model, k), schema=CAPTION_SCHEMA
        )

    shard_dir = output.parent / f"{output.stem}_shards"
    start = time.perf_counter()
    manifest = caption_manifest(args)
    counts = run_sharded(list(by_id), args.shard_size, shard_dir, work, state, manifest=manifest, desc="captions")
    summary = {}
    if state.is_main_process:
        table = merge_shards(list(by_id), args.shard_size, shard_dir)
        write_parquet(output, table)
        records = table.select(["tags", "status", "reasons", "attempts"]).to_pylist()
        counts_out = tally(records)
        summary = {
            "captions": counts_out.pop("total"),
            **counts_out,
            "acceptance_by_concept": acceptance_by_concept(records, args.max_attempts),
            "shards": counts,
            "seconds": round(time.perf_counter() - start, 2),
            "arguments": asdict(args),
        }
        write_json(output.with_name("captions_summary.json"), summary)
        logger.info(
            "captions: %d ok, %d rejected %s -> %s",
            summary["ok"],
            summary["rejected"],
            summary["rejected_by_reason"],
            output,
        )
    return summary


ARGUMENTS = CaptionArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "caption", argv)
    out = run_dir()
    tags_path = Path(args.tags or out / "tags.parquet")
    taxonomy = Taxonomy.load(args.taxonomy or tags_path.parent / "taxonomy.json")
    return run_captioning(args, tags_path, taxonomy, Path(args.output or out / "captions.parquet"))


if __name__ == "__main__":
    cli(main)
