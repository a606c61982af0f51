"""Evaluate the attribute VAE and a sample of attribute lists; writes a JSON report and prints a table.

    python -m evaluation.vae_report --vae runs/demo/vae --tags runs/demo/tags.parquet

Model: reconstruction precision/recall/F1 on held-out rows (validation and test splits, latent mean, 0.5
threshold), KL per latent dimension and active units (Var_x E[z|x] > 0.01, Burda et al. 2016), with a loud
warning on posterior collapse. Sampler: its raw output before rejection (validity, contradiction, uniqueness,
novelty, concepts used) and its rejections by reason, read from `tags_summary.json`. Sample: how the kept lists
spread (tag entropy, concepts used, Jensen-Shannon divergence in bits between their concept marginals and pair
co-occurrences and MusicCaps').
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.divergence import squared_jsd
from core.errors import DataError
from core.io import read_json, write_json
from core.log import get_logger
from training.train_vae import load_split_matrices
from training.vae import BetaVAE, kl_per_dimension, load_checkpoint, multi_hot

logger = get_logger(__name__)
ACTIVE_UNIT_VARIANCE = 0.01


def reconstruction_metrics(
    model: BetaVAE, x: np.ndarray, threshold: float = 0.5, samples: int = 8, seed: int = 0
) -> dict:
    """Micro precision, recall and F1 of reconstructing held-out multi-hot rows: concept probabilities averaged
    over `samples` seeded draws from q(z|x), then thresholded."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        mu, logvar = model.encode(xt)
        probs = torch.stack([torch.sigmoid(model(xt, generator=generator)[0]) for _ in range(samples)]).mean(0)
        pred = (probs >= threshold).numpy()
        kl = kl_per_dimension(mu, logvar).mean(0).numpy()
        activity = mu.var(0).numpy() if len(x) > 1 else np.zeros(mu.shape[1])
    truth = x.astype(bool)
    tp = float((pred & truth).sum())
    precision = tp / max(pred.sum(), 1)
    recall = tp / max(truth.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {
        "rows": len(x),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "kl_per_dimension": [float(v) for v in kl],
        "kl_total": float(kl.sum()),
        "active_units": int((activity > ACTIVE_UNIT_VARIANCE).sum()),
        "latent_dim": int(mu.shape[1]),
    }


def _distribution(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.full_like(counts, 1.0 / counts.size, dtype=float)


def pair_counts(x: np.ndarray) -> np.ndarray:
    co = x.T @ x
    return co[np.triu_indices(co.shape[0], k=1)]


def sample_metrics(sample: np.ndarray, reference: np.ndarray, taxonomy: Taxonomy) -> dict:
    """How the kept lists (multi-hot, taxonomy order) spread over the concepts, against MusicCaps (`reference`).

    Validity, contradiction, uniqueness and novelty are not measured here: the sampler kept only lists that pass
    those rules, so on its output they are 1, 0, 1 and 1 by construction. Its raw rates, before rejection, are in
    `tags_summary.json` ("raw") and in this report's "sampler" section.
    """
    names = np.array(taxonomy.names)
    marginal = sample.sum(0)
    p = _distribution(marginal.astype(float))
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    return {
        "n": len(sample),
        "tag_entropy_bits": entropy,
        "tag_entropy_max_bits": math.log2(len(names)),
        "concepts_used": int((marginal > 0).sum()),
        "mean_tags_per_list": float(sample.sum(1).mean()),
        "reference_mean_tags_per_list": float(reference.sum(1).mean()),
        "jsd_marginals_bits": squared_jsd(marginal, reference.sum(0)),
        "jsd_pairs_bits": squared_jsd(pair_counts(sample), pair_counts(reference)),
    }


def collapse_warning(report: dict, min_active_units: int) -> str | None:
    active = report["active_units"]
    if active < min_active_units:
        return (
            f"POSTERIOR COLLAPSE: only {active} of {report['latent_dim']} latent units are active "
            f"(Var E[z|x] > {ACTIVE_UNIT_VARIANCE}); total KL {report['kl_total']:.3f} nats. The decoder ignores "
            "the latent: lower beta, train longer, or shrink the latent."
        )
    return None


def format_table(report: dict) -> str:
    m, s = report["model"], report.get("sample", {})
    rows = [
        ("held-out rows", m["rows"]),
        ("reconstruction precision", m["precision"]),
        ("reconstruction recall", m["recall"]),
        ("reconstruction F1", m["f1"]),
        ("active units", f"{m['active_units']} / {m['latent_dim']}"),
        ("KL total (nats)", m["kl_total"]),
    ]
    rows += [(k.replace("_", " "), v) for k, v in s.items()]
    sampler = report.get("sampler", {})
    rows += [(f"raw {k.replace('_', ' ')}", v) for k, v in sampler.get("raw", {}).items()]
    rows += [(f"rejected: {k}", v) for k, v in sampler.get("rejected", {}).items()]
    return "\n".join(f"{k:<34} {v:.4f}" if isinstance(v, float) else f"{k:<34} {v}" for k, v in rows)


@dataclass
class VAEReportArguments:
    """Evaluate the VAE and a sample of attribute lists."""

    vae: str | None = arg(None, "VAE checkpoint folder (default: run dir/vae)")
    tagged: str | None = arg(None, "musiccaps_tagged.parquet (default: run dir)")
    tags: str | None = arg(None, "tags.parquet to evaluate (default: run dir)")
    output: str | None = arg(None, "report JSON (default: run dir/vae_report.json)")
    min_active_units: int = arg(2, "fewer active latent units than this is collapse")


ARGUMENTS = VAEReportArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "vae_report", argv)
    out = run_dir()
    vae_dir = Path(args.vae or out / "vae")
    model, taxonomy, _ = load_checkpoint(vae_dir)
    matrices = load_split_matrices(args.tagged or out / "musiccaps_tagged.parquet", taxonomy)
    held_out = np.concatenate([matrices["validation"], matrices["test"]])
    report = {"model": reconstruction_metrics(model, held_out)}
    tags_path = Path(args.tags or out / "tags.parquet")
    if tags_path.is_file():
        sample = multi_hot(pq.read_table(tags_path).to_pylist(), taxonomy)
        reference = np.concatenate([matrices[s] for s in ("train", "validation", "test")])
        report["sample"] = sample_metrics(sample, reference, taxonomy)
        sampled = read_json(tags_path.with_name("tags_summary.json"))
        report["sampler"] = {
            "raw": sampled.get("raw", {}),
            "rejected": sampled.get("rejected", {}),
            "lists": sampled.get("lists"),
            "draws": sampled.get("draws"),
        }
    elif args.tags:
        raise DataError(tags_path, "not found")
    warning = collapse_warning(report["model"], args.min_active_units)
    report["warnings"] = [warning] if warning else []
    if warning:
        logger.warning("!" * 20 + " %s " + "!" * 20, warning)
    write_json(Path(args.output or out / "vae_report.json"), report)
    logger.info("VAE report\n%s", format_table(report))
    return report


if __name__ == "__main__":
    cli(main)
