"""The evidence per concept: the signal judges, their reviewed table, the audit's `evidence` config, and sets a
researcher restricts to what an independent judge confirmed."""

import numpy as np
import pytest

from builder.evidence import CONFIRMED, CONTRADICTED, NO_JUDGE, NOT_CONFIRMED, concept_verdict, read_evidence
from core.constants import SAMPLING_RATE
from core.errors import DataError
from probing.judges import judge_rules, key_score, measure, tempo_agrees

SR = 16000


def clicks(bpm: float, seconds: float, sr: int = SR, level: float = 0.5, seed: int = 0) -> np.ndarray:
    """A drum-like click on every beat: a decaying noise burst over a low thump."""
    rng = np.random.default_rng(seed)
    wave = np.zeros(int(seconds * sr), dtype=np.float32)
    burst = int(0.05 * sr)
    envelope = np.exp(-np.arange(burst) / (0.008 * sr))
    hit = envelope * (rng.standard_normal(burst) + np.sin(2 * np.pi * 80 * np.arange(burst) / sr))
    for start in np.arange(0, seconds, 60 / bpm):
        i = int(start * sr)
        wave[i : i + burst] += (level * hit[: len(wave) - i]).astype(np.float32)
    return wave


def chord(notes_hz, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(0.2 * np.sin(2 * np.pi * f * t) * np.exp(-((t % 0.5) * 3)) for f in notes_hz).astype(np.float32)


def test_the_tempo_judge_recovers_a_click_track_and_the_key_finder_a_triad():
    for bpm in (70, 100, 128, 160):
        assert tempo_agrees(measure(clicks(bpm, 8), SR)["tempo_bpm"], bpm), bpm
    c_major = measure(chord([261.63, 329.63, 392.0, 523.25], 6), SR)
    a_minor = measure(chord([220.0, 261.63, 329.63, 440.0], 6), SR)
    assert (c_major["tonic"], c_major["mode"]) == ("C", "major") and c_major["major_minus_minor"] > 0
    assert (a_minor["tonic"], a_minor["mode"]) == ("A", "minor") and a_minor["major_minus_minor"] < 0
    loud, soft = measure(clicks(100, 4, level=0.8), SR), measure(clicks(100, 4, level=0.08), SR)
    assert loud["rms_db"] - soft["rms_db"] == pytest.approx(20, abs=0.5)


def test_mirex_scores_and_octave_errors():
    assert key_score("C major", "C major") == 1.0
    assert key_score("G major", "C major") == key_score("F major", "C major") == 0.5
    assert key_score("A minor", "C major") == 0.3 and key_score("C major", "A minor") == 0.3
    assert key_score("C minor", "C major") == 0.2 and key_score("Db major", "C# major") == 1.0
    assert key_score("D major", "C major") == 0.0
    assert tempo_agrees(121, 120) and not tempo_agrees(126, 120)
    assert tempo_agrees(240, 120) and tempo_agrees(60, 120) and tempo_agrees(40, 120)
    assert not tempo_agrees(240, 120, octaves=False)


def test_every_rule_names_a_concept_of_the_taxonomy_and_a_bad_row_is_refused(tmp_path):
    from builder.taxonomy import Taxonomy
    from builder.theory import is_theory_concept

    names = set(Taxonomy.from_concept_table().names)
    rules = judge_rules()
    assert {r.judge for r in rules} == {"tempo", "mode", "loudness", "density"}
    assert not [r.concept for r in rules if r.concept not in names and not is_theory_concept(r.concept)]
    bad = tmp_path / "judges.tsv"
    bad.write_text("# judge\tconcept\texpect\treason\ntempo\tfast tempo\tfaster\twhy\n")
    with pytest.raises(DataError, match="row 2.*expect 'faster'"):
        judge_rules(str(bad))


def test_a_concepts_verdict_combines_its_judges():
    def rows(*verdicts):
        return [{"verdict": v, "id": None} for v in verdicts]

    assert concept_verdict(rows(NOT_CONFIRMED, CONFIRMED)) == CONFIRMED
    assert concept_verdict(rows(CONFIRMED, CONTRADICTED)) == CONTRADICTED
    assert concept_verdict(rows(NOT_CONFIRMED)) == NOT_CONFIRMED
    assert concept_verdict(rows(NO_JUDGE)) == NO_JUDGE and concept_verdict([]) == NO_JUDGE
    assert concept_verdict([{"verdict": CONFIRMED, "id": "clip"}]) == NO_JUDGE  # a flag is no verdict on the set


def rendered(k: int, example: dict, seconds: float):
    """Clips whose tempo is heard: fast (150 bpm) or slow (70 bpm) clicks with a drum stem, except every fourth
    fast clip, which has no drum part and plays at 100 bpm while its ground truth says 150."""
    fast = "fast tempo" in example["tempo"]
    doubtful = fast and k % 4 == 1
    bpm = 150.0 if fast else 70.0
    stems = [{"concept": "drum kit", "bank": 128 if not doubtful else 0, "program": 0, "share_db": 0.0}]
    wave = clicks(100.0 if doubtful else bpm, seconds, SAMPLING_RATE, seed=k)
    return wave, {"bpm": bpm, "meter": "4/4", "key": "C major", "mode": "major", "style": "rock", "stems": stems}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A dataset in our schema with heard tempi, audited with the signal judges only (no musicnn weights)."""
    from fixtures.reviewable import write_reviewable
    from probing.audit import main

    folder = tmp_path_factory.mktemp("evidence") / "ds"
    write_reviewable(folder, rows=120, seconds=6.0, render=rendered)
    report = main([f"--dataset={folder}", f"--weights_dir={folder.parent}", "--bootstrap=200",
                   f"--output={folder.parent / 'audit.json'}"])  # fmt: skip
    return folder, report


def test_the_audit_writes_a_verdict_for_every_concept_with_sets(audited):
    from builder.reader import read_concept_sets

    folder, report = audited
    rows = read_evidence(str(folder), "train")
    assert {r["concept"] for r in rows} == set(read_concept_sets(str(folder), "train"))
    fast = [r for r in rows if r["concept"] == "fast tempo" and r["measure"] == "auc"]
    assert fast and fast[0]["judge"] == "tempo" and fast[0]["verdict"] == CONFIRMED and fast[0]["low"] > 0.5
    assert next(r for r in rows if r["concept"] == "jazz")["verdict"] == NO_JUDGE
    truth = report["ground_truth"]["train"]["tempo"]
    assert truth["with_drums"]["accuracy2"] >= 0.9 and truth["without_drums"]["accuracy2"] < 0.2
    flagged = {r["id"] for r in rows if r["id"]}
    assert flagged and all(int(i[2:]) % 4 == 1 for i in flagged)  # exactly the clips planted as doubtful
    from datasets import load_dataset

    loaded = load_dataset(str(folder / "evidence"), split="train")
    assert loaded.features["verdict"].names[0] == CONFIRMED and len(loaded) == len(rows)


def test_confirmed_sets_leave_out_the_unconfirmed_and_the_flagged_clips(audited):
    from conceptcaps import concept_examples

    folder, _ = audited
    every = concept_examples(str(folder), "fast tempo", split="train")
    sets = concept_examples(str(folder), "fast tempo", split="train", evidence="confirmed")
    left = sets["evidence"]["left_out_clips"]
    assert sets["evidence"]["verdict"] == CONFIRMED and left
    assert len(sets["positive"]) == len(every["positive"]) - len(left)
    assert not set(left) & set(sets["positive"]["id"]) and len(sets["negative"]) == len(every["negative"])
    with pytest.raises(ValueError, match="'jazz' in split 'train' is no judge"):
        concept_examples(str(folder), "jazz", split="train", evidence="confirmed")
    with pytest.raises(ValueError, match="evidence='sure'"):
        concept_examples(str(folder), "jazz", split="train", evidence="sure")


def test_the_published_schema_takes_its_evidence_from_an_audit_report(tmp_path, monkeypatch):
    """No ground truth and no evidence config: the taggers' verdicts of an audit report restrict the sets."""
    import probing.musicnn as musicnn
    from conceptcaps import concept_examples
    from fixtures.published import write_published
    from probing.audit import main
    from tests.test_musicnn import Planted
    from tests.test_probing import planted_wave

    folder = tmp_path / "planted"
    write_published(folder, n=300, seconds=3.0, wave=planted_wave)
    monkeypatch.setattr(musicnn, "load_musicnn", lambda name, folder=None: Planted())
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    report_path = tmp_path / "audit.json"
    report = main([f"--dataset={folder}", "--models", "MTT_musicnn", "--bootstrap=200", f"--output={report_path}"])
    assert not report["ground_truth"] and not (folder / "evidence").exists()  # the dataset is left untouched
    with pytest.raises(DataError, match="no evidence config"):
        concept_examples(str(folder), "piano", evidence="confirmed")
    piano = concept_examples(str(folder), "piano", evidence="confirmed", evidence_from=str(report_path))
    assert piano["evidence"]["verdict"] == CONFIRMED and len(piano["positive"]) >= 10
    with pytest.raises(ValueError, match="'rock' in split 'train' is not confirmed"):
        concept_examples(str(folder), "rock", evidence="confirmed", evidence_from=str(report_path))
    from probing.probe import main as probe

    report = probe(["--model", "tests.test_probing:planted_model", f"--dataset={folder}", "--concepts", "piano",
                    "rock", "--bootstrap=20", "--confirmed_only", f"--evidence_from={report_path}",
                    f"--output={tmp_path / 'probe.json'}"])  # fmt: skip
    assert {r["concept"] for r in report["results"]} == {"piano"}
    assert report["skipped"] == {"not confirmed in the train split (--confirmed_only)": ["rock"]}
