"""Model inputs kept in a file: the seconds of each clip a model reads, through its preprocessing, computed in one
pass over a split and stored (`FeatureStore`), from which training and TCAV draw batches. The genre classifier
and TCAV so use the same memory at 200 clips and at 21,000.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from builder.reader import AudioSplit
from core.constants import SAMPLING_RATE


class MelPower(nn.Module):
    """Waveform (batch, samples) -> mel power (batch, frames, n_mels): a centred, reflect-padded STFT with a Hann
    window and a Slaney mel filter bank (no torchaudio). The one mel front end: musicnn's and the genre CNN's."""

    def __init__(self, sampling_rate: int, n_fft: int, hop_length: int, n_mels: int):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_fft, self.hop_length = n_fft, hop_length
        fb = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=sampling_rate / 2,
            sampling_rate=sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("filters", torch.tensor(fb, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = (
            torch.stft(
                wave.float(),
                self.n_fft,
                self.hop_length,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            ).abs()
            ** 2
        )
        return torch.einsum("bft,fm->btm", spec, self.filters)


def pad_stack(waves: Sequence[np.ndarray], samples: int) -> torch.Tensor:
    out = np.zeros((len(waves), samples), dtype=np.float32)
    for i, w in enumerate(waves):
        out[i, : min(len(w), samples)] = w[:samples]
    return torch.from_numpy(out)


class FeatureStore:
    """Model inputs of equal shape in a file, read back by index: batches are drawn from it without holding the
    dataset's inputs in memory (plain reads, not a memory map, whose touched pages would count as the process's
    resident memory). The file is removed by `close()`."""

    def __init__(self, path: Path):
        self.path, self.shape, self.n = Path(path), None, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w+b")

    def append(self, batch: torch.Tensor) -> None:
        batch = batch.detach().to(torch.float32).contiguous()
        if self.shape is None:
            self.shape = tuple(batch.shape[1:])
        self._file.write(batch.numpy().tobytes())
        self.n += len(batch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> torch.Tensor:
        self._file.flush()
        size = int(np.prod(self.shape)) * 4
        rows = [
            np.frombuffer(os.pread(self._file.fileno(), size, int(i) * size), dtype=np.float32)
            for i in torch.as_tensor(index).reshape(-1).tolist()
        ]
        return torch.from_numpy(np.stack(rows).reshape(len(rows), *self.shape))

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class StoreBatches:
    """A re-iterable sequence of batches of a FeatureStore's rows (what captum's `Concept` reads)."""

    def __init__(self, store: FeatureStore, rows: Sequence[int], batch_size: int):
        self.store, self.rows, self.batch_size = store, list(rows), batch_size

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in range(0, len(self.rows), self.batch_size):
            yield self.store[torch.tensor(self.rows[b : b + self.batch_size])]


def model_inputs(
    audio: AudioSplit,
    ids: Sequence[str],
    preprocess: Callable,
    samples: int,
    path: Path,
    batch_size: int = 64,
    sampling_rate: int = SAMPLING_RATE,
) -> tuple[FeatureStore, dict[str, int]]:
    """Model inputs of `ids` (their first `samples` samples at `sampling_rate` through `preprocess`) in a
    FeatureStore at `path`, computed in one pass over the split; and each id's row in it."""
    store, row_of, batch = FeatureStore(path), {}, []

    def flush():
        with torch.no_grad():
            store.append(preprocess(pad_stack([w for _, w in batch], samples)))
        for id_, _ in batch:
            row_of[id_] = len(row_of)
        batch.clear()

    for id_, wave in audio.clips(list(dict.fromkeys(ids)), samples / sampling_rate, sampling_rate):
        batch.append((id_, wave))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return store, row_of
