"""The handcrafted baseline beside every probe (SynTheory's: Wei et al., 2024): what a log-mel spectrogram, its
MFCCs and a chroma vector of the clip already know, so that "the model knows mode at layer 5" is read against
"a chroma vector knows it too".

`handcrafted_model(sampling_rate, seconds)` is a model of the probing interface (`probing.models.ProbedModel`)
without weights: its "layers" are the feature families, frame by frame (64 log-mel bands, 20 MFCCs, 12 chroma bins
from librosa's filter banks) and a global tempogram (the onset envelope's autocorrelation up to 2 s of lag), pooled
over time like any model's layers. The probe CLI fits the same
probe on each family and reports the best beside the model's accuracy (`probing.probe`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FAMILIES = ("mel", "mfcc", "chroma", "tempogram")


class Handcrafted(nn.Module):
    """Waveform (batch, samples) -> chroma frames; the log-mel and MFCC frames pass through modules of their own
    (`mel`, `mfcc`, `chroma`: identities), so that the probe's hooks read each family as a layer."""

    def __init__(
        self, sampling_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 64, n_mfcc: int = 20,
        max_lag_s: float = 2.0,
    ):  # fmt: skip
        import librosa  # ISC
        from scipy.fft import dct

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
        self.max_lag = int(round(max_lag_s * sampling_rate / hop))
        self.mel, self.mfcc, self.chroma, self.tempogram = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True).abs() ** 2
        log_mel = self.mel(torch.log(self.mel_basis @ spec + 1e-10))  # (batch, bands, frames)
        self.mfcc(self.dct @ log_mel)
        # the onset envelope's autocorrelation up to 2 s of lag: where the beat repeats (a global tempogram)
        flux = torch.relu(log_mel[..., 1:] - log_mel[..., :-1]).mean(dim=1)
        flux = flux - flux.mean(dim=-1, keepdim=True)
        n = flux.shape[-1]
        spectrum = torch.fft.rfft(flux, n=2 * n)
        autocorrelation = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * n)[..., :n]
        autocorrelation = autocorrelation / (autocorrelation[..., :1].abs() + 1e-10)
        lags = torch.nn.functional.pad(autocorrelation, (0, max(0, self.max_lag - n)))[..., : self.max_lag]
        self.tempogram(lags.unsqueeze(-1))  # (batch, lags, 1): pooled to the lags
        chroma = self.chroma_basis @ spec
        return self.chroma(chroma / (chroma.amax(dim=1, keepdim=True) + 1e-10))


def handcrafted_model(sampling_rate: int, seconds: float):
    """The baseline as a model of the probing interface, reading what the probed model reads."""
    from probing.models import ProbedModel

    return ProbedModel(
        f"handcrafted (log-mel 64, MFCC 20, chroma 12, tempogram; {sampling_rate} Hz, {seconds:g} s)",
        Handcrafted(sampling_rate).eval(),
        lambda wave: wave,
        list(FAMILIES),
        sampling_rate,
        seconds,
    )
