"""The symbolic synthesis backend: attribute list + seed -> an arrangement -> MIDI -> FluidSynth -> 32 kHz mono,
with the ground truth of every clip (tempo, meter, key, mode, who plays what, each stem's share of the mix).

The concept mapping lives in reviewed tables beside this module (`generation/data/render_*.tsv`): every
instrument concept is a General MIDI program (with the real instrument's range: notes outside it are moved by
octaves into it), a drum-kit preset or drum-map notes, with a role and a register; every tempo concept a tempo
range and a feel; every genre a tempo range, a groove, verse and chorus progressions, a mode and a style (drum
pattern and kit, comping, bass line, chord quality, the lead's scale, humanisation, room, amp; with the instrument
timbres of that style), played by `generation.arrangement`; every mood a mode, dynamics, density and register.
Only the listed instruments play (a genre or mood changes how they play, never who plays), so a clip's instrument
labels are exact. A concept the renderer cannot play faithfully is
declared unrenderable in its table, with the reason; lists holding one are not rendered (the synthesis stage
counts them).

Rendering: a fresh synthesizer per clip (a reused one leaks state between clips), the soundfont named explicitly
(FluidR3_GM, MIT; never libfluidsynth's GPL default), samples loaded on demand, FluidSynth's reverb and chorus off
(they mix channels), every instrument on MIDI channels of its own, each channel written to an output of its own;
the style's amp and room are applied to each stem alone: the stems are exact and sum to the mix. Pan is centred
and the gain fixed, never normalised. Output is bit-identical across runs and
processes for a given list, seed and soundfont.
"""

from __future__ import annotations

import ctypes
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from builder.taxonomy import Taxonomy
from core.errors import ConfigError, DataError
from core.io import read_tsv, sha256_file
from generation.arrangement import (
    BASSES,
    CHANNELS,
    CHORDS,
    COMPS,
    DENSITY,
    DRIVES,
    DRUM_ROLES,
    DRUM_STYLES,
    DYNAMICS,
    FEELS,
    LEAD_SCALES,
    ROLES,
    SCALES,
    Arrangement,
    arrange,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
TABLES = {
    c: DATA_DIR / f"render_{name}.tsv"
    for c, name in (("instrument", "instruments"), ("tempo", "tempo"), ("genre", "genres"), ("mood", "moods"))
}
STYLES = DATA_DIR / "render_styles.tsv"
TIMBRES = DATA_DIR / "render_timbres.tsv"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm: FluidR3_GM, MIT, (c) Frank Wen
SOUNDFONT_CREDIT = "FluidR3_GM.sf2 by Frank Wen (MIT licence), from Debian's fluid-soundfont-gm"
SOUNDFONTS = {  # the soundfonts render_soundfonts.tsv may name: file, credit, the Debian package that installs it
    "FluidR3_GM": (SOUNDFONT, SOUNDFONT_CREDIT, "fluid-soundfont-gm"),
    "MuseScore_General": (
        Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
        "MuseScore_General.sf3 by S. Christian Collins (MIT licence), from Debian's musescore-general-soundfont",
        "musescore-general-soundfont",
    ),
}
VOICES = DATA_DIR / "render_soundfonts.tsv"  # which soundfont plays an instrument, where not the default
GAIN = 0.4
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


EVIDENCE_TABLE = DATA_DIR / "render_evidence.tsv"


@functools.lru_cache(maxsize=1)
def render_evidence(path: Path = EVIDENCE_TABLE) -> dict[str, str]:
    """{concept: verdict} of the renderer's audible concepts, measured at scale by benchmarks/bench_evidence.py
    (`builder.evidence.concept_verdict` of its judges' rows); a concept it did not measure is absent."""
    from builder.evidence import concept_verdict

    rows: dict[str, list[dict]] = {}
    for _, (concept, *_, verdict) in read_tsv(path, 9):
        rows.setdefault(concept, []).append({"verdict": verdict, "id": None})
    return {c: concept_verdict(r) for c, r in rows.items()}


def voices(taxonomy: Taxonomy | None = None, path: Path = VOICES) -> dict[str, Path]:
    """{instrument concept: the soundfont file that plays it} from the reviewed table (`render_soundfonts.tsv`:
    chosen per instrument by benchmarks/bench_soundfonts.py); a named soundfont not installed is one line naming
    the Debian package that installs it."""
    out = {}
    for row, (concept, name, _reason) in read_tsv(path, 3):
        if name not in SOUNDFONTS:
            raise DataError(path, f"soundfont {name!r} is none of {sorted(SOUNDFONTS)}", row=row)
        if taxonomy is not None and taxonomy.category_of.get(concept) != "instrument":
            raise DataError(path, f"{concept!r} is not an instrument concept", row=row)
        file, _, package = SOUNDFONTS[name]
        if not file.is_file():
            raise DataError(file, f"not found: {concept} is played from it (install Debian's {package}: "
                            "bash scripts/setup.sh does)")  # fmt: skip
        out[concept] = file
    return out


def soundfont_credits(default: Path, voiced: dict[str, Path]) -> list[str]:
    """The credit of every soundfont a renderer plays from: the default's, then each of the table's."""
    by_file = {file: credit for file, credit, _ in SOUNDFONTS.values()}
    files = dict.fromkeys([default, *voiced.values()])
    return [by_file.get(f, f"{f.name} (see its licence)") for f in files]


class RenderTables:
    """The four reviewed tables, checked against the taxonomy: every concept has exactly one row."""

    def __init__(
        self, taxonomy: Taxonomy, tables: dict[str, Path] = TABLES, styles: Path = STYLES, timbres: Path = TIMBRES
    ):
        columns = {
            "instrument": ("kind", "value", "role", "register", "range", "note"),
            "tempo": ("bpm_min", "bpm_max", "feel", "note"),
            "genre": ("bpm_min", "bpm_max", "groove", "progression", "chorus", "mode", "style", "note"),
            "mood": ("mode", "dynamics", "density", "register", "note"),
        }
        self.rows: dict[str, Row] = {}
        for category, path in tables.items():
            names = {c.name for c in taxonomy.by_category(category)}
            for number, fields in read_tsv(path, len(columns[category]) + 1):
                concept, values = fields[0], dict(zip(columns[category], fields[1:]))
                if concept not in names:
                    raise DataError(path, f"{concept!r} is not a {category} concept of the taxonomy", row=number)
                if concept in self.rows:
                    raise DataError(path, f"{concept!r} has two rows", row=number)
                essential = {
                    "instrument": ("kind", "unrenderable"),
                    "tempo": ("feel", "unrenderable"),
                    "genre": ("groove", "-"),
                    "mood": ("dynamics", "-"),
                }[category]
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
        self.styles = _read_styles(styles)
        for concept, row in self.rows.items():
            style = row.values.get("style")
            if row.reason is None and style is not None and style not in self.styles:
                raise DataError(
                    tables["genre"], f"{concept!r} names the style {style!r}, which {styles.name} lacks", field="style"
                )
        self.timbres = {}
        for number, (concept, style, program, _) in read_tsv(timbres, 4):
            row = self.rows.get(concept)
            if row is None or row.values.get("kind") != "program" or "," in row.values["value"]:
                raise DataError(timbres, f"{concept!r} is not an instrument played by one program", row=number)
            if style not in self.styles:
                raise DataError(timbres, f"unknown style {style!r}", row=number, field="style")
            if not program.isdigit() or int(program) > 127:
                raise DataError(timbres, f"not a MIDI program: {program!r}", row=number, field="program")
            self.timbres[concept, style] = int(program)

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
            need(
                low.isdigit() and high.isdigit() and int(low) + 12 <= int(high) < 128,
                "range",
                "not the lowest-highest MIDI note, an octave or more apart",
            )
    elif category == "tempo":
        need(v["feel"] in FEELS, "feel", "unknown feel")
    elif category == "genre":
        need(v["groove"] in FEELS, "groove", "unknown groove")
        need(v["mode"] in SCALES, "mode", "not major or minor")
        for column in ("progression", "chorus"):
            need(all(x.isdigit() and 1 <= int(x) <= 7 for x in v[column].split(",")), column, "not degrees 1-7")
    else:
        need(v["dynamics"] in DYNAMICS, "dynamics", "unknown dynamics")
        need(v["density"] in DENSITY, "density", "unknown density")


STYLE_COLUMNS = (
    "drums",
    "kit",
    "ekit",
    "comp",
    "bass",
    "chords",
    "lead",
    "humanise_ms",
    "reverb_s",
    "reverb_wet",
    "drive",
    "note",
)


def _read_styles(path: Path) -> dict[str, dict]:
    """The styles table, each value checked against what the arranger implements."""
    known = {
        "drums": DRUM_STYLES,
        "comp": COMPS,
        "bass": BASSES,
        "chords": CHORDS,
        "lead": LEAD_SCALES,
        "drive": DRIVES,
    }
    styles = {}
    for number, (name, *fields) in read_tsv(path, len(STYLE_COLUMNS) + 1):
        v = dict(zip(STYLE_COLUMNS, fields))
        for column, values in known.items():
            if v[column] not in values:
                raise DataError(path, f"unknown {column}: {v[column]!r}", row=number, field=column)
        for column in ("kit", "ekit"):
            if not (v[column].isdigit() and int(v[column]) < 128):
                raise DataError(path, f"not a drum-kit preset: {v[column]!r}", row=number, field=column)
        for column in ("humanise_ms", "reverb_s", "reverb_wet"):
            try:
                ok = float(v[column]) >= 0 and (column != "reverb_wet" or float(v[column]) <= 1)
            except ValueError:
                ok = False
            if not ok:
                raise DataError(path, f"not a number in range: {v[column]!r}", row=number, field=column)
        if not v["note"]:
            raise DataError(path, f"style {name!r} has no musical reason", row=number, field="note")
        styles[name] = v
    return styles


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
        events.append(
            (int(round(start * 960)), 1, mido.Message("note_on", channel=out_channel[ch], note=pitch, velocity=vel))
        )
        events.append(
            (int(round(end * 960)), 0, mido.Message("note_off", channel=out_channel[ch], note=pitch, velocity=0))
        )
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def render(
    arr: Arrangement, soundfont: Path, sampling_rate: int, samples: int, voices: dict[str, Path] | None = None
) -> tuple[np.ndarray, dict[int, float]]:
    """The mono mix and each channel's energy (sum of squares), from one fresh synthesizer; a concept in `voices`
    is played from that soundfont, every other from `soundfont` (each file loaded once)."""
    import fluidsynth

    synth = fluidsynth.Synth(
        gain=GAIN,
        samplerate=float(sampling_rate),
        **{
            "synth.audio-groups": CHANNELS,
            "synth.audio-channels": CHANNELS,
            "synth.reverb.active": 0,
            "synth.chorus.active": 0,
            "synth.cpu-cores": 1,
            "synth.dynamic-sample-loading": 1,
        },
    )
    try:
        font_of = {ch: (voices or {}).get(concept, soundfont) for concept, chans in arr.parts.items() for ch in chans}
        sfids = {}
        for path in dict.fromkeys([soundfont, *font_of.values()]):
            sfids[path] = synth.sfload(str(path))
            if sfids[path] < 0:
                raise DataError(path, "FluidSynth cannot load this soundfont")
        for ch, (bank, preset) in arr.programs.items():
            synth.program_select(ch, sfids[font_of.get(ch, soundfont)], bank, preset)
            synth.cc(ch, 10, 64)  # centred: General MIDI presets are panned
            synth.cc(ch, 7, 127 if bank == 128 else 96)  # drums' short notes would drown under sustained parts
        write = fluidsynth._fl.fluid_synth_nwrite_float  # one output buffer per channel: exact stems
        write.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        left = np.zeros((CHANNELS, samples), np.float32)
        right = np.zeros((CHANNELS, samples), np.float32)
        rows = np.arange(CHANNELS) * samples * 4  # byte offsets of each channel's row
        pointers = ctypes.c_void_p * CHANNELS
        events = sorted(
            [(int(round(s * sampling_rate)), 1, ch, p, v) for s, _, ch, p, v in arr.notes]
            + [(int(round(e * sampling_rate)), 0, ch, p, 0) for _, e, ch, p, _ in arr.notes]
        )
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
    stems = effects(arr, (left + right) / 2, sampling_rate)
    return stems.sum(0), {ch: float(np.square(stems[ch], dtype=np.float64).sum()) for ch in arr.programs}


def effects(arr: Arrangement, stems: np.ndarray, sampling_rate: int) -> np.ndarray:
    """The style's effects, on each stem alone so that the stems still sum to the mix: an electric guitar goes
    through an amp (a soft clipper driven by the style's gain, its level matched to the clean signal's as an amp's
    master volume would) and a speaker cabinet (a band-pass of 80 Hz to 4.5 kHz: a guitar speaker does not
    reproduce the clipper's fizz); then every stem through the room. (A fuller amp chain, with pre-emphasis, an
    asymmetric two-stage clipper, a tone stack and a 4x12 cabinet's response, was measured worse by the taggers:
    MSD's guitar tag on guitar-only rock and metal clips fell from 0.55 and 0.63 to 0.45 and 0.46 with MuseScore
    General's guitar; benchmarks/bench_soundfonts.py, docs/benchmarks.md.)"""
    from scipy.signal import butter, sosfilt  # scipy: BSD

    out = stems.astype(np.float64)
    cabinet = butter(2, [80, 4500], btype="bandpass", fs=sampling_rate, output="sos")
    for ch, gain in arr.drive.items():
        dry = out[ch]
        wet = np.tanh(gain * dry / AMP_HEADROOM) if gain > 1 else dry
        wet = sosfilt(cabinet, wet)
        level = np.sqrt(np.mean(np.square(wet)))
        out[ch] = wet * (np.sqrt(np.mean(np.square(dry))) / level if level > 0 else 0.0)
    if arr.reverb_wet > 0 and arr.reverb_s > 0:
        from scipy.signal import oaconvolve

        ir = room_response(arr.reverb_s, sampling_rate)
        for ch in arr.programs:
            out[ch] = out[ch] + arr.reverb_wet * oaconvolve(out[ch], ir)[: out.shape[1]]
    return out.astype(np.float32)


AMP_HEADROOM = 0.1  # the stem level at which the amp's clipper bends


@functools.lru_cache(maxsize=16)
def room_response(rt60_s: float, sampling_rate: int) -> np.ndarray:
    """A room's impulse response: a few early reflections, then noise decaying by 60 dB over `rt60_s`, darker as it
    decays (high frequencies die first); unit energy; the same for the same arguments on every machine."""
    rng = np.random.default_rng(int(rt60_s * 1000) + sampling_rate)
    n = int(rt60_s * sampling_rate)
    t = np.arange(n) / sampling_rate
    from scipy.signal import lfilter

    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    dark = lfilter([0.25], [1, -0.75], tail) * 2  # a first-order low-pass, mixed in as the tail ages
    mix = np.clip(2 * t / rt60_s, 0, 1)
    ir = (1 - mix) * tail + mix * dark
    ir[: int(0.01 * sampling_rate)] = 0  # the direct sound is the dry signal
    for delay, gain in ((0.013, 0.6), (0.021, 0.45), (0.034, 0.35)):
        ir[int(delay * sampling_rate)] += gain * np.sqrt(sampling_rate / 1000)
    return ir / np.sqrt(np.square(ir).sum())


@dataclass
class Clip:
    wave: np.ndarray
    ground_truth: dict | None = None
    midi: bytes | None = None
    reasons: tuple[str, ...] = ()  # the backend's own reasons to reject the clip


class SymbolicSynthesizer:
    """The synthesis stage's second backend: the same shards, resume, process split, manifests and audio checks."""

    def __init__(
        self, taxonomy: Taxonomy, soundfont: str | Path = SOUNDFONT, sampling_rate: int = 32000, voiced: bool = True
    ):
        self.soundfont = Path(soundfont)
        if not self.soundfont.is_file():
            raise DataError(
                self.soundfont, "soundfont not found (install Debian's fluid-soundfont-gm, or pass --soundfont)"
            )
        try:
            import fluidsynth  # noqa: F401
        except (ImportError, OSError) as e:
            raise ConfigError(f"the symbolic backend needs libfluidsynth3 and pyfluidsynth ({e})") from None
        self.tables = RenderTables(taxonomy)
        self.voices = voices(taxonomy) if voiced else {}
        self.sampling_rate = sampling_rate
        self.soundfont_sha256 = sha256_file(self.soundfont)
        self.name = f"symbolic FluidSynth ({self.soundfont.name} sha256:{self.soundfont_sha256[:16]})"
        # render-2: notes in range; render-3: genre styles; render-4: grooves not doubled; render-5: per-instrument
        # soundfonts (render_soundfonts.tsv); render-6: every chord in the ground truth, theory clips (the audio of an
        # attribute list's clip is render-5's); render-7: guitars strum every comp string by string (role "strum")
        self.revision = "render-7"
        self.load_seconds = 0.0

    def render_row(self, tags: Sequence[str], seed: int, duration_s: float, theory: dict | None = None) -> Clip:
        """One clip of the list (or of a theory clip's facts: `generation.arrangement.arrange_theory`)."""
        samples = int(round(duration_s * self.sampling_rate))
        arr = arrange(tags, self.tables, seed, duration_s, theory)
        wave, energy = render(arr, self.soundfont, self.sampling_rate, samples, self.voices)
        total = float(np.square(wave, dtype=np.float64).sum()) or 1e-30
        instruments, quiet = [], []
        for concept, channels in arr.parts.items():
            share = sum(energy[c] for c in channels) / total
            db = 10 * np.log10(max(share, 1e-12))
            instruments.append(
                {
                    "concept": concept,
                    "programs": [list(arr.programs[c]) for c in channels],
                    "stem_share_db": round(float(db), 2),
                    "soundfont": self.voices.get(concept, self.soundfont).name,
                }
            )
            if db < INAUDIBLE_DB:
                quiet.append(concept)
        truth = {
            "bpm": arr.bpm,
            "meter": arr.meter,
            "key": arr.key,
            "mode": arr.mode,
            "feels": arr.feels,
            "genre_rendered": arr.genre,
            "style": arr.style,
            "form": arr.sections,
            "chords": arr.chords,
            "progression": arr.progression,
            "theory": arr.theory,
            "register": arr.register,
            "room_rt60_s": arr.reverb_s,
            "room_send": arr.reverb_wet,
            "amp": arr.amp,
            "instruments": instruments,
            "soundfont": self.soundfont.name,
            "soundfont_sha256": self.soundfont_sha256,
            "renderer": self.revision,
        }
        return Clip(wave, truth, midi_bytes(arr), tuple(f"inaudible stem: {c}" for c in quiet))
