"""The tools on a dataset in the paper's published schema (`bsienkiewicz/ConceptCaps`): schema detection, tag
mapping, duplicate ids, concept sets built on the fly, TCAV, and the re-publish into this project's layout."""

import json

import pyarrow.parquet as pq
import pytest

from builder.mentions import ConceptMatcher
from builder.published import PublishedReader, is_published, parse_aspect_list, resolve_concept
from builder.schema import CONFIG_FEATURES
from fixtures.published import UNMAPPED_TAG, write_published


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    folder = tmp_path_factory.mktemp("published")
    return folder, write_published(folder, n=60)


def test_schema_is_recognised_from_features(published):
    from conceptcaps import is_published_dataset, open_dataset

    folder, _ = published
    assert is_published_dataset(str(folder))
    assert is_published(open_dataset(str(folder), "audio", split="test").features)
    assert not is_published(CONFIG_FEATURES["default"]) and not is_published(CONFIG_FEATURES["audio"])


def test_aspect_list_is_parsed_as_a_literal_never_evaluated():
    assert parse_aspect_list("['rock', \"fast tempo\"]") == ["rock", "fast tempo"]
    for bad in ("['rock', 'piano'", "__import__('os').system('false')", "[1, 2]", "rock, piano", None):
        with pytest.raises(ValueError, match="not a list of strings"):
            parse_aspect_list(bad)


def test_tags_map_to_our_concepts_and_faults_are_counted(published, taxonomy):
    from conceptcaps import open_dataset

    folder, splits = published
    reader = PublishedReader()
    rows = {s: list(reader.convert(open_dataset(str(folder), "default", split=s), s)) for s in splits}
    report = reader.report()
    assert report["dropped"] == {"duplicate id (in the same split)": 1, "duplicate id (already in train)": 1}
    assert report["malformed_aspect_list"] == 1 and report["unmapped_tags"] == {UNMAPPED_TAG: 2}
    ids = [r["id"] for split_rows in rows.values() for r in split_rows]
    assert len(ids) == len(set(ids)) == 60
    first = rows["train"][0]  # rock, energetic, piano, fast tempo
    assert first["genre"] == ["rock"] and first["instrument"] == ["piano"] and first["tempo"] == ["fast tempo"]
    # the first row of a repeated id is kept, with its own content
    assert next(r for r in rows["train"] if r["id"] == "cc00001")["caption"] == splits["train"][1]["caption"]
    malformed = rows["validation"][0]  # its category lists are still read
    assert malformed["tags"] and set(malformed["tags"]) <= set(reader.taxonomy.names)
    # either taxonomy's names: ours, an alias of ours, the paper's raw tags
    assert resolve_concept("piano", reader.taxonomy) == "piano"
    assert resolve_concept("electronic music", reader.taxonomy) == reader.taxonomy.concept_for("electronic")
    with pytest.raises(ValueError, match="neither a concept nor a tag"):
        resolve_concept(UNMAPPED_TAG, reader.taxonomy)


def _check_sets(sets, concept, matcher, ids_of):
    positives, negatives = ids_of(sets["positive"]), ids_of(sets["negative"])
    assert len(positives) == len(set(positives)) >= 10 and len(negatives) > 0
    assert not set(positives) & set(negatives)
    for row in sets["negative"]:
        assert concept not in matcher.surface_concepts(row["caption"])  # free of the concept's surface forms
    for random_set in sets["random"]:
        assert not set(ids_of(random_set)) & set(positives)
    assert len(sets["random"]) == 5


def test_concept_examples_on_the_published_schema(published):
    from conceptcaps import concept_examples

    folder, _ = published
    sets = concept_examples(str(folder), "piano", split="train")
    matcher = ConceptMatcher(PublishedReader().taxonomy)
    _check_sets(sets, "piano", matcher, lambda ds: ds["id"])
    assert all("piano" in r["instrument_aspects"] for r in sets["positive"])
    assert sets["summary"]["concept"] == "piano" and sets["summary"]["unmapped_tags"] == {UNMAPPED_TAG: 2}
    with_audio = concept_examples(str(folder), "piano", split="train", config="audio")
    assert with_audio["positive"]["id"] == sets["positive"]["id"]
    assert with_audio["positive"][0]["file_name"].get_all_samples().sample_rate == 32000
    with pytest.raises(ValueError, match="no concept set for 'piano' in split 'test'"):
        concept_examples(str(folder), "piano", split="test")  # 3 positives there, fewer than 10


@pytest.mark.slow
def test_republish_gives_our_layout_that_load_dataset_opens(published, tmp_path):
    import datasets

    from builder.push import PushArguments, push_dataset
    from builder.republish import main as republish_main
    from conceptcaps import concept_examples, open_dataset

    folder, splits = published
    out = tmp_path / "republished"
    summary = republish_main(["--source", str(folder), "--output_dir", str(out), "--max_shard_mb", "0.02"])
    assert summary["examples"] == 60 and summary["per_split"] == {"train": 42, "validation": 9, "test": 9}
    assert summary["rejected"] == {
        "source: duplicate id (in the same split)": 1,
        "source: duplicate id (already in train)": 1,
    }
    assert summary["source"]["revision"].startswith("local dataset sha256:") and str(tmp_path) not in json.dumps(
        summary
    )
    for config in ("default", "audio"):
        ds = datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "cache"))
        assert {s: len(ds[s]) for s in ds} == summary["per_split"]
    concepts = datasets.load_dataset(str(out), "concepts", cache_dir=str(tmp_path / "cache"))
    assert set(concepts) == {"train"}  # 9 rows in validation and test: no concept reaches 10 positives there
    assert len(list((out / "audio").glob("train-*.parquet"))) > 1  # streamed into bounded files
    # the audio is carried over byte for byte
    source = {}
    for r in pq.read_table(folder / "audio" / "train-00000-of-00001.parquet").to_pylist():
        source.setdefault(r["id"], r["file_name"]["bytes"])  # the first row of a repeated id is the one kept
    for path in (out / "audio").glob("train-*.parquet"):
        for r in pq.read_table(path, columns=["id", "audio"]).to_pylist():
            assert r["audio"]["bytes"] == source[r["id"]]
    sets = concept_examples(str(out), "piano", split="train")
    on_the_fly = concept_examples(str(folder), "piano", split="train")
    assert sorted(sets["positive"]["id"]) == sorted(on_the_fly["positive"]["id"])
    assert sorted(sets["negative"]["id"]) == sorted(on_the_fly["negative"]["id"])  # the same rules, the same sets
    card = (out / "README.md").read_text()
    assert "Re-published" in card and str(folder) not in card
    assert (out / "checksums.json").is_file()
    push_dataset(PushArguments(repo_id="someone/conceptcaps-sets", dry_run=True), out)  # verifies the record
    assert open_dataset(str(out), "default", split="validation")[0]["tags"]


def test_genre_classifier_and_tcav_on_the_published_schema(published, tmp_path, monkeypatch):
    from probing.genre_classifier import main as classifier_main
    from probing.tcav import main as tcav_main

    folder, _ = published
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    result = classifier_main(
        [
            f"--dataset={folder}",
            f"--output_dir={tmp_path / 'cnn'}",
            *"--epochs 1 --duration_s 0.5 --channels 4 --num_classes 2 --architecture frames".split(),
        ]
    )
    assert result["source"]["dropped"] and len(result["classes"]) == 2
    assert not list((tmp_path / "cnn").glob("*.tmp"))  # the feature file is gone
    report = tcav_main(
        [
            f"--dataset={folder}",
            f"--model={tmp_path / 'cnn'}",
            *"--layer frames".split(),
            "--concepts",
            "piano",
            "electronic music",
            *"--min_examples 3 --batch_size 4 --concept_sets 2".split(),
            f"--output={tmp_path / 'tcav.json'}",
        ]
    )
    assert {len(r["set_means"]) for r in report["results"]} == {2}  # each concept's positives dealt into two sets
    assert {r["concept"] for r in report["results"]} == {
        "piano",
        PublishedReader().taxonomy.concept_for("electronic music"),
    }
    assert report["source"]["schema"] == "published"


def test_a_theory_concept_on_the_published_schema_is_one_line(published):
    from builder.reader import AudioSplit
    from core.errors import ConfigError

    folder, _ = published
    with pytest.raises(ConfigError, match="'mode=minor' is a theory concept: those exist only for rendered clips"):
        AudioSplit(str(folder), "train").resolve("mode=minor")
    from conceptcaps import concept_examples

    with pytest.raises(ValueError, match="'meter=3/4' is a theory concept: .*published schema"):
        concept_examples(str(folder), "meter=3/4")
