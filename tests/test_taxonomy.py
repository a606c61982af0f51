import json

import pytest

from builder.taxonomy import (
    PAPER_TAXONOMY,
    Taxonomy,
    build_taxonomy,
    compare_with_paper,
    load_concept_table,
    main,
    normalise_aspect,
)
from core.constants import CATEGORIES
from core.errors import DataError


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Male   Vocal ", "male vocal"),
        ("MEDIUM TEMPO", "medium tempo"),
        ('punchy "4 on the floor" kick pattern', "punchy 4 on the floor kick pattern"),
        ("children\u2019s song", "children's song"),
        ("memdium tempo", "medium tempo"),
        ("keybiard accompaniment", "keyboard accompaniment"),
        ("groovy bas slime", "groovy bass line"),
        ("synthesiser arrangements", "synthesizer arrangements"),
        ("hip-hop", "hip-hop"),
        ("r&b.", "r&b"),
    ],
)
def test_normalise_aspect(raw, expected):
    assert normalise_aspect(raw) == expected


def test_synonyms_merge_into_one_concept(taxonomy):
    for alias in ["male vocal", "male voice", "male singer", "male vocalist", "male vocals", "Male Voice"]:
        assert taxonomy.concept_for(alias) == "male vocal"
    assert taxonomy.concept_for("moderate tempo") == taxonomy.concept_for("memdium tempo") == "medium tempo"
    assert taxonomy.concept_for("no voice") is None


def test_taxonomy_has_50_concepts_per_category_without_paper_quirks(taxonomy):
    assert len(taxonomy.concepts) == 200
    for category in CATEGORIES:
        assert len(taxonomy.by_category(category)) == 50
    assert len(set(taxonomy.names)) == 200
    everything = {a for c in taxonomy.concepts for a in (c.name, *c.aliases)}
    assert not [
        a for a in everything if a.startswith("no ") or "quality" in a or a in {"mono", "noisy", "instrumental"}
    ]
    assert "groovy bas slime" not in everything
    category = taxonomy.category_of
    assert category[taxonomy.concept_for("slow rock")] == "genre"
    assert category[taxonomy.concept_for("hard rock")] == "genre"
    assert category[taxonomy.concept_for("heavy metal")] == "genre"
    assert category[taxonomy.concept_for("funk")] == "genre"
    assert category[taxonomy.concept_for("soulful")] == "mood"
    # ranked by row count within each category
    for c in CATEGORIES:
        rows = [x.rows for x in taxonomy.by_category(c)]
        assert rows == sorted(rows, reverse=True) and rows[-1] > 0


def test_every_concept_in_exactly_one_category():
    entries = load_concept_table()
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    aliases = [a for e in entries for a in (e.name, *e.aliases)]
    assert len(aliases) == len(set(aliases))


def test_concept_in_two_categories_is_an_error(tmp_path):
    table = tmp_path / "concepts.tsv"
    table.write_text("genre\trock\trock music\nmood\trock\t\n")
    with pytest.raises(DataError, match=r"concepts.tsv, row 2, field 'concept'.*'rock'.*row 1"):
        load_concept_table(table)


def test_alias_pointing_to_two_concepts_is_an_error(tmp_path):
    table = tmp_path / "concepts.tsv"
    table.write_text("# header\ngenre\trock\trock music\ngenre\tpop\tpop music | Rock  Music\n")
    with pytest.raises(DataError, match=r"row 3, field 'aliases'.*'rock music'.*'pop'.*'rock' at row 2"):
        load_concept_table(table)


def test_unknown_category_is_an_error(tmp_path):
    table = tmp_path / "concepts.tsv"
    table.write_text("style\trock\t\n")
    with pytest.raises(DataError, match="unknown category 'style'"):
        load_concept_table(table)


def test_taxonomy_round_trip_and_cli(tmp_path, musiccaps_csv):
    out = tmp_path / "taxonomy.json"
    taxonomy = main(
        ["--musiccaps_csv", str(musiccaps_csv), "--output", str(out), "--paper_taxonomy", str(PAPER_TAXONOMY)]
    )
    loaded = Taxonomy.load(out)
    assert loaded.fingerprint() == taxonomy.fingerprint()
    assert json.loads(out.read_text())["version"] == taxonomy.version
    report = json.loads((tmp_path / "taxonomy_vs_paper.json").read_text())
    assert report["paper_tags"] == 200 and 0 < report["mapped"] <= 200


def test_compare_with_paper(taxonomy):
    report = compare_with_paper(taxonomy, PAPER_TAXONOMY)
    assert report["mapped"] > 100  # most of the paper's tags are synonyms of our concepts
    assert "groovy bas slime" not in report["unmapped"]["tempo"]  # it maps (to bass guitar), in another category
    moved = {tag: ours for tag, _, _, ours in report["moved"]}
    assert moved["hard rock"] == "genre" and moved["soulful"] == "mood"


def test_too_few_concepts_is_an_error(tmp_path, musiccaps_csv):
    table = tmp_path / "concepts.tsv"
    table.write_text("genre\trock\t\nmood\thappy\t\ninstrument\tpiano\t\ntempo\tslow tempo\t\n")
    with pytest.raises(DataError, match="only 1 concepts"):
        build_taxonomy(musiccaps_csv, concept_table=table, per_category=2)


def test_missing_taxonomy_file_is_named(tmp_path):
    with pytest.raises(DataError, match="taxonomy.json.*not found"):
        Taxonomy.load(tmp_path / "taxonomy.json")


def test_a_taxonomy_matches_with_the_spelling_it_was_built_with(taxonomy, tmp_path):
    from dataclasses import replace

    assert taxonomy.concept_for("electric gitaar") is None
    custom = replace(taxonomy, spelling={**taxonomy.spelling, "gitaar": "guitar"})
    assert custom.concept_for("electric gitaar") == "electric guitar"
    custom.save(tmp_path / "taxonomy.json")  # the spelling travels with the taxonomy
    assert Taxonomy.load(tmp_path / "taxonomy.json").concept_for("Electric Gitaar") == "electric guitar"
