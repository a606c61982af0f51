"""Synthesise audio for every accepted caption with MusicGen (transformers' MusicgenForConditionalGeneration).

    python -m generation.synthesize --config configs/tiny.yaml
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m generation.synthesize \\
        --captions runs/paper/captions.parquet --model facebook/musicgen-large --batch_size 16
    # many nodes: the same command with configs/accelerate/multi_node.yaml on every node

Defaults are the paper's: musicgen-large, 30 s (1,503 new tokens: 50 frames/s plus the 3-step codebook delay),
classifier-free guidance 3.3, top-k 250, bf16 on GPU. Ids are grouped into shards of `shard_size` clips that the
processes claim as they go (core/shards.py: a faster process takes more); each shard is written atomically as parquet
(id, FLAC bytes, sampling
rate, duration, caption, attributes, model id and revision, generation parameters, seed) to `audio_shards/`.
Nothing is gathered in memory. A rerun skips finished shards (loading no model if all are done) and redoes a
missing, partial or corrupt one; seeds derive from (seed, shard, batch, attempt), so a redone shard is
identical to the first. Every clip is checked (NaN/inf, silence, clipping, length) and regenerated with a new
seed up to `max_attempts` times, then kept as `rejected` with its reasons.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import DataError, ModelLoadError
from core.io import sha256_bytes, sha256_file, write_json
from core.log import distributed_state, get_logger
from core.provenance import loaded_commit, model_identity
from core.retry import Verdict, acceptance_by_concept, generate_with_retries, tally
from core.shards import NOT_RENDERED_NAME, Lazy, derive_seed, make_shards, run_sharded, shard_path
from generation.audio_checks import AudioCheck, encode_flac, postprocess
from generation.symbolic import SOUNDFONT, Clip, RenderTables, SymbolicSynthesizer, soundfont_credits, voices

logger = get_logger(__name__)

AUDIO_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("audio_sha256", pa.string()),
        ("sampling_rate", pa.int32()),
        ("duration_s", pa.float32()),
        ("caption", pa.string()),
        ("tags", pa.list_(pa.string())),
        *[(c, pa.list_(pa.string())) for c in CATEGORIES],
        ("status", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("attempts", pa.int32()),
        ("seed", pa.int64()),
        (
            "rejections",
            pa.list_(pa.string()),
        ),  # the reasons of every failed attempt, counted per concept in the summary
        ("model", pa.string()),
        ("model_revision", pa.string()),
        ("generation_params", pa.string()),
        ("ground_truth", pa.string()),
        ("midi", pa.binary()),  # the symbolic backend's: what is known to sound
    ]
)


@dataclass
class SynthesisArguments:
    """Synthesise audio shards from captions.parquet with MusicGen."""

    captions: str | None = arg(None, "captions.parquet (default: run dir)")
    output_dir: str | None = arg(None, "shard folder (default: run dir/audio_shards)")
    backend: str = arg(
        "musicgen",
        "'musicgen' (audio from the caption) or 'symbolic' (MIDI + SoundFont from the attribute list, with "
        "ground truth: generation/symbolic.py)",
    )
    soundfont: str = arg(str(SOUNDFONT), "with backend=symbolic: the .sf2 to render with")
    taxonomy: str | None = arg(None, "with backend=symbolic: taxonomy.json (default: beside captions.parquet)")
    model: str = arg("facebook/musicgen-large", "MusicGen id or path")
    revision: str | None = arg(None, "model revision (commit) to pin")
    duration_s: float = arg(30.0, "seconds of audio per clip")
    guidance_scale: float = arg(3.3, "classifier-free guidance (paper: 3.3)")
    do_sample: bool = arg(True, "sample (True) or greedy")
    top_k: int = arg(250, "top-k sampling")
    top_p: float = arg(0.0, "nucleus sampling (0 = off)")
    temperature: float = arg(1.0, "sampling temperature")
    batch_size: int = arg(16, "clips generated at once")
    codec_batch_size: int = arg(
        0,
        "clips EnCodec turns into audio at once (0: one on CPU, where its convolutions over a batch of "
        "long signals run slower per clip, the whole batch on GPU); lower it if decoding a batch runs out of memory",
    )
    shard_size: int = arg(64, "clips per shard (unit of resume and of work split)")
    dtype: str = arg("auto", "auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32")
    compile: bool = arg(False, "torch.compile the decoder with a static KV cache")
    max_attempts: int = arg(3, "generations per clip before it is rejected")
    silence_dbfs: float = arg(-60.0, "RMS level below which a clip is silent")
    max_clipped_fraction: float = arg(0.001, "share of clipped samples allowed")
    include_rejected_captions: bool = arg(False, "also synthesise captions that failed their checks")
    seed: int = arg(0, "base seed; shard, batch and attempt derive their own")

    def __post_init__(self):
        if self.duration_s <= 0 or self.batch_size < 1 or self.shard_size < 1 or self.max_attempts < 1:
            raise ValueError("duration_s, batch_size, shard_size and max_attempts must be positive")
        if self.codec_batch_size < 0:
            raise ValueError("codec_batch_size must be 0 (automatic) or positive")
        if self.backend not in ("musicgen", "symbolic"):
            raise ValueError(f"backend must be 'musicgen' or 'symbolic', not {self.backend!r}")


def read_captions(path, include_rejected: bool = False) -> tuple[list[dict], Counter]:
    """Rows to synthesise; captions that failed their checks are skipped and counted."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found (run `python -m generation.caption` first)")
    rows, skipped = [], Counter()
    for i, row in enumerate(pq.read_table(path).to_pylist()):
        if not (row.get("caption") or "").strip():
            raise DataError(path, "empty caption", row=i, field="caption")
        if row.get("status", "ok") != "ok" and not include_rejected:
            skipped["caption rejected"] += 1
            continue
        rows.append(row)
    return rows, skipped


class MusicGenSynthesizer:
    def __init__(self, args: SynthesisArguments, device=None):
        start = time.perf_counter()
        import torch
        from transformers import AutoProcessor, MusicgenForConditionalGeneration

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = {"auto": torch.bfloat16 if str(self.device).startswith("cuda") else torch.float32}.get(
            args.dtype
        ) or getattr(torch, args.dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(args.model, revision=args.revision)
            self.model = MusicgenForConditionalGeneration.from_pretrained(
                args.model, revision=args.revision, dtype=dtype
            )
        except OSError as e:
            raise ModelLoadError(args.model, "MusicGen", e) from None
        self.model.to(self.device).eval()
        if (
            dtype != torch.float32
        ):  # the codec in full precision, as audiocraft keeps it: bf16 EnCodec output clips more
            self.model.audio_encoder.to(torch.float32)
        self.sampling_rate = self.model.config.audio_encoder.sampling_rate
        self.frame_rate = self.model.config.audio_encoder.frame_rate
        self.delay = self.model.config.decoder.num_codebooks - 1
        self.max_new_tokens = int(round(args.duration_s * self.frame_rate)) + self.delay
        self.expected_samples = int(round(args.duration_s * self.sampling_rate))
        codec_batch = args.codec_batch_size or (1 if torch.device(self.device).type == "cpu" else args.batch_size)
        if codec_batch < args.batch_size:
            self.model.audio_encoder.decode = decode_in_chunks(self.model.audio_encoder.decode, codec_batch)
        if args.compile:
            self.model.generation_config.cache_implementation = "static"
            self.model.decoder.forward = torch.compile(
                self.model.decoder.forward, mode="reduce-overhead", fullgraph=True
            )
        self.revision = loaded_commit(self.model) or args.revision or "local"
        self.name = model_identity(args.model, commit=loaded_commit(self.model))
        self.load_seconds = round(time.perf_counter() - start, 2)  # transformers' import included: paid once

    def generate(self, captions: Sequence[str], args: SynthesisArguments, seed: int) -> list[np.ndarray]:
        import torch

        inputs = self.processor(text=list(captions), padding=True, return_tensors="pt").to(self.device)
        torch.manual_seed(seed)  # sampling draws from torch alone; seeds are 63-bit, more than numpy takes
        sampling = dict(do_sample=args.do_sample, top_k=args.top_k, temperature=args.temperature)
        if args.top_p > 0:
            sampling["top_p"] = args.top_p
        with torch.inference_mode():
            audio = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, guidance_scale=args.guidance_scale, **sampling
            )
        return [postprocess(a.float().cpu().numpy(), self.expected_samples) for a in audio]

    def clips(self, rows: Sequence[dict], args: SynthesisArguments, seed: int) -> list[Clip]:
        return [Clip(w) for w in self.generate([r["caption"] for r in rows], args, seed)]


class RenderedSynthesizer(SymbolicSynthesizer):
    """The symbolic backend as the synthesis stage drives it: each row rendered from its attribute list with a seed
    of its own (so a clip does not depend on its batch)."""

    def __init__(self, args: SynthesisArguments, taxonomy: Taxonomy):
        super().__init__(taxonomy, args.soundfont)
        self.expected_samples = int(round(args.duration_s * self.sampling_rate))

    def clips(self, rows: Sequence[dict], args: SynthesisArguments, seed: int) -> list[Clip]:
        return [self.render_row(r["tags"], derive_seed(seed, r["id"]), args.duration_s,
                                json.loads(r["theory"]) if r.get("theory") else None) for r in rows]  # fmt: skip


def decode_in_chunks(decode, clips: int):
    """EncodecModel.decode that decodes at most `clips` clips at a time. MusicGen's generate decodes its whole batch
    in one call; on CPU that is slower per clip than one at a time (oneDNN's convolutions over a batch of long
    signals: `benchmarks/bench_synthesis.py` measures it), and on any device it holds every clip's activations at
    once."""
    import torch
    from transformers.models.encodec.modeling_encodec import EncodecDecoderOutput

    def chunked(audio_codes, audio_scales):  # as generate calls it; codes: frames x batch x codebooks x steps
        parts = [
            decode(audio_codes[:, i : i + clips], [s if s is None else s[i : i + clips] for s in audio_scales])
            for i in range(0, audio_codes.shape[1], clips)
        ]
        return EncodecDecoderOutput(audio_values=torch.cat([p.audio_values for p in parts]))

    return chunked


def generation_params(args: SynthesisArguments) -> dict:
    if args.backend == "symbolic":
        played = voices()
        return {
            "backend": "symbolic",
            "duration_s": args.duration_s,
            "soundfont": Path(args.soundfont).name,
            "voices": {concept: file.name for concept, file in sorted(played.items())},
            "soundfont_credit": "; ".join(soundfont_credits(Path(args.soundfont), played)),
        }
    return {
        k: getattr(args, k)
        for k in ("duration_s", "guidance_scale", "do_sample", "top_k", "top_p", "temperature", "dtype", "compile")
    }


def synthesize_rows(rows: list[dict], args: SynthesisArguments, synth, shard: int, check: AudioCheck) -> pa.Table:
    """Generate, check and retry one shard; returns its table (ids in input order)."""
    params = json.dumps(generation_params(args), sort_keys=True)
    attempts = generate_with_retries(
        rows,
        lambda batch, seed: synth.clips(batch, args, seed),
        lambda row, clip: Verdict(
            (*check.reasons(clip.wave, synth.expected_samples, synth.sampling_rate), *clip.reasons)
        ),
        seed_of=lambda attempt, offset: derive_seed(args.seed, shard, attempt, offset),
        batch_size=args.batch_size,
        max_attempts=args.max_attempts,
    )
    flac = [encode_flac(a.output.wave, synth.sampling_rate) if a.verdict.ok else None for a in attempts]
    return pa.Table.from_pylist(
        [
            {
                "id": row["id"],
                "audio": {"bytes": data, "path": f"{row['id']}.flac"} if data else None,
                "audio_sha256": sha256_bytes(data) if data else None,
                "sampling_rate": synth.sampling_rate,
                "duration_s": len(a.output.wave) / synth.sampling_rate,
                "caption": row["caption"],
                "tags": row["tags"],
                **{c: row[c] for c in CATEGORIES},
                "status": "ok" if a.verdict.ok else "rejected",
                "reasons": list(a.verdict.reasons),
                "attempts": a.attempt,
                "seed": a.seed,
                "rejections": list(a.rejections),
                "model": synth.name,
                "model_revision": synth.revision,
                "generation_params": params,
                "ground_truth": json.dumps(a.output.ground_truth) if a.output.ground_truth else None,
                "midi": a.output.midi,
            }
            for row, a, data in zip(rows, attempts, flac)
        ],
        schema=AUDIO_SCHEMA,
    )


def run_synthesis(args: SynthesisArguments, captions_path: Path, shard_dir: Path) -> dict:
    state = distributed_state()
    rows, skipped = read_captions(captions_path, args.include_rejected_captions)
    if args.backend == "symbolic":
        taxonomy = Taxonomy.load(args.taxonomy or captions_path.parent / "taxonomy.json")
        rows, left_out = renderable(rows, RenderTables(taxonomy), skipped)
        if state.is_main_process:
            write_json(shard_dir / NOT_RENDERED_NAME, left_out)
        synth = Lazy(lambda: RenderedSynthesizer(args, taxonomy))
        model = f"symbolic sf2 sha256:{sha256_file(args.soundfont)[:16]}"
    else:
        synth = Lazy(lambda: MusicGenSynthesizer(args, device=state.device))
        model = model_identity(args.model, args.revision)
    by_id = {r["id"]: r for r in rows}
    check = AudioCheck(args.silence_dbfs, max_clipped_fraction=args.max_clipped_fraction)
    start = time.perf_counter()

    def work(k: int, ids: list[str]) -> pa.Table:
        return synthesize_rows([by_id[i] for i in ids], args, synth(), k, check)

    manifest = {
        "model": model,
        "backend": args.backend,
        "revision": args.revision,
        "shard_size": args.shard_size,
        "batch_size": args.batch_size,
        "codec_batch_size": args.codec_batch_size,
        "max_attempts": args.max_attempts,
        "seed": args.seed,
        **generation_params(args),
    }
    counts = run_sharded(list(by_id), args.shard_size, shard_dir, work, state, manifest=manifest, desc="synthesis")
    summary = {
        "process": state.process_index,
        "clips_in": len(rows),
        "captions_skipped": dict(skipped),
        "shards": counts,
        "seconds": round(time.perf_counter() - start, 2),
        "model_loaded": synth.loaded,
        "load_seconds": synth().load_seconds if synth.loaded else 0.0,
    }
    write_json(shard_dir / f"_summary-{state.process_index:03d}.json", summary)
    if state.is_main_process:  # run_sharded returned here once every process was done
        total = combine_summaries(shard_dir, list(by_id), args.shard_size, skipped, args.max_attempts)
        logger.info("synthesis: %s", total)
        return {**summary, "total": total}
    return summary


def renderable(rows: list[dict], tables: RenderTables, skipped: Counter) -> tuple[list[dict], dict[str, str]]:
    """The rows the symbolic backend can render, and {id: reason} of the others (counted by their first
    unrenderable concept), which assembly counts as rejected rather than missing."""
    kept, left_out = [], {}
    for row in rows:
        blocked = tables.unrenderable(row["tags"])
        reason = (
            f"not renderable: {blocked[0][0]}"
            if blocked
            else ("not renderable: no instrument listed" if not row["instrument"] else None)
        )
        if reason:
            skipped[reason] += 1
            left_out[row["id"]] = reason
        else:
            kept.append(row)
    return kept, left_out


def combine_summaries(shard_dir: Path, ids: list[str], shard_size: int, skipped: Counter, max_attempts: int) -> dict:
    rows = []
    for k, _ in enumerate(make_shards(ids, shard_size)):
        rows += pq.read_table(
            shard_path(shard_dir, k), columns=["tags", "status", "reasons", "attempts", "rejections"]
        ).to_pylist()
    counts = tally(rows)
    total = {
        "clips": counts.pop("total"),
        **counts,
        "captions_skipped": dict(skipped),
        "acceptance_by_concept": acceptance_by_concept(rows, max_attempts),
    }
    write_json(shard_dir / "_summary.json", total)
    return total


ARGUMENTS = SynthesisArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "synthesize", argv)
    out = run_dir()
    return run_synthesis(
        args, Path(args.captions or out / "captions.parquet"), Path(args.output_dir or out / "audio_shards")
    )


if __name__ == "__main__":
    cli(main)
