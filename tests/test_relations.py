"""Concept relations: the table decides every contained-name pair; negatives and random sets hold no relative;
families; the caption checks count a narrower concept as naming its broader one."""

from __future__ import annotations

import pytest

from builder.relations import concept_names, contains, load_relations, undecided_pairs
from builder.splits import FAMILY_SUFFIX, ConceptSetArguments, concept_sets
from core.errors import DataError


def test_every_pair_whose_names_contain_each_other_is_decided():
    relations = load_relations()
    assert undecided_pairs(concept_names(), relations) == []
    assert contains("medium to fast tempo", "fast tempo") and not contains("rock", "rock")
    assert relations.family("rock") >= {"rock", "hard rock", "indie rock", "pop rock"}
    assert relations.excluded_from_negatives("fast tempo") == {"narrower": set(), "overlaps": {"medium to fast tempo"}}
    assert "electronic drums" not in relations.excluded_from_negatives("electronic")["overlaps"]  # a homonym
    assert relations.broader("gospel") == {"christian music"}


def test_a_bad_relations_table_names_row_and_field(tmp_path):
    table = tmp_path / "relations.tsv"
    table.write_text("hard rock\tnarrower\trock\treason\nhard rock\tnarrower\trok\treason\n")
    with pytest.raises(DataError, match="row 2, field 'related concept': 'rok' is not a concept"):
        load_relations(table)
    table.write_text("hard rock\tnarrower\trock\treason\nrock\tnarrower\thard rock\twhy\n")
    with pytest.raises(DataError, match="decided twice"):
        load_relations(table)
    table.write_text("hard rock\tbroader\trock\treason\n")
    with pytest.raises(DataError, match="unknown relation 'broader'"):
        load_relations(table)


def examples_with_relatives():
    """Rock clips, hard rock clips, fast and medium-to-fast tempo clips, and clips whose caption names hard rock."""
    rows = []
    for i in range(120):
        genre = ["rock"] if i % 4 == 0 else ["hard rock"] if i % 4 == 1 else ["jazz"] if i % 4 == 2 else ["pop"]
        tempo = ["fast tempo"] if i % 3 == 0 else ["medium to fast tempo"] if i % 3 == 1 else ["slow tempo"]
        caption = "A tune that recalls hard rock." if i % 10 == 3 and genre == ["pop"] else "A tune."
        rows.append(
            {
                "id": f"e{i:03d}",
                "split": "train",
                "caption": caption,
                "genre": genre,
                "mood": ["happy"],
                "instrument": ["piano"],
                "tempo": tempo,
                "tags": [*genre, "happy", "piano", *tempo],
            }
        )
    return rows


def test_no_negative_or_random_example_holds_a_relative(taxonomy):
    examples = examples_with_relatives()
    rows, summary = concept_sets(
        examples, taxonomy, ConceptSetArguments(min_positives=5, num_random_sets=3, families=True)
    )
    by_id = {e["id"]: e for e in examples}
    relations = load_relations()
    sets = {}
    for r in rows:
        sets.setdefault(r["concept"], {}).setdefault(r["role"], set()).add(r["id"])
    for concept in ("rock", "fast tempo"):
        relatives = {concept} | set().union(*relations.excluded_from_negatives(concept).values())
        for role in ("negative", "random"):
            for id_ in sets[concept][role]:
                assert not relatives & set(by_id[id_]["tags"]), (concept, role, id_)
                if role == "negative":  # a negative's caption names no relative either
                    assert "hard rock" not in by_id[id_]["caption"] or concept != "rock"
    rock = summary["concepts"]["train/rock"]["removed_by_relation"]
    assert rock == {"lists a narrower concept": 30, "lists an overlapping concept": 0, "caption names a relative": 6}
    assert summary["concepts"]["train/fast tempo"]["removed_by_relation"] == {
        "lists an overlapping concept": 40,
        "caption names a relative": 0,
    }
    family = sets["rock" + FAMILY_SUFFIX]
    assert family["positive"] == {e["id"] for e in examples if {"rock", "hard rock"} & set(e["genre"])}
    assert (
        summary["concepts"]["train/rock" + FAMILY_SUFFIX]["family"] and not summary["concepts"]["train/rock"]["family"]
    )


def test_a_caption_naming_a_narrower_concept_covers_its_broader_one_and_is_still_flagged(taxonomy):
    from builder.caption_checks import CaptionChecker

    checker = CaptionChecker(taxonomy)
    listed_rock = checker.check("An energetic hard rock song with a loud electric guitar.", ["rock", "electric guitar"])
    assert "rock" not in listed_rock.missing and listed_rock.hallucinated == ("hard rock",)
    listed_hard_rock = checker.check(
        "An energetic hard rock song with a loud electric guitar.", ["hard rock", "electric guitar"]
    )
    assert not listed_hard_rock.missing and "rock" not in listed_hard_rock.hallucinated
