"""Caption targets: batched generation at batch 16 gives >= 4x the captions per second of one at a time (same
tiny model, same run), with greedy outputs identical; the tiny CPU SFT run takes < 120 s and lowers the
validation loss.

    .venv/bin/python -m benchmarks.bench_caption [--run_dir runs/bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from builder.distill import distill_musiccaps
from builder.musiccaps import read_musiccaps
from builder.taxonomy import build_taxonomy
from core.config import DEFAULT_MUSICCAPS
from core.constants import CATEGORIES
from core.io import write_parquet
from fixtures.tiny_models import build_tiny_llama, musiccaps_texts
from generation.caption import CaptionArguments, LLMCaptioner
from training.train_captioner import main as sft_main


def run(run_dir: Path, n: int = 64, batch_size: int = 16) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    taxonomy, _ = build_taxonomy(DEFAULT_MUSICCAPS)
    result = distill_musiccaps(read_musiccaps(DEFAULT_MUSICCAPS), taxonomy)
    write_parquet(run_dir / "distilled.parquet", result.distilled)
    taxonomy.save(run_dir / "taxonomy.json")  # the SFT pairs each caption with the concepts it names
    model_dir = build_tiny_llama(run_dir / "tiny-llama", musiccaps_texts())
    # SFT: the tiny preset's settings
    start = time.perf_counter()
    sft = sft_main(
        [
            f"--model_name_or_path={model_dir}",
            f"--distilled={run_dir / 'distilled.parquet'}",
            f"--output_dir={run_dir / 'captioner'}",
            *(
                "--load_in_4bit false --dtype float32 --bf16 false --use_cpu true --max_train_rows 512 "
                "--max_eval_rows 64 --num_train_epochs 1 --learning_rate 2e-3 --per_device_train_batch_size 16 "
                "--gradient_accumulation_steps 1 --eval_strategy no --save_strategy no --disable_tqdm true "
                "--report_to none"
            ).split(),
        ]
    )
    sft_s = time.perf_counter() - start
    # generation: the same model, greedy, one at a time vs batches of 16
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(model_dir, folder / "m")
    (folder / "m" / "captioner.json").write_text(json.dumps({"prompt_version": "1", "base_model": str(folder / "m")}))
    captioner = LLMCaptioner(folder / "m", dtype="float32")
    args = CaptionArguments(backend="llm", do_sample=False, max_new_tokens=48, repetition_penalty=1.0)
    rows = result.distilled.to_pylist()[:n]
    attrs = [{c: r[c] for c in CATEGORIES} for r in rows]
    captioner.generate(attrs[:2], args, 0)  # warm-up
    start = time.perf_counter()
    single = [captioner.generate([a], args, 0)[0] for a in attrs]
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = [c for i in range(0, n, batch_size) for c in captioner.generate(attrs[i : i + batch_size], args, 0)]
    batched_s = time.perf_counter() - start
    return {
        "captions": n,
        "batch_size": batch_size,
        "one_at_a_time_captions_per_s": round(n / single_s, 2),
        "batched_captions_per_s": round(n / batched_s, 2),
        "batched_speedup": round(single_s / batched_s, 2),
        "speedup_ratio_to_4x": round(single_s / batched_s / 4, 3),
        "greedy_identical": batched == single,
        "sft_seconds": round(sft_s, 1),
        "sft_ratio_to_120s": round(sft_s / 120, 3),
        "sft_eval_loss_before": round(sft["eval_loss_before"], 4),
        "sft_eval_loss_after": round(sft["eval_loss_after"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", default="runs/bench")
    args = parser.parse_args()
    print(json.dumps(run(Path(args.run_dir))))


if __name__ == "__main__":
    main()
