import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DataError, ModelLoadError
from core.shards import merge_shards
from evaluation.fad import frechet_audio_distance
from evaluation.score import fixed_windows
from evaluation.score import main as clap_main
from fixtures.runs import accelerate_cpu, caption_row, write_caption_rows
from generation import synthesize as synth_module
from generation.audio_checks import AudioCheck, decode_audio
from generation.caption import CAPTION_SCHEMA
from generation.synthesize import decode_in_chunks
from generation.synthesize import main as synth_main

REPO = Path(__file__).resolve().parents[1]
LISTS = [
    ["rock", "energetic", "electric guitar", "fast tempo"],
    ["jazz", "mellow", "piano", "slow tempo"],
    ["pop", "happy", "female vocal", "groovy"],
    ["classical", "calming", "strings", "medium tempo"],
    ["metal", "aggressive", "drum kit", "fast tempo"],
    ["folk", "sad", "acoustic guitar", "slow tempo"],
    ["reggae", "fun", "bass guitar", "upbeat"],
]


def write_captions(path, lists=LISTS, rejected=()):
    rows = []
    for i, tags in enumerate(lists):
        attrs = {"genre": tags[:1], "mood": tags[1:2], "instrument": tags[2:3], "tempo": tags[3:]}
        rows.append(caption_row(f"cc-{i:03d}", tags, attrs, str(i), "rejected" if i in rejected else "ok"))
    return write_caption_rows(path, rows)


def argv(tiny_models, run, *extra):
    return [
        f"--captions={run / 'captions.parquet'}",
        f"--output_dir={run / 'audio_shards'}",
        f"--model={tiny_models / 'tiny-musicgen'}",
        *"--duration_s 1 --batch_size 3 --shard_size 3 --top_k 50".split(),
        *extra,
    ]


def all_rows(directory):
    return [r for p in sorted(Path(directory).glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def synthesized(tiny_models, tmp_path_factory):
    run = tmp_path_factory.mktemp("synth")
    write_captions(run / "captions.parquet", rejected=(6,))
    summary = synth_main(argv(tiny_models, run))
    return run, summary


def test_shapes_rate_duration_and_skipped_captions(synthesized):
    run, summary = synthesized
    rows = all_rows(run / "audio_shards")
    assert [r["id"] for r in rows] == [f"cc-{i:03d}" for i in range(6)]  # the rejected caption is not synthesised
    assert summary["total"]["captions_skipped"] == {"caption rejected": 1}
    for r in rows:
        wave, sr = decode_audio(r["audio"]["bytes"])
        assert sr == r["sampling_rate"] == 32000 and wave.ndim == 1 and len(wave) == 32000
        assert (
            r["status"] == "ok"
            and r["model"].startswith("local model sha256:")
            and '"guidance_scale": 3.3' in r["generation_params"]
        )


def test_seeded_determinism(synthesized, tiny_models, tmp_path):
    run, _ = synthesized
    for name in ("same", "other"):
        (tmp_path / name).mkdir()
        shutil.copy(run / "captions.parquet", tmp_path / name / "captions.parquet")
    synth_main(argv(tiny_models, tmp_path / "same"))
    synth_main(argv(tiny_models, tmp_path / "other", "--seed", "1"))
    first, same, other = (all_rows(d / "audio_shards") for d in (run, tmp_path / "same", tmp_path / "other"))
    assert same == first  # audio bytes, seeds and every other field
    assert len({r["seed"] for r in first}) == 2  # one seed per (shard, batch): two shards of one batch each
    assert all(a["audio"]["bytes"] != b["audio"]["bytes"] and a["seed"] != b["seed"] for a, b in zip(first, other))


def test_resume_redoes_deleted_truncated_and_corrupt_shards(synthesized, tiny_models, tmp_path):
    run, _ = synthesized
    shutil.copytree(run, tmp_path / "run")
    run = tmp_path / "run"
    before = all_rows(run / "audio_shards")
    again = synth_main(argv(tiny_models, run))
    assert again["shards"] == {"shards": 2, "done": 0, "skipped": 2} and again["model_loaded"] is False
    assert again["load_seconds"] == 0 < synthesized[1]["load_seconds"] < synthesized[1]["seconds"]
    shards = sorted((run / "audio_shards").glob("shard-*.parquet"))
    shards[0].unlink()
    shards[1].write_bytes(shards[1].read_bytes()[:200])
    redo = synth_main(argv(tiny_models, run))
    assert redo["shards"]["done"] == 2 and all_rows(run / "audio_shards") == before
    shards[1].write_bytes(os.urandom(500))
    assert synth_main(argv(tiny_models, run))["shards"]["done"] == 1
    assert all_rows(run / "audio_shards") == before
    with pytest.raises(DataError, match="made with other arguments"):
        synth_main(argv(tiny_models, run, "--guidance_scale", "1.0"))


def test_codec_decodes_in_chunks_of_the_asked_size(synthesized, tiny_models, tmp_path):
    import torch
    from transformers import MusicgenForConditionalGeneration

    codec = MusicgenForConditionalGeneration.from_pretrained(tiny_models / "tiny-musicgen").audio_encoder.eval()
    sizes = []

    def decode(audio_codes, audio_scales, **kwargs):
        sizes.append(audio_codes.shape[1])
        return codec.decode(audio_codes, audio_scales, **kwargs)

    codes = torch.randint(0, codec.config.codebook_size, (1, 5, 4, 20), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = codec.decode(codes, [None]).audio_values
        chunked = decode_in_chunks(decode, 2)(codes, [None]).audio_values
    assert sizes == [2, 2, 1]
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    # the run decodes one clip at a time on CPU; decoding its batches whole gives the same clips to 16-bit rounding
    run, _ = synthesized
    (tmp_path / "whole").mkdir()
    shutil.copy(run / "captions.parquet", tmp_path / "whole" / "captions.parquet")
    synth_main(argv(tiny_models, tmp_path / "whole", "--codec_batch_size", "3"))
    for a, b in zip(all_rows(run / "audio_shards"), all_rows(tmp_path / "whole" / "audio_shards")):
        assert a["seed"] == b["seed"]
        np.testing.assert_allclose(
            decode_audio(a["audio"]["bytes"])[0], decode_audio(b["audio"]["bytes"])[0], rtol=0, atol=1.01 / 32768
        )


def test_audio_checks_on_planted_bad_clips():
    check = AudioCheck()
    rng = np.random.default_rng(0)
    good = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    assert check.reasons(good, 32000, 32000) == []
    assert check.reasons(np.full(32000, np.nan, np.float32), 32000, 32000) == ["nan or inf"]
    assert check.reasons(np.zeros(32000, np.float32), 32000, 32000) == ["silence"]
    assert check.reasons(np.clip(good * 100, -1, 1), 32000, 32000) == ["clipping"]
    assert check.reasons(good[:16000], 32000, 32000) == ["wrong length"]


@pytest.mark.slow
def test_bad_clips_are_retried_then_rejected(tiny_models, tmp_path, monkeypatch):
    write_captions(tmp_path / "captions.parquet", LISTS[:3])
    calls = []
    real = synth_module.MusicGenSynthesizer.generate

    def silent_first(self, captions, args, seed):
        calls.append(seed)
        waves = real(self, captions, args, seed)
        return [np.zeros_like(w) for w in waves] if len(calls) == 1 else waves

    monkeypatch.setattr(synth_module.MusicGenSynthesizer, "generate", silent_first)
    summary = synth_main(argv(tiny_models, tmp_path))
    rows = all_rows(tmp_path / "audio_shards")
    assert summary["total"]["ok"] == 3 and all(r["attempts"] == 2 for r in rows) and len(set(calls)) == 2

    monkeypatch.setattr(
        synth_module.MusicGenSynthesizer,
        "generate",
        lambda self, c, a, s: [np.full(self.expected_samples, np.inf, np.float32) for _ in c],
    )
    out = tmp_path / "again"
    out.mkdir()
    shutil.copy(tmp_path / "captions.parquet", out / "captions.parquet")
    summary = synth_main(argv(tiny_models, out, "--max_attempts", "2"))
    assert summary["total"]["rejected"] == 3 and summary["total"]["rejected_by_reason"] == {"nan or inf": 3}
    assert all(r["audio"] is None and r["attempts"] == 2 for r in all_rows(out / "audio_shards"))


@pytest.mark.slow
def test_audio_rejections_are_counted_per_concept_every_attempt(tiny_models, tmp_path, monkeypatch):
    """Clips of one concept (metal) clip at the first attempt and pass at the second; a jazz clip is silent at
    every attempt. The summary counts each failed attempt under every concept of its list."""
    write_captions(tmp_path / "captions.parquet", [LISTS[0], LISTS[1], LISTS[4]])
    real = synth_module.MusicGenSynthesizer.generate
    attempt = {"n": 0}

    def loud_metal_silent_jazz(self, captions, args, seed):
        attempt["n"] += 1
        waves = real(self, captions, args, seed)
        out = []
        for caption, wave in zip(captions, waves):
            if "metal" in caption.lower() and attempt["n"] == 1:
                wave = np.sign(wave + 1e-3).astype(np.float32)  # full scale: clipping
            elif "jazz" in caption.lower():
                wave = np.zeros_like(wave)
            out.append(wave)
        return out

    monkeypatch.setattr(synth_module.MusicGenSynthesizer, "generate", loud_metal_silent_jazz)
    summary = synth_main(argv(tiny_models, tmp_path, "--max_attempts", "3"))
    by_concept = summary["total"]["acceptance_by_concept"]
    assert by_concept["metal"]["rejections_by_reason"] == {"clipping": 1}
    assert by_concept["metal"]["accepted_by_attempt"] == [0, 1, 1]
    assert by_concept["jazz"]["rejections_by_reason"] == {"silence": 3} and by_concept["jazz"][
        "accepted_by_attempt"
    ] == [0, 0, 0]
    assert by_concept["rock"]["rejections_by_reason"] == {}
    from core.retry import most_rejected

    assert [r[0] for r in most_rejected(by_concept)][:2] == ["jazz", "mellow"]  # 3 failed attempts per list


def test_the_codec_stays_in_float32_under_a_bfloat16_musicgen(tiny_models, tmp_path):
    import torch

    from generation.synthesize import MusicGenSynthesizer, SynthesisArguments

    args = SynthesisArguments(model=str(tiny_models / "tiny-musicgen"), dtype="bfloat16", duration_s=0.5, top_k=50)
    synth = MusicGenSynthesizer(args, device="cpu")
    assert {p.dtype for p in synth.model.decoder.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in synth.model.audio_encoder.parameters()} == {torch.float32}
    waves = synth.generate(["a calm piano piece", "loud rock"], args, seed=0)
    assert len(waves) == 2 and all(w.dtype == np.float32 and len(w) == synth.expected_samples for w in waves)


@pytest.mark.slow
def test_two_accelerate_processes_write_disjoint_shards_covering_every_id(synthesized, tiny_models, tmp_path):
    run, _ = synthesized
    shutil.copy(run / "captions.parquet", tmp_path / "captions.parquet")
    env = dict(os.environ, ACCELERATE_USE_CPU="1", CONCEPTCAPS_RUN_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    cmd = [
        *accelerate_cpu(2),
        "-m",
        "generation.synthesize",
        *argv(tiny_models, tmp_path),
    ]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    import json

    per_process = [json.loads((tmp_path / "audio_shards" / f"_summary-{p:03d}.json").read_text()) for p in (0, 1)]
    assert sum(s["shards"]["done"] for s in per_process) == 2  # each shard by exactly one of the two processes
    assert not (tmp_path / "audio_shards" / "_claims").exists()
    rows = all_rows(tmp_path / "audio_shards")
    ids = [r["id"] for r in rows]
    assert sorted(ids) == [f"cc-{i:03d}" for i in range(6)] and len(ids) == len(set(ids))
    assert all(r["status"] == "ok" for r in rows)
    # who made a shard does not change it: one process with the same thread count writes the same bytes (with
    # another thread count float sums run in another order)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(run / "captions.parquet", one / "captions.parquet")
    subprocess.run(
        [sys.executable, "-m", "generation.synthesize", *argv(tiny_models, one)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert all_rows(one / "audio_shards") == rows


def test_clap_scores_are_identical_across_runs(synthesized, tiny_models, tmp_path):
    run, _ = synthesized
    scores = []
    for name in ("a", "b"):
        clap_main(
            [
                "--audio_dir",
                str(run / "audio_shards"),
                "--output_dir",
                str(tmp_path / name),
                "--model",
                str(tiny_models / "tiny-clap"),
            ]
        )
        ids = [f"cc-{i:03d}" for i in range(6)]
        scores.append(merge_shards(ids, 3, tmp_path / name).column("clap_score").to_pylist())
    assert scores[0] == scores[1] and all(-1.0 <= s <= 1.0 for s in scores[0])


def test_fixed_windows_cover_the_whole_clip():
    wave = np.zeros(32000 * 30, np.float32)
    windows = fixed_windows(wave, 32000)
    assert [len(w) for w in windows] == [480000] * 3
    assert [len(w) for w in fixed_windows(np.zeros(32000 * 2, np.float32), 32000)] == [96000]


def test_frechet_audio_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 4))
    assert frechet_audio_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([2.0, 0, 0, 0])
    assert frechet_audio_distance(a, shifted) == pytest.approx(4.0, rel=1e-3)
    wide = rng.standard_normal((4000, 4)) * 2.0  # var 4 vs 1: per dim 1 + 4 - 2*2 = 1
    assert frechet_audio_distance(a, wide) == pytest.approx(4.0, rel=0.1)


def test_bad_input(tmp_path, tiny_models):
    with pytest.raises(DataError, match="captions.parquet: not found"):
        synth_main(argv(tiny_models, tmp_path))
    write_captions(tmp_path / "captions.parquet", [["rock"]])
    table = pq.read_table(tmp_path / "captions.parquet").to_pylist()
    table[0]["caption"] = "  "
    pq.write_table(pa.Table.from_pylist(table, schema=CAPTION_SCHEMA), tmp_path / "captions.parquet")
    with pytest.raises(DataError, match=r"captions.parquet, row 0, field 'caption': empty caption"):
        synth_main(argv(tiny_models, tmp_path))
    write_captions(tmp_path / "captions.parquet", [["rock"]])
    with pytest.raises(ModelLoadError, match="no/such-musicgen: cannot load MusicGen"):
        synth_main(argv(tiny_models, tmp_path, "--model", "no/such-musicgen"))
