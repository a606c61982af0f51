"""Checks on every synthesised clip, and the one place audio is post-processed and encoded."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class AudioCheck:
    silence_dbfs: float = -60.0  # RMS below this is silence
    clip_level: float = 0.999  # |sample| at or above this is clipped
    max_clipped_fraction: float = 0.001
    length_tolerance_s: float = 0.05

    def reasons(self, wave: np.ndarray, expected_samples: int, sampling_rate: int) -> list[str]:
        """Why a mono float waveform is bad; empty if it is fine."""
        if not np.all(np.isfinite(wave)):
            return ["nan or inf"]
        out = []
        if abs(len(wave) - expected_samples) > self.length_tolerance_s * sampling_rate:
            out.append("wrong length")
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
        if rms <= 0 or 20 * np.log10(rms) < self.silence_dbfs:
            out.append("silence")
        if len(wave) and np.mean(np.abs(wave) >= self.clip_level) > self.max_clipped_fraction:
            out.append("clipping")
        return out


def postprocess(wave, expected_samples: int) -> np.ndarray:
    """Model output -> mono float32 of exactly `expected_samples` (trimmed; never rescaled, so every process and
    every batch size gives the same audio)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim > 1:
        wave = wave.mean(axis=0) if wave.shape[0] < wave.shape[-1] else wave.mean(axis=-1)
    return wave[:expected_samples]


def encode_flac(wave: np.ndarray, sampling_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sampling_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return wave, sr
