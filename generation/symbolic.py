"""The symbolic synthesis backend: attribute list + seed -> an arrangement -> MIDI -> FluidSynth -> 32 kHz mono,
with the ground truth of every clip (tempo, meter, key, mode, who plays what, each stem's share of the mix).

The concept mapping lives in reviewed tables beside this module (`generation/data/render_*.tsv`): every
instrument concept is a General MIDI program (with the real instrument's range: notes outside it are moved by
octaves into it), a drum-kit preset or drum-map notes, with a role and a register; every tempo concept a tempo
range and a feel; every genre a tempo range, a groove, a progression, a mode and comping and bass styles; every
mood a mode, dynamics, density and register. Only the listed instruments play (a genre or mood changes how they
play, never who plays), so a clip's instrument labels are exact. A concept the renderer cannot play faithfully is
declared unrenderable in its table, with the reason; lists holding one are not rendered (the synthesis stage
counts them).

Rendering: a fresh synthesizer per clip (a reused one leaks state between clips), the soundfont named explicitly
(FluidR3_GM, MIT; never libfluidsynth's GPL default), samples loaded on demand, reverb and chorus off, every
instrument on MIDI channels of its own, each channel written to an output of its own: the stems are exact and
sum to the mix. Pan is centred and the gain fixed, never normalised. Output is bit-identical across runs and
processes for a given list, seed and soundfont.
"""

from __future__ import annotations

import ctypes
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from builder.taxonomy import Taxonomy
from core.constants import CATEGORIES
from core.errors import ConfigError, DataError
from core.io import read_tsv, sha256_file

DATA_DIR = Path(__file__).resolve().parent / "data"
TABLES = {c: DATA_DIR / f"render_{name}.tsv" for c, name in
          (("instrument", "instruments"), ("tempo", "tempo"), ("genre", "genres"), ("mood", "moods"))}
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm: FluidR3_GM, MIT, (c) Frank Wen
SOUNDFONT_CREDIT = "FluidR3_GM.sf2 by Frank Wen (MIT licence), from Debian's fluid-soundfont-gm"
GAIN = 0.4
CHANNELS = 16
FEELS = {"straight", "swing", "shuffle", "four_on_floor", "syncopated", "backbeat", "half_time", "offbeat", "waltz",
         "compound", "odd", "breakbeat", "trap", "hiphop", "latin", "march", "gallop", "tribal", "heartbeat",
         "polyrhythm", "additive", "free", "accelerando", "tempo_changes", "intense", "simple", "driving", "laid_back",
         "bouncy", "pulsating", "repetitive", "none"}
ROLES = {"bass", "comp", "pad", "lead", "stabs", "arpeggio", "kit", "kick", "snare", "hat", "cymbal", "perc"}
DRUM_ROLES = {"kit", "kick", "snare", "hat", "cymbal", "perc"}
DYNAMICS = {"soft": 58, "medium": 80, "loud": 104}
DENSITY = {"sparse": 0.5, "medium": 1.0, "busy": 2.0}  # lead notes per beat
REGISTERS = {"low": 36, "mid": 55, "high": 67}  # lowest MIDI note of the role's octave and a half
METERS = {"waltz": (12, 4), "compound": (12, 6), "odd": (14, 4)}  # feel -> (steps per bar, steps per beat)
KEY_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}
INAUDIBLE_DB = -15.0


@dataclass(frozen=True)
class Row:
    concept: str
    values: dict  # the table's columns
    reason: str | None  # why the concept cannot be rendered, or None

    @property
    def pitch_range(self) -> tuple[int, int]:
        """A program instrument's real range: its lowest and highest MIDI note (checked when the table is read)."""
        low, high = self.values["range"].split("-")
        return int(low), int(high)


class RenderTables:
    """The four reviewed tables, checked against the taxonomy: every concept has exactly one row."""

    def __init__(self, taxonomy: Taxonomy, tables: dict[str, Path] = TABLES):
        columns = {"instrument": ("kind", "value", "role", "register", "range", "note"),
                   "tempo": ("bpm_min", "bpm_max", "feel", "note"),
                   "genre": ("bpm_min", "bpm_max", "groove", "progression", "mode", "comp", "bass", "sevenths", "note"),
                   "mood": ("mode", "dynamics", "density", "register", "note")}
        self.rows: dict[str, Row] = {}
        for category, path in tables.items():
            names = {c.name for c in taxonomy.by_category(category)}
            for number, fields in read_tsv(path, len(columns[category]) + 1):
                concept, values = fields[0], dict(zip(columns[category], fields[1:]))
                if concept not in names:
                    raise DataError(path, f"{concept!r} is not a {category} concept of the taxonomy", row=number)
                if concept in self.rows:
                    raise DataError(path, f"{concept!r} has two rows", row=number)
                essential = {"instrument": ("kind", "unrenderable"), "tempo": ("feel", "unrenderable"),
                             "genre": ("groove", "-"), "mood": ("dynamics", "-")}[category]
                unrenderable = values[essential[0]] == essential[1]
                if unrenderable and not values["note"]:
                    raise DataError(path, f"{concept!r} is unrenderable without a reason", row=number, field="note")
                self.rows[concept] = Row(concept, values, values["note"] if unrenderable else None)
                if not unrenderable:
                    _check_row(path, number, category, values)
            missing = sorted(names - set(self.rows))
            if missing:
                raise DataError(path, f"no row for {len(missing)} {category} concept(s): {missing[:5]}")
        self.taxonomy = taxonomy

    def unrenderable(self, tags: Sequence[str]) -> list[tuple[str, str]]:
        """(concept, reason) for each listed concept the renderer cannot play."""
        return [(t, self.rows[t].reason) for t in tags if self.rows[t].reason]


def _check_row(path, number, category, v) -> None:
    def need(ok, field, what):
        if not ok:
            raise DataError(path, f"{what}: {v[field]!r}", row=number, field=field)

    if category == "instrument":
        need(v["kind"] in ("program", "kit", "drums"), "kind", "not program, kit, drums or unrenderable")
        need(all(x.isdigit() and int(x) < 128 for x in v["value"].split(",")), "value", "not MIDI numbers")
        need(v["role"] in ROLES, "role", "unknown role")
        need(v["kind"] == "program" or v["role"] in DRUM_ROLES, "role", "a kit or drum notes need a drum role")
        if v["kind"] == "program":
            low, _, high = v["range"].partition("-")
            need(low.isdigit() and high.isdigit() and int(low) + 12 <= int(high) < 128, "range",
                 "not the lowest-highest MIDI note, an octave or more apart")
    elif category == "tempo":
        need(v["feel"] in FEELS, "feel", "unknown feel")
    elif category == "genre":
        need(v["groove"] in FEELS, "groove", "unknown groove")
        need(v["mode"] in SCALES, "mode", "not major or minor")
        need(all(x.isdigit() and 1 <= int(x) <= 7 for x in v["progression"].split(",")), "progression", "not degrees 1-7")
    else:
        need(v["dynamics"] in DYNAMICS, "dynamics", "unknown dynamics")
        need(v["density"] in DENSITY, "density", "unknown density")


@dataclass
class Arrangement:
    """A clip's score and its ground truth."""

    bpm: float
    meter: str
    key: str
    mode: str
    feels: list[str]
    genre: str | None
    notes: list[tuple[float, float, int, int, int]] = field(default_factory=list)  # start s, end s, channel, pitch, vel
    programs: dict[int, tuple[int, int]] = field(default_factory=dict)  # channel -> (bank, preset)
    parts: dict[str, list[int]] = field(default_factory=dict)  # instrument concept -> its channels


def _pick(rng: np.random.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * rng.random())


def arrange(tags: Sequence[str], tables: RenderTables, seed: int, duration_s: float) -> Arrangement:
    """The score of one clip: only the listed instruments play, as their genre, tempo and mood concepts say."""
    rng = np.random.default_rng(seed)
    rows = {c: [tables.rows[t] for t in tags if tables.taxonomy.category_of[t] == c] for c in CATEGORIES}
    genre = rows["genre"][0].values if rows["genre"] else None
    feels = [r.values["feel"] for r in rows["tempo"]] or ([genre["groove"]] if genre else ["straight"])
    if genre and genre["groove"] not in feels and not any(f in METERS for f in feels):
        feels.append(genre["groove"])
    ranges = [(float(r.values["bpm_min"]), float(r.values["bpm_max"])) for r in rows["tempo"] if r.values["bpm_min"] != "-"]
    low, high = ranges[0] if ranges else ((float(genre["bpm_min"]), float(genre["bpm_max"])) if genre else (90.0, 120.0))
    bpm = round(_pick(rng, low, high), 1)
    mood = {k: next((r.values[k] for r in rows["mood"] if r.values[k] not in ("-", "")), None)
            for k in ("mode", "dynamics", "density", "register")}
    mode = mood["mode"] or (genre["mode"] if genre else ("major" if rng.random() < 0.5 else "minor"))
    root = int(rng.integers(12))
    steps_per_bar, steps_per_beat = next((METERS[f] for f in feels if f in METERS), (16, 4))
    meter = {16: "4/4", 12: "3/4" if steps_per_beat == 4 else "6/8", 14: "7/8"}[steps_per_bar]
    arr = Arrangement(bpm, meter, f"{KEY_NAMES[root]} {mode}", mode, feels, rows["genre"][0].concept if genre else None)
    grid = _Grid(bpm, steps_per_bar, steps_per_beat, feels, duration_s, rng)
    progression = [int(d) for d in (genre["progression"] if genre else "1,4,5,1").split(",")]
    sevenths = bool(genre and genre["sevenths"] == "yes")
    velocity = DYNAMICS[mood["dynamics"] or "medium"]
    density = DENSITY[mood["density"] or "medium"]
    shift = 12 * int(mood["register"] or 0)
    channel = 0
    for row in rows["instrument"]:
        v = row.values
        values = [int(x) for x in v["value"].split(",")]
        if v["kind"] == "program":
            channels = list(range(channel, channel + len(values)))
            for ch, program in zip(channels, values):
                arr.programs[ch] = (0, program)
        else:
            channels = [channel]
            arr.programs[channel] = (128, values[0] if v["kind"] == "kit" else 0)
        channel += len(channels)
        if channel > CHANNELS:
            raise ConfigError(f"too many instruments for {CHANNELS} MIDI channels: {tags}")
        arr.parts[row.concept] = channels
        for ch in channels:
            if v["role"] in DRUM_ROLES:
                notes = _drums(grid, v["role"], values if v["kind"] == "drums" else None, velocity, rng)
            else:
                base = REGISTERS[v["register"]] + root + (shift if v["role"] in ("lead", "comp", "arpeggio") else 0)
                notes = _pitched(grid, v["role"], genre, progression, mode, sevenths, base, velocity, density, rng)
                low, high = row.pitch_range
                notes = [(s, e, in_range(p, low, high), vel) for s, e, p, vel in notes]
            arr.notes += [(s, e, ch, p, vel) for s, e, p, vel in notes]
    arr.notes.sort()
    return arr


def in_range(pitch: int, low: int, high: int) -> int:
    """The pitch moved by octaves into [low, high] (the instrument's range, an octave or wider)."""
    while pitch > high:
        pitch -= 12
    while pitch < low:
        pitch += 12
    return pitch


class _Grid:
    """Steps of the bar -> seconds, through the feel's tempo curve, swing and timing."""

    def __init__(self, bpm, steps_per_bar, steps_per_beat, feels, duration_s, rng):
        self.bpm, self.steps_per_bar, self.steps_per_beat = bpm, steps_per_bar, steps_per_beat
        self.feels, self.duration_s, self.rng = set(feels), duration_s, rng
        self.swing = bool(self.feels & {"swing", "shuffle", "bouncy", "hiphop"})
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

    def seconds(self, step: float) -> float:
        beat = step / self.steps_per_beat
        if self.swing and self.steps_per_beat == 4 and step % 4 == 2:
            beat += 1 / 6  # the off-beat eighth at two thirds of the beat
        if "free" in self.feels:
            beat += 0.35 * (self.rng.random() - 0.5)
        whole, frac = int(beat), beat - int(beat)
        t = sum(60 / self.tempo_at(b) for b in range(whole)) + frac * 60 / self.tempo_at(whole)
        return max(t, 0.0)

    def steps(self):
        return range(self.bars * self.steps_per_bar)


def _drum_pattern(feels: set[str], steps_per_bar: int, steps_per_beat: int) -> dict[str, list[int]]:
    """Steps of one bar per drum line (kick, snare, hat, cymbal, perc)."""
    beats = [b * steps_per_beat for b in range(steps_per_bar // steps_per_beat)]
    eighths = list(range(0, steps_per_bar, max(steps_per_beat // 2, 1)))
    if steps_per_bar == 12 and steps_per_beat == 6:  # compound 6/8
        return {"kick": [0], "snare": [6], "hat": list(range(0, 12, 2)), "cymbal": [0], "perc": [0, 4, 8]}
    if steps_per_bar == 12:  # waltz
        return {"kick": [0], "snare": [4, 8], "hat": [0, 4, 8], "cymbal": [0], "perc": [2, 6, 10]}
    if steps_per_bar == 14:  # 7/8 as 2+2+3
        return {"kick": [0, 4, 8], "snare": [4, 11], "hat": list(range(0, 14, 2)), "cymbal": [0], "perc": [0, 4, 8, 10, 12]}
    p = {"kick": [0, 8], "snare": [4, 12], "hat": eighths, "cymbal": [0], "perc": [2, 6, 10, 14]}
    rules = [
        ("four_on_floor", {"kick": beats, "hat": [2, 6, 10, 14]}), ("syncopated", {"kick": [0, 3, 6, 10], "perc": [3, 7, 11]}),
        ("half_time", {"kick": [0, 10], "snare": [8]}), ("trap", {"kick": [0, 11], "snare": [8], "hat": list(range(16))}),
        ("hiphop", {"kick": [0, 7, 10], "snare": [4, 12]}), ("breakbeat", {"kick": [0, 10], "snare": [4, 7, 12, 14]}),
        ("offbeat", {"kick": [8], "snare": [8], "hat": [2, 6, 10, 14]}), ("latin", {"kick": [0, 6, 8], "perc": [0, 3, 6, 10, 12]}),
        ("march", {"kick": [0, 8], "snare": [0, 2, 4, 6, 8, 10, 12, 13, 14, 15]}), ("gallop", {"kick": [0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15]}),
        ("tribal", {"kick": [0, 3, 6, 10, 12], "snare": [], "perc": [0, 2, 3, 6, 8, 10, 11, 14]}),
        ("heartbeat", {"kick": [0, 2, 8, 10], "snare": [], "hat": []}), ("polyrhythm", {"perc": [0, 5, 11]}),  # three against four
        ("additive", {"kick": [0, 6, 12], "perc": [0, 6, 12]}), ("intense", {"kick": [0, 2, 6, 8, 10, 14], "hat": list(range(16))}),
        ("simple", {"hat": []}), ("driving", {"kick": [0, 4, 8, 12], "hat": list(range(0, 16, 2))}),
        ("pulsating", {"hat": list(range(16))}), ("none", {"kick": [0], "snare": [], "hat": [0, 8]}),
    ]
    for feel, lines in rules:
        if feel in feels:
            p.update(lines)
    return p


DEFAULT_DRUM_NOTES = {"kick": [36], "snare": [38], "hat": [42], "cymbal": [49], "perc": [56]}


def _drums(grid: _Grid, role: str, notes: list[int] | None, velocity: int, rng) -> list[tuple[float, float, int, int]]:
    pattern = _drum_pattern(grid.feels, grid.steps_per_bar, grid.steps_per_beat)
    lines = ["kick", "snare", "hat"] if role == "kit" else [role]
    out = []
    for line in lines:
        pitches = notes or DEFAULT_DRUM_NOTES[line]
        steps = set(pattern[line]) if "free" not in grid.feels else {0}
        for step in grid.steps():
            k = step % grid.steps_per_bar
            if k not in steps:
                continue
            if line == "cymbal" and len(pitches) > 1 and k != 0:
                continue  # the crash marks bar starts
            start = grid.seconds(step) + (0.02 if "laid_back" in grid.feels and line == "snare" else 0.0)
            accent = 1.15 if (line == "snare" and "backbeat" in grid.feels) or k == 0 else 1.0
            pitch = pitches[(step // grid.steps_per_bar + k) % len(pitches)]
            vel = int(np.clip(velocity * accent + rng.integers(-6, 7), 20, 127))
            out.append((start, start + 0.1, pitch, vel))
    return out


def _chord(degree: int, mode: str, sevenths: bool) -> list[int]:
    """Semitones above the tonic of the diatonic triad (or seventh chord) on `degree`."""
    scale = SCALES[mode]
    idx = [degree - 1, degree + 1, degree + 3] + ([degree + 5] if sevenths else [])
    return [scale[i % 7] + 12 * (i // 7) for i in idx]


def _pitched(grid, role, genre, progression, mode, sevenths, base, velocity, density, rng):
    """Notes of a pitched part: (start s, end s, pitch, velocity)."""
    comp = genre["comp"] if genre else "block"
    bass = genre["bass"] if genre else "root"
    spb, beat = grid.steps_per_bar, grid.steps_per_beat
    scale = SCALES[mode]
    out = []

    def add(step, length_steps, pitch, vel=velocity):
        start, end = grid.seconds(step), grid.seconds(step + length_steps)
        out.append((start, max(end - 0.01, start + 0.05), int(pitch), int(np.clip(vel + rng.integers(-5, 6), 20, 127))))

    repetitive = bool(grid.feels & {"repetitive"})
    melody, degree = None, None
    for bar in range(grid.bars):
        chord = _chord(progression[bar % len(progression)], mode, sevenths)
        first = bar * spb
        if role == "bass":
            root = base + chord[0]
            if bass == "walking":
                for b in range(spb // beat):
                    add(first + b * beat, beat, root + [0, chord[1] - chord[0], chord[2] - chord[0], 11][b % 4])
            elif bass in ("eighths", "octave", "boogie", "alternating"):
                step_len = beat // 2 if beat >= 2 else 1
                for i, s in enumerate(range(0, spb, step_len)):
                    offset = {"octave": 12 * (i % 2), "boogie": [0, 4, 7, 9][i % 4] if mode == "major" else [0, 3, 7, 8][i % 4],
                              "alternating": 0 if i % 2 == 0 else 7}.get(bass, 0)
                    add(first + s, step_len, root + offset)
            elif bass in ("offbeat", "syncopated", "tumbao"):
                for s in {"offbeat": [2, 6, 10, 14], "syncopated": [0, 3, 6, 10, 12], "tumbao": [3, 8, 11]}[bass]:
                    if s < spb:
                        add(first + s, 2, root + (7 if s in (8, 11) and bass == "tumbao" else 0))
            else:
                add(first, spb, root)
        elif role in ("pad",):
            for p in chord:
                add(first, spb, base + p, velocity - 12)
        elif role in ("comp", "stabs"):
            style = "stabs" if role == "stabs" else comp
            voicing = [chord[0], chord[0] + 7, chord[0] + 12] if style == "powerchord" else chord
            hits = {"strum": list(range(0, spb, beat // 2 or 1)), "skank": [s + beat // 2 for s in range(0, spb, beat)],
                    "stabs": [0, 3, 6, 10] if spb == 16 else [0, beat + 1], "powerchord": list(range(0, spb, beat // 2 or 1)),
                    "arpeggio": list(range(0, spb, beat // 2 or 1))}.get(style, [0, spb // 2] if density > 0.5 else [0])
            for i, s in enumerate(hits):
                length = spb // len(hits) if style == "block" else max(1, beat // 2)
                if style == "arpeggio":
                    add(first + s, length, base + voicing[i % len(voicing)])
                else:
                    for p in voicing:
                        add(first + s, length, base + p)
        elif role == "arpeggio":
            for i, s in enumerate(range(0, spb, max(1, beat // 2))):
                add(first + s, max(1, beat // 2), base + (chord + [c + 12 for c in chord])[i % (2 * len(chord))])
        elif role == "lead":
            if melody is not None and repetitive:
                for s, length, pitch in melody:
                    add(first + s, length, pitch)
                continue
            notes_in_bar = max(1, int(round(density * spb / beat)))
            length = max(1, spb // notes_in_bar)
            degree = int(rng.integers(7)) if degree is None else degree
            melody = []
            for s in range(0, spb, length):
                if rng.random() < 0.15:
                    continue  # a rest
                degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 13))
                pitch = base + 12 + scale[degree % 7] + 12 * (degree // 7)
                if degree % 7 in (0, 2, 4) or rng.random() < 0.5:
                    pitch = base + 12 + min(chord, key=lambda c: abs((c % 12) - scale[degree % 7])) % 12 + 12 * (degree // 7)
                melody.append((s, length, pitch))
                add(first + s, length, pitch)
    return out


def midi_bytes(arr: Arrangement) -> bytes:
    """The arrangement as a standard MIDI file (absolute times at 120 bpm, 960 ticks a second; drum parts on
    channel 10, whatever channel rendered them)."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000))
    track.append(mido.MetaMessage("text", text=f"bpm {arr.bpm} {arr.meter} {arr.key} feels {','.join(arr.feels)}"))
    drums = {ch for ch, (bank, _) in arr.programs.items() if bank == 128}
    out_channel = {}
    melodic = iter([c for c in range(16) if c != 9])
    for ch, (bank, preset) in sorted(arr.programs.items()):
        out_channel[ch] = 9 if ch in drums else next(melodic)
        track.append(mido.Message("program_change", channel=out_channel[ch], program=preset))
    events = []
    for start, end, ch, pitch, vel in arr.notes:
        events.append((int(round(start * 960)), 1, mido.Message("note_on", channel=out_channel[ch], note=pitch, velocity=vel)))
        events.append((int(round(end * 960)), 0, mido.Message("note_off", channel=out_channel[ch], note=pitch, velocity=0)))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def render(arr: Arrangement, soundfont: Path, sampling_rate: int, samples: int) -> tuple[np.ndarray, dict[int, float]]:
    """The mono mix and each channel's energy (sum of squares), from one fresh synthesizer."""
    import fluidsynth

    synth = fluidsynth.Synth(gain=GAIN, samplerate=float(sampling_rate), **{
        "synth.audio-groups": CHANNELS, "synth.audio-channels": CHANNELS, "synth.reverb.active": 0,
        "synth.chorus.active": 0, "synth.cpu-cores": 1, "synth.dynamic-sample-loading": 1})
    try:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise DataError(soundfont, "FluidSynth cannot load this soundfont")
        for ch, (bank, preset) in arr.programs.items():
            synth.program_select(ch, sfid, bank, preset)
            synth.cc(ch, 10, 64)  # centred: General MIDI presets are panned
            synth.cc(ch, 7, 127 if bank == 128 else 96)  # drums' short notes would drown under sustained parts
        write = fluidsynth._fl.fluid_synth_nwrite_float  # one output buffer per channel: exact stems
        write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        left = np.zeros((CHANNELS, samples), np.float32)
        right = np.zeros((CHANNELS, samples), np.float32)
        rows = np.arange(CHANNELS) * samples * 4  # byte offsets of each channel's row
        pointers = ctypes.c_void_p * CHANNELS
        events = sorted([(int(round(s * sampling_rate)), 1, ch, p, v) for s, _, ch, p, v in arr.notes] +
                        [(int(round(e * sampling_rate)), 0, ch, p, 0) for _, e, ch, p, _ in arr.notes])
        position = 0
        for at, on, ch, pitch, vel in [*events, (samples, 0, -1, 0, 0)]:
            at = min(at, samples)
            if at > position:
                lp = pointers(*(rows + left.ctypes.data + 4 * position).tolist())
                rp = pointers(*(rows + right.ctypes.data + 4 * position).tolist())
                if write(synth.synth, at - position, lp, rp, None, None) != 0:
                    raise RuntimeError("FluidSynth failed to render")
                position = at
            if ch < 0 or at >= samples:
                break
            synth.noteon(ch, pitch, vel) if on else synth.noteoff(ch, pitch)
    finally:
        synth.delete()
    stems = (left + right) / 2
    return stems.sum(0), {ch: float(np.square(stems[ch], dtype=np.float64).sum()) for ch in arr.programs}


@dataclass
class Clip:
    wave: np.ndarray
    ground_truth: dict | None = None
    midi: bytes | None = None
    reasons: tuple[str, ...] = ()  # the backend's own reasons to reject the clip


class SymbolicSynthesizer:
    """The synthesis stage's second backend: the same shards, resume, process split, manifests and audio checks."""

    def __init__(self, taxonomy: Taxonomy, soundfont: str | Path = SOUNDFONT, sampling_rate: int = 32000):
        self.soundfont = Path(soundfont)
        if not self.soundfont.is_file():
            raise DataError(self.soundfont, "soundfont not found (install Debian's fluid-soundfont-gm, or pass "
                            "--soundfont)")
        try:
            import fluidsynth  # noqa: F401
        except (ImportError, OSError) as e:
            raise ConfigError(f"the symbolic backend needs libfluidsynth3 and pyfluidsynth ({e})") from None
        self.tables = RenderTables(taxonomy)
        self.sampling_rate = sampling_rate
        self.soundfont_sha256 = sha256_file(self.soundfont)
        self.name = f"symbolic FluidSynth ({self.soundfont.name} sha256:{self.soundfont_sha256[:16]})"
        self.revision = "render-2"  # render-2: notes moved into each instrument's range
        self.load_seconds = 0.0

    def render_row(self, tags: Sequence[str], seed: int, duration_s: float) -> Clip:
        samples = int(round(duration_s * self.sampling_rate))
        arr = arrange(tags, self.tables, seed, duration_s)
        wave, energy = render(arr, self.soundfont, self.sampling_rate, samples)
        total = float(np.square(wave, dtype=np.float64).sum()) or 1e-30
        instruments, quiet = [], []
        for concept, channels in arr.parts.items():
            share = sum(energy[c] for c in channels) / total
            db = 10 * np.log10(max(share, 1e-12))
            instruments.append({"concept": concept, "programs": [list(arr.programs[c]) for c in channels],
                                "stem_share_db": round(float(db), 2)})
            if db < INAUDIBLE_DB:
                quiet.append(concept)
        truth = {"bpm": arr.bpm, "meter": arr.meter, "key": arr.key, "mode": arr.mode, "feels": arr.feels,
                 "genre_rendered": arr.genre, "instruments": instruments, "soundfont": self.soundfont.name,
                 "soundfont_sha256": self.soundfont_sha256, "renderer": self.revision}
        return Clip(wave, truth, midi_bytes(arr), tuple(f"inaudible stem: {c}" for c in quiet))
