"""The handcrafted baseline beside every probe (SynTheory's: Wei et al., 2024): what a log-mel spectrogram, its
MFCCs and a chroma vector of the clip already know, so that "the model knows mode at layer 5" is read against
"a chroma vector knows it too".

`handcrafted_model(sampling_rate, seconds)` is a model of the probing interface (`probing.models.ProbedModel`)
without weights: its "layers" are the feature families, frame by frame (64 log-mel bands, 20 MFCCs, 12 chroma bins
from librosa's filter banks), the clip's key profile (its mean chroma's correlation with the 12 rotations of the
Krumhansl-Kessler major and minor profiles, each mode's sorted: a key-invariant reading of the chroma, since a
linear probe cannot rotate a raw chroma vector to find the mode in every key) and its tempogram (the onset
envelope at 10 ms, its autocorrelation and its Fourier magnitude read on a log-bpm axis of 40-320 bpm, and its
onsets per second), pooled over time like any model's layers. The probe CLI fits the same probe on each family and
reports the best beside the model's accuracy (`probing.probe`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FAMILIES = ("mel", "mfcc", "chroma", "key", "tempogram")
TEMPO_BPMS = np.geomspace(40, 320, 96)  # the tempogram's bpm axis
ONSET_HOP_S = 0.01


class Handcrafted(nn.Module):
    """Waveform (batch, samples) -> chroma frames; the log-mel and MFCC frames pass through modules of their own
    (`mel`, `mfcc`, `chroma`: identities), so that the probe's hooks read each family as a layer."""

    def __init__(self, sampling_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 64, n_mfcc: int = 20):
        import librosa  # ISC
        from scipy.fft import dct

        from probing.judges import MAJOR_PROFILE, MINOR_PROFILE

        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        mel = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels)
        chroma = librosa.filters.chroma(sr=sampling_rate, n_fft=n_fft)
        self.register_buffer("mel_basis", torch.from_numpy(mel.astype(np.float32)))
        self.register_buffer("chroma_basis", torch.from_numpy(chroma.astype(np.float32)))
        self.register_buffer(
            "dct", torch.from_numpy(dct(np.eye(n_mels), norm="ortho", axis=0)[:n_mfcc].astype(np.float32))
        )
        self.register_buffer("window", torch.hann_window(n_fft))
        rotations = np.stack([np.roll(p, k) for p in (MAJOR_PROFILE, MINOR_PROFILE) for k in range(12)])
        rotations = (rotations - rotations.mean(1, keepdims=True)) / rotations.std(1, keepdims=True)
        self.register_buffer("profiles", torch.from_numpy(rotations.astype(np.float32)))  # (24, 12)
        # the onset envelope: 40 log-mel bands at a 10 ms hop (finer than the frames above: a beat at 200 bpm is 30
        # of these hops, 9 of those)
        self.onset_hop, self.onset_fft = int(round(ONSET_HOP_S * sampling_rate)), 1024
        onset_mel = librosa.filters.mel(sr=sampling_rate, n_fft=self.onset_fft, n_mels=40)
        self.register_buffer("onset_basis", torch.from_numpy(onset_mel.astype(np.float32)))
        self.register_buffer("onset_window", torch.hann_window(self.onset_fft))
        self.register_buffer("tempo_lags", torch.from_numpy((60 / TEMPO_BPMS / ONSET_HOP_S).astype(np.float32)))
        self.mel, self.mfcc, self.chroma = nn.Identity(), nn.Identity(), nn.Identity()
        self.key, self.tempogram = nn.Identity(), nn.Identity()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True).abs() ** 2
        log_mel = self.mel(torch.log(self.mel_basis @ spec + 1e-10))  # (batch, bands, frames)
        self.mfcc(self.dct @ log_mel)
        chroma = self.chroma_basis @ spec
        chroma = chroma / (chroma.amax(dim=1, keepdim=True) + 1e-10)
        mean = chroma.mean(dim=-1)
        mean = (mean - mean.mean(dim=1, keepdim=True)) / (mean.std(dim=1, keepdim=True) + 1e-10)
        fits = (mean @ self.profiles.T) / 12  # (batch, 24): Pearson's r with each key
        key = torch.cat([fits[:, :12].sort(dim=1, descending=True).values,
                         fits[:, 12:].sort(dim=1, descending=True).values], dim=1)  # fmt: skip
        self.key(key.unsqueeze(-1))
        self.tempogram(self._tempogram(wave).unsqueeze(-1))
        return self.chroma(chroma)

    def _tempogram(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, 194): the onset envelope's autocorrelation and Fourier magnitude at each bpm of the axis, and its
        onset rate (local maxima above the mean by half a deviation, per second) and that rate's log."""
        spec = torch.stft(wave, self.onset_fft, self.onset_hop, window=self.onset_window, return_complex=True)
        log_mel = torch.log(self.onset_basis @ spec.abs() ** 2 + 1e-10)
        flux = torch.relu(log_mel[..., 1:] - log_mel[..., :-1]).mean(dim=1)  # (batch, frames)
        centred = flux - flux.mean(dim=-1, keepdim=True)
        n = flux.shape[-1]
        spectrum = torch.fft.rfft(centred, n=2 * n)
        acf = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * n)[..., :n]
        acf = acf / (acf[..., :1].abs() + 1e-10)
        lags = self.tempo_lags.clamp(max=n - 2)
        low = lags.floor().long()
        frac = lags - low
        at_lags = acf[..., low] * (1 - frac) + acf[..., low + 1] * frac  # linear interpolation
        padded = 8 * n  # the Fourier tempogram at a fine frequency resolution
        window = torch.hann_window(n, device=wave.device, dtype=wave.dtype)
        magnitude = torch.fft.rfft(centred * window, n=padded).abs()
        bins = torch.from_numpy(TEMPO_BPMS / 60 * ONSET_HOP_S * padded).to(wave.device).round().long()
        fourier = magnitude[..., bins.clamp(max=magnitude.shape[-1] - 1)]
        fourier = fourier / (fourier.amax(dim=-1, keepdim=True) + 1e-10)
        threshold = flux.mean(dim=-1, keepdim=True) + 0.5 * flux.std(dim=-1, keepdim=True)
        peaks = (flux[..., 1:-1] > flux[..., :-2]) & (flux[..., 1:-1] >= flux[..., 2:]) & (flux[..., 1:-1] > threshold)
        rate = peaks.sum(dim=-1, keepdim=True).to(wave.dtype) / (n * ONSET_HOP_S)
        return torch.cat([at_lags, fourier, rate, torch.log1p(rate)], dim=-1)


def handcrafted_model(sampling_rate: int, seconds: float):
    """The baseline as a model of the probing interface, reading what the probed model reads."""
    from probing.models import ProbedModel

    return ProbedModel(
        f"handcrafted (log-mel 64, MFCC 20, chroma 12, key profile 24, tempogram 194; {sampling_rate} Hz, "
        f"{seconds:g} s)",
        Handcrafted(sampling_rate).eval(),
        lambda wave: wave,
        list(FAMILIES),
        sampling_rate,
        seconds,
    )
