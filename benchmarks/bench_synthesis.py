"""Synthesis targets, each a ratio measured in this one run (tiny MusicGen built from its config):
batched (batch 8) >= 4x the clips/s of one at a time, on one intra-op thread (the tiny model's faster setting
for both; two threads reported beside it), with the share of that time EnCodec takes (the same per clip at any
batch size); two CPU processes under accelerate >= 1.6x one (512 clips of 3 s, each process
single-threaded; beside it one process using both cores through threads, and the machine's ceiling: two
independent processes on half the clips each);
a rerun of a finished synthesis < 5 % of the first run's time, with no model load;
peak RSS at 512 clips <= 1.2x at 64; and the real musicgen-small architecture (random weights) on this CPU in
seconds per second of audio, one at a time and at batch 8, and its EnCodec decoding a batch of 8 in one call
against one clip at a time (the synthesizer's choice on CPU). On a GPU (--large), seconds per 30 s clip for
musicgen-large per batch size.

  .venv/bin/python -m benchmarks.bench_synthesis [--run_dir runs/bench_synth] [--large]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fixtures.runs import accelerate_cpu, caption_row, write_caption_rows
from fixtures.tiny_models import build_tiny_musicgen, musiccaps_texts, musicgen_config
from generation.template_captioner import template_caption

REPO = Path(__file__).resolve().parents[1]
TAGS = [
    ["rock", "energetic", "electric guitar", "fast tempo"],
    ["jazz", "mellow", "piano", "slow tempo"],
    ["pop", "happy", "female vocal", "groovy"],
    ["classical", "calming", "strings", "medium tempo"],
]


def write_captions(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        tags = TAGS[i % len(TAGS)]
        attrs = {"genre": tags[:1], "mood": tags[1:2], "instrument": tags[2:3], "tempo": tags[3:]}
        rows.append(caption_row(f"b-{i:05d}", tags, attrs, str(i)))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_caption_rows(path, rows)
    return path


def timed_run(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, check=True, capture_output=True)
    return time.perf_counter() - start, max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)


def synth_cmd(
    model: Path, run: Path, batch: int, launcher: list[str] | None = None, duration: float = 1.0, shard_size: int = 16
) -> list[str]:
    args = [
        "-m",
        "generation.synthesize",
        f"--captions={run / 'captions.parquet'}",
        f"--output_dir={run / 'audio_shards'}",
        f"--model={model}",
        f"--duration_s={duration}",
        f"--batch_size={batch}",
        f"--shard_size={shard_size}",
        *"--top_k 50".split(),
    ]
    return (launcher or [sys.executable]) + args


def rss_of(model: Path, run: Path, n: int) -> int:
    """Peak RSS of a fresh process synthesising n clips (ru_maxrss of children is a running max, so measure in a
    wrapper process of its own)."""
    code = (
        "import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True,capture_output=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    write_captions(run / "captions.parquet", n)
    out = subprocess.run(
        [sys.executable, "-c", code, *synth_cmd(model, run, 8)], cwd=REPO, check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def real_architecture_seconds_per_audio_second(
    size: str = "small", seconds: float = 2.0, batch: int = 1, device: str = "cpu"
) -> float:
    import torch
    from transformers import MusicgenForConditionalGeneration

    from generation.synthesize import decode_in_chunks

    model = MusicgenForConditionalGeneration(musicgen_config(size)).to(device).eval()
    if device != "cpu":
        model = model.to(torch.bfloat16)
    else:  # as the synthesizer does on CPU
        model.audio_encoder.decode = decode_in_chunks(model.audio_encoder.decode, 1)
    tokens = int(seconds * 50) + 3
    inputs = torch.randint(0, 1000, (batch, 12), device=device)
    with torch.inference_mode():
        model.generate(input_ids=inputs, max_new_tokens=8, do_sample=True, guidance_scale=3.3)  # warm-up
        start = time.perf_counter()
        model.generate(input_ids=inputs, max_new_tokens=tokens, do_sample=True, guidance_scale=3.3, top_k=250)
        if device != "cpu":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / (seconds * batch)


def batch_comparison(synth, args, captions: list[str], repeats: int = 4) -> dict:
    """Clips/s at batch 8 and one at a time, same model and captions, in one process (start-up excluded), on one
    intra-op thread and on two; interleaved repeats (this shared machine's speed drifts), medians of the
    per-repeat ratios. Beside them, the share of the time EnCodec takes (on CPU it decodes one clip at a time at
    any batch size, so its cost per clip does not shrink with batching and bounds the speed-up)."""
    import torch

    n, threads = len(captions), torch.get_num_threads()
    codes = torch.randint(
        0,
        synth.model.config.audio_encoder.codebook_size,
        (1, 1, synth.model.config.decoder.num_codebooks, int(args.duration_s * synth.frame_rate)),
    )
    synth.generate(captions[:1], args, 0)  # warm-up
    times = {t: {"one": [], "batch8": [], "codec": []} for t in (1, 2)}
    try:
        for _ in range(repeats):
            for t in (1, 2):
                torch.set_num_threads(t)
                for key, size in (("one", 1), ("batch8", 8)):
                    start = time.perf_counter()
                    for b in range(0, n, size):
                        synth.generate(captions[b : b + size], args, 0)
                    times[t][key].append(time.perf_counter() - start)
                with torch.inference_mode():
                    start = time.perf_counter()
                    synth.model.audio_encoder.decode(codes, [None])
                    times[t]["codec"].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    out = {}
    for t, v in times.items():
        suffix = "" if t == 1 else "_2threads"
        ratios = [a / b for a, b in zip(v["one"], v["batch8"])]
        codec = statistics.median(v["codec"]) * n
        out.update(
            {
                f"one_at_a_time_clips_per_s{suffix}": round(n / statistics.median(v["one"]), 2),
                f"batch8_clips_per_s{suffix}": round(n / statistics.median(v["batch8"]), 2),
                f"batch8_speedup_per_repeat{suffix}": [round(r, 2) for r in ratios],
                f"batch8_speedup{suffix}": round(statistics.median(ratios), 2),
                f"codec_share_of_batch8_time{suffix}": round(codec / statistics.median(v["batch8"]), 3),
                f"codec_share_of_one_at_a_time_time{suffix}": round(codec / statistics.median(v["one"]), 3),
            }
        )
    out["batch8_ratio_to_4x"] = round(out["batch8_speedup"] / 4, 3)
    return out


def real_codec_ms_per_clip(seconds: float = 3.0, batch: int = 8, repeats: int = 3) -> dict[str, float]:
    """The real 32 kHz EnCodec (random weights) on this CPU: milliseconds per clip to decode a batch of `batch` clips
    in one call (what MusicGen's generate does) and one clip at a time (what the synthesizer does on CPU);
    interleaved repeats, medians."""
    import torch
    from transformers import EncodecModel

    codec = EncodecModel(musicgen_config("small").audio_encoder).eval()
    codes = torch.randint(0, codec.config.codebook_size, (1, batch, 4, int(seconds * codec.config.frame_rate)))
    times = {"at_once": [], "one_at_a_time": []}
    with torch.inference_mode():
        codec.decode(codes[:, :1], [None])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            codec.decode(codes, [None])
            times["at_once"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(batch):
                codec.decode(codes[:, i : i + 1], [None])
            times["one_at_a_time"].append(time.perf_counter() - start)
    return {k: round(statistics.median(v) * 1000 / batch, 1) for k, v in times.items()}


def process_scaling(model: Path, out: Path, n: int, repeats: int = 3) -> dict:
    """One process vs two under accelerate, each single-threaded (one core per process: the scaling of the shard
    split), timed by the slowest process's work (model load included, interpreter start-up not; also reported
    without the load, which each process pays once and which a run of enough clips amortises). Beside them: one
    process using both cores through intra-op threads, and the machine's own ceiling for this work, two
    independent plain processes on half the clips each (no accelerate, no shared folder). The configurations run
    interleaved and each repeat gives its ratios, whose median is reported: this shared machine's speed drifts
    from minute to minute, and a core runs slower while the other one is busy."""
    launcher = accelerate_cpu(2)
    one_thread = {"OMP_NUM_THREADS": "1"}
    configs = {
        "one_1thread": [(None, one_thread, n)],
        "one_2threads": [(None, {}, n)],
        "two_1thread": [(launcher, {"ACCELERATE_USE_CPU": "1", **one_thread}, n)],
        "independent_pair": [(None, one_thread, n // 2), (None, one_thread, n - n // 2)],
    }
    work = {name: [] for name in configs}
    steady = {name: [] for name in configs}  # the same without the model load (transformers' import included)
    for repeat in range(repeats):
        for name, runs in configs.items():
            procs, dirs = [], []
            for j, (cmd_launcher, env, clips) in enumerate(runs):
                d = out / "scaling" / f"{name}_{repeat}_{j}"
                write_captions(d / "captions.parquet", clips)
                with open(d / "stderr.log", "w") as log:  # a file: an unread pipe would stop a long run once full
                    procs.append(
                        subprocess.Popen(
                            synth_cmd(model, d, 8, cmd_launcher, duration=3.0, shard_size=8),
                            cwd=REPO,
                            env={**os.environ, **env},
                            stdout=subprocess.DEVNULL,
                            stderr=log,
                        )
                    )
                dirs.append(d)
            for proc, d in zip(procs, dirs):
                if proc.wait() != 0:
                    raise RuntimeError((d / "stderr.log").read_text()[-2000:])
            summaries = [
                json.loads(p.read_text()) for d in dirs for p in sorted((d / "audio_shards").glob("_summary-*.json"))
            ]
            work[name].append(max(s["seconds"] for s in summaries))  # the slowest process finishes the job
            steady[name].append(max(s["seconds"] - s["load_seconds"] for s in summaries))
    ratio = {k: [a / b for a, b in zip(work["one_1thread"], work[k])] for k in ("two_1thread", "independent_pair")}
    steady_ratio = [a / b for a, b in zip(steady["one_1thread"], steady["two_1thread"])]
    result = {f"{name}_work_s": [round(w, 2) for w in v] for name, v in work.items()}
    result.update(
        clips=n,
        two_process_speedup_per_repeat=[round(r, 2) for r in ratio["two_1thread"]],
        two_process_speedup_without_load=round(statistics.median(steady_ratio), 2),
        model_load_s=round(statistics.median(work["one_1thread"]) - statistics.median(steady["one_1thread"]), 2),
        two_process_speedup=round(statistics.median(ratio["two_1thread"]), 2),
        two_process_ratio_to_1_6x=round(statistics.median(ratio["two_1thread"]) / 1.6, 3),
        independent_pair_speedup=round(statistics.median(ratio["independent_pair"]), 2),
        two_process_vs_independent_pair=round(
            statistics.median([a / b for a, b in zip(work["independent_pair"], work["two_1thread"])]), 2
        ),
        two_process_vs_one_process_2threads=round(
            statistics.median([a / b for a, b in zip(work["one_2threads"], work["two_1thread"])]), 2
        ),
    )
    return result


def run(out: Path, n: int = 512, large: bool = False) -> dict:
    from generation.synthesize import MusicGenSynthesizer, SynthesisArguments, run_synthesis

    for sub in ("tiny-musicgen", "rerun", "scaling", "rss"):  # left by a previous run, they would make runs reruns
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    model = build_tiny_musicgen(out / "tiny-musicgen", musiccaps_texts())
    result = {}
    # batched vs one at a time. The tiny model runs faster on one intra-op thread than on two, one at a time and
    # batched (its ops are too small to split: the second thread's synchronisation costs more than it does), so
    # the target is read on one thread, the way the process-scaling runs use each core; two threads are reported
    args = SynthesisArguments(model=str(model), duration_s=3.0, top_k=50)
    captions = [
        template_caption({"genre": t[:1], "mood": t[1:2], "instrument": t[2:3], "tempo": t[3:]}, str(i))
        for i, t in enumerate(TAGS * 8)
    ]
    result.update(batch_comparison(MusicGenSynthesizer(args), args, captions))
    # a rerun of a finished synthesis, in one process: no model load, no forward pass
    rerun_dir = out / "rerun"
    write_captions(rerun_dir / "captions.parquet", 64)
    args = SynthesisArguments(model=str(model), duration_s=3.0, top_k=50, batch_size=8, shard_size=16)
    start = time.perf_counter()
    run_synthesis(args, rerun_dir / "captions.parquet", rerun_dir / "audio_shards")
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = run_synthesis(args, rerun_dir / "captions.parquet", rerun_dir / "audio_shards")
    rerun = time.perf_counter() - start
    result.update(
        first_run_seconds=round(first, 2),
        rerun_seconds=round(rerun, 3),
        rerun_fraction=round(rerun / first, 4),
        rerun_ratio_to_5pct=round(rerun / first / 0.05, 3),
        rerun_loaded_model=again["model_loaded"],
    )
    result.update(process_scaling(model, out, n))
    # memory does not grow with the number of clips
    rss = {k: rss_of(model, out / "rss" / str(k), k) for k in (64, 512)}
    result.update(rss_kib_64=rss[64], rss_kib_512=rss[512], rss_ratio_512_to_64=round(rss[512] / rss[64], 3))
    # the real architecture, random weights: speed, and what batching gives where the decoder, not the tiny
    # model's codec, carries the cost
    small = {b: real_architecture_seconds_per_audio_second("small", 1.0, b) for b in (1, 8)}
    result.update(
        musicgen_small_cpu_s_per_audio_s=round(small[1], 2),
        musicgen_small_cpu_batch8_s_per_audio_s=round(small[8], 2),
        musicgen_small_batch8_speedup=round(small[1] / small[8], 2),
    )
    codec = real_codec_ms_per_clip()
    result.update(
        encodec_32khz_cpu_ms_per_3s_clip_batch8_at_once=codec["at_once"],
        encodec_32khz_cpu_ms_per_3s_clip_one_at_a_time=codec["one_at_a_time"],
        encodec_one_at_a_time_speedup=round(codec["at_once"] / codec["one_at_a_time"], 2),
    )
    if large:
        import torch

        if torch.cuda.is_available():
            for batch in (1, 16, 64):
                result[f"musicgen_large_gpu_s_per_30s_clip_batch{batch}"] = round(
                    real_architecture_seconds_per_audio_second("large", 30.0, batch, "cuda") * 30, 3
                )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", default="runs/bench_synth")
    parser.add_argument(
        "--clips",
        type=int,
        default=512,
        help="clips in the process-scaling runs: enough that each process's fixed start (about 2 s "
        "to import transformers and load the model) does not dominate",
    )
    parser.add_argument("--large", action="store_true", help="also time musicgen-large on the GPU")
    args = parser.parse_args()
    print(json.dumps(run(Path(args.run_dir), args.clips, args.large)))


if __name__ == "__main__":
    main()
