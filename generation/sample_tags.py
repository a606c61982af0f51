"""Sample new attribute lists from the β-VAE: plausible, varied, never self-contradictory.

    python -m generation.sample_tags --vae runs/demo/vae --num_lists 20000 --seed 0
    python -m generation.sample_tags --config configs/tiny.yaml

Latents come from the prior scaled by `temperature` (higher -> more diverse); the decoder gives per-concept
probabilities; concepts are selected per category (above `threshold`, at least `min_per_category` and at most
`max_per_category` of each), then a list is kept only if it reaches `min_categories` categories, breaks no
rule of the VAE's `constraints.json`, is not already drawn and (by default) is not a copy of a MusicCaps list.
With `--synthesis_backend symbolic` the concepts the renderer cannot play (a sung voice, a culture-specific
instrument: its tables' reasons) are excluded at decoding, so the rest of each list still comes from the VAE, and
a list needs an instrument; the summary records the excluded concepts and the JSD between the decoded marginals
with and without them. Every reject is counted by reason. The same seed gives the same file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from builder.taxonomy import Taxonomy
from core.config import cli, get_logger, parse_args, run_dir
from core.constants import CATEGORIES
from core.errors import DataError
from core.io import write_json, write_parquet
from training.constraints import CONSTRAINTS_NAME, Constraints
from training.vae import BetaVAE, load_checkpoint

logger = get_logger(__name__)

TAGS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("tags", pa.list_(pa.string())),
    *[(c, pa.list_(pa.string())) for c in CATEGORIES],
    ("seed", pa.int64()),
    ("draw", pa.int64()),
])


@dataclass
class SamplingArguments:
    """Sample attribute lists from a trained VAE into tags.parquet."""

    vae: str | None = field(default=None, metadata={"help": "VAE checkpoint folder (default: run dir/vae)"})
    taxonomy: str | None = field(default=None, metadata={"help": "taxonomy.json to check the VAE against"})
    reference: str | None = field(default=None, metadata={"help": "musiccaps_tagged.parquet, for rejecting copies"})
    output: str | None = field(default=None, metadata={"help": "tags.parquet (default: run dir)"})
    num_lists: int = field(default=1000, metadata={"help": "how many unique, valid lists to write"})
    temperature: float = field(default=1.0, metadata={"help": "scale of the prior's spread; higher is more diverse"})
    decode: str = field(default="bernoulli", metadata={"help": "'bernoulli' (draw each concept with its probability) or 'threshold'"})
    threshold: float = field(default=0.5, metadata={"help": "with decode=threshold: probability a concept needs"})
    min_per_category: int = field(default=0, metadata={"help": "always take the top-k concepts of each category"})
    max_per_category: int = field(default=3, metadata={"help": "keep at most the k most probable per category"})
    min_categories: int = field(default=3, metadata={"help": "categories a list must reach"})
    reject_seen: bool = field(default=True, metadata={"help": "reject exact copies of MusicCaps lists"})
    batch_size: int = field(default=4096, metadata={"help": "latents decoded at once"})
    max_draws_per_list: int = field(default=50, metadata={"help": "give up after num_lists x this many draws"})
    seed: int = field(default=0, metadata={"help": "sampling seed; batch b uses the stream (seed, b)"})
    id_prefix: str = field(default="cc", metadata={"help": "ids are <prefix>-s<seed>-<index>"})
    synthesis_backend: str = field(default="any", metadata={
        "help": "the backend the lists are for: 'symbolic' excludes, at decoding, every concept the renderer "
                "cannot play (its tables' reasons) and needs an instrument per list; 'any' (MusicGen) carries all"})

    def __post_init__(self):
        if self.synthesis_backend not in SYNTHESIS_BACKENDS:
            raise ValueError(f"synthesis_backend must be one of {SYNTHESIS_BACKENDS}, not {self.synthesis_backend!r}")
        if self.decode not in ("bernoulli", "threshold"):
            raise ValueError(f"decode must be 'bernoulli' or 'threshold', not {self.decode!r}")
        if self.temperature <= 0 or self.num_lists < 1:
            raise ValueError("temperature and num_lists must be positive")


class SamplingExhaustedError(RuntimeError):
    pass


SYNTHESIS_BACKENDS = ("any", "symbolic")


@dataclass(frozen=True)
class BackendCoverage:
    """What a synthesis backend can carry: concepts it cannot (with its reasons) and categories a list needs."""

    name: str
    excluded: dict[str, str]  # concept -> reason
    required_categories: tuple[str, ...] = ()


def backend_coverage(name: str, taxonomy: Taxonomy) -> BackendCoverage:
    if name == "symbolic":
        from generation.symbolic import RenderTables

        tables = RenderTables(taxonomy)
        excluded = {c: row.reason for c, row in tables.rows.items() if row.reason}
        return BackendCoverage(name, excluded, ("instrument",))  # it plays only the listed instruments
    return BackendCoverage(name, {})


def select_concepts(probs: np.ndarray, category_ids: np.ndarray, args: SamplingArguments,
                    rng: np.random.Generator, uniform: np.ndarray | None = None) -> np.ndarray:
    """Boolean (batch, concepts) selection from decoded probabilities, per-category min and max applied.
    `uniform`: the Bernoulli draws' uniforms, to select twice from the same randomness (default: drawn here)."""
    if args.decode == "bernoulli":
        chosen = (rng.random(probs.shape) if uniform is None else uniform) < probs
    else:
        chosen = probs >= args.threshold
    for c in range(len(CATEGORIES)):
        cols = np.nonzero(category_ids == c)[0]
        p = probs[:, cols]
        rank = np.argsort(np.argsort(-p, axis=1), axis=1)  # 0 = most probable concept of the category
        sub = chosen[:, cols] & (rank < args.max_per_category)
        sub |= rank < args.min_per_category
        chosen[:, cols] = sub
    return chosen


def sample_tag_lists(model: BetaVAE, taxonomy: Taxonomy, constraints: Constraints, args: SamplingArguments,
                     seen_lists: set[tuple[str, ...]] = frozenset()) -> tuple[pa.Table, dict]:
    """Draw until `args.num_lists` unique valid lists exist.

    Returns:
        The table (ids in draw order) and a summary with draws and rejects by reason.
    Raises:
        SamplingExhaustedError: the model cannot produce that many unique valid lists within the draw budget.
    """
    names = np.array(taxonomy.names)
    category_ids = np.array([CATEGORIES.index(taxonomy.category_of[n]) for n in names])
    coverage = backend_coverage(args.synthesis_backend, taxonomy)
    excluded = np.array([n in coverage.excluded for n in names])
    required = [CATEGORIES.index(c) for c in coverage.required_categories]
    marginal_before, marginal_after = np.zeros(len(names)), np.zeros(len(names))
    forbidden = constraints.forbidden_matrix(taxonomy)
    device = next(model.parameters()).device
    latent_dim = model.config.latent_dim
    max_draws = args.num_lists * args.max_draws_per_list
    rejects: Counter[str] = Counter()
    kept: dict[tuple[str, ...], int] = {}
    draws = batch = 0
    raw = Counter()  # statistics of every decoded list, before any rejection
    raw_lists: set[tuple[str, ...]] = set()
    raw_used = np.zeros(len(names), dtype=bool)
    while len(kept) < args.num_lists:
        if draws >= max_draws:
            raise SamplingExhaustedError(
                f"only {len(kept)} unique valid lists after {draws} draws (asked for {args.num_lists}); rejects: "
                f"{dict(rejects)}. Ask for fewer lists, raise --temperature, or relax --min_categories.")
        rng = np.random.default_rng([args.seed, batch])
        n = min(args.batch_size, max_draws - draws)
        z = rng.standard_normal((n, latent_dim)).astype(np.float32) * args.temperature
        with torch.no_grad():
            probs = torch.sigmoid(model.decode(torch.from_numpy(z).to(device))).cpu().numpy()
        if excluded.any():  # the backend's uncarried concepts never drawn: the rest of the list still from the VAE
            uniform = rng.random(probs.shape) if args.decode == "bernoulli" else None
            marginal_before += select_concepts(probs, category_ids, args, rng, uniform).sum(0)
            chosen = select_concepts(np.where(excluded, 0.0, probs), category_ids, args, rng, uniform)
        else:
            chosen = select_concepts(probs, category_ids, args, rng)
        marginal_after += chosen.sum(0)
        lacks_required = ~np.stack([chosen[:, category_ids == c].any(1) for c in required], 1).all(1) if required \
            else np.zeros(len(chosen), dtype=bool)
        n_categories = np.stack([chosen[:, category_ids == c].any(1) for c in range(len(CATEGORIES))], 1).sum(1)
        contradicts = ((chosen.astype(np.float32) @ forbidden.astype(np.float32)) * chosen).any(1)
        raw["draws"] += n
        raw["valid"] += int((n_categories >= args.min_categories).sum())
        raw["contradictory"] += int(contradicts.sum())
        raw_used |= chosen.any(0)
        drawn = [tuple(names[row]) for row in chosen]
        raw_lists.update(drawn)
        raw["novel"] += sum(tags not in seen_lists for tags in drawn)
        for i, tags in enumerate(drawn):
            if len(kept) >= args.num_lists:
                break
            if n_categories[i] < args.min_categories:
                rejects[f"fewer than {args.min_categories} categories"] += 1
            elif lacks_required[i]:
                rejects[f"no {' or '.join(coverage.required_categories)} ({coverage.name} backend)"] += 1
            elif contradicts[i]:
                rejects["contradiction"] += 1
            elif tags in kept:
                rejects["duplicate"] += 1
            elif args.reject_seen and tags in seen_lists:
                rejects["copy of a MusicCaps list"] += 1
            else:
                kept[tags] = draws + i
        draws += n
        batch += 1
    rows = []
    for k, (tags, draw) in enumerate(kept.items()):
        per_cat = {c: [t for t in tags if taxonomy.category_of[t] == c] for c in CATEGORIES}
        rows.append({"id": f"{args.id_prefix}-s{args.seed}-{k:06d}", "tags": list(tags), **per_cat,
                     "seed": args.seed, "draw": draw})
    considered = sum(rejects.values()) + len(kept)
    summary = {
        "lists": len(kept), "draws": draws, "considered": considered, "rejected": dict(sorted(rejects.items())),
        # the decoder's own output, before the rules above: what the kept lists' rates (1, 0, 1, 1 by
        # construction) cannot show
        "raw": {"draws": raw["draws"], "valid_rate": raw["valid"] / raw["draws"],
                "contradiction_rate": raw["contradictory"] / raw["draws"], "unique_rate": len(raw_lists) / raw["draws"],
                "novel_rate": raw["novel"] / raw["draws"], "concepts_used": int(raw_used.sum())},
        "concepts_used": len({t for tags in kept for t in tags}),
        "backend": {"name": coverage.name, "excluded": coverage.excluded,
                    "required_categories": list(coverage.required_categories),
                    # the decoded marginals with and without the excluded concepts, from the same draws
                    "marginal_jsd_before_after_exclusion": _jsd(marginal_before, marginal_after) if excluded.any() else 0.0},
        "arguments": asdict(args),
    }
    return pa.Table.from_pylist(rows, schema=TAGS_SCHEMA), summary


def _jsd(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2) if p.sum() and q.sum() else float("nan")


def reference_lists(path, taxonomy: Taxonomy) -> set[tuple[str, ...]]:
    """MusicCaps concept lists (taxonomy order) from musiccaps_tagged.parquet."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found (run `python -m builder.distill` first)")
    out = set()
    for row in pq.read_table(path, columns=list(CATEGORIES)).to_pylist():
        tags = [t for c in CATEGORIES for t in row[c]]
        out.add(tuple(sorted(tags, key=taxonomy.index.__getitem__)))
    return out


ARGUMENTS = SamplingArguments  # what this stage's preset section may hold


def main(argv: Sequence[str] | None = None) -> tuple[pa.Table, dict]:
    args = parse_args(ARGUMENTS, "sample", argv)
    out = run_dir()
    vae_dir = Path(args.vae or out / "vae")
    given = Taxonomy.load(args.taxonomy) if args.taxonomy else None
    model, taxonomy, _ = load_checkpoint(vae_dir, given)
    constraints = Constraints.load(vae_dir / CONSTRAINTS_NAME)
    reference = Path(args.reference or out / "musiccaps_tagged.parquet")
    seen = reference_lists(reference, taxonomy) if args.reject_seen or reference.is_file() else set()
    table, summary = sample_tag_lists(model, taxonomy, constraints, args, seen)
    output = Path(args.output or out / "tags.parquet")
    write_parquet(output, table)
    write_json(output.with_name("tags_summary.json"), summary)
    logger.info("wrote %d lists to %s from %d draws; rejected %s; raw contradiction rate %.3f",
                summary["lists"], output, summary["draws"], summary["rejected"], summary["raw"]["contradiction_rate"])
    return table, summary


if __name__ == "__main__":
    cli(main)
