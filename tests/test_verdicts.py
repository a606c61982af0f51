"""Verdicts are typed: every field a string of bounded length (a time a number), answers from the fixed set, and a
reviewer's name printable on one line; a bad field is refused with its name, never coerced with str()."""

import pytest

from builder.reviews import Verdict
from review.app import MAX_FIELD, verdict_fields

GOOD = {"split": "train", "id": "rv000000", "concept": "rock", "question": "audible", "answer": "no", "reviewer": "Ann"}


def verdict(**changes) -> Verdict:
    fields = {"dataset": "d", "dataset_version": "1", "id": "x", "audio_sha256": "0" * 64, "concept": "rock",
              "question": "audible", "answer": "yes", "reviewer": "Ann", "time": 1.5, **changes}  # fmt: skip
    return Verdict(**fields)


@pytest.mark.parametrize(
    "body, message",
    [
        ({**GOOD, "reviewer": {"a": 1}}, "field 'reviewer': a string is required, not dict"),
        ({**GOOD, "answer": 1}, "field 'answer': a string is required, not int"),
        ({**GOOD, "id": None}, "field 'id': a string is required, not NoneType"),
        ({k: v for k, v in GOOD.items() if k != "concept"}, "field 'concept': a string is required, not NoneType"),
        ({**GOOD, "concept": "x" * (MAX_FIELD + 1)}, f"field 'concept': at most {MAX_FIELD} characters"),
        (["train", "rv000000"], "a verdict is a JSON object: split, id, concept, question, answer, reviewer"),
    ],
)
def test_a_posted_field_of_the_wrong_type_or_size_is_named(body, message):
    with pytest.raises(ValueError) as e:
        verdict_fields(body)
    assert str(e.value) == message


def test_good_fields_pass_as_they_are():
    assert verdict_fields(GOOD) == GOOD


@pytest.mark.parametrize(
    "name", ["Ann\u2028Bob", "Ann\u202eboB", "Ann\u2066x", "Ann\x00", "Ann\nBob", "A\u200bnn", " "]
)
def test_a_reviewer_name_with_separators_bidi_or_control_characters_is_refused(name):
    with pytest.raises(ValueError, match="field 'reviewer': a name is 1-80 printable characters on one line"):
        verdict(reviewer=name).check()


def test_questions_answers_and_types_are_checked_by_field():
    assert verdict(reviewer="Zoë <b>bold</b> 李").check().reviewer == "Zoë <b>bold</b> 李"  # shown escaped, kept
    with pytest.raises(ValueError, match="field 'question': 'loud' is not one of"):
        verdict(question="loud").check()
    with pytest.raises(ValueError, match="field 'answer': 'maybe' to 'audible' is not one of"):
        verdict(answer="maybe").check()
    with pytest.raises(ValueError, match="field 'time': a number is required, not str"):
        verdict(time="now").check()
    with pytest.raises(ValueError, match="field 'concept': a string is required, not list"):
        verdict(concept=["rock"]).check()
