"""The `score` stage: CLAP audio-text alignment for every clip.

    python -m evaluation.score --config configs/tiny.yaml
    accelerate launch -m evaluation.score --audio_dir runs/paper/audio_shards --model laion/clap-htsat-unfused

The whole clip is scored deterministically: audio is resampled to 48 kHz with soxr and cut into fixed,
consecutive 10 s windows (the last one padded by repetition); the window embeddings are averaged. (The
reference code let CLAP crop a random 10 s window, so its scores changed from run to run.) Scores and
audio embeddings are written beside the audio shards, one score shard per audio shard, with the same
resumability. FAD on these embeddings: `evaluation.fad`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soxr

from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.errors import DataError, ModelLoadError
from core.io import write_json
from core.log import distributed_state, get_logger
from core.provenance import loaded_commit, model_identity
from core.retry import Verdict, generate_with_retries
from core.shards import Lazy, merge_shards, run_sharded, shard_folder_ids, shard_is_complete, shard_path
from generation.audio_checks import decode_audio

logger = get_logger(__name__)

CLAP_RATE = 48000
WINDOW_S = 10.0
SCORE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("clap_score", pa.float32()),
        ("clap_windows", pa.int32()),
        ("clap_embedding", pa.list_(pa.float32())),
        ("clap_model", pa.string()),
        ("reasons", pa.list_(pa.string())),
    ]
)


def fixed_windows(wave: np.ndarray, sampling_rate: int, window_s: float = WINDOW_S) -> list[np.ndarray]:
    """Resample to 48 kHz and cut into consecutive windows of `window_s`; a shorter tail is kept if it is at
    least half a window (or is the whole clip)."""
    wave = soxr.resample(wave.astype(np.float32), sampling_rate, CLAP_RATE) if sampling_rate != CLAP_RATE else wave
    size = int(window_s * CLAP_RATE)
    windows = [wave[i : i + size] for i in range(0, len(wave), size)]
    if len(windows) > 1 and len(windows[-1]) < size // 2:
        windows = windows[:-1]
    return windows


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


class ClapScorer:
    def __init__(self, model: str = "laion/clap-htsat-unfused", revision: str | None = None, device=None):
        import torch
        from transformers import ClapModel, ClapProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = ClapProcessor.from_pretrained(model, revision=revision)
            self.model = ClapModel.from_pretrained(model, revision=revision).to(self.device).eval()
        except OSError as e:
            raise ModelLoadError(model, "CLAP", e) from None
        self.name = model_identity(model, revision, commit=loaded_commit(self.model))

    @staticmethod
    def _tensor(out):
        return out if hasattr(out, "shape") else out.pooler_output

    def audio_embeddings(self, waves: Sequence[np.ndarray], sampling_rates: Sequence[int], batch_size: int = 16):
        """One unit-norm embedding per clip (mean of its windows' unit embeddings); and the window counts."""
        import torch

        windows, owner = [], []
        for i, (w, sr) in enumerate(zip(waves, sampling_rates)):
            for win in fixed_windows(w, sr):
                windows.append(win)
                owner.append(i)
        embeds = []
        with torch.inference_mode():
            for b in range(0, len(windows), batch_size):
                inputs = self.processor(
                    audio=windows[b : b + batch_size], sampling_rate=CLAP_RATE, return_tensors="pt", padding="repeatpad"
                ).to(self.device)
                embeds.append(self._tensor(self.model.get_audio_features(**inputs)).float().cpu().numpy())
        embeds = _unit(np.concatenate(embeds)) if embeds else np.zeros((0, 1), np.float32)
        owner = np.array(owner)
        out = np.stack([_unit(embeds[owner == i].mean(0)) for i in range(len(waves))]) if len(waves) else embeds
        return out.astype(np.float32), np.bincount(owner, minlength=len(waves))

    def text_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for b in range(0, len(texts), batch_size):
                inputs = self.processor(
                    text=list(texts[b : b + batch_size]), return_tensors="pt", padding=True, truncation=True
                ).to(self.device)
                out.append(self._tensor(self.model.get_text_features(**inputs)).float().cpu().numpy())
        return _unit(np.concatenate(out)).astype(np.float32)


@dataclass
class ClapArguments:
    """Score every clip of the audio shards with CLAP."""

    audio_dir: str | None = arg(None, "audio shard folder (default: run dir/audio_shards)")
    output_dir: str | None = arg(None, "score shard folder (default: run dir/clap_scores)")
    model: str = arg("laion/clap-htsat-unfused", "CLAP id or path (the paper's; or laion/larger_clap_music)")
    revision: str | None = arg(None, "model revision to pin")
    batch_size: int = arg(16, "10 s windows embedded at once")


def run_scoring(args: ClapArguments, audio_dir: Path, out_dir: Path) -> dict:
    state = distributed_state()
    ids, shard_size = shard_folder_ids(audio_dir)
    scorer = Lazy(lambda: ClapScorer(args.model, args.revision, device=state.device))
    start = time.perf_counter()

    def work(k: int, shard_ids: list[str]) -> pa.Table:
        s = scorer()
        if not shard_is_complete(shard_path(audio_dir, k), shard_ids):
            raise DataError(
                shard_path(audio_dir, k), "missing or corrupt audio shard (removed); rerun synthesis to redo it"
            )
        rows = pq.read_table(shard_path(audio_dir, k)).to_pylist()
        good = [r for r in rows if r["status"] == "ok"]

        def embed(batch: list[dict], seed: int) -> list[tuple]:  # CLAP is deterministic: the seed is not used
            decoded = [decode_audio(r["audio"]["bytes"]) for r in batch]
            audio, windows = s.audio_embeddings([w for w, _ in decoded], [sr for _, sr in decoded], args.batch_size)
            text = s.text_embeddings([r["caption"] for r in batch])
            return [(float(np.dot(a, t)), int(n), a) for a, t, n in zip(audio, text, windows)]

        def check(row: dict, out: tuple) -> Verdict:
            return Verdict(() if np.isfinite(out[0]) and np.isfinite(out[2]).all() else ("non-finite CLAP score",))

        attempts = generate_with_retries(
            good,
            embed,
            check,
            seed_of=lambda attempt, offset: 0,
            batch_size=max(len(good), 1),
            max_attempts=1,
            deterministic=True,
        )
        by_id = {r["id"]: a for r, a in zip(good, attempts)}
        return pa.Table.from_pylist(
            [
                {
                    "id": i,
                    "clap_score": by_id[i].output[0] if i in by_id and by_id[i].verdict.ok else None,
                    "clap_windows": by_id[i].output[1] if i in by_id else 0,
                    "clap_embedding": by_id[i].output[2].tolist() if i in by_id and by_id[i].verdict.ok else None,
                    "clap_model": s.name,
                    "reasons": list(by_id[i].verdict.reasons) if i in by_id else [],
                }
                for i in shard_ids
            ],
            schema=SCORE_SCHEMA,
        )

    counts = run_sharded(
        ids,
        shard_size,
        out_dir,
        work,
        state,
        manifest={"model": model_identity(args.model, args.revision), "window_s": WINDOW_S},
        desc="CLAP",
    )
    summary = {"shards": counts, "seconds": round(time.perf_counter() - start, 2)}
    if state.is_main_process:
        merged = merge_shards(ids, shard_size, out_dir)
        scores = [s for s in merged.column("clap_score").to_pylist() if s is not None]
        pinned = sorted(
            set(merged.column("clap_model").to_pylist()) - {None}
        )  # the commit each shard's model came from
        summary.update(
            clips=len(scores),
            mean_clap=float(np.mean(scores)) if scores else None,
            model=", ".join(pinned) or model_identity(args.model, args.revision),
        )
        write_json(out_dir / "_summary.json", summary)
        logger.info("CLAP (%s): mean %.4f over %d clips", args.model, summary["mean_clap"] or float("nan"), len(scores))
    return summary


ARGUMENTS = ClapArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "score", argv)
    out = run_dir()
    return run_scoring(args, Path(args.audio_dir or out / "audio_shards"), Path(args.output_dir or out / "clap_scores"))


if __name__ == "__main__":
    cli(main)
