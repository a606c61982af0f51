"""The paper-scale GPU budget, measured: throughput of each GPU stage per batch size on the real architectures with
random weights, and the GPU-hours the paper's sizes then need.

    .venv/bin/python -m benchmarks.gpu_budget                 # on a CUDA machine (about 10 minutes on one H200)
    .venv/bin/python -m benchmarks.gpu_budget --smoke         # toy sizes on CPU: checks the script, measures nothing

Models are built from their configs with random weights, saved, and loaded back through the project's own loading
code, so what is timed is what the stages run:
  synthesis    musicgen-large (`MusicGenSynthesizer`: bf16, the codec in fp32), 30 s clips with guidance 3.3;
               the decoder always generates 1,503 steps, so random weights time it exactly
  captioning   Llama-3.1-8B in 4-bit with a LoRA r 32 adapter (`LLMCaptioner`'s default), 192 new tokens a caption
  SFT          one optimiser step of QLoRA (4-bit base, LoRA r 32 on all projections, 256 tokens, per-device batch
               8 with 2 accumulation steps: the paper's effective batch of 16)
  scoring      clap-htsat-unfused (`ClapScorer`): three 10 s windows per 30 s clip at 48 kHz
Budget at paper scale: 24,000 lists captioned and synthesised (the preset's margin over the 21,433 kept),
1,985 SFT pairs for 5 epochs, 21,433 clips scored; `--attempts` scales captioning and synthesis for retries.
Logs a table and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from core.log import get_logger

logger = get_logger(__name__)
PAPER = {"lists": 24_000, "clips": 21_433, "sft_pairs": 1_985, "sft_epochs": 5, "effective_batch": 16}


def llama_8b_config(tokenizer, smoke: bool):
    from transformers import LlamaConfig

    if smoke:
        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return LlamaConfig(
        vocab_size=128_256,
        hidden_size=4096,
        intermediate_size=14_336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131_072,
        rope_theta=500_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def timed(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def synthesis(root: Path, device: str, smoke: bool, batch_sizes, sync) -> list[dict]:
    from fixtures.tiny_models import build_tiny_musicgen, musiccaps_texts
    from generation.synthesize import MusicGenSynthesizer, SynthesisArguments

    build_tiny_musicgen(root / "musicgen", musiccaps_texts()[:2000], size="large", tiny=smoke, device=device)
    seconds = 0.5 if smoke else 30.0
    args = SynthesisArguments(
        model=str(root / "musicgen"),
        duration_s=seconds,
        guidance_scale=3.3,
        top_k=250,
        dtype="float32" if smoke else "bfloat16",
    )
    synth = MusicGenSynthesizer(args, device=device)
    synth.generate(["warm-up"], args, seed=0)
    out = []
    for b in batch_sizes:
        captions = [f"an energetic rock song with electric guitar, take {i}" for i in range(b)]
        try:
            s = timed(lambda: synth.generate(captions, args, seed=0), sync)
        except RuntimeError as e:  # out of memory at this batch size: the table says so
            out.append({"batch_size": b, "error": str(e).splitlines()[0][:120]})
            break
        out.append({"batch_size": b, "seconds": round(s, 2), "items_per_hour": round(3600 * b / s, 1)})
    return out


def llm(root: Path, device: str, smoke: bool, batch_sizes, sync) -> tuple[list[dict], list[dict]]:
    """(captioning rows per batch size, [the SFT step])."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaForCausalLM

    from builder.prompting import PROMPT_VERSION
    from fixtures.tiny_models import musiccaps_texts, train_tokenizer
    from generation.caption import LLMCaptioner
    from training.train_captioner import LLAMA_PROJECTIONS

    tokenizer = train_tokenizer(musiccaps_texts()[:2000], 2048)
    with torch.device(device):
        base = LlamaForCausalLM(llama_8b_config(tokenizer, smoke)).to(torch.bfloat16)
    base.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    del base
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        root / "llama", quantization_config=quant, dtype=torch.bfloat16, device_map={"": device}
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(
        model,
        LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=LLAMA_PROJECTIONS, task_type="CAUSAL_LM"),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=6e-5)
    length, per_device, accumulation = (32, 2, 2) if smoke else (256, 8, 2)
    ids = torch.randint(0, len(tokenizer), (per_device, length), device=device)

    def step():
        for _ in range(accumulation):
            loss = model(input_ids=ids, labels=ids).loss / accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    sft = [{"batch_size": per_device * accumulation, "seconds": round(timed(step, sync), 3)}]
    model.save_pretrained(root / "captioner")  # the adapter, as the SFT stage leaves it
    tokenizer.save_pretrained(root / "captioner")
    (root / "captioner" / "captioner.json").write_text(
        json.dumps({"prompt_version": PROMPT_VERSION, "base_model": str(root / "llama"), "load_in_4bit": True})
    )
    model = optimizer = None  # free the training copy before loading the captioner
    captioner = LLMCaptioner(root / "captioner", device=device)  # the default: 4-bit base + adapter
    new_tokens = 8 if smoke else 192
    rows = []
    for b in [batch_sizes[0], *batch_sizes]:  # the first one is a warm-up
        prompt = torch.randint(0, len(tokenizer), (b, 120 if not smoke else 16), device=device)

        def generate():
            with torch.inference_mode():
                captioner.model.generate(
                    input_ids=prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=True,
                    top_k=50,
                    min_new_tokens=new_tokens,
                    max_new_tokens=new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )

        try:
            s = timed(generate, sync)
        except RuntimeError as e:
            rows.append({"batch_size": b, "error": str(e).splitlines()[0][:120]})
            break
        rows.append({"batch_size": b, "seconds": round(s, 2), "items_per_hour": round(3600 * b / s, 1)})
    return rows[1:], sft


def scoring(root: Path, device: str, smoke: bool, batch_sizes, sync) -> list[dict]:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    from evaluation.score import ClapScorer
    from fixtures.tiny_models import build_tiny_clap, musiccaps_texts, train_tokenizer

    if smoke:
        build_tiny_clap(root / "clap", musiccaps_texts()[:2000])
    else:
        import torch

        torch.manual_seed(0)
        ClapModel(ClapConfig()).save_pretrained(root / "clap")  # clap-htsat-unfused's architecture (the defaults)
        ClapProcessor(ClapFeatureExtractor(), train_tokenizer(musiccaps_texts()[:2000], 2048)).save_pretrained(
            root / "clap"
        )
    scorer = ClapScorer(str(root / "clap"), device=device)
    seconds = 12.0 if smoke else 30.0
    scorer.audio_embeddings([np.zeros(32000, np.float32)], [32000])  # warm-up
    rows = []
    for b in batch_sizes:
        waves = [
            np.random.default_rng(i).standard_normal(int(seconds * 32000)).astype(np.float32) * 0.1 for i in range(b)
        ]
        s = timed(lambda: scorer.audio_embeddings(waves, [32000] * b, batch_size=3 * b), sync)
        rows.append({"batch_size": b, "seconds": round(s, 3), "items_per_hour": round(3600 * b / s, 1)})
    return rows


def budget(results: dict, attempts: float) -> dict:
    """GPU-hours at paper scale from the best measured throughput of each stage."""

    def best(rows):
        ok = [r for r in rows if "items_per_hour" in r]
        return max(ok, key=lambda r: r["items_per_hour"]) if ok else None

    out = {}
    for stage, items in (
        ("synthesis", PAPER["lists"] * attempts),
        ("captioning", PAPER["lists"] * attempts),
        ("scoring", PAPER["clips"]),
    ):
        b = best(results[stage])
        out[stage] = {
            "best_batch_size": b and b["batch_size"],
            "gpu_hours": b and round(items / b["items_per_hour"], 2),
        }
    steps = math.ceil(PAPER["sft_pairs"] / PAPER["effective_batch"]) * PAPER["sft_epochs"]
    out["sft"] = {"steps": steps, "gpu_hours": round(steps * results["sft"][0]["seconds"] / 3600, 2)}
    out["total_gpu_hours"] = round(sum(v["gpu_hours"] or 0 for v in out.values() if isinstance(v, dict)), 2)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="toy sizes on CPU (checks the script; no GPU figure)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=None)
    parser.add_argument("--attempts", type=float, default=1.0, help="mean generations per item (retries)")
    parser.add_argument("--stages", nargs="+", default=["synthesis", "captioning", "scoring"])
    args = parser.parse_args(argv)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_budget: no CUDA device here; run it on a GPU machine, or pass --smoke for the toy run")
    device = "cpu" if args.smoke else "cuda"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sizes = args.batch_sizes or ([1, 2] if args.smoke else [1, 4, 8, 16, 32])
    results = {"synthesis": [], "captioning": [], "sft": [{"seconds": 0.0}], "scoring": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "synthesis" in args.stages:
            results["synthesis"] = synthesis(root, device, args.smoke, sizes, sync)
        if "captioning" in args.stages:
            results["captioning"], results["sft"] = llm(root, device, args.smoke, sizes, sync)
        if "scoring" in args.stages:
            results["scoring"] = scoring(root, device, args.smoke, sizes, sync)
    out = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke: toy sizes, not a budget)",
        "measured": results,
        "paper_scale": budget(results, args.attempts),
        "assumptions": {**PAPER, "attempts": args.attempts},
    }
    for stage, rows in results.items():
        for r in rows:
            logger.info("%-11s %s", stage, "  ".join(f"{k} {v}" for k, v in r.items()))
    logger.info("paper scale: %s", out["paper_scale"])
    print(json.dumps(out))  # the benchmark's output: one JSON line, as every benchmark prints
    return out


if __name__ == "__main__":
    main()
