"""The symbolic backend's musician: an attribute list + seed -> the score of one clip, in the idiom of its genre.

Who plays is the list's instruments, nobody else; how they play is the genre's style (`data/render_styles.tsv`:
drum pattern, kit, comping, bass line, chord quality, the lead's scale, humanisation, reverb, amp), the tempo and
rhythm concepts (tempo range, feel: meter, swing, patterns laid over the style's), and the mood (mode, dynamics,
density, register). The form is four bars of verse and four of chorus in turn, each with its own progression; the
kit marks phrase starts with a crash and phrase ends with a fill. Timing and velocity are humanised from the seed
(sequenced styles and drum machines are not); every choice goes into the arrangement's ground truth.

The idioms are data and small registered players: drum patterns (`DRUM_STYLES`), comp rhythms and figures
(`COMP_RHYTHMS`, `FIGURES`), bass hits (`BASS_HITS`), chord qualities (`CHORDS`) and lead scales (`LEAD_SCALES`);
each name the styles table may use is a key of `COMPS`, `BASSES`, `CHORDS`, `LEAD_SCALES`, `DRUM_STYLES` or
`DRIVES`, so a name without a player is refused when the table is loaded, with its row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from core.constants import CATEGORIES
from core.errors import ConfigError

FEELS = {
    "straight",
    "swing",
    "shuffle",
    "four_on_floor",
    "syncopated",
    "backbeat",
    "half_time",
    "offbeat",
    "waltz",
    "compound",
    "odd",
    "breakbeat",
    "trap",
    "hiphop",
    "latin",
    "march",
    "gallop",
    "tribal",
    "heartbeat",
    "polyrhythm",
    "additive",
    "free",
    "accelerando",
    "tempo_changes",
    "intense",
    "simple",
    "driving",
    "laid_back",
    "bouncy",
    "pulsating",
    "repetitive",
    "none",
}
ROLES = {"bass", "comp", "strum", "pad", "lead", "stabs", "arpeggio", "kit", "kick", "snare", "hat", "cymbal", "perc"}
DRUM_ROLES = {"kit", "kick", "snare", "hat", "cymbal", "perc"}
CHORD_ROLES = ("comp", "strum", "stabs")  # who strikes (or strums) the chords
DYNAMICS = {"soft": 58, "medium": 80, "loud": 104}
DENSITY = {"sparse": 0.5, "medium": 1.0, "busy": 2.0}  # lead notes per beat
REGISTERS = {
    "low": 36,
    "mid": 55,
    "high": 67,
}  # a role's lowest note: its part starts on the key's tonic at or above it
METERS = {"waltz": (12, 4), "compound": (12, 6), "odd": (14, 4)}  # feel -> (steps per bar, steps per beat)
KEY_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}
LEAD_SCALES = {  # the notes a lead draws from, in semitones above the key's tonic ("diatonic": the mode's scale)
    "pentatonic": {"major": [0, 3, 5, 7, 10], "minor": [0, 3, 5, 7, 10]},  # rock's minor pentatonic over either mode
    "major_pentatonic": {"major": [0, 2, 4, 7, 9], "minor": [0, 3, 5, 7, 10]},
    "minor_pentatonic": {"major": [0, 3, 5, 7, 10], "minor": [0, 3, 5, 7, 10]},
    "blues": {"major": [0, 3, 5, 6, 7, 10], "minor": [0, 3, 5, 6, 7, 10]},
    "bebop": {"major": [0, 2, 4, 5, 7, 9, 10, 11], "minor": [0, 2, 3, 5, 7, 8, 10, 11]},
    "dorian": {"major": [0, 2, 3, 5, 7, 9, 10], "minor": [0, 2, 3, 5, 7, 9, 10]},
    "diatonic": SCALES,  # the mode's own scale
}
DRIVES = {"clean": 1.0, "crunch": 3.0, "distorted": 8.0}  # the amp's gain into its soft clipper
GM_DRUMS = {
    "kick": 36,
    "snare": 38,
    "ghost": 38,
    "cross": 37,
    "clap": 39,
    "hat": 42,
    "pedal": 44,
    "open_hat": 46,
    "ride": 51,
    "crash": 49,
    "perc": 56,
    "tom_high": 50,
    "tom_mid": 47,
    "tom_low": 43,
}
VERSE_BARS = 4  # bars of a verse, then as many of chorus
CHANNELS = 16  # MIDI channels: at most this many instrument programs in a clip


def _line(steps, accent=0.85):
    return {s: accent for s in steps}


EIGHTHS = [0, 2, 4, 6, 8, 10, 12, 14]
OFFBEATS = [2, 6, 10, 14]
BEATS = [0, 4, 8, 12]
GALLOP = [0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15]
# Each style's kit in 16 steps of 4/4: line -> {step: accent}, for the verse and (where it changes) the chorus.
DRUM_STYLES = {
    "rock": (
        {
            "kick": dict([(0, 1.0), (8, 0.95), (10, 0.75)]),
            "snare": _line([4, 12], 1.05),
            "hat": dict([(s, 0.9 if s % 4 == 0 else 0.65) for s in EIGHTHS]),
        },
        {"hat": {}, "ride": dict([(s, 0.9 if s % 4 == 0 else 0.7) for s in EIGHTHS])},
    ),
    "hardrock": (
        {
            "kick": dict([(0, 1.0), (6, 0.8), (8, 0.95), (10, 0.85)]),
            "snare": _line([4, 12], 1.1),
            "hat": dict([(s, 0.9 if s % 4 == 0 else 0.7) for s in EIGHTHS]),
        },
        {"hat": {}, "crash": _line(BEATS, 0.8)},
    ),
    "metal": (
        {"kick": _line(GALLOP, 0.9), "snare": _line([4, 12], 1.1), "hat": _line(BEATS, 0.8)},
        {"kick": _line(range(16), 0.85), "hat": {}, "crash": _line(BEATS, 0.85)},
    ),
    "pop": (
        {
            "kick": dict([(0, 1.0), (6, 0.7), (8, 0.95)]),
            "snare": _line([4, 12], 1.0),
            "hat": dict([(s, 0.85 if s % 4 == 0 else 0.6) for s in EIGHTHS]),
        },
        {"open_hat": _line([14], 0.8), "hat": dict([(s, 0.85 if s % 4 == 0 else 0.6) for s in EIGHTHS[:-1]])},
    ),
    "ballad": (
        {"kick": dict([(0, 0.9), (10, 0.6)]), "cross": _line([4, 12], 0.8), "hat": _line(EIGHTHS, 0.5)},
        {"cross": {}, "snare": _line([4, 12], 0.95)},
    ),
    "none": ({"kick": _line([0], 0.55), "hat": _line(BEATS, 0.45)}, {}),
    "jazz": (
        {
            "ride": dict([(0, 0.85), (4, 1.0), (6, 0.6), (8, 0.85), (12, 1.0), (14, 0.6)]),
            "pedal": _line([4, 12], 0.75),
            "kick": _line(BEATS, 0.3),
        },
        {"kick": dict([(0, 0.3), (4, 0.3), (8, 0.3), (12, 0.3), (14, 0.7)])},
    ),
    "shuffle": (
        {
            "kick": _line([0, 8], 0.95),
            "snare": _line([4, 12], 1.0),
            "hat": dict([(s, 0.85 if s % 4 == 0 else 0.6) for s in EIGHTHS]),
        },
        {"hat": {}, "ride": dict([(s, 0.85 if s % 4 == 0 else 0.6) for s in EIGHTHS])},
    ),
    "train": (
        {"kick": _line([0, 8], 0.9), "snare": dict([(s, 1.0 if s in (4, 12) else 0.42) for s in range(16)])},
        {"snare": _line([4, 12], 1.0), "hat": _line(EIGHTHS, 0.6)},
    ),
    "folk": (
        {"kick": dict([(0, 0.8), (8, 0.7)]), "cross": _line([4, 12], 0.75), "hat": _line(BEATS, 0.5)},
        {"cross": {}, "snare": _line([4, 12], 0.85)},
    ),
    "soul": (
        {
            "kick": dict([(0, 1.0), (7, 0.7), (10, 0.85)]),
            "snare": _line([4, 12], 1.0),
            "ghost": _line([7, 15], 0.4),
            "hat": dict([(s, 0.8 if s % 4 == 0 else 0.6) for s in EIGHTHS]),
        },
        {},
    ),
    "funk": (
        {
            "kick": dict([(0, 1.0), (3, 0.7), (6, 0.8), (10, 0.9)]),
            "snare": _line([4, 12], 1.05),
            "ghost": _line([7, 9, 15], 0.38),
            "hat": dict([(s, 0.8 if s % 2 == 0 else 0.45) for s in range(16) if s != 14]),
            "open_hat": _line([14], 0.75),
        },
        {},
    ),
    "boombap": (
        {
            "kick": dict([(0, 1.0), (7, 0.8), (10, 0.9)]),
            "snare": _line([4, 12], 1.05),
            "hat": dict([(s, 0.7 if s % 4 == 0 else 0.5) for s in EIGHTHS] + [(15, 0.35)]),
        },
        {},
    ),
    "trap": (
        {
            "kick": dict([(0, 1.0), (11, 0.85), (14, 0.6)]),
            "snare": _line([8], 1.05),
            "hat": dict([(s, 0.7 if s % 2 == 0 else 0.45) for s in range(16)]),
        },
        {"open_hat": _line([10], 0.6)},
    ),
    "house": (
        {
            "kick": _line(BEATS, 1.0),
            "clap": _line([4, 12], 0.9),
            "open_hat": _line(OFFBEATS, 0.75),
            "hat": _line([s for s in range(16) if s % 4 in (1, 3)], 0.35),
        },
        {},
    ),
    "techno": (
        {
            "kick": _line(BEATS, 1.0),
            "open_hat": _line(OFFBEATS, 0.7),
            "hat": _line([s for s in range(16) if s % 2], 0.35),
            "perc": _line([3, 11], 0.5),
        },
        {"clap": _line([4, 12], 0.85)},
    ),
    "trance": (
        {
            "kick": _line(BEATS, 1.0),
            "open_hat": _line(OFFBEATS, 0.75),
            "hat": _line([s for s in range(16) if s % 2], 0.3),
        },
        {"clap": _line([4, 12], 0.85)},
    ),
    "synthpop": (
        {
            "kick": dict([(0, 1.0), (8, 0.9), (10, 0.7)]),
            "snare": _line([4, 12], 1.0),
            "hat": dict([(s, 0.7 if s % 2 == 0 else 0.45) for s in range(16)]),
        },
        {"clap": _line([4, 12], 0.8)},
    ),
    "dubstep": (
        {"kick": dict([(0, 1.0), (3, 0.7), (10, 0.8)]), "snare": _line([8], 1.1), "hat": _line(EIGHTHS, 0.5)},
        {},
    ),
    "reggae": (
        {
            "kick": _line([8], 0.95),
            "cross": _line([8], 0.9),
            "hat": dict([(s, 0.7 if s % 4 == 0 else 0.5) for s in EIGHTHS]),
        },
        {"open_hat": _line([6, 14], 0.55)},
    ),
    "latin": (
        {
            "cross": _line([0, 3, 6, 10, 12], 0.85),
            "kick": _line([6, 8, 14], 0.75),  # son clave, 3-2
            "hat": _line(EIGHTHS, 0.55),
            "perc": _line([0, 3, 4, 7, 8, 10, 12, 14], 0.6),
        },
        {},
    ),
}
FILL_STYLES = {"rock", "hardrock", "metal", "pop", "ballad", "shuffle", "train", "soul", "funk", "folk", "jazz"}
SEQUENCED_KITS = {24, 25}  # the electronic and TR-808 presets: drum machines do not drift
KIT_BY_STYLE = {0: "kit", 24: "ekit"}  # a concept's Standard or Electronic kit -> the style's choice of that kind


@dataclass
class Arrangement:
    """A clip's score and its ground truth."""

    bpm: float
    meter: str
    key: str
    mode: str
    feels: list[str]
    genre: str | None
    style: str | None = None
    reverb_s: float = 0.0
    reverb_wet: float = 0.0
    notes: list[tuple[float, float, int, int, int]] = field(default_factory=list)  # start s, end s, channel, pitch, vel
    programs: dict[int, tuple[int, int]] = field(default_factory=dict)  # channel -> (bank, preset)
    parts: dict[str, list[int]] = field(default_factory=dict)  # instrument concept -> its channels
    drive: dict[int, float] = field(default_factory=dict)  # channel -> amp gain (electric guitar)
    amp: str | None = None  # the electric guitar's amp (None: no electric guitar listed)
    sections: list[str] = field(default_factory=list)  # per bar: verse or chorus
    chords: list[dict] = field(default_factory=list)  # each chord heard: root, quality, degree, inversion, start
    progression: str | None = None  # the verse's progression in roman numerals ("I-V-vi-IV"); None: one chord
    theory: str | None = None  # the theory clip's kind (progression, chord), None for an attribute list's clip
    register: int = 0  # octaves the pitched parts were moved by (a theory clip's nuisance variable)


def _pick(rng: np.random.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * rng.random())


def in_range(pitch: int, low: int, high: int) -> int:
    """The pitch moved by octaves into [low, high] (the instrument's range, an octave or wider)."""
    while pitch > high:
        pitch -= 12
    while pitch < low:
        pitch += 12
    return pitch


NEUTRAL_STYLE = {
    "style": None,
    "drums": None,
    "kit": "",
    "ekit": "",
    "comp": "block",
    "bass": "root",
    "chords": "triad",
    "lead": "diatonic",
    "humanise_ms": "6",
    "reverb_s": "0",
    "reverb_wet": "0",
    "drive": "clean",
}


def arrange(tags: Sequence[str], tables, seed: int, duration_s: float, theory: dict | None = None) -> Arrangement:
    """The score of one clip: only the listed instruments play, as their genre, tempo and mood concepts say (or, with
    a theory clip's facts, as `arrange_theory` plays them)."""
    if theory:
        return arrange_theory(tags, tables, theory, seed, duration_s)
    rng = np.random.default_rng(seed)
    rows = {c: [tables.rows[t] for t in tags if tables.taxonomy.category_of[t] == c] for c in CATEGORIES}
    genre = rows["genre"][0].values if rows["genre"] else None
    style = dict(tables.styles[genre["style"]], style=genre["style"]) if genre else NEUTRAL_STYLE
    listed_feels = [r.values["feel"] for r in rows["tempo"]]
    feels = list(listed_feels) or ([genre["groove"]] if genre else ["straight"])  # a copy: the groove joins below
    if genre and genre["groove"] not in feels and not any(f in METERS for f in feels):
        feels.append(genre["groove"])
    ranges = [
        (float(r.values["bpm_min"]), float(r.values["bpm_max"])) for r in rows["tempo"] if r.values["bpm_min"] != "-"
    ]
    low, high = (
        ranges[0] if ranges else ((float(genre["bpm_min"]), float(genre["bpm_max"])) if genre else (90.0, 120.0))
    )
    bpm = round(_pick(rng, low, high), 1)
    mood = {
        k: next((r.values[k] for r in rows["mood"] if r.values[k] not in ("-", "")), None)
        for k in ("mode", "dynamics", "density", "register")
    }
    mode = mood["mode"] or (genre["mode"] if genre else ("major" if rng.random() < 0.5 else "minor"))
    root = int(rng.integers(12))
    steps_per_bar, steps_per_beat = next((METERS[f] for f in feels if f in METERS), (16, 4))
    meter = {16: "4/4", 12: "3/4" if steps_per_beat == 4 else "6/8", 14: "7/8"}[steps_per_bar]
    arr = Arrangement(
        bpm,
        meter,
        f"{KEY_NAMES[root]} {mode}",
        mode,
        feels,
        rows["genre"][0].concept if genre else None,
        style["style"],
        float(style["reverb_s"]),
        float(style["reverb_wet"]),
    )
    sequenced = "repetitive" in feels or float(style["humanise_ms"]) == 0
    grid = _Grid(
        bpm, steps_per_bar, steps_per_beat, feels, duration_s, rng, 0.0 if sequenced else float(style["humanise_ms"])
    )
    arr.sections = ["verse" if (bar // VERSE_BARS) % 2 == 0 else "chorus" for bar in range(grid.bars)]
    progressions = {"verse": [int(d) for d in (genre["progression"] if genre else "1,4,5,1").split(",")]}
    progressions["chorus"] = [int(d) for d in genre["chorus"].split(",")] if genre else progressions["verse"]
    degrees = [progressions[s][bar % len(progressions[s])] for bar, s in enumerate(arr.sections)]
    chords = [_chord(d, mode, style["chords"]) for d in degrees]
    starts = [grid.seconds(b * steps_per_bar) for b in range(len(chords))]
    arr.chords = [chord_facts(c, root, d, None, t) for c, d, t in zip(chords, degrees, starts) if t < duration_s]
    arr.progression = roman_progression(progressions["verse"], mode, style["chords"])
    velocity = DYNAMICS[mood["dynamics"] or "medium"]
    density = DENSITY[mood["density"] or "medium"]
    shift = 12 * int(mood["register"] or 0)
    own_feels = set(feels) - ({genre["groove"]} if genre and genre["groove"] not in listed_feels else set())
    channel = 0
    for row in rows["instrument"]:
        v = row.values
        values = [int(x) for x in v["value"].split(",")]
        if v["kind"] == "program":
            program = tables.timbres.get((row.concept, style["style"]))
            values = [program] if program is not None and len(values) == 1 else values
            channels = list(range(channel, channel + len(values)))
            for ch, program in zip(channels, values):
                arr.programs[ch] = (0, program)
        else:
            channels = [channel]
            preset = values[0] if v["kind"] == "kit" else 0
            if v["kind"] == "kit" and preset in KIT_BY_STYLE and style[KIT_BY_STYLE[preset]]:
                preset = int(style[KIT_BY_STYLE[preset]])  # the style's acoustic or electronic kit
            arr.programs[channel] = (128, preset)
        channel += len(channels)
        if channel > CHANNELS:
            raise ConfigError(f"too many instruments for {CHANNELS} MIDI channels: {tags}")
        arr.parts[row.concept] = channels
        for ch in channels:
            if v["role"] in DRUM_ROLES:
                machine = v["kind"] == "kit" and arr.programs[ch][1] in SEQUENCED_KITS
                notes = _drums(
                    grid,
                    style,
                    own_feels,
                    arr.sections,
                    v["role"],
                    values if v["kind"] == "drums" else None,
                    velocity,
                    rng,
                    machine,
                )
            else:
                if row.concept == "electric guitar":
                    arr.amp, arr.drive[ch] = style["drive"], DRIVES[style["drive"]]
                low = REGISTERS[v["register"]]
                base = (
                    low + (root - low) % 12 + (shift if v["role"] in ("lead", "comp", "strum", "arpeggio") else 0)
                )  # the tonic
                notes = _pitched(grid, v["role"], style, chords, mode, root, base, velocity, density, arr.sections, rng)
                low, high = row.pitch_range
                notes = [(s, e, in_range(p, low, high), vel) for s, e, p, vel in notes]
            arr.notes += [(s, e, ch, p, vel) for s, e, p, vel in notes]
    arr.notes.sort()
    return arr


# SynTheory-like clips: exact theory facts, drawn by `generation.theory_lists`, played plainly (quantised, no style)
THEORY_METERS = {"4/4": (16, 4, None), "3/4": (12, 4, "waltz"), "6/8": (12, 6, "compound"), "7/8": (14, 4, "odd")}
PROGRESSIONS = {  # the named progressions a theory clip loops, as scale degrees of its mode (triads)
    "major": ((1, 4, 5, 1), (1, 5, 6, 4), (2, 5, 1)),
    "minor": ((1, 4, 5, 1), (1, 6, 3, 7), (1, 4, 7, 3)),
}
THEORY_QUALITIES = ("major", "minor", "diminished", "augmented", "major 7", "minor 7", "dominant 7")
THEORY_KINDS = ("progression", "chord")


def theory_errors(spec: dict) -> list[str]:
    """What is wrong with a theory clip's facts (empty: playable)."""
    errors = []
    if spec.get("kind") not in THEORY_KINDS:
        errors.append(f"kind {spec.get('kind')!r} is none of {THEORY_KINDS}")
    if spec.get("meter") not in THEORY_METERS:
        errors.append(f"meter {spec.get('meter')!r} is none of {list(THEORY_METERS)}")
    if not isinstance(spec.get("tonic"), int) or not 0 <= spec["tonic"] < 12:
        errors.append(f"tonic {spec.get('tonic')!r} is not a pitch class 0-11")
    if not isinstance(spec.get("bpm"), (int, float)) or not 30 <= spec["bpm"] <= 300:
        errors.append(f"bpm {spec.get('bpm')!r} is not 30-300")
    if spec.get("kind") == "progression":
        if tuple(spec.get("degrees") or ()) not in PROGRESSIONS.get(spec.get("mode"), ()):
            errors.append(f"degrees {spec.get('degrees')!r} are not a progression of mode {spec.get('mode')!r}")
    elif spec.get("kind") == "chord":
        if spec.get("quality") not in THEORY_QUALITIES:
            errors.append(f"quality {spec.get('quality')!r} is none of {THEORY_QUALITIES}")
        if spec.get("inversion") not in (0, 1, 2):
            errors.append(f"inversion {spec.get('inversion')!r} is not 0, 1 or 2")
    if spec.get("register", 0) not in (-1, 0, 1):
        errors.append(f"register {spec.get('register')!r} is not -1, 0 or 1")
    return errors


def arrange_theory(tags: Sequence[str], tables, spec: dict, seed: int, duration_s: float) -> Arrangement:
    """A theory clip: the listed instruments play the facts of `spec` and nothing else. A progression clip loops
    a named progression of its mode's triads in root position; a chord clip repeats one chord of a quality on the
    tonic, in an inversion. Quantised (no humanising, no swing, no style, no room), the first beat of every bar
    accented so that the meter is heard without drums; a drum part plays the meter's plain pattern. Register
    (pitched parts moved by an octave) and the instruments are the nuisance variables."""
    errors = theory_errors(spec)
    if errors:
        raise ConfigError(f"theory clip {spec}: {'; '.join(errors)}")
    rng = np.random.default_rng(seed)
    steps_per_bar, steps_per_beat, feel = THEORY_METERS[spec["meter"]]
    feels = [feel or "straight"]
    root, kind = spec["tonic"], spec["kind"]
    mode = spec.get("mode") if kind == "progression" else None
    arr = Arrangement(float(spec["bpm"]), spec["meter"], f"{KEY_NAMES[root]} {mode}" if mode else None, mode, feels,
                      None, theory=kind, register=int(spec.get("register", 0)))  # fmt: skip
    grid = _Grid(arr.bpm, steps_per_bar, steps_per_beat, feels, duration_s, rng)
    arr.sections = ["verse"] * grid.bars
    total = grid.bars * steps_per_bar
    if kind == "progression":
        degrees = list(spec["degrees"])
        # the harmonic rhythm: a chord a bar, else a beat, else half a beat: the longest that fits the whole
        # progression into the clip, so that every clip plays every chord of its progression
        length = next((n for n in (steps_per_bar, steps_per_beat, max(1, steps_per_beat // 2))
                       if grid.seconds(len(degrees) * n) <= duration_s), max(1, steps_per_beat // 2))  # fmt: skip
        spans = [(start, length, _chord(degrees[k % len(degrees)], mode, "triad"), degrees[k % len(degrees)])
                 for k, start in enumerate(range(0, total, length))]  # fmt: skip
        arr.progression, inversion = roman_progression(degrees, mode), 0
    else:
        spans = [
            (start, steps_per_bar, list(QUALITIES[spec["quality"]]), 1) for start in range(0, total, steps_per_bar)
        ]
        inversion = spec["inversion"]
    arr.chords = [chord_facts(c, root, d, inversion, grid.seconds(start)) for start, _, c, d in spans
                  if grid.seconds(start) < duration_s]  # fmt: skip
    channel = 0
    for tag in tags:
        row = tables.rows[tag]
        v = row.values
        if tables.taxonomy.category_of[tag] != "instrument":
            raise ConfigError(f"theory clip: {tag!r} is not an instrument; a theory clip lists instruments only")
        values = [int(x) for x in v["value"].split(",")]  # a program, a kit preset, or drum notes
        bank, preset = {"program": (0, values[0]), "kit": (128, values[0])}.get(v["kind"], (128, 0))
        arr.programs[channel] = (bank, preset)
        arr.parts[tag] = [channel]
        if v["role"] in DRUM_ROLES:
            notes = _drums(grid, NEUTRAL_STYLE, set(feels), arr.sections, v["role"],
                           values if v["kind"] == "drums" else None, 80, rng, True)  # fmt: skip
        else:
            low = REGISTERS[v["register"]]
            base = low + (root - low) % 12 + 12 * arr.register
            notes = _theory_part(grid, v["role"], spans, base, inversion, row.pitch_range)
        arr.notes += [(s, e, channel, p, vel) for s, e, p, vel in notes]
        channel += 1
    arr.notes.sort()
    return arr


def _fit(pitches: list[int], low: int, high: int) -> list[int]:
    """The notes moved by octaves as a whole into the instrument's range [low, high] where they fit (a chord keeps
    its inversion), else each note on its own (`in_range`)."""
    for k in sorted(range(-4, 5), key=abs):
        moved = [p + 12 * k for p in pitches]
        if low <= min(moved) and max(moved) <= high:
            return moved
    return [in_range(p, low, high) for p in pitches]


def _theory_part(grid, role: str, spans: list[tuple], base: int, inversion: int, pitch_range) -> list[tuple]:
    """A pitched part of a theory clip, over its chords' spans (start step, length, chord tones, degree): every part
    marks every beat, so that the tempo and meter are heard whoever plays. The bass plays the chord's lowest tone, a
    pad and a comp strike the chord (the pad held to the next beat, the comp short), a lead or arpeggio runs up and
    down its tones in half beats; the first beat of every bar is accented. Each chord moves into the instrument's
    range as a whole, so that its inversion is the one recorded."""
    spb, beat = grid.steps_per_bar, grid.steps_per_beat
    half = max(1, beat // 2)
    out = []

    def add(step, length, pitch, vel):
        start, end = grid.seconds(step), grid.seconds(step + length)
        out.append((start, max(end - 0.01, start + 0.05), int(pitch), vel))

    for start, length, chord, _ in spans:
        tones = [base + (chord[0] % 12) + c - chord[0] for c in chord]
        tones = _fit(tones[inversion:] + [t + 12 for t in tones[:inversion]], *pitch_range)
        onsets = [s for s in range(start, start + length) if s % beat == 0] or [start]
        for i, s in enumerate(onsets):
            strong = s % spb == 0
            until = onsets[i + 1] if i + 1 < len(onsets) else start + length
            if role == "bass":
                add(s, until - s, in_range(tones[0] - 12, *pitch_range), 100 if strong else 74)
            elif role == "pad":
                for t in tones:
                    add(s, until - s, t, 88 if strong else 62)
            elif role in CHORD_ROLES:
                for t in tones:
                    add(s, min(beat, until - s), t, 96 if strong else 66)
        if role not in ("bass", "pad", *CHORD_ROLES):
            run = _fit(_up_and_down(tones), *pitch_range)
            for i, s in enumerate(range(start, start + length, half)):
                add(s, half, run[i % len(run)], 96 if s % spb == 0 else (76 if s % beat == 0 else 58))
    return out


class _Grid:
    """Steps of the bar -> seconds, through the feel's tempo curve, swing and the player's timing."""

    def __init__(self, bpm, steps_per_bar, steps_per_beat, feels, duration_s, rng, humanise_ms=0.0):
        self.bpm, self.steps_per_bar, self.steps_per_beat = bpm, steps_per_bar, steps_per_beat
        self.feels, self.duration_s, self.rng = set(feels), duration_s, rng
        self.swing = bool(self.feels & {"swing", "shuffle", "bouncy", "hiphop"})
        self.humanise = humanise_ms / 1000
        self.bars = int(np.ceil(self.beats_in(duration_s) * steps_per_beat / steps_per_bar)) + 1

    def tempo_at(self, beat: float) -> float:
        if "accelerando" in self.feels:
            return self.bpm * (1 + 0.35 * min(beat / max(self.beats_in_plain(), 1), 1))
        if "tempo_changes" in self.feels and beat >= self.beats_in_plain() / 2:
            return self.bpm * 1.25
        return self.bpm

    def beats_in_plain(self) -> float:
        return self.duration_s * self.bpm / 60

    def beats_in(self, seconds: float) -> float:
        return seconds * self.bpm * (1.4 if self.feels & {"accelerando", "tempo_changes"} else 1) / 60

    def seconds(self, step: float, human: bool = False) -> float:
        beat = step / self.steps_per_beat
        if self.swing and self.steps_per_beat == 4 and step % 4 == 2:
            beat += 1 / 6  # the off-beat eighth at two thirds of the beat
        if "free" in self.feels:
            beat += 0.35 * (self.rng.random() - 0.5)
        whole, frac = int(beat), beat - int(beat)
        t = sum(60 / self.tempo_at(b) for b in range(whole)) + frac * 60 / self.tempo_at(whole)
        if human and self.humanise:
            t += float(np.clip(self.rng.normal(0, self.humanise), -2 * self.humanise, 2 * self.humanise))
        return max(t, 0.0)

    def steps(self):
        return range(self.bars * self.steps_per_bar)


FEEL_RULES = [  # a listed rhythm concept's lines, laid over the style's pattern
    ("four_on_floor", {"kick": BEATS, "hat": OFFBEATS}),
    ("syncopated", {"kick": [0, 3, 6, 10], "perc": [3, 7, 11]}),
    ("half_time", {"kick": [0, 10], "snare": [8]}),
    ("trap", {"kick": [0, 11], "snare": [8], "hat": list(range(16))}),
    ("hiphop", {"kick": [0, 7, 10], "snare": [4, 12]}),
    ("breakbeat", {"kick": [0, 10], "snare": [4, 7, 12, 14]}),
    ("offbeat", {"kick": [8], "snare": [8], "hat": OFFBEATS}),
    ("latin", {"kick": [0, 6, 8], "perc": [0, 3, 6, 10, 12]}),
    ("march", {"kick": [0, 8], "snare": [0, 2, 4, 6, 8, 10, 12, 13, 14, 15]}),
    ("gallop", {"kick": GALLOP}),
    ("tribal", {"kick": [0, 3, 6, 10, 12], "snare": [], "perc": [0, 2, 3, 6, 8, 10, 11, 14]}),
    ("heartbeat", {"kick": [0, 2, 8, 10], "snare": [], "hat": []}),
    ("polyrhythm", {"perc": [0, 5, 11]}),  # three against four
    ("additive", {"kick": [0, 6, 12], "perc": [0, 6, 12]}),
    ("intense", {"kick": [0, 2, 6, 8, 10, 14], "hat": list(range(16))}),
    ("simple", {"hat": []}),
    ("driving", {"kick": BEATS, "hat": EIGHTHS}),
    ("pulsating", {"hat": list(range(16))}),
    ("none", {"kick": [0], "snare": [], "hat": [0, 8]}),
]
FEEL_LINES = {"snare": ("ghost", "cross", "clap"), "hat": ("open_hat", "pedal"), "kick": ()}


def _drum_pattern(style: str | None, section: str, feels: set[str], steps_per_bar: int, steps_per_beat: int) -> dict:
    """Steps of one bar per drum line, {line: {step: accent}}: the style's pattern (for the section), with the
    listed rhythm concepts' lines laid over it; other meters have patterns of their own."""
    if steps_per_bar == 12 and steps_per_beat == 6:  # compound 6/8
        return {"kick": _line([0]), "snare": _line([6]), "hat": _line(range(0, 12, 2)), "perc": _line([0, 4, 8])}
    if steps_per_bar == 12:  # waltz
        return {
            "kick": _line([0], 1.0),
            "snare": _line([4, 8], 0.75),
            "hat": _line([0, 4, 8], 0.6),
            "perc": _line([2, 6, 10]),
        }
    if steps_per_bar == 14:  # 7/8 as 2+2+3
        return {
            "kick": _line([0, 4, 8]),
            "snare": _line([4, 11]),
            "hat": _line(range(0, 14, 2)),
            "perc": _line([0, 4, 8, 10, 12]),
        }
    verse, chorus = DRUM_STYLES.get(
        style, ({"kick": _line([0, 8]), "snare": _line([4, 12]), "hat": _line(EIGHTHS)}, {})
    )
    p = {**verse, **(chorus if section == "chorus" else {})}
    for feel, lines in FEEL_RULES:
        if feel in feels:
            for line, steps in lines.items():
                p[line] = _line(steps)
                for alias in FEEL_LINES.get(line, ()):  # the concept's line replaces the style's variants of it
                    p.pop(alias, None)
    return p


def _fill(steps_per_bar: int) -> dict:
    """The kit's fill over the last beat of a phrase: sixteenths down the toms to the snare."""
    last = steps_per_bar - 4
    return {
        "snare": _line([last], 0.95),
        "tom_high": _line([last + 1], 0.9),
        "tom_mid": _line([last + 2], 0.9),
        "tom_low": _line([last + 3], 0.95),
    }


def _drums(
    grid: _Grid,
    style: dict,
    feels: set[str],
    sections: list[str],
    role: str,
    notes: list[int] | None,
    velocity: int,
    rng,
    machine: bool,
) -> list[tuple[float, float, int, int]]:
    """A drum part: the kit plays every line of the pattern (with crashes on phrase starts and fills on phrase ends),
    a single drum concept plays its own line with its own notes."""
    name = style["drums"]
    spb = grid.steps_per_bar
    out = []
    for bar, section in enumerate(sections):
        pattern = (
            _drum_pattern(name, section, feels, spb, grid.steps_per_beat) if "free" not in feels else {"kick": {0: 0.8}}
        )
        phrase_end = bar % VERSE_BARS == VERSE_BARS - 1 and name in FILL_STYLES and spb == 16
        if role == "kit":
            lines = {k: v for k, v in pattern.items() if k != "perc"}  # percussion is a concept of its own
            if phrase_end:
                lines = {k: {s: a for s, a in v.items() if s < spb - 4} for k, v in lines.items()}
                for k, v in _fill(spb).items():
                    lines[k] = {**lines.get(k, {}), **v}
            if bar % VERSE_BARS == 0 and (name in FILL_STYLES or section == "chorus") and "free" not in feels:
                lines["crash"] = {**lines.get("crash", {}), 0: 1.0}
            pitched = [(line, [GM_DRUMS[line]]) for line in lines]
        else:
            line = {"kick": "kick", "snare": "snare", "hat": "hat", "cymbal": "ride", "perc": "perc"}[role]
            steps = dict(pattern.get(line) or {})
            if role == "snare":  # a snare concept plays the style's backbeat, whatever drum carries it
                for alias in ("clap", "cross", "ghost"):
                    steps = {**pattern.get(alias, {}), **steps}
            if role == "hat":
                steps = {**pattern.get("open_hat", {}), **pattern.get("pedal", {}), **steps}
            if role == "cymbal":
                steps = steps or dict(pattern.get("crash") or {}) or dict(pattern.get("hat") or {})
                if bar % VERSE_BARS == 0:
                    steps[0] = 1.0
            if role == "perc" and not steps:
                steps = _line(OFFBEATS, 0.7)
            pitched = [(line, notes or [GM_DRUMS[line]])]
            lines = {line: steps}
        for line, pitches in pitched:
            for k, accent in sorted(lines[line].items()):
                if k >= spb:
                    continue
                step = bar * spb + k
                start = grid.seconds(step, human=not machine) + (
                    0.02 if "laid_back" in feels and line == "snare" else 0.0
                )
                if role == "cymbal" and len(pitches) > 1:
                    pitch = pitches[0] if k == 0 and bar % VERSE_BARS == 0 else pitches[-1]  # crash, then ride
                elif role == "hat" and len(pitches) > 1:
                    pitch = pitches[-1] if k in pattern.get("open_hat", {}) else pitches[0]
                else:
                    pitch = pitches[(bar + k) % len(pitches)]
                boost = 1.06 if section == "chorus" else 1.0
                vel = int(np.clip(velocity * accent * boost + (0 if machine else rng.integers(-6, 7)), 12, 127))
                out.append((start, start + 0.1, pitch, vel))
                if name == "trap" and line == "hat" and k in (6, 14) and role in ("kit", "hat"):  # a hi-hat roll
                    for j in (1, 2):
                        t = grid.seconds(step + j / 3)
                        out.append((t, t + 0.05, pitch, int(vel * 0.8)))
    return out


def _stacked(scale: list[int], degree: int, extra: list[int]) -> list[int]:
    """The diatonic chord on `degree`: thirds stacked from it (a triad, plus `extra` scale steps above the root)."""
    return [scale[i % 7] + 12 * (i // 7) for i in [degree - 1, degree + 1, degree + 3] + extra]


# chord quality -> (the mode's scale, degree 1-7) -> semitones above the tonic of the chord on that degree
CHORDS: dict[str, Callable[[list[int], int], list[int]]] = {
    "triad": lambda scale, d: _stacked(scale, d, []),
    "seventh": lambda scale, d: _stacked(scale, d, [d + 5]),
    "ninth": lambda scale, d: _stacked(scale, d, [d + 5, d + 7]),
    "power": lambda scale, d: [scale[(d - 1) % 7] + x for x in (0, 7, 12)],  # root, fifth, octave
    "dominant": lambda scale, d: [scale[(d - 1) % 7] + x for x in (0, 4, 7, 10)],  # the blues' I7, IV7, V7
}


def _chord(degree: int, mode: str, quality: str) -> list[int]:
    """Semitones above the tonic of the chord of `quality` on `degree` of the mode."""
    return CHORDS[quality](SCALES[mode], degree)


QUALITIES = {  # a chord's quality -> its tones in semitones above its root (what the ground truth names)
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "diminished": (0, 3, 6),
    "augmented": (0, 4, 8),
    "major 7": (0, 4, 7, 11),
    "minor 7": (0, 3, 7, 10),
    "dominant 7": (0, 4, 7, 10),
    "half-diminished 7": (0, 3, 6, 10),
    "power": (0, 7),
    "major 9": (0, 2, 4, 7, 11),
    "minor 9": (0, 2, 3, 7, 10),
    "dominant 9": (0, 2, 4, 7, 10),
}
_QUALITY_OF = {frozenset(tones): name for name, tones in QUALITIES.items()}
NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")


def chord_quality(chord: Sequence[int]) -> str:
    """The quality of a chord given as semitones (its first tone the root): a name of `QUALITIES`, or "other"."""
    return _QUALITY_OF.get(frozenset((c - chord[0]) % 12 for c in chord), "other")


def chord_facts(chord: Sequence[int], tonic: int, degree: int | None, inversion: int | None, start_s: float) -> dict:
    """One chord as the ground truth records it: root (a pitch name), quality, scale degree, inversion (None where
    the parts voice it freely: an attribute list's clip, whose bass plays the root) and when it starts."""
    return {"root": KEY_NAMES[(tonic + chord[0]) % 12], "quality": chord_quality(chord), "degree": degree,
            "inversion": inversion, "start_s": round(float(start_s), 4)}  # fmt: skip


def numeral(degree: int, quality: str) -> str:
    """A roman numeral: upper case for a major third, lower for a minor one, ° diminished, + augmented, ø7
    half-diminished, 7 and maj7 for sevenths, 5 a power chord."""
    upper = quality in ("major", "augmented", "major 7", "dominant 7", "power", "major 9", "dominant 9")
    name = NUMERALS[degree - 1] if upper else NUMERALS[degree - 1].lower()
    suffix = {"diminished": "°", "augmented": "+", "major 7": "maj7", "minor 7": "7", "dominant 7": "7",
              "half-diminished 7": "ø7", "power": "5", "major 9": "maj9", "minor 9": "9",
              "dominant 9": "9"}  # fmt: skip
    return name + suffix.get(quality, "")


def roman_progression(degrees: Sequence[int], mode: str, quality: str = "triad") -> str:
    """A progression of scale degrees in roman numerals, each chord's case and sign from its quality in the mode:
    1,5,6,4 in major -> "I-V-vi-IV"."""
    return "-".join(numeral(d, chord_quality(_chord(d, mode, quality))) for d in degrees)


def _voicing(chord: list[int], base: int, rootless: bool = False) -> list[int]:
    """Close position in the octave above `base` (the key's tonic in the part's register): each chord tone (in
    semitones above the tonic) placed there, so that successive chords move by small steps (voice leading);
    rootless drops the root (the bass has it)."""
    tones = chord[1:] if rootless and len(chord) > 3 else chord
    return sorted({base + p % 12 for p in tones})


# comp style -> (step, length in steps, accent, strum direction: 1 down, -1 up, 0 together) in 16 steps of 4/4
COMP_RHYTHMS = {
    "power8": [(s, 1, 1.0 if s % 4 == 0 else 0.8, 0) for s in EIGHTHS],
    "gallop": [(s, 1, 1.0 if s % 4 == 0 else 0.8, 0) for s in GALLOP],
    "strum": [(0, 4, 1.0, 1), (4, 2, 0.85, 1), (6, 4, 0.7, -1), (10, 2, 0.7, -1), (12, 2, 0.85, 1), (14, 2, 0.7, -1)],
    "strum8": [(s, 2, 0.95 if s % 4 == 0 else 0.7, 1 if s % 4 == 0 else -1) for s in EIGHTHS],
    "boomchick": [(4, 2, 0.9, 1), (12, 2, 0.9, 1), (14, 2, 0.6, -1)],
    "block4": [(s, 3, 1.0 if s in (4, 12) else 0.85, 0) for s in BEATS],
    "funk16": [(s, 1, 1.0 if s in (0, 3, 6, 10, 12) else 0.35, 1 if s % 2 == 0 else -1) for s in range(16)],
    "stabs": [(0, 3, 1.0, 0), (3, 3, 0.85, 0), (6, 2, 0.8, 0), (10, 4, 0.9, 0)],
    "offstabs": [(s, 1, 0.9, 0) for s in OFFBEATS],
    "skank": [(s, 1, 0.9, -1) for s in OFFBEATS],
    "pad": [(0, 16, 0.8, 0)],
}
JAZZ_COMPING = [
    [(0, 2, 0.9, 0), (6, 3, 0.85, 0)],
    [(2, 2, 0.85, 0), (8, 4, 0.9, 0)],
    [(6, 2, 0.8, 0), (14, 2, 0.85, 0)],
    [(0, 6, 0.85, 0), (10, 2, 0.8, 0)],
]  # Charleston, its reverse, anticipations, a held chord


def _pitched(grid, role, style, chords, mode, root, base, velocity, density, sections, rng):
    """Notes of a pitched part: (start s, end s, pitch, velocity)."""
    spb, beat = grid.steps_per_bar, grid.steps_per_beat
    four = spb == 16
    comp = style["comp"] if four else "beats"
    out = []

    def add(step, length_steps, pitch, vel=velocity, at=None):
        start = grid.seconds(step, human=True) if at is None else at
        end = grid.seconds(step + length_steps)
        out.append((start, max(end - 0.01, start + 0.05), int(pitch), int(np.clip(vel + rng.integers(-5, 6), 20, 127))))

    def chord_at(step, length, voicing, vel, direction):
        start = grid.seconds(step, human=True)  # the player's timing moves the whole chord
        order = voicing if direction >= 0 else voicing[::-1]
        for i, p in enumerate(order):
            add(step, length, p, vel, start + (0.011 * i if direction else 0.0))  # a strum: strings a few ms apart

    lead_scale = LEAD_SCALES[style["lead"]][mode]
    motif, melody, degree = None, [], None
    for bar, chord in enumerate(chords):
        first, section = bar * spb, sections[bar]
        boost = 6 if section == "chorus" else 0
        nxt = chords[(bar + 1) % len(chords)]
        if role == "bass":
            _bass(
                add,
                style["bass"] if four else "root",
                first,
                spb,
                beat,
                base + chord[0],
                chord,
                nxt,
                mode,
                velocity + boost,
                rng,
            )
        elif role == "pad":
            chord_at(
                first,
                spb,
                _voicing(chord, base) + ([base + 12 + chord[0] % 12] if section == "chorus" else []),
                velocity - 14 + boost,
                0,
            )
        elif role in CHORD_ROLES:
            name = "stabs" if role == "stabs" and comp not in ("offstabs", "skank", "charleston") else comp
            guitar = role == "strum"
            name = GUITAR_COMPS.get(name, name) if guitar else name
            context = _Bar(add, chord_at, first, spb, beat, chord, base, velocity - 6 + boost, density, section, rng,
                           guitar)  # fmt: skip
            if name == "beats":
                _other_meters(context)
            else:
                COMPS[name](context, name)
        elif role == "arpeggio":
            tones = _voicing(chord, base)
            tones += [t + 12 for t in tones]
            for i, s in enumerate(range(0, spb, max(1, beat // 2))):
                add(first + s, max(1, beat // 2), tones[i % len(tones)], velocity - 4 + boost)
        elif role == "lead":
            if melody and "repetitive" in grid.feels:  # the same bar, unvaried
                for s, length, pitch in melody:
                    add(first + s, length, pitch, velocity + 4 + boost)
                continue
            if bar % 2 == 0 or motif is None:  # a phrase of two bars on one rhythm
                motif = _rhythm(spb, beat, density, rng)
            degree = int(rng.integers(len(lead_scale))) if degree is None else degree
            melody = []
            for i, (s, length) in enumerate(motif):
                degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 2 * len(lead_scale) - 1))
                pc = lead_scale[degree % len(lead_scale)]
                if s % beat == 0 and rng.random() < 0.6:  # strong beats lean on chord tones
                    pc = min(chord, key=lambda c: abs((c % 12) - pc)) % 12
                pitch = base + 12 + pc + 12 * (degree // len(lead_scale))
                if i == len(motif) - 1 and bar % 2 == 1:
                    length = spb - s  # the phrase ends on a held note
                legato = 0.3 if rng.random() < 0.8 else 0.0  # wind and bow players join notes
                melody.append((s, length + legato, pitch))
                add(first + s, length + legato, pitch, velocity + 4 + boost)
    return out


def _rhythm(spb, beat, density, rng) -> list[tuple[int, int]]:
    """A bar's rhythm for a lead phrase: onsets and lengths in steps, about `density` notes a beat, some rests."""
    notes = max(1, int(round(density * spb / beat)))
    length = max(1, spb // notes)
    onsets = [s for s in range(0, spb, length) if rng.random() >= 0.18] or [0]
    return [(s, (onsets[i + 1] if i + 1 < len(onsets) else spb) - s) for i, s in enumerate(onsets)]


@dataclass
class _BassBar:
    """What one bar of a bass line is played from: `root` (a MIDI note) of the bar's chord, toward the next one."""

    add: Callable
    first: int
    spb: int
    beat: int
    root: int
    third: int
    target: int
    approach: int
    mode: str
    vel: int
    rng: np.random.Generator


BASSES: dict[str, Callable[[_BassBar, str], None]] = {}  # the styles table's bass names -> who plays them


def _registered(table: dict, *names: str):
    """Registers a player under the styles table's names for it; a name registered twice is an error."""

    def register(player):
        taken = [n for n in names if n in table]
        if taken:
            raise ValueError(f"{taken} already played by {table[taken[0]].__name__}")
        table.update(dict.fromkeys(names, player))
        return player

    return register


def _bass(add, style, first, spb, beat, root, chord, nxt, mode, vel, rng):
    """One bar of the bass line in `style` from the chord's root toward the next chord."""
    target = root + (nxt[0] - chord[0])
    approach = target + (1 if rng.random() < 0.5 else -1)  # a chromatic step into the next chord's root
    BASSES[style](_BassBar(add, first, spb, beat, root, chord[1] - chord[0], target, approach, mode, vel, rng), style)


@_registered(BASSES, "root")
def _held_root(b: _BassBar, style: str) -> None:
    b.add(b.first, b.spb, b.root, b.vel)


@_registered(BASSES, "walking")
def _walking(b: _BassBar, style: str) -> None:
    line = [b.root, b.root + b.third, b.root + 7, b.approach]
    for beat in range(b.spb // b.beat):
        b.add(b.first + beat * b.beat, b.beat, line[beat % 4], b.vel)


@_registered(BASSES, "eighths", "octave", "boogie", "gallop")
def _driven(b: _BassBar, style: str) -> None:
    """Eighths (or the gallop) on the root; the octave jumping; the boogie climbing root, third, fifth, sixth."""
    major = b.mode == "major" or b.third == 4
    for i, s in enumerate(GALLOP if style == "gallop" else range(0, b.spb, 2)):
        offset = {
            "octave": 12 * (i % 2),
            "boogie": ([0, 4, 7, 9, 10, 9, 7, 4] if major else [0, 3, 7, 8, 10, 8, 7, 3])[i % 8],
        }.get(style, 0)
        b.add(b.first + s, 1 if style == "gallop" else 2, b.root + offset, b.vel)


@_registered(BASSES, "alternating")
def _alternating(b: _BassBar, style: str) -> None:
    """Root and the fifth below (country's boom-chick bass), with a walk-up into the next chord half the time."""
    b.add(b.first, b.beat, b.root, b.vel)
    b.add(b.first + 2 * b.beat, b.beat, b.root - 5, b.vel)
    if b.rng.random() < 0.5:
        b.add(b.first + 3 * b.beat, b.beat // 2, b.approach - 2 if b.approach > b.target else b.approach, b.vel - 8)
        b.add(b.first + 3 * b.beat + b.beat // 2, b.beat // 2, b.approach, b.vel - 8)


BASS_HITS = {  # bass style -> (step, length in steps, semitones above the root) in 16 steps of 4/4
    "syncopated": [(0, 3, 0), (3, 3, 12), (6, 4, 0), (10, 2, 7), (12, 4, 0)],
    "funk": [(0, 2, 0), (3, 1, 12), (6, 1, 0), (7, 1, 10), (10, 2, 0), (12, 1, 7), (14, 2, 12)],
    "reggae": [(2, 2, 0), (4, 2, 7), (6, 4, 12), (10, 2, 7), (12, 4, None)],  # rests on the one; None: the third
    "tumbao": [(3, 5, 0), (8, 3, 7), (11, 5, 0)],  # the anticipated root
    "offbeat": [(s, 2, 0) for s in OFFBEATS],
    "hiphop": [(0, 7, 0), (7, 3, 0), (10, 6, 0)],
    "808": [(0, 11, 0), (11, 5, 0)],
}


@_registered(BASSES, *BASS_HITS)
def _hits(b: _BassBar, style: str) -> None:
    for s, length, offset in BASS_HITS[style]:
        b.add(b.first + s, length, b.root + (b.third if offset is None else offset), b.vel)


@_registered(BASSES, "pedal")
def _pedal(b: _BassBar, style: str) -> None:
    """Root, then the fifth (below the octave), each held half a bar."""
    b.add(b.first, b.spb // 2, b.root, b.vel)
    b.add(b.first + b.spb // 2, b.spb // 2, b.root + 7 - 12 * (b.root + 7 > b.root + 12), b.vel - 6)


@dataclass
class _Bar:
    """What one bar of a chord instrument is played from."""

    add: Callable
    chord_at: Callable
    first: int
    spb: int
    beat: int
    chord: list[int]
    base: int
    vel: float
    density: float
    section: str
    rng: np.random.Generator
    guitar: bool = False  # a guitarist plays it: every chord strummed, string by string (role "strum")

    def low(self) -> int:
        """The chord's root an octave below the part's tonic."""
        return self.base - 12 + self.chord[0] % 12

    def strings(self, voicing: list[int]) -> list[int]:
        """A guitar's six strings: the root and its fifth below, then `voicing` (a barre or open chord's shape)."""
        return [self.low(), self.low() + 7, *voicing]

    def direction(self, direction: int) -> int:
        """A guitarist strums what a keyboard strikes together: down, unless the rhythm says up."""
        return direction if direction or not self.guitar else 1


COMPS: dict[str, Callable[[_Bar, str], None]] = {}  # the styles table's comp names -> who plays them


def _other_meters(b: _Bar) -> None:
    """Meters other than 4/4, whatever the style: the chord on every beat after the first (oom-pah-pah)."""
    voicing = _voicing(b.chord, b.base)
    for s in range(b.beat, b.spb, b.beat):
        b.chord_at(b.first + s, b.beat, b.strings(voicing) if b.guitar else voicing, b.vel, b.direction(0))


@_registered(COMPS, "boogie")
def _boogie_riff(b: _Bar, name: str) -> None:
    """The shuffle riff: root and fifth, root and sixth, root and flat seventh, in eighths."""
    low = b.low()
    for i, s in enumerate(range(0, b.spb, 2)):
        b.add(b.first + s, 2, low, b.vel * (1.0 if s % 4 == 0 else 0.8))
        b.add(b.first + s, 2, low + [7, 7, 9, 9, 10, 10, 9, 9][i % 8], b.vel * (1.0 if s % 4 == 0 else 0.8))


@_registered(COMPS, "power8", "gallop")
def _power_chords(b: _Bar, name: str) -> None:
    """Power chords in eighths (palm-muted in the verse, ringing in the chorus) or the gallop."""
    low = b.low()
    voicing = [low, low + 7, low + 12]
    rhythm = COMP_RHYTHMS[name] if b.section == "verse" or name == "power8" else [(0, 8, 1.0, 0), (8, 8, 0.95, 0)]
    for s, length, accent, _ in rhythm:
        if name == "power8" and b.section == "chorus":
            length = 2
        b.chord_at(b.first + s, length, voicing, b.vel * accent, b.direction(0))  # downpicked on a guitar


FIGURES: dict[str, Callable[[_Bar, list[int], int], list[tuple[int, int]]]] = {  # name -> (step, pitch) of a bar
    # low, high, middle, high in eighths
    "alberti": lambda b, tones, low: [
        (s, [low, low + 7, low + (b.chord[1] - b.chord[0]) % 12, low + 7][i % 4])
        for i, s in enumerate(range(0, b.spb, 2))
    ],
    # alternating thumb on the beats, fingers between
    "travis": lambda b, tones, low: [
        (0, low),
        (2, tones[-1]),
        (4, low + 7),
        (6, tones[1 % len(tones)]),
        (8, low),
        (10, tones[-1]),
        (12, low + 7),
        (14, tones[0]),
    ],
    # the forward roll: thumb, index, middle
    "roll": lambda b, tones, low: [
        (s, [low, tones[1 % len(tones)], tones[-1] + 12 * (tones[-1] < b.base + 7)][i % 3])
        for i, s in enumerate(range(0, b.spb, 2))
    ],
    "montuno": lambda b, tones, low: [
        (s, [tones[0] + 12, tones[-1], tones[1 % len(tones)], tones[0] + 12][i % 4])
        for i, s in enumerate([0, 3, 4, 6, 8, 11, 12, 14])
    ],
    # up the chord over two octaves in sixteenths
    "arp16": lambda b, tones, low: _arpeggio(b, tones + [t + 12 for t in tones], 1),
    # up and back down in eighths
    "broken": lambda b, tones, low: _arpeggio(b, _up_and_down(tones), 2),
    "musicbox": lambda b, tones, low: _arpeggio(b, _up_and_down(tones), 2),
}


def _up_and_down(tones: list[int]) -> list[int]:
    seq = tones + [t + 12 for t in tones]
    return seq + seq[-2:0:-1]


def _arpeggio(b: _Bar, seq: list[int], step_len: int) -> list[tuple[int, int]]:
    return [(s, seq[i % len(seq)]) for i, s in enumerate(range(0, b.spb, step_len))]


@_registered(COMPS, *FIGURES)
def _figure(b: _Bar, name: str) -> None:
    """A picked or broken figure over the chord (a music box an octave up); thinned to the beats when sparse."""
    tones = _voicing(b.chord, b.base + (12 if name == "musicbox" else 0))
    if name == "alberti":
        for s in (0, 8):  # the upper voice on the strong beats
            b.add(b.first + s, 8, tones[-1] + 12, b.vel - 4)
    for s, pitch in FIGURES[name](b, tones, b.low()):
        if b.density < 1 and s % b.beat and name not in ("arp16", "alberti"):
            continue
        b.add(b.first + s, {"arp16": 1, "musicbox": 4}.get(name, 2), pitch, b.vel * (1.0 if s % b.beat == 0 else 0.85))


STRUMMED = ("strum", "strum8", "boomchick", "funk16")  # a guitar's six strings: the root below, then the chord
# What a guitarist plays where a style's comp is written for keys: strummed patterns for block chords, up-stroke
# chops for off-beat stabs (house and disco guitar); every other comp keeps its rhythm, strummed (`_Bar.direction`)
GUITAR_COMPS = {"block": "strum", "offstabs": "skank"}
OFFBEAT_COMPS = ("skank", "offstabs", "charleston", "stabs")  # kept off the beat even when the mood is sparse


@_registered(COMPS, "charleston")
def _jazz_comping(b: _Bar, name: str) -> None:
    """Rootless chords on one of the jazz comping rhythms, drawn per bar."""
    _rhythm_comp(b, name, JAZZ_COMPING[int(b.rng.integers(len(JAZZ_COMPING)))])


@_registered(COMPS, "strum", "strum8", "boomchick", "block4", "funk16", "stabs", "offstabs", "skank", "pad", "block")
def _rhythm_comp(b: _Bar, name: str, rhythm: list | None = None) -> None:
    """Chords on the comp's rhythm ("block": two half-bar chords, one whole-bar chord when sparse)."""
    if rhythm is None:
        rhythm = COMP_RHYTHMS.get(
            name,
            [(0, b.spb // 2, 0.9, 0), (b.spb // 2, b.spb // 2, 0.85, 0)] if b.density > 0.5 else [(0, b.spb, 0.9, 0)],
        )
    voicing = _voicing(b.chord, b.base, rootless=name == "charleston")
    if name in STRUMMED or b.guitar and name != "charleston":  # a jazz guitarist's rootless shapes stay rootless
        voicing = b.strings(voicing)
    for s, length, accent, direction in rhythm:
        if b.density < 1 and s % b.beat and name not in OFFBEAT_COMPS:
            continue
        direction = b.direction(direction)
        strings = voicing[-4:] if b.guitar and direction < 0 else voicing  # an up-stroke catches the top strings
        b.chord_at(b.first + s, length, strings, b.vel * accent, direction)
