"""Concept mentions on real MusicCaps sentences: negated mentions name nothing, affirmative ones still count."""

import csv
import re

import pytest

from builder.mentions import ConceptMatcher


@pytest.fixture(scope="module")
def matcher(taxonomy):
    return ConceptMatcher(taxonomy)


@pytest.fixture(scope="module")
def sentences(musiccaps_csv):
    with open(musiccaps_csv, encoding="utf-8") as f:
        return [s.strip() for row in csv.DictReader(f) for s in re.split(r"(?<=[.!?])\s+", row["caption"])]


@pytest.mark.parametrize(
    "sentence, named, negated",
    [  # each sentence is MusicCaps' own
        ("There is no percussion in this song.", [], ["percussion"]),
        ("At the beginning, there is no bass.", [], ["bass guitar"]),
        (
            "The tempo is slow with no accompaniment and ambient sounds like a popping and swishing sound.",
            ["slow tempo", "ambient"],
            [],
        ),
        (
            "The song is medium tempo with no instrumentation by different male vocals engaging in different vocal "
            "mimicry of actual instruments, like bass line, melody , percussion and harmony tones.",
            ["medium tempo", "male vocal", "engaging", "bass guitar", "percussion"],
            [],
        ),
        ("The track features a Christmas song with no vocals.", ["christmas music"], []),
        ("The music features no vocals and the main melody is made with a theremin.", [], []),
    ],
)
def test_negation_on_musiccaps_sentences(matcher, sentence, named, negated):
    assert matcher.named_concepts(sentence) == named
    assert matcher.negated_concepts(sentence) == negated


def test_every_musiccaps_no_percussion_or_no_voices_sentence_names_neither(matcher, sentences):
    no_percussion = [s for s in sentences if "no percussion" in s.lower()]
    no_voices = [s for s in sentences if re.search(r"\bno (voices|singer|vocals)\b", s, re.IGNORECASE)]
    assert len(no_percussion) > 50 and len(no_voices) > 150
    assert not [s for s in no_percussion if "percussion" in matcher.named_concepts(s)]
    vocal = {"male vocal", "female vocal", "backing vocals", "vocal harmony", "rap vocals", "choir"}
    assert not [s for s in no_voices if vocal & set(matcher.named_concepts(s))]


def test_affirmative_mentions_still_name_their_concept(matcher, sentences):
    for word, concept in (("piano", "piano"), ("percussion", "percussion")):
        plain = [s for s in sentences if re.search(rf"\bthe {word} (plays|is played)\b", s, re.IGNORECASE)]
        assert len(plain) > 10
        assert all(concept in matcher.named_concepts(s) for s in plain), [
            s for s in plain if concept not in matcher.named_concepts(s)
        ][:3]


def test_a_caption_that_negates_a_listed_concept_fails_coverage(taxonomy):
    from builder.caption_checks import CaptionChecker

    checker = CaptionChecker(taxonomy)
    result = checker.check(
        "A calm jazz piece with a soft piano melody and no percussion at a slow tempo.",
        ["jazz", "piano", "percussion", "slow tempo"],
    )
    assert not result.ok and result.missing == ("percussion",) and result.negated == ("percussion",)
    assert "negated attribute" in result.reasons
    unlisted = checker.check(
        "A mellow jazz piece with a soft piano melody and no drums at a slow tempo.",
        ["jazz", "piano", "slow tempo", "mellow"],
    )
    assert unlisted.ok, unlisted  # an unlisted instrument that is negated is not a hallucination


@pytest.mark.parametrize(
    "sentence, named",
    [  # compounds: MusicCaps' own phrasings and the published captions' style
        ("This is a piano-driven ballad.", ["piano", "ballad"]),
        ("A pop-rock song with a guitar-led chorus.", ["pop rock"]),
        ("The folk-inspired melody has a jazz-tinged, synth-heavy backing.", ["folk", "jazz", "synthesizer"]),
        ("The song has a trance-like feel and an upright-bass line.", ["trance", "upright bass"]),
        ("A high-spirited blues-rock tune.", ["spirited", "blues", "rock"]),
        ("An e-piano plays soft chords.", []),  # an electric piano, not a piano
        ("A soul-stirring, heavy-hearted melody on steel-drums.", []),
    ],
)
def test_compounds_name_their_parts_except_reviewed_idioms(matcher, sentence, named):
    assert matcher.named_concepts(sentence) == named
