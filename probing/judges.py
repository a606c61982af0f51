"""Signal judges: what a clip's audio says of its tempo, key and mode, loudness and note density, measured by
standard estimators that know nothing of the renderer (librosa, ISC; the Krumhansl-Kessler key profiles).

    measure(wave, sampling_rate) -> {"tempo_bpm", "tonic", "mode", "major_minus_minor", "rms_db", "onset_rate"}

Which judge speaks for which concept, and in which direction, is the reviewed table
`builder/data/concept_judges.tsv` (`judge_rules`); the tagger audit (`probing.audit`) measures every clip once
with every judge and turns each rule into an AUC of the judge's figure on the concept's positives against its
confound-matched negatives. Against a rendered clip's ground truth, `tempo_agrees` is MIREX's tempo accuracy
("accuracy 2": within 4 %, octave errors allowed) and `key_score` MIREX's key score.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import read_tsv

RULES_FILE = Path(__file__).resolve().parents[1] / "builder" / "data" / "concept_judges.tsv"
JUDGE_SIGNAL = {"tempo": "tempo_bpm", "mode": "major_minus_minor", "loudness": "rms_db", "density": "onset_rate"}
NOTES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
# Krumhansl & Kessler (1982): the probe-tone ratings of each scale degree in a major and a minor context
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
TEMPO_TOLERANCE = 0.04  # MIREX: an estimate within 4 % of the truth (or of its double, half, triple, third)
OCTAVES = (1.0, 2.0, 0.5, 3.0, 1 / 3)


def key_profiles(chroma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of a 12-bin chroma vector with the major and the minor profile on every tonic."""

    def corr(profile):
        rolled = np.stack([np.roll(profile, k) for k in range(12)])
        a = rolled - rolled.mean(axis=1, keepdims=True)
        b = chroma - chroma.mean()
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b)
        return np.where(denom > 0, a @ b / np.where(denom > 0, denom, 1), 0.0)

    return corr(MAJOR_PROFILE), corr(MINOR_PROFILE)


def measure(wave: np.ndarray, sampling_rate: int) -> dict:
    """Every judge's figure for one mono clip: the global tempo (librosa's onset autocorrelation, a nearly flat
    prior), the key and mode (Krumhansl-Kessler on the clip's mean chroma) with how much better the best major key
    fits than the best minor one, the RMS level in dBFS, and detected onsets per second."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    seconds = len(wave) / sampling_rate
    envelope = librosa.onset.onset_strength(y=wave, sr=sampling_rate)
    # a nearly flat prior (std_bpm 4 octaves, not librosa's 1): its default pulls every estimate toward 120 bpm, so
    # that slow clips read as 120-140 and a "slow" judgement would turn on the prior, not the audio
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=envelope, sr=sampling_rate, std_bpm=4.0))[0])
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sampling_rate)
    chroma = librosa.feature.chroma_stft(y=wave, sr=sampling_rate, n_fft=4096, hop_length=2048, tuning=0.0)
    chroma = chroma.mean(axis=1)
    major, minor = key_profiles(chroma)
    best_major, best_minor = int(np.argmax(major)), int(np.argmax(minor))
    is_major = major[best_major] >= minor[best_minor]
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
    return {
        "tempo_bpm": tempo,
        "tonic": NOTES[best_major if is_major else best_minor],
        "mode": "major" if is_major else "minor",
        "major_minus_minor": float(major[best_major] - minor[best_minor]),
        "rms_db": float(20 * np.log10(max(rms, 1e-10))),
        "onset_rate": float(len(onsets) / seconds) if seconds else 0.0,
    }


def tempo_agrees(estimate: float, truth: float, octaves: bool = True) -> bool:
    """MIREX tempo accuracy: the estimate within 4 % of the truth (with `octaves`, of 2x, 1/2x, 3x or 1/3x it)."""
    return any(abs(estimate - k * truth) <= TEMPO_TOLERANCE * k * truth for k in (OCTAVES if octaves else (1.0,)))


def parse_key(key: str) -> tuple[int, str]:
    """("C# major" ->) (1, "major"); a flat spelling is its enharmonic sharp."""
    tonic, mode = key.split()
    return NOTES.index(FLATS.get(tonic, tonic)), mode


def key_score(estimate: str, truth: str) -> float:
    """MIREX's key score: 1 the same key, 0.5 a fifth above or below in the same mode, 0.3 the relative key,
    0.2 the parallel key, else 0."""
    (e, em), (t, tm) = parse_key(estimate), parse_key(truth)
    if (e, em) == (t, tm):
        return 1.0
    if em == tm and (e - t) % 12 in (5, 7):
        return 0.5
    if em != tm and (e - t) % 12 == (9 if tm == "major" else 3):
        return 0.3
    if em != tm and e == t:
        return 0.2
    return 0.0


@dataclass(frozen=True)
class JudgeRule:
    """One row of the reviewed table: `judge` speaks for `concept`; positives should score `higher` or `lower`
    than negatives on the judge's figure, or lie in the band `lo`-`hi` (then the figure is the negative distance
    in octaves from the band)."""

    judge: str
    concept: str
    expect: str
    reason: str
    band: tuple[float, float] | None = None  # (lo, hi) of an expectation "band LO-HI", parsed once

    def score(self, figures: dict) -> float:
        value = figures[JUDGE_SIGNAL[self.judge]]
        if self.expect == "higher":
            return value
        if self.expect == "lower":
            return -value
        if value <= 0:
            return -np.inf
        lo, hi = self.band
        return -max(np.log2(lo / value), np.log2(value / hi), 0.0)


@lru_cache(maxsize=1)
def judge_rules(path: str | None = None) -> tuple[JudgeRule, ...]:
    """The reviewed table, checked: a known judge, an expectation of `higher`, `lower` or `band LO-HI`."""
    path = Path(path or RULES_FILE)
    rules = []
    for number, (judge, concept, expect, reason) in read_tsv(path, 4):
        if judge not in JUDGE_SIGNAL:
            raise DataError(path, f"judge {judge!r} is none of {sorted(JUDGE_SIGNAL)}", row=number)
        band = _band(expect)
        if expect not in ("higher", "lower") and band is None:
            raise DataError(path, f"expect {expect!r} is not higher, lower or 'band LO-HI'", row=number)
        rules.append(JudgeRule(judge, concept, expect, reason, band))
    return tuple(rules)


def _band(expect: str) -> tuple[float, float] | None:
    """(lo, hi) of "band LO-HI" with 0 < LO < HI, else None."""
    if not expect.startswith("band "):
        return None
    try:
        lo, hi = (float(x) for x in expect.removeprefix("band ").split("-"))
    except ValueError:
        return None
    return (lo, hi) if 0 < lo < hi else None
