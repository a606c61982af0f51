"""The β-VAE over multi-hot concept vectors (taxonomy order), and its self-describing checkpoint.

A checkpoint folder holds `model.safetensors`, `config.json` (constructor arguments, training arguments and
metrics) and `taxonomy.json` (the taxonomy it was trained on), so it can be rebuilt from the folder alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from builder.taxonomy import Taxonomy
from core.constants import CATEGORIES
from core.errors import DataError
from core.io import write_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TAXONOMY_NAME = "taxonomy.json"


@dataclass
class VAEConfig:
    input_dim: int = 200
    hidden_dim: int = 1024
    latent_dim: int = 256
    input_dropout: float = 0.1
    beta: float = 0.25


class BetaVAE(nn.Module):
    """input -> hidden -> (mu, logvar) of the latent; latent -> hidden -> per-concept logits."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.input_dropout)
        self.encoder = nn.Sequential(nn.Linear(config.input_dim, config.hidden_dim), nn.ReLU())
        self.to_stats = nn.Linear(config.hidden_dim, 2 * config.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, config.input_dim)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(self.dropout(x))).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-concept logits."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Logits from a latent drawn from q(z|x) (reparameterised), and the posterior's (mu, logvar).

        The latent is sampled in eval mode too: the decoder is trained on samples, and with most units
        near the prior, decoding the posterior mean alone is far from what it saw.
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(mu + eps * torch.exp(0.5 * logvar)), mu, logvar


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float):
    """BCE (summed over concepts) + β·KL(q(z|x) || N(0, I)) (summed over latent dimensions), batch means.

    Returns:
        (total, bce, kl) as scalar tensors.
    """
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean()
    kl = kl_per_dimension(mu, logvar).sum(-1).mean()
    return bce + beta * kl, bce, kl


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def multi_hot(rows, taxonomy: Taxonomy) -> np.ndarray:
    """Rows (mappings with one list column per category) -> float32 matrix in taxonomy order."""
    out = np.zeros((len(rows), len(taxonomy.concepts)), dtype=np.float32)
    for i, row in enumerate(rows):
        for category in CATEGORIES:
            for name in row[category]:
                out[i, taxonomy.index[name]] = 1.0
    return out


def save_checkpoint(path, model: BetaVAE, taxonomy: Taxonomy, extra: dict | None = None) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path / f".{WEIGHTS_NAME}.tmp"
    save_file(state, str(tmp))
    tmp.replace(path / WEIGHTS_NAME)
    taxonomy.save(path / TAXONOMY_NAME)
    write_json(path / CONFIG_NAME, {"model": asdict(model.config), **(extra or {})})


def load_checkpoint(path, taxonomy: Taxonomy | None = None, device: str = "cpu") -> tuple[BetaVAE, Taxonomy, dict]:
    """Rebuild a VAE from its folder alone.

    Args:
        taxonomy: if given, it must be the taxonomy the VAE was trained on (same concepts, same order).
    Raises:
        DataError: a missing or corrupt file, or a taxonomy that differs from the checkpoint's.
    """
    path = Path(path)
    for name in (WEIGHTS_NAME, CONFIG_NAME, TAXONOMY_NAME):
        if not (path / name).is_file():
            raise DataError(
                path / name, "missing from the VAE checkpoint (train one with `python -m training.train_vae`)"
            )
    try:
        meta = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        config = VAEConfig(**meta["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(path / CONFIG_NAME, f"not a VAE config ({e})") from None
    trained_on = Taxonomy.load(path / TAXONOMY_NAME)
    if taxonomy is not None and taxonomy.fingerprint() != trained_on.fingerprint():
        raise DataError(
            path / TAXONOMY_NAME,
            f"the VAE was trained on another taxonomy (version {trained_on.version}, "
            f"{len(trained_on.concepts)} concepts) than the one given (version {taxonomy.version}, "
            f"{len(taxonomy.concepts)} concepts); retrain it or pass its own taxonomy",
        )
    model = BetaVAE(config)
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME), device=device))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise DataError(path / WEIGHTS_NAME, f"corrupt or incompatible weights ({e})") from None
    model.eval()
    return model, trained_on, meta
