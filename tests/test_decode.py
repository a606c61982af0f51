"""Every decoded clip is checked and named: bytes against the recorded audio_sha256, decodable, not silent; a bad
clip is a counted, reported skip (or, asked for strictness, a one-line error naming file, split and id)."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from builder.reader import AudioSplit, ClipError, read_concept_sets
from core.constants import SAMPLING_RATE
from core.errors import DataError


def flac(wave) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(wave, dtype=np.float32), SAMPLING_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def replace_audio(path, column: str, new: dict) -> None:
    """Rewrite a parquet file with the audio bytes of some ids replaced (every other column, audio_sha256 too,
    left as it was: what a careless copy or a hostile edit leaves)."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    for r in rows:
        if r["id"] in new:
            r[column] = {**r[column], "bytes": new[r["id"]]}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


@pytest.fixture
def ours(tmp_path):
    from fixtures.reviewable import write_reviewable

    folder = tmp_path / "ours"
    examples = write_reviewable(folder, rows=40, seconds=1.0)
    return folder, [e["id"] for e in examples["train"]]


def test_a_clip_whose_bytes_changed_is_skipped_and_named(ours):
    folder, ids = ours
    path = next((folder / "audio").glob("train-*.parquet"))
    replace_audio(path, "audio", {ids[3]: flac(np.zeros(SAMPLING_RATE * 8))})  # 8 s of silence, sha kept
    audio = AudioSplit(str(folder), "train")
    got = [i for i, _ in audio.clips(ids)]
    assert got == [i for i in ids if i != ids[3]]
    assert audio.skipped == {ids[3]: "its audio bytes do not match the recorded audio_sha256"}
    report = audio.skip_report()
    assert report["count"] == 1 and report["by_reason"] == {"its audio bytes do not match the recorded audio_sha256": 1}
    with pytest.raises(ClipError) as e:
        list(AudioSplit(str(folder), "train").clips(ids, strict=True))
    message = str(e.value)
    assert message == f"audio/{path.name}: split 'train', id '{ids[3]}': its audio bytes do not match the recorded " \
                      "audio_sha256" and str(folder) not in message  # fmt: skip


def test_undecodable_and_silent_clips_without_a_recorded_sha_are_skipped(tmp_path):
    from fixtures.published import write_published

    folder = tmp_path / "published"
    write_published(folder, n=40, seconds=0.5)
    path = folder / "audio" / "train-00000-of-00001.parquet"
    ids = [r["id"] for r in pq.read_table(path, columns=["id"]).to_pylist()]
    replace_audio(path, "file_name", {ids[0]: b"not audio at all", ids[5]: flac(np.zeros(SAMPLING_RATE))})
    audio = AudioSplit(str(folder), "train")
    kept = dict(audio.clips(sorted(audio.position), seconds=0.5))
    assert ids[0] not in kept and ids[5] not in kept and len(kept) == len(audio.position) - 2
    assert audio.skipped[ids[0]].startswith("undecodable (") and audio.skipped[ids[5]] == "silent in its first 0.5 s"
    assert audio.skip_report()["by_reason"] == {"undecodable": 1, "silent in its first 0.5 s": 1}


def test_model_inputs_and_activations_leave_out_a_bad_clip(ours, tmp_path):
    import torch

    from probing.features import model_inputs

    folder, ids = ours
    replace_audio(next((folder / "audio").glob("train-*.parquet")), "audio", {ids[1]: b"garbage"})
    audio = AudioSplit(str(folder), "train")
    store, row_of = model_inputs(audio, ids, lambda w: w[:, :100], 1000, tmp_path / "f.tmp")
    try:
        assert ids[1] not in row_of and len(row_of) == len(ids) - 1 and len(store) == len(ids) - 1
        assert torch.equal(store[[row_of[ids[0]]]], store[[0]])
    finally:
        store.close()
    assert list(audio.skipped) == [ids[1]]


def test_a_damaged_row_group_is_one_line_naming_the_file(ours):
    folder, ids = ours
    path = next((folder / "audio").glob("train-*.parquet"))
    raw = bytearray(path.read_bytes())
    for k in range(len(raw) // 3, len(raw) // 3 + 64):  # a run of bytes inside the data pages
        raw[k] ^= 0xFF
    path.write_bytes(bytes(raw))
    audio = AudioSplit(str(folder), "train")
    try:
        got = dict(audio.clips(ids))
    except DataError as e:  # the page itself no longer reads: the file is named
        assert str(e).startswith(f"audio/{path.name}: ") and "\n" not in str(e)
    else:  # the flipped bytes were a clip's: it is skipped and counted
        assert audio.skipped and len(got) == len(ids) - len(audio.skipped)


def test_the_review_app_refuses_a_changed_or_undecodable_clip_by_name(ours):
    from review.data import ReviewData

    folder, ids = ours
    replace_audio(next((folder / "audio").glob("train-*.parquet")), "audio", {ids[2]: flac(np.ones(100) * 0.1)})
    data = ReviewData(str(folder))
    with pytest.raises(ClipError, match=f"id '{ids[2]}': its audio bytes do not match"):
        data.encoded("train", ids[2])
    assert data.wave("train", ids[0], 1.0, 16000).shape == (16000,)


def test_the_audit_of_a_dataset_with_a_tampered_clip_skips_it_and_keeps_the_figures(tmp_path, monkeypatch):
    """One clip replaced by silence (its audio_sha256 kept): reported as skipped, and the audit's figures are those
    of the same dataset with that clip held out."""
    import probing.musicnn as musicnn
    from fixtures.reviewable import write_reviewable
    from probing.audit import main
    from tests.test_musicnn import Planted

    folder = tmp_path / "ds"
    ids = [e["id"] for e in write_reviewable(folder, rows=60, seconds=3.1)["train"]]
    monkeypatch.setattr(musicnn, "load_musicnn", lambda name, folder=None: Planted())
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))

    def audit(name):
        return main([f"--dataset={folder}", "--models", "MTT_musicnn", "--bootstrap=50", f"--output={tmp_path / name}"])

    tampered = ids[4]
    clips = AudioSplit.clips
    monkeypatch.setattr(
        AudioSplit, "clips", lambda self, i, *a, **k: clips(self, [x for x in i if x != tampered], *a, **k)
    )
    held_out = audit("held_out.json")
    monkeypatch.setattr(AudioSplit, "clips", clips)
    replace_audio(
        next((folder / "audio").glob("train-*.parquet")), "audio", {tampered: flac(np.zeros(8 * SAMPLING_RATE))}
    )
    report = audit("tampered.json")
    assert report["skipped_clips"]["train"]["clips"] == {
        tampered: "its audio bytes do not match the recorded audio_sha256"
    }
    assert "skipped_clips" not in held_out and report["summary"] == held_out["summary"]
    assert report["models"] == held_out["models"]
    rows = report["models"]["MTT_musicnn"]["splits"]["train"]
    assert rows and sum(r["positives"] + r["negatives"] for r in rows.values()) > 40  # figures, not an empty audit
    sets = read_concept_sets(str(folder), "train", list(rows))
    assert any(tampered in sets[c]["positive"] + sets[c]["negative"] for c in rows)  # it would have counted


def test_tcav_leaves_out_a_clip_that_fails_its_checks_and_lists_it(tmp_path, monkeypatch):
    """A train clip that cannot be decoded is in no set (every id the experiment sees has its model inputs) and is
    listed in the report's skipped clips; the run goes on."""
    from fixtures.published import write_published
    from probing.genre_classifier import main as classifier_main
    from probing.tcav import main as tcav_main

    folder = tmp_path / "published"
    write_published(folder, n=60)
    path = folder / "audio" / "train-00000-of-00001.parquet"
    ids = [r["id"] for r in pq.read_table(path, columns=["id"]).to_pylist()]
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    cnn = "--epochs 1 --duration_s 0.5 --channels 4 --num_classes 2 --architecture frames".split()
    classifier_main([f"--dataset={folder}", f"--output_dir={tmp_path / 'cnn'}", *cnn])
    replace_audio(path, "file_name", {i: b"garbage" for i in ids[3:12]})
    report = tcav_main([f"--dataset={folder}", f"--model={tmp_path / 'cnn'}", "--layer=frames", "--concepts", "piano",
                        *"--min_examples 3 --batch_size 4 --concept_sets 2 --random_sets 5".split(),
                        f"--output={tmp_path / 'tcav.json'}"])  # fmt: skip
    assert report["results"] and report["skipped_clips"]["count"] >= 1
    assert set(report["skipped_clips"]["clips"]) <= set(ids[3:12])
    assert all(reason.startswith("undecodable") for reason in report["skipped_clips"]["clips"].values())
