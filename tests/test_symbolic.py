"""The symbolic backend: reviewed mapping tables, deterministic rendering, exact stems, ground truth, counted skips."""

import io
import json
from pathlib import Path

import mido
import numpy as np
import pyarrow.parquet as pq
import pytest

from core.errors import DataError
from core.io import sha256_file
from generation.arrangement import VERSE_BARS as VERSE
from generation.symbolic import SOUNDFONT, STYLES, TABLES, RenderTables, SymbolicSynthesizer, arrange
from generation.synthesize import main as synth_main
from tests.test_synthesis import write_captions

REPO = Path(__file__).resolve().parents[1]

LISTS = [
    ["rock", "energetic", "electric guitar", "fast tempo"],
    ["jazz", "mellow", "piano", "swing feel"],
    ["pop", "happy", "female vocal", "groovy"],
    ["classical", "calming", "strings", "waltz time"],
    ["metal", "aggressive", "drum kit", "fast tempo"],
    ["folk", "sad", "acoustic guitar", "slow tempo"],
    ["reggae", "fun", "bass guitar", "upbeat"],
    ["techno", "energetic", "synth bass", "four on the floor"],
]


@pytest.fixture(scope="module")
def synth(taxonomy):
    return SymbolicSynthesizer(taxonomy)


def test_every_concept_has_a_row_or_a_declared_reason(taxonomy):
    tables = RenderTables(taxonomy)
    assert set(tables.rows) == set(taxonomy.names)
    unrenderable = {c: r.reason for c, r in tables.rows.items() if r.reason}
    assert "male vocal" in unrenderable and "sung voice" in unrenderable["male vocal"]
    assert all(len(reason) > 10 for reason in unrenderable.values())
    assert len(unrenderable) < 50  # most concepts render


def test_a_table_missing_a_concept_or_naming_an_unknown_feel_is_refused(taxonomy, tmp_path):
    tempo = TABLES["tempo"].read_text().splitlines()
    broken = tmp_path / "tempo.tsv"
    broken.write_text("\n".join(line for line in tempo if not line.startswith("waltz time")) + "\n")
    with pytest.raises(DataError, match=r"tempo.tsv: no row for 1 tempo concept\(s\): \['waltz time'\]"):
        RenderTables(taxonomy, {**TABLES, "tempo": broken})
    broken.write_text("\n".join(line.replace("\tswing\t", "\tswang\t") for line in tempo) + "\n")
    with pytest.raises(DataError, match=r"field 'feel': unknown feel: 'swang'"):
        RenderTables(taxonomy, {**TABLES, "tempo": broken})


def test_every_note_lies_in_its_instruments_range(taxonomy, tmp_path):
    tables = RenderTables(taxonomy)
    leads = ["trumpet", "flute", "saxophone", "violin", "trombone", "cello"]  # once played up to 1.5 octaves too high
    for seed, mood in enumerate(["happy", "sad", "energetic"]):
        arr = arrange(["jazz", mood, *leads, "fast tempo"], tables, seed, 4.0)
        for concept in leads:
            low, high = tables.rows[concept].pitch_range
            pitches = [n[3] for n in arr.notes if n[2] in arr.parts[concept]]
            assert pitches and low <= min(pitches) and max(pitches) <= high, concept
    rows = TABLES["instrument"].read_text().splitlines()
    broken = tmp_path / "instrument.tsv"
    broken.write_text(
        "\n".join(line.replace("\t60-96\t", "\t96-60\t") if line.startswith("flute") else line for line in rows) + "\n"
    )
    with pytest.raises(DataError, match=r"instrument.tsv, row \d+, field 'range': not the lowest-highest MIDI note"):
        RenderTables(taxonomy, {**TABLES, "instrument": broken})


def test_rendering_is_deterministic_and_follows_the_list(synth):
    a = synth.render_row(["jazz", "mellow", "piano", "upright bass", "swing feel"], seed=3, duration_s=4.0)
    b = synth.render_row(["jazz", "mellow", "piano", "upright bass", "swing feel"], seed=3, duration_s=4.0)
    assert np.array_equal(a.wave, b.wave) and a.ground_truth == b.ground_truth and a.midi == b.midi
    c = synth.render_row(["jazz", "mellow", "piano", "upright bass", "swing feel"], seed=4, duration_s=4.0)
    assert not np.array_equal(a.wave, c.wave)
    truth = a.ground_truth
    assert len(a.wave) == 4 * 32000 and 0.01 < np.abs(a.wave).max() < 1.0
    assert [i["concept"] for i in truth["instruments"]] == ["piano", "upright bass"]
    assert truth["instruments"][0]["programs"] == [[0, 0]] and truth["instruments"][1]["programs"] == [[0, 32]]
    assert 110 <= truth["bpm"] <= 160 and "swing" in truth["feels"] and truth["genre_rendered"] == "jazz"
    assert truth["soundfont"] == "FluidR3_GM.sf2" and truth["soundfont_sha256"] == sha256_file(SOUNDFONT)
    midi = mido.MidiFile(file=io.BytesIO(a.midi))
    assert sum(m.type == "note_on" for m in midi.tracks[0]) > 10


def test_the_tempo_and_meter_are_the_listed_ones(synth):
    slow = synth.render_row(["folk", "acoustic guitar", "slow tempo"], seed=1, duration_s=2.0).ground_truth
    fast = synth.render_row(["folk", "acoustic guitar", "fast tempo"], seed=1, duration_s=2.0).ground_truth
    assert 60 <= slow["bpm"] <= 78 and 140 <= fast["bpm"] <= 170
    assert synth.render_row(["classical", "piano", "waltz time"], 1, 2.0).ground_truth["meter"] == "3/4"
    tables = synth.tables
    arr = arrange(["rock", "kick drum", "four on the floor"], tables, 0, 4.0)
    onsets, beat = np.array(sorted(n[0] for n in arr.notes)), 60 / arr.bpm
    played = 2 * float(tables.styles["rock"]["humanise_ms"]) / 1000  # a drummer's timing, within two deviations
    assert np.abs(onsets - np.round(onsets / beat) * beat).max() <= played + 1e-6
    assert set(np.round(onsets / beat).astype(int)) >= set(range(8))  # a kick on every beat
    machine = arrange(["techno", "kick drum", "four on the floor"], tables, 0, 4.0)  # sequenced: exactly on the beat
    assert np.allclose(np.diff(sorted(n[0] for n in machine.notes))[:4], 60 / machine.bpm, atol=1e-3)


def test_stems_are_exact_and_a_quiet_listed_instrument_is_rejected(synth, taxonomy, tmp_path, monkeypatch):
    clip = synth.render_row(["rock", "electric guitar", "drum kit", "bass guitar"], seed=2, duration_s=3.0)
    assert all(i["stem_share_db"] > -15 for i in clip.ground_truth["instruments"]) and not clip.reasons
    import generation.symbolic as symbolic

    monkeypatch.setattr(symbolic, "INAUDIBLE_DB", 0.0)  # every stem of a mix is quieter than the mix
    assert synth.render_row(["rock", "electric guitar", "drum kit"], 2, 3.0).reasons == (
        "inaudible stem: electric guitar",
        "inaudible stem: drum kit",
    )


def test_the_synthesis_stage_renders_counts_skips_and_resumes_identically(taxonomy, tmp_path):
    taxonomy.save(tmp_path / "taxonomy.json")
    write_captions(tmp_path / "captions.parquet", LISTS)
    argv = [
        f"--captions={tmp_path / 'captions.parquet'}",
        f"--output_dir={tmp_path / 'audio_shards'}",
        *"--backend symbolic --duration_s 2 --batch_size 3 --shard_size 3".split(),
    ]
    summary = synth_main(argv)
    assert summary["total"]["ok"] == 7 and summary["total"]["captions_skipped"] == {"not renderable: female vocal": 1}
    assert json.loads((tmp_path / "audio_shards" / "_not_rendered.json").read_text()) == {
        "cc-002": "not renderable: female vocal"
    }  # assembly counts it as rejected, not missing
    shards = sorted((tmp_path / "audio_shards").glob("shard-*.parquet"))
    first = [p.read_bytes() for p in shards]
    rows = [r for p in shards for r in pq.read_table(p).to_pylist()]
    truth = json.loads(rows[0]["ground_truth"])
    assert rows[0]["model"].startswith("symbolic") and truth["instruments"][0]["concept"] in rows[0]["tags"]
    shards[1].unlink()
    synth_main(argv)  # the redone shard is bit-identical
    assert [p.read_bytes() for p in shards] == first


@pytest.mark.slow
def test_the_tcav_ground_truth_experiment_on_small_data(taxonomy):
    from probing.tcav_validation import ValidationArguments, run_validation

    pool = [i for i in ValidationArguments().instruments if i != "drum kit"]
    report = run_validation(
        ValidationArguments(
            planted="drum kit",
            instruments=pool,
            clips=300,
            duration_s=1.5,
            epochs=20,
            set_size=8,
            concept_sets=2,
            class_size=16,
            random_sets=3,
            random_concepts=1,
            max_independent=1,
            instrument_rate=0.4,
        ),
        taxonomy,
    )
    # the planted concept, one other and one made of random clips
    assert report["tests"] == 3 and report["independent_concepts"] == 1 and report["random_concepts"] == 1
    assert report["classifier_held_out_accuracy"] > 0.6  # the planted instrument is audible to the classifier
    assert report["planted_cav_accuracy"] > 0.65 and report["planted_score"] > 0.8
    assert len(report["set_means"]["drum kit"]) == 2 and len(report["null_means"]["drum kit"]) == 3
    assert 0.0 <= report["planted_p_corrected"] <= 1.0 and set(report["null_means"]) == set(report["scores"])


def test_ground_truth_is_typed_in_the_audio_config_for_datasets_and_duckdb(synth, tmp_path):
    """The audio config's ground truth as typed columns: `filter` on bpm with datasets, and an SQL query over the
    stems with DuckDB, without parsing any string."""
    import datasets
    import duckdb

    from builder.schema import BASE_FEATURES, CONFIG_FEATURES, SplitWriter, render_columns
    from generation.audio_checks import encode_flac

    writer = SplitWriter(tmp_path / "audio", "train", CONFIG_FEATURES["audio"], 1e9)
    truths = {}
    for i, tags in enumerate([LISTS[0], LISTS[1], LISTS[4], LISTS[5]]):
        clip = synth.render_row(tags, seed=i, duration_s=1.0)
        truths[f"r{i}"] = clip.ground_truth
        row = dict.fromkeys(BASE_FEATURES)
        row.update(id=f"r{i}", caption="A clip.", tags=tags, genre=[], mood=[], instrument=[], tempo=[])
        writer.write(
            {
                **row,
                "audio": {"bytes": encode_flac(clip.wave, synth.sampling_rate), "path": None},
                **render_columns(json.dumps(clip.ground_truth)),
                "midi": clip.midi,
            }
        )
    files = [str(p) for p in writer.close()]
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.features["bpm"].dtype == "float32" and ds.features["stems"].feature["share_db"].dtype == "float32"
    fast = ds.filter(lambda r: r["bpm"] > 140)
    assert list(fast["id"]) == [k for k, t in truths.items() if t["bpm"] > 140] and "r2" in fast["id"]  # metal's band
    metal = next(r for r in fast if r["id"] == "r2")
    assert metal["meter"] == truths["r2"]["meter"] and metal["stems"][0]["concept"] == "drum kit"
    query = (
        f"SELECT id, s.concept, s.share_db FROM read_parquet({files!r}), UNNEST(stems) AS t(s) "
        "WHERE s.concept = 'piano' AND s.share_db > -20"
    )
    assert [r[0] for r in duckdb.sql(query).fetchall()] == ["r1"]
    assert render_columns(None)["bpm"] is None and render_columns(None)["stems"] is None


def test_each_genre_is_played_in_its_idiom_with_the_same_instruments(synth, taxonomy, tmp_path):
    """A genre's style changes how the listed instruments play and sound (never who plays), and says so in the
    ground truth."""
    tables = synth.tables
    kit_notes = lambda arr, concept: {n[3] for n in arr.notes if n[2] in arr.parts[concept]}  # noqa: E731
    jazz = arrange(["jazz", "drum kit", "piano", "upright bass"], tables, 0, 8.0)
    assert {51, 44} <= kit_notes(jazz, "drum kit") and jazz.programs[jazz.parts["drum kit"][0]] == (
        128,
        32,
    )  # ride, pedal hat, Jazz kit
    rock = arrange(["rock", "drum kit", "electric guitar"], tables, 0, 8.0)
    assert {36, 38, 42, 49} <= kit_notes(rock, "drum kit") and rock.programs[rock.parts["electric guitar"][0]] == (
        0,
        29,
    )
    assert rock.amp == "crunch" and arrange(["metal", "electric guitar"], tables, 0, 4.0).amp == "distorted"
    assert arrange(["jazz", "electric guitar"], tables, 0, 4.0).programs[0] == (0, 26)  # a jazz guitar is still one
    blues = arrange(["blues", "strings", "piano"], tables, 0, 4.0)  # the strings' dominant seventh, the piano's boogie
    pitch_classes = {
        (n[3] - ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"].index(blues.key.split()[0])) % 12
        for n in blues.notes
        if n[0] < 60 / blues.bpm * 4 - 0.05
    }
    assert {0, 4, 7, 9, 10} == pitch_classes, pitch_classes  # I7 (its flat seventh) and the riff's sixth
    country = arrange(["country", "snare drum"], tables, 0, 8.0)
    bar = 60 / country.bpm * 4
    assert (
        sum(n[0] < bar - 0.02 for n in country.notes) == 16
    )  # the train beat: sixteen snare strokes a bar (played, within 16 ms)
    house = arrange(["house", "kick drum"], tables, 0, 12.0)
    assert np.allclose(np.diff(sorted(n[0] for n in house.notes))[:3], 60 / house.bpm, atol=1e-6)
    assert house.sections[:VERSE] == ["verse"] * VERSE and house.sections[VERSE] == "chorus"
    truth = synth.render_row(["rock", "electric guitar", "drum kit"], 1, 3.0).ground_truth
    assert (
        truth["style"] == "rock"
        and truth["amp"] == "crunch"
        and truth["room_rt60_s"] > 0
        and truth["form"][0] == "verse"
    )
    assert [i["concept"] for i in truth["instruments"]] == ["electric guitar", "drum kit"]  # who plays: the list
    limits = [
        line.split("\t")[0]
        for line in (TABLES["genre"].parent / "render_limits.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(taxonomy.category_of[g] == "genre" and not tables.rows[g].reason for g in limits)
    styles = STYLES.read_text().splitlines()
    broken = tmp_path / "styles.tsv"
    broken.write_text("\n".join(line.replace("\tpower8\t", "\tpower9\t") for line in styles) + "\n")
    with pytest.raises(DataError, match=r"styles.tsv, row \d+, field 'comp': unknown comp: 'power9'"):
        RenderTables(taxonomy, styles=broken)


def test_each_stem_names_the_soundfont_its_instrument_is_played_from(synth, taxonomy, tmp_path):
    """render_soundfonts.tsv plays an instrument from another soundfont: its stem says which, the others the
    default's; a row naming an unknown soundfont or one not installed is one line saying what to do."""
    from generation.symbolic import SOUNDFONTS, voices

    played = voices(taxonomy)
    assert played and all(taxonomy.category_of[c] == "instrument" for c in played)
    concept = next(iter(played))
    other = next(c for c in ("bass guitar", "organ", "trumpet") if c not in played)
    clip = synth.render_row([concept, other, "medium tempo"], seed=3, duration_s=2.0)
    fonts = {i["concept"]: i["soundfont"] for i in clip.ground_truth["instruments"]}
    assert fonts == {concept: played[concept].name, other: synth.soundfont.name}
    bad = tmp_path / "voices.tsv"
    bad.write_text("piano\tSonivox\twhy\n")
    with pytest.raises(DataError, match="row 1: soundfont 'Sonivox' is none of"):
        voices(taxonomy, bad)
    bad.write_text("piano\tMuseScore_General\twhy\n")
    missing = dict(SOUNDFONTS, MuseScore_General=(tmp_path / "none.sf3", "", "musescore-general-soundfont"))
    with pytest.MonkeyPatch.context() as m:
        m.setattr("generation.symbolic.SOUNDFONTS", missing)
        with pytest.raises(DataError, match="install Debian's musescore-general-soundfont"):
            voices(taxonomy, bad)


def test_the_genre_examples_command_writes_a_clip_and_an_index_line_per_genre(tmp_path, monkeypatch):
    import importlib.util

    import soundfile as sf

    spec = importlib.util.spec_from_file_location("genre_spectrograms", REPO / "scripts" / "genre_spectrograms.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    lists = script.genre_lists()
    assert lists["metal"][0] == "metal" and "electric guitar" in lists["metal"]
    monkeypatch.setattr(script, "genre_lists", lambda: {g: lists[g] for g in ("metal", "jazz")})
    index = script.main(["--examples", str(tmp_path), "--seconds", "1.5"])
    rows = [line for line in index.read_text().splitlines() if line.startswith("| metal") or line.startswith("| jazz")]
    assert len(rows) == 2 and "render-7" in index.read_text()
    wave, rate = sf.read(tmp_path / "metal.flac")
    assert rate == 32000 and len(wave) == 48000 and abs(wave).max() > 0.01
