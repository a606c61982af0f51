"""The symbolic backend's arranger: every style of the table is played by registered idioms, every listed feel and
meter is honoured, and a genre's groove comes from the genre alone."""

import pytest

from generation.arrangement import (
    BASSES,
    CHORDS,
    COMP_RHYTHMS,
    COMPS,
    DRIVES,
    DRUM_STYLES,
    GM_DRUMS,
    LEAD_SCALES,
    METERS,
    NEUTRAL_STYLE,
    _registered,
    arrange,
)
from generation.symbolic import RenderTables

pytestmark = pytest.mark.usefixtures("taxonomy")


@pytest.fixture(scope="module")
def tables(taxonomy):
    return RenderTables(taxonomy)


def renderable(tables, category):
    return [c for c, r in tables.rows.items() if r.reason is None and tables.taxonomy.category_of[c] == category]


def kit_pitches(arr, concept="drum kit"):
    channels = set(arr.parts[concept])
    return {p for _, _, ch, p, _ in arr.notes if ch in channels}


def test_every_name_the_tables_use_is_registered(tables):
    for style, values in {**tables.styles, "neutral": NEUTRAL_STYLE}.items():
        assert values["comp"] in COMPS and values["bass"] in BASSES, style
        assert values["chords"] in CHORDS and values["lead"] in LEAD_SCALES and values["drive"] in DRIVES, style
        assert values["drums"] is None or values["drums"] in DRUM_STYLES, style
    assert set(COMP_RHYTHMS) <= set(COMPS)
    with pytest.raises(ValueError, match=r"\['walking'\] already played by _walking"):
        _registered(BASSES, "walking")(lambda bar, style: None)


def test_every_style_plays_every_role(tables):
    """Each style's genre with one instrument of every role: each listed instrument sounds, nobody else plays."""
    by_role = {}
    for concept in renderable(tables, "instrument"):
        by_role.setdefault(tables.rows[concept].values["role"], concept)
    players = [by_role[r] for r in ("kit", "bass", "comp", "strum", "pad", "lead", "arpeggio", "stabs") if r in by_role]
    genres = {tables.rows[g].values["style"]: g for g in renderable(tables, "genre")}
    assert set(genres) == set(tables.styles)  # every style is some genre's
    for style, genre in sorted(genres.items()):
        arr = arrange([genre, *players], tables, seed=3, duration_s=6.0)
        assert arr.style == style and set(arr.parts) == set(players)
        sounding = {ch for _, _, ch, _, _ in arr.notes}
        for concept in players:
            assert set(arr.parts[concept]) <= sounding, (style, concept)


def test_every_listed_feel_and_meter_is_honoured(tables):
    for tempo in renderable(tables, "tempo"):
        v = tables.rows[tempo].values
        arr = arrange([tempo, "piano", "drum kit"], tables, seed=1, duration_s=4.0)
        assert v["feel"] in arr.feels, tempo
        if v["feel"] in METERS:
            steps, per_beat = METERS[v["feel"]]
            assert arr.meter == {16: "4/4", 12: "3/4" if per_beat == 4 else "6/8", 14: "7/8"}[steps], tempo
        if v["bpm_min"] != "-":
            assert float(v["bpm_min"]) <= arr.bpm <= float(v["bpm_max"]), tempo


def test_a_listed_tempo_leaves_the_genres_groove_to_the_genre(tables):
    """A tempo concept whose feel is plain (slow tempo: straight) changes the tempo, not the genre's drum pattern:
    the genre's groove is laid over its style only when the list names it. (It was: the listed feels shared a list
    with the genre's groove, so techno with slow tempo lost its off-beat open hats.)"""
    assert tables.rows["slow tempo"].values["feel"] == "straight"
    techno = arrange(["techno", "slow tempo", "drum kit"], tables, seed=0, duration_s=6.0)
    assert GM_DRUMS["open_hat"] in kit_pitches(techno) and techno.feels == ["straight", "four_on_floor"]
    changed = []
    for genre in renderable(tables, "genre"):
        if tables.rows[genre].values["groove"] in ("none", "-"):
            continue
        alone = arrange([genre, "drum kit"], tables, seed=0, duration_s=40.0)  # verses, choruses and fills in both
        slow = arrange([genre, "slow tempo", "drum kit"], tables, seed=0, duration_s=40.0)
        if kit_pitches(alone) != kit_pitches(slow):
            changed.append(genre)
    assert not changed, changed


def test_a_guitar_strums_every_comp_string_by_string(tables):
    """A guitar plays a keyboard's comp as a guitarist would: each chord strummed string by string from a root below
    (never struck at once), while the keyboard beside it keeps its block chords."""
    for genre in ("house", "soul", "hip hop", None):  # off-beat stabs, block chords, stabs, no genre at all
        tags = [genre] if genre else []
        arr = arrange([*tags, "acoustic guitar", "piano"], tables, seed=5, duration_s=6.0)
        guitar, piano = set(arr.parts["acoustic guitar"]), set(arr.parts["piano"])

        def onsets(channels):
            return sorted(s for s, _, ch, _, _ in arr.notes if ch in channels)

        g = onsets(guitar)
        gaps = [b - a for a, b in zip(g, g[1:]) if b - a < 0.03]
        assert gaps and min(gaps) > 0.005, genre  # strings a few ms apart, none together
        if genre in ("soul", None):  # the piano still strikes its block chords together
            p = onsets(piano)
            assert any(b == a for a, b in zip(p, p[1:])), genre
