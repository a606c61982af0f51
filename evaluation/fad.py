"""The `fad` stage: FAD (Kilgour et al., 2019) of each split of an assembled dataset against a reference set,
on the CLAP embeddings that the `score` stage stored per clip.

    python -m evaluation.fad_reference --audio_dir path/to/reference_audio --output runs/paper/fad_reference.npy
    python -m evaluation.fad --reference runs/paper/fad_reference.npy       # writes runs/paper/fad_report.json
    python -m card.render --fad_report runs/paper/fad_report.json           # FAD per split in the card
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import SPLITS
from core.errors import DataError
from core.io import sha256_file, write_json
from core.log import get_logger
from core.shards import merge_shards, shard_folder_ids

logger = get_logger(__name__)


def frechet_audio_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (Kilgour et al., 2019)."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        raise ValueError("FAD needs at least two embeddings in each set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as common FAD implementations do
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


@dataclass
class FADArguments:
    """FAD per split of an assembled dataset against reference CLAP embeddings."""

    reference: str = arg("", ".npy of reference CLAP embeddings (evaluation.fad_reference)")
    dataset: str | None = arg(None, "assembled dataset folder (default: run dir/dataset)")
    clap_dir: str | None = arg(None, "score shard folder (default: run dir/clap_scores)")
    output: str | None = arg(None, "report JSON (default: run dir/fad_report.json)")


def fad_per_split(dataset: Path, clap_dir: Path, reference_path: Path) -> dict[str, float]:
    if not reference_path.is_file():
        raise DataError(
            reference_path, "FAD reference embeddings not found (make them with `python -m evaluation.fad_reference`)"
        )
    reference = np.load(reference_path).astype(np.float64)
    ids, shard_size = shard_folder_ids(clap_dir)
    embeddings = {
        r["id"]: r["clap_embedding"]
        for r in merge_shards(ids, shard_size, clap_dir).select(["id", "clap_embedding"]).to_pylist()
    }
    out = {}
    for split in SPLITS:
        files = sorted((dataset / "data").glob(f"{split}-*.parquet"))
        split_ids = [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
        mine = np.array([embeddings[i] for i in split_ids], dtype=np.float64)
        if len(mine) < 2 or mine.shape[1] != reference.shape[1]:
            raise DataError(
                reference_path,
                f"cannot compare split {split!r}: {mine.shape} generated vs {reference.shape} "
                "reference embeddings (the same CLAP model must make both)",
            )
        out[split] = frechet_audio_distance(mine, reference)
    return out


ARGUMENTS = FADArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(ARGUMENTS, "fad", argv)
    out = run_dir()
    report = {
        "fad_per_split": fad_per_split(
            Path(args.dataset or out / "dataset"), Path(args.clap_dir or out / "clap_scores"), Path(args.reference)
        ),
        "reference_sha256": sha256_file(args.reference),
    }
    write_json(Path(args.output or out / "fad_report.json"), report)
    logger.info("FAD per split against %s: %s", Path(args.reference).name, report["fad_per_split"])
    return report


if __name__ == "__main__":
    cli(main)
