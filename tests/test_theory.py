"""Theory concepts: SynTheory-like clips play exactly their facts, the facts are recorded per bar, and the theory
families' sets hold what their names say, with the nuisance variables matched."""

import json
from collections import Counter

import numpy as np
import pytest

from builder.splits import ConceptSetArguments, assign_example_splits
from builder.theory import (
    build_theory_sets,
    clip_facts,
    concept_name,
    is_theory_concept,
    max_jsd,
    nuisance,
    tempo_band,
)
from core.errors import ConfigError
from generation.arrangement import (
    KEY_NAMES,
    PROGRESSIONS,
    THEORY_METERS,
    arrange,
    chord_quality,
    roman_progression,
)
from generation.symbolic import RenderTables
from generation.theory_lists import theory_lists


@pytest.fixture(scope="module")
def tables(taxonomy):
    return RenderTables(taxonomy)


def truth_of(arr) -> dict:
    return {"bpm": arr.bpm, "meter": arr.meter, "key": arr.key, "chords": arr.chords, "progression": arr.progression,
            "theory": arr.theory, "register": arr.register}  # fmt: skip


def test_roman_numerals_and_qualities():
    assert roman_progression((1, 5, 6, 4), "major") == "I-V-vi-IV"
    assert roman_progression((2, 5, 1), "major") == "ii-V-I"
    assert roman_progression((1, 6, 3, 7), "minor") == "i-VI-III-VII"
    assert roman_progression((7,), "major") == "vii°"
    assert chord_quality([0, 4, 8]) == "augmented"
    assert chord_quality([2, 5, 9, 12]) == "minor 7"
    assert chord_quality([0, 1, 2]) == "other"


def bar_pitches(arr, bar: int) -> list[int]:
    spb, beat = {m: (s, b) for m, (s, b, _) in THEORY_METERS.items()}[arr.meter]
    seconds = spb / beat * 60 / arr.bpm
    return sorted(p for s, _, _, p, _ in arr.notes if bar * seconds - 1e-6 <= s < (bar + 1) * seconds - 1e-6)


def test_a_chord_clip_plays_its_quality_root_and_inversion(tables):
    spec = {"kind": "chord", "bpm": 120, "meter": "3/4", "tonic": 9, "quality": "minor 7", "inversion": 1,
            "register": 0}  # fmt: skip
    arr = arrange(["piano"], tables, 1, 4.0, spec)
    pitches = bar_pitches(arr, 0)
    assert {p % 12 for p in pitches} == {9, 0, 4, 7}  # A C E G
    assert pitches[0] % 12 == 0  # first inversion: the third (C) at the bottom
    assert arr.chords[0] == {"root": "A", "quality": "minor 7", "degree": 1, "inversion": 1, "start_s": 0.0}
    assert arr.meter == "3/4" and arr.key is None and arr.progression is None
    facts = clip_facts(truth_of(arr))
    assert facts == {"meter": "3/4", "tempo": "90-129 bpm", "tonic": "A", "chord": "minor 7", "inversion": "first"}


def test_a_progression_clip_plays_its_chords_bar_by_bar(tables):
    spec = {"kind": "progression", "bpm": 100, "meter": "4/4", "tonic": 2, "mode": "major", "degrees": [1, 5, 6, 4],
            "register": 1}  # fmt: skip
    arr = arrange(["acoustic guitar", "drum kit", "bass guitar"], tables, 3, 10.0, spec)  # 4 bars: 9.6 s
    expected = [{2, 6, 9}, {9, 1, 4}, {11, 2, 6}, {7, 11, 2}]  # D, A, Bm, G
    pitched = {ch for concept, chans in arr.parts.items() if concept != "drum kit" for ch in chans}
    seconds = 4 * 60 / arr.bpm
    for bar, chord in enumerate(expected):
        start, end = bar * seconds - 1e-6, (bar + 1) * seconds - 1e-6
        pcs = {p % 12 for s, _, ch, p, _ in arr.notes if ch in pitched and start <= s < end}
        assert pcs == chord, bar
    assert arr.progression == "I-V-vi-IV" and arr.key == "D major"
    assert [c["quality"] for c in arr.chords[:4]] == ["major", "major", "minor", "major"]
    facts = clip_facts(truth_of(arr))
    assert facts["progression"] == "I-V-vi-IV" and facts["mode"] == "major" and "chord" not in facts
    # a clip too short for a chord a bar changes chord every beat (or half beat): it still plays all of them
    for bpm, step in ((100, 0.6), (50, 0.6)):
        short = arrange(["piano"], tables, 3, 4.0, {**spec, "bpm": bpm})
        starts = [c["start_s"] for c in short.chords]
        assert [c["degree"] for c in short.chords[:4]] == [1, 5, 6, 4] and starts[3] < 4.0
        assert np.allclose(np.diff(starts), step), (bpm, starts)
        assert clip_facts(truth_of(short))["progression"] == "I-V-vi-IV"


def test_a_bad_theory_clip_is_one_error_naming_its_fields(tables):
    with pytest.raises(ConfigError, match="meter '5/4'.*inversion 3"):
        arrange(["piano"], tables, 0, 2.0, {"kind": "chord", "bpm": 100, "meter": "5/4", "tonic": 0,
                                            "quality": "major", "inversion": 3})  # fmt: skip
    with pytest.raises(ConfigError, match="not an instrument"):
        arrange(["rock"], tables, 0, 2.0, {"kind": "chord", "bpm": 100, "meter": "4/4", "tonic": 0,
                                           "quality": "major", "inversion": 0})  # fmt: skip


def test_tempo_bands_cover_syntheorys_range():
    assert tempo_band(50) == "50-89 bpm" and tempo_band(89.9) == "50-89 bpm" and tempo_band(90) == "90-129 bpm"
    assert tempo_band(210) == "170-210 bpm" and tempo_band(49) is None and tempo_band(211) is None


def test_theory_lists_are_balanced_and_name_instruments_only(tables, taxonomy):
    rows = theory_lists(tables, 144, 0, "t")
    specs = [json.loads(r["theory"]) for r in rows]
    assert len({r["id"] for r in rows}) == 144
    assert all(taxonomy.category_of[t] == "instrument" for r in rows for t in r["tags"])
    assert set(Counter(s["meter"] for s in specs).values()) == {36}
    assert set(Counter(s["tonic"] for s in specs).values()) == {12}
    assert set(Counter(s["kind"] for s in specs).values()) == {72}
    progressions = Counter((s["mode"], tuple(s["degrees"])) for s in specs if s["kind"] == "progression")
    assert set(progressions.values()) == {12} and len(progressions) == sum(len(v) for v in PROGRESSIONS.values())
    assert all(50 <= s["bpm"] <= 210 for s in specs)
    assert theory_lists(tables, 144, 0, "t") == rows  # seeded


def theory_examples(tables, n: int) -> list[dict]:
    examples = []
    for r in theory_lists(tables, n, 0, "t"):
        arr = arrange(r["tags"], tables, r["seed"], 2.0, json.loads(r["theory"]))
        e = {"id": r["id"], "instrument": r["tags"]}
        e["facts"], e["nuisance"] = clip_facts(truth_of(arr)), nuisance(e, truth_of(arr))
        examples.append(e)
    splits = assign_example_splits([e["id"] for e in examples])
    for e in examples:
        e["split"] = splits[e["id"]]
    return sorted(examples, key=lambda e: e["id"])


def test_theory_sets_hold_their_value_and_match_the_nuisance_variables(tables, taxonomy):
    examples = theory_examples(tables, 1200)
    by_id = {e["id"]: e for e in examples}
    rows, summary = build_theory_sets(examples, ConceptSetArguments(min_positives=10, num_random_sets=2))
    assert not any(is_theory_concept(n) for n in taxonomy.names)  # no taxonomy concept can take a theory name
    members = {}
    for r in rows:
        members.setdefault((r["concept"], r["split"], r["role"]), []).append(r["id"])
    assert {name.partition("=")[0] for name, _, _ in members} == {"mode", "meter", "tonic", "tempo", "chord",
                                                                  "inversion", "progression"}  # fmt: skip
    for (name, split, role), ids in members.items():
        family, _, value = name.partition("=")
        for i in ids:
            assert by_id[i]["split"] == split
            held = by_id[i]["facts"].get(family)
            if role == "positive":
                assert held == value
            elif role == "negative":
                assert held is not None and held != value  # another value of the same family
            else:
                assert held != value
    train = {k: v for k, v in summary["concepts"].items() if k.startswith("train/")}
    assert len(train) == 38
    assert all(v["negatives"] == min(v["positives"], v["candidate_negatives"]) for v in train.values())
    assert max(max_jsd(v) for v in train.values()) <= 0.05  # the target, on the train split's sets
    assert max(max_jsd(v, "before") for v in train.values()) > max(max_jsd(v) for v in train.values())
    assert summary["theory_clips"] == 1200


def test_clips_without_ground_truth_hold_no_theory_concept():
    examples = [{"id": f"x{i}", "split": "train", "facts": clip_facts(None), "nuisance": {}} for i in range(20)]
    rows, summary = build_theory_sets(examples, ConceptSetArguments(min_positives=1))
    assert len(rows) == 0 and summary["concepts"] == {}
    assert concept_name("mode", "minor") == "mode=minor" and not is_theory_concept("rock")


def test_attribute_list_clips_carry_their_mode_meter_tonic_and_tempo(tables):
    arr = arrange(["rock", "electric guitar", "drum kit"], tables, 2, 3.0)
    facts = clip_facts(truth_of(arr))
    assert facts["mode"] == arr.mode and facts["meter"] == "4/4" and facts["tonic"] in KEY_NAMES
    assert "progression" not in facts  # a verse and a chorus: no one progression for the clip
    assert arr.chords and all(c["inversion"] is None for c in arr.chords)


def test_theory_sampling_needs_the_symbolic_backend():
    from generation.sample_tags import SamplingArguments

    with pytest.raises(ValueError, match="symbolic"):
        SamplingArguments(sampling="theory")
    assert np.isclose(SamplingArguments(sampling="theory", synthesis_backend="symbolic").temperature, 1.0)


@pytest.mark.slow
def test_the_theory_preset_end_to_end(tmp_path, monkeypatch):
    """configs/theory.yaml, small: theory lists -> captions -> rendered clips -> a dataset whose concepts config
    holds every family, whose audio config holds each bar's chord, and whose theory sets probe like any concept."""
    import yaml

    from builder.reader import AudioSplit, read_concept_sets
    from conceptcaps import open_dataset
    from pipeline import REPO_ROOT, run_pipeline

    preset = yaml.safe_load((REPO_ROOT / "configs" / "theory.yaml").read_text())
    preset["sample"]["num_lists"] = 96
    preset["synthesize"].update(duration_s=2, shard_size=48)
    preset["assemble"].update(min_positives=2, num_random_sets=2)
    small = tmp_path / "theory.yaml"
    small.write_text(yaml.safe_dump(preset))
    run = tmp_path / "run"
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(run))
    stages = ["taxonomy", "tiny_models", "sample", "caption", "synthesize", "score", "assemble", "card"]
    summary = run_pipeline(small, run, only=stages)
    assert all(summary[s]["status"] == "ran" for s in stages)
    dataset = run / "dataset"
    sets = read_concept_sets(str(dataset), "train")
    families = {c.partition("=")[0] for c in sets if is_theory_concept(c)}
    assert families == {"mode", "meter", "tonic", "tempo", "chord", "inversion", "progression"}
    audio = open_dataset(str(dataset), "audio", split="train")
    row = audio[0]
    assert row["chords"] and row["theory"] in ("progression", "chord") and row["tags"] == row["instrument"]
    assert AudioSplit(str(dataset), "train").resolve("meter=3/4") == "meter=3/4"
    card = (dataset / "README.md").read_text()
    assert "### Theory concepts" in card and "drawn by the theory sampling mode" in card
    # the benchmark on it, at toy size: every family probed layer by layer with its controls, and BPM regressed
    from benchmarks.bench_theory_probe import main as bench

    report = bench(["--dataset", str(dataset), "--max_set_size", "20", "--bootstrap", "20",
                    "--output", str(tmp_path / "probe.json"), "--heatmap", str(tmp_path / "probe.png")])  # fmt: skip
    model = report["models"]["MTT_musicnn"]
    assert set(model["families"]) <= families and {"meter", "tempo"} <= set(model["families"])  # the largest
    assert {r["layer"] for r in model["concepts"]} == set(model["layers"]) and len(model["layers"]) > 3
    assert set(model["bpm"]) == {"random", "extrapolate"} and "all" in model["mode_by_progression"]
    assert (tmp_path / "probe.png").is_file() and "| BPM split |" in (tmp_path / "probe.md").read_text()


def test_every_theory_chord_keeps_its_inversion_in_every_instruments_range(tables):
    """A chord moved into a narrow instrument's range moves as a whole: its lowest note stays the inversion's."""
    from generation.theory_lists import theory_pools

    for instrument in theory_pools(tables)["chord"]:
        for register in (-1, 1):
            spec = {"kind": "chord", "bpm": 120, "meter": "4/4", "tonic": 11, "quality": "dominant 7", "inversion": 2,
                    "register": register}  # fmt: skip
            arr = arrange([instrument], tables, 0, 2.0, spec)
            first = [p for s, _, _, p, _ in arr.notes if s < 1e-6]
            assert first and min(first) % 12 == 6, (instrument, register, first)  # B7, second inversion: F# lowest
            low, high = tables.rows[instrument].pitch_range
            assert all(low <= p <= high for _, _, _, p, _ in arr.notes), instrument
