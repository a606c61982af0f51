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

With `--min_positives_per_concept K` every carried concept gets enough lists that each split (the smallest is
`builder.splits.EXAMPLE_FRACTIONS`' test share) holds K positives with ~99.7 % probability (`planned_positives`):
concepts below that after sampling get lists drawn from the VAE's posterior given the concept (prior latents
resampled by the decoded probability of the concept, the concept forced on), through the same checks, rarest
first; `tags.parquet`'s `balanced_for` names the concept a list was drawn for, and the summary's `balance`
reports lists added, concepts still short (with why), the marginals' shift and the time against sampling.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from builder.taxonomy import Taxonomy
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import CATEGORIES
from core.divergence import squared_jsd
from core.errors import DataError
from core.io import write_json, write_parquet
from core.log import get_logger
from training.constraints import CONSTRAINTS_NAME, Constraints
from training.vae import BetaVAE, load_checkpoint

logger = get_logger(__name__)

TAGS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("tags", pa.list_(pa.string())),
        *[(c, pa.list_(pa.string())) for c in CATEGORIES],
        ("seed", pa.int64()),
        ("draw", pa.int64()),
        ("balanced_for", pa.string()),  # the concept a balancing draw was made for; null for the VAE's own draws
        ("added_for_genre", pa.list_(pa.string())),  # instruments added for a listed genre's core (symbolic backend)
        ("theory", pa.string()),  # a theory clip's facts (JSON; generation.theory_lists); null for an attribute list
    ]
)
GENRE_CORE_TABLE = Path(__file__).resolve().parent / "data" / "genre_instruments.tsv"


@dataclass
class SamplingArguments:
    """Sample attribute lists from a trained VAE into tags.parquet."""

    sampling: str = arg(
        "vae",
        "'vae': attribute lists from the β-VAE; 'theory': SynTheory-like clips of exact, balanced music-theory facts "
        "for the symbolic backend (generation.theory_lists; no VAE needed)",
    )
    vae: str | None = arg(None, "VAE checkpoint folder (default: run dir/vae)")
    taxonomy: str | None = arg(None, "taxonomy.json to check the VAE against")
    reference: str | None = arg(None, "musiccaps_tagged.parquet, for rejecting copies")
    output: str | None = arg(None, "tags.parquet (default: run dir)")
    num_lists: int = arg(1000, "how many unique, valid lists to write")
    temperature: float = arg(1.0, "scale of the prior's spread; higher is more diverse")
    decode: str = arg("bernoulli", "'bernoulli' (draw each concept with its probability) or 'threshold'")
    threshold: float = arg(0.5, "with decode=threshold: probability a concept needs")
    min_per_category: int = arg(0, "always take the top-k concepts of each category")
    max_per_category: int = arg(3, "keep at most the k most probable per category")
    min_categories: int = arg(3, "categories a list must reach")
    reject_seen: bool = arg(True, "reject exact copies of MusicCaps lists")
    batch_size: int = arg(4096, "latents decoded at once")
    max_draws_per_list: int = arg(50, "give up after num_lists x this many draws")
    seed: int = arg(0, "sampling seed; batch b uses the stream (seed, b)")
    id_prefix: str = arg("cc", "ids are <prefix>-s<seed>-<index>")
    min_positives_per_concept: int = arg(
        0,
        "K: after the VAE's own lists, add lists drawn for every concept the backend carries until it has "
        "enough positives for K in each split (generation.sample_tags.planned_positives); 0: no balancing",
    )
    synthesis_backend: str = arg(
        "any",
        "the backend the lists are for: 'symbolic' excludes, at decoding, every concept the renderer "
        "cannot play (its tables' reasons) and needs an instrument per list; 'any' (MusicGen) carries all",
    )

    def __post_init__(self):
        if self.sampling not in ("vae", "theory"):
            raise ValueError(f"sampling must be 'vae' or 'theory', not {self.sampling!r}")
        if self.sampling == "theory" and self.synthesis_backend != "symbolic":
            raise ValueError("sampling 'theory' needs synthesis_backend 'symbolic': only the renderer plays the facts")
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
    unconfirmed: dict[str, str] = field(default_factory=dict)  # arranged, but no judge confirms it: its verdict
    core: "GenreCore | None" = None  # the genres' core instruments a list gets (symbolic backend)


class GenreCore:
    """The reviewed table of each genre's core instruments (`generation/data/genre_instruments.tsv`), as slots of
    alternatives over the taxonomy's concepts; `complete` fills the slots a drawn list lacks."""

    def __init__(self, names: Sequence[str], excluded: dict[str, str], path: Path = GENRE_CORE_TABLE):
        from core.io import read_tsv

        index = {n: i for i, n in enumerate(names)}
        self.names = list(names)
        self.slots: dict[int, list[list[int]]] = {}
        for row, (genre, core, _reason) in read_tsv(path, 3):
            slots = [[a.strip() for a in slot.split(" / ")] for slot in core.split(" | ")]
            unknown = [a for slot in slots for a in slot if a not in index or a in excluded]
            if genre not in index or unknown:
                raise DataError(
                    path, f"{genre!r}: not a carried concept of the taxonomy: {unknown or [genre]}", row=row
                )
            self.slots[index[genre]] = [[index[a] for a in slot] for slot in slots]

    def complete(self, chosen: np.ndarray) -> list[tuple[str, ...]]:
        """Add, in place, the first alternative of every slot a listed genre's row lacks; per list the names added."""
        added: list[tuple[str, ...]] = []
        for row in chosen:
            names = []
            for slot in (slot for g, slots in self.slots.items() if row[g] for slot in slots):
                if not row[slot].any():
                    row[slot[0]] = True
                    names.append(self.names[slot[0]])
            added.append(tuple(names))
        return added


def backend_coverage(name: str, taxonomy: Taxonomy) -> BackendCoverage:
    if name == "symbolic":
        from generation.symbolic import RenderTables, render_evidence

        tables = RenderTables(taxonomy)
        excluded = {c: row.reason for c, row in tables.rows.items() if row.reason}
        verdicts = render_evidence()
        unconfirmed = {c: verdicts.get(c, "not measured") for c in taxonomy.names
                       if c not in excluded and verdicts.get(c) != "confirmed"}  # fmt: skip
        core = GenreCore(taxonomy.names, excluded)
        return BackendCoverage(name, excluded, ("instrument",), unconfirmed, core)  # it plays the listed instruments
    return BackendCoverage(name, {})


def select_concepts(
    probs: np.ndarray,
    category_ids: np.ndarray,
    args: SamplingArguments,
    rng: np.random.Generator,
    uniform: np.ndarray | None = None,
) -> np.ndarray:
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


class _Keeper:
    """The checks every drawn list passes (categories, the backend's required category, contradictions,
    duplicates, MusicCaps copies) and the lists kept so far, with their concept counts."""

    def __init__(
        self, names, category_ids, coverage: BackendCoverage, forbidden: np.ndarray, args: SamplingArguments, seen_lists
    ):
        self.names, self.category_ids, self.coverage, self.args, self.seen = (
            names,
            category_ids,
            coverage,
            args,
            seen_lists,
        )
        self.required = [CATEGORIES.index(c) for c in coverage.required_categories]
        # list -> (draw, the concept it was drawn for, the instruments added for its genres)
        self.kept: dict[tuple[str, ...], tuple[int, str | None, tuple[str, ...]]] = {}
        self.forbidden = forbidden.astype(np.float32)
        self.counts = np.zeros(len(names), dtype=np.int64)  # positives per concept among the kept lists
        self.index = {n: i for i, n in enumerate(names)}

    def checks(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Each list's categories, whether it lacks a required one, whether it contradicts itself, and its names."""
        cats = np.stack([chosen[:, self.category_ids == c].any(1) for c in range(len(CATEGORIES))], 1)
        n_categories = cats.sum(1)
        lacks_required = ~cats[:, self.required].all(1) if self.required else np.zeros(len(chosen), dtype=bool)
        contradicts = ((chosen.astype(np.float32) @ self.forbidden) * chosen).any(1)
        return n_categories, lacks_required, contradicts, [tuple(self.names[row]) for row in chosen]

    def raw_stats(
        self, chosen: np.ndarray, raw: Counter, raw_lists: set
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Each decoded list's checks, and the raw (before any rejection) statistics of the batch."""
        n_categories, lacks_required, contradicts, drawn = self.checks(chosen)
        raw["draws"] += len(chosen)
        raw["valid"] += int((n_categories >= self.args.min_categories).sum())
        raw["contradictory"] += int(contradicts.sum())
        raw["novel"] += sum(tags not in self.seen for tags in drawn)
        raw_lists.update(drawn)
        return n_categories, lacks_required, contradicts, drawn

    def offer(
        self,
        chosen: np.ndarray,
        first_draw: int,
        rejects: Counter,
        raw: Counter,
        raw_lists: set,
        stop,
        balanced_for: str | None = None,
    ) -> None:
        """Keep the batch's lists that pass every check, in order, until `stop()`; count every reject by reason. With
        the backend's genre core, each list first gets its genres' core instruments (then checked like the rest)."""
        n_categories, lacks_required, contradicts, drawn = self.raw_stats(chosen, raw, raw_lists)
        added = [()] * len(chosen)
        if self.coverage.core is not None:
            added = self.coverage.core.complete(chosen)
            n_categories, lacks_required, contradicts, drawn = self.checks(chosen)
        args = self.args
        for i, tags in enumerate(drawn):
            if stop():
                break
            if n_categories[i] < args.min_categories:
                rejects[f"fewer than {args.min_categories} categories"] += 1
            elif lacks_required[i]:
                rejects[f"no {' or '.join(self.coverage.required_categories)} ({self.coverage.name} backend)"] += 1
            elif contradicts[i]:
                rejects["contradiction"] += 1
            elif tags in self.kept:
                rejects["duplicate"] += 1
            elif args.reject_seen and tags in self.seen:
                rejects["copy of a MusicCaps list"] += 1
            else:
                self.kept[tags] = (first_draw + i, balanced_for, added[i])
                self.counts[[self.index[t] for t in tags]] += 1


def _raw_summary(raw: Counter, raw_lists: set) -> dict:
    n = max(raw["draws"], 1)
    return {
        "draws": raw["draws"],
        "valid_rate": raw["valid"] / n,
        "contradiction_rate": raw["contradictory"] / n,
        "unique_rate": len(raw_lists) / n,
        "novel_rate": raw["novel"] / n,
    }


def planned_positives(per_split: int, fractions: dict[str, float] | None = None, z: float = 3.0) -> int:
    """Positives a concept needs over the whole dataset for `per_split` of them to fall into its smallest split.

    The split is a seeded permutation of the accepted examples made at assembly, so a concept with T positives
    gets about Binomial(T, f) of them in a split of fraction f: T is the least with T f - z sqrt(T f (1 - f)) >=
    per_split (z = 3: a concept misses it in one of two equally small splits with ~0.3 % probability, so that
    nearly all of ~150 balanced concepts reach it, if no list is lost later; z = 2 missed 1-4 of them)."""
    from builder.splits import EXAMPLE_FRACTIONS

    if per_split <= 0:
        return 0
    f = min((fractions or EXAMPLE_FRACTIONS).values())
    s = z * np.sqrt(f * (1 - f))
    root = (s + np.sqrt(s * s + 4 * f * per_split)) / (2 * f)  # sqrt(T) solving f T - s sqrt(T) = per_split
    return int(np.ceil(root * root))


def sample_tag_lists(
    model: BetaVAE,
    taxonomy: Taxonomy,
    constraints: Constraints,
    args: SamplingArguments,
    seen_lists: set[tuple[str, ...]] = frozenset(),
) -> tuple[pa.Table, dict]:
    """Draw until `args.num_lists` unique valid lists exist, then (`min_positives_per_concept`) balance.

    Returns:
        The table (ids in draw order) and a summary with draws and rejects by reason.
    Raises:
        SamplingExhaustedError: the model cannot produce that many unique valid lists within the draw budget.
    """
    names = np.array(taxonomy.names)
    category_ids = np.array([CATEGORIES.index(taxonomy.category_of[n]) for n in names])
    coverage = backend_coverage(args.synthesis_backend, taxonomy)
    excluded = np.array([n in coverage.excluded for n in names])
    marginal_before, marginal_after = np.zeros(len(names)), np.zeros(len(names))
    keeper = _Keeper(names, category_ids, coverage, constraints.forbidden_matrix(taxonomy), args, seen_lists)
    latent_dim = model.config.latent_dim
    max_draws = args.num_lists * args.max_draws_per_list
    rejects: Counter[str] = Counter()
    draws = batch = 0
    raw = Counter()  # statistics of every decoded list, before any rejection
    raw_lists: set[tuple[str, ...]] = set()
    raw_used = np.zeros(len(names), dtype=bool)
    start = time.perf_counter()
    while len(keeper.kept) < args.num_lists:
        if draws >= max_draws:
            raise SamplingExhaustedError(
                f"only {len(keeper.kept)} unique valid lists after {draws} draws (asked for {args.num_lists}); "
                f"rejects: {dict(rejects)}. Ask for fewer lists, raise --temperature, or relax --min_categories."
            )
        rng = np.random.default_rng([args.seed, batch])
        n = min(args.batch_size, max_draws - draws)
        z = rng.standard_normal((n, latent_dim)).astype(np.float32) * args.temperature
        probs = _decode(model, z)
        if excluded.any():  # the backend's uncarried concepts never drawn: the rest of the list still from the VAE
            uniform = rng.random(probs.shape) if args.decode == "bernoulli" else None
            marginal_before += select_concepts(probs, category_ids, args, rng, uniform).sum(0)
            chosen = select_concepts(np.where(excluded, 0.0, probs), category_ids, args, rng, uniform)
        else:
            chosen = select_concepts(probs, category_ids, args, rng)
        marginal_after += chosen.sum(0)
        raw_used |= chosen.any(0)
        keeper.offer(chosen, draws, rejects, raw, raw_lists, lambda: len(keeper.kept) >= args.num_lists)
        draws += n
        batch += 1
    sampling_seconds = time.perf_counter() - start
    balance = None
    if args.min_positives_per_concept > 0:
        balance = _balance(model, keeper, excluded, args, draws, sampling_seconds)  # its draws counted in it
    rows = []
    for k, (tags, (draw, balanced_for, added)) in enumerate(keeper.kept.items()):
        per_cat = {c: [t for t in tags if taxonomy.category_of[t] == c] for c in CATEGORIES}
        rows.append(
            {
                "id": f"{args.id_prefix}-s{args.seed}-{k:06d}",
                "tags": list(tags),
                **per_cat,
                "seed": args.seed,
                "draw": draw,
                "balanced_for": balanced_for,
                "added_for_genre": list(added),
            }
        )
    considered = sum(rejects.values()) + args.num_lists
    summary = {
        "lists": len(keeper.kept),
        "draws": draws,
        "considered": considered,
        "rejected": dict(sorted(rejects.items())),
        # the decoder's own output, before the rules above: what the kept lists' rates (1, 0, 1, 1 by
        # construction) cannot show
        "raw": {**_raw_summary(raw, raw_lists), "concepts_used": int(raw_used.sum())},
        "concepts_used": len({t for tags in keeper.kept for t in tags}),
        "backend": {
            "name": coverage.name,
            "excluded": coverage.excluded,
            "required_categories": list(coverage.required_categories),
            # the decoded marginals with and without the excluded concepts, from the same draws
            "marginal_jsd_before_after_exclusion": squared_jsd(marginal_before, marginal_after)
            if excluded.any()
            else 0.0,
            # carried, but no independent judge confirmed it at scale (generation/data/render_evidence.tsv)
            "arranged_not_confirmed": coverage.unconfirmed,
            "lists_holding_unconfirmed": sum(any(t in coverage.unconfirmed for t in tags) for tags in keeper.kept),
            # instruments a listed genre's core needed (generation/data/genre_instruments.tsv), per instrument
            "genre_core_added": dict(Counter(t for _, _, added in keeper.kept.values() for t in added).most_common()),
            "lists_completed_for_genre": sum(bool(added) for _, _, added in keeper.kept.values()),
        },
        "seconds": round(sampling_seconds, 3),
        "balance": balance,
        "arguments": asdict(args),
    }
    return pa.Table.from_pylist(rows, schema=TAGS_SCHEMA), summary


BALANCE_POOLS = 8  # decoded pools kept by the balancing: 8 x 4 x batch_size x concepts floats (100 MB at 4096)


def _balance(
    model: BetaVAE,
    keeper: _Keeper,
    excluded: np.ndarray,
    args: SamplingArguments,
    first_draw: int,
    sampling_seconds: float,
) -> dict:
    """Draw lists for every carried concept with fewer than `planned_positives(K)` positives, rarest first.

    Each round resamples decoded prior latents (a pool of 4 x batch_size per round, decoded once and shared by
    every concept) in proportion to the decoded probability of the concept (sampling-importance-resampling:
    latents from the VAE's posterior given the concept), forces the concept on and the backend's uncarried
    concepts off, and selects the rest of the list from the decoder as the plain sampler does; the lists pass the
    same checks. A concept gets `need x max_draws_per_list` draws at most;
    one that does not reach the target is reported with its draws, lists kept and rejects."""
    target = planned_positives(args.min_positives_per_concept)
    names, category_ids = keeper.names, keeper.category_ids
    before = keeper.counts.copy()
    start = time.perf_counter()
    rejects: Counter[str] = Counter()
    raw, raw_lists = Counter(), set()
    drawn_for, unreached = {}, {}
    draws = 0
    pools: list[np.ndarray] = []  # round r's decoded prior latents, shared by every concept (at most BALANCE_POOLS)

    def pool(r: int) -> np.ndarray:
        while len(pools) <= r:
            z = (
                np.random.default_rng([args.seed, 1, len(pools)])
                .standard_normal((4 * args.batch_size, model.config.latent_dim))
                .astype(np.float32)
                * args.temperature
            )
            pools.append(_decode(model, z))
        return pools[r]

    for j in np.argsort(before, kind="stable"):
        if excluded[j] or keeper.counts[j] >= target:
            continue
        need = int(target - keeper.counts[j])
        kept_before, budget, used, round_ = len(keeper.kept), need * args.max_draws_per_list, 0, 0
        concept_rejects: Counter[str] = Counter()
        while keeper.counts[j] < target and used < budget:
            rng = np.random.default_rng([args.seed, 2, int(j), round_])
            n = int(min(args.batch_size, max(64, 4 * (target - keeper.counts[j])), budget - used))
            decoded = pool(round_ % BALANCE_POOLS)
            weight = decoded[:, j].astype(np.float64)
            total = weight.sum()
            probs = decoded[rng.choice(len(decoded), size=n, p=weight / total)] if total > 0 else decoded[:n].copy()
            probs[:, excluded] = 0.0
            probs[:, j] = 1.0
            chosen = select_concepts(probs, category_ids, args, rng)
            keeper.offer(
                chosen,
                first_draw + draws,
                concept_rejects,
                raw,
                raw_lists,
                lambda: keeper.counts[j] >= target,
                balanced_for=str(names[j]),
            )
            draws += n
            used += n
            round_ += 1
        rejects.update(concept_rejects)
        if len(keeper.kept) > kept_before:
            drawn_for[str(names[j])] = len(keeper.kept) - kept_before
        if keeper.counts[j] < target:
            unreached[str(names[j])] = {
                "draws": used,
                "kept": len(keeper.kept) - kept_before,
                "rejected": dict(concept_rejects.most_common(3)),
            }
    # a concept short after its own draws may have been reached by lists drawn for later ones
    unreached = {
        c: {"positives": int(keeper.counts[keeper.index[c]]), **v}
        for c, v in unreached.items()
        if keeper.counts[keeper.index[c]] < target
    }
    seconds = time.perf_counter() - start
    carried = ~excluded
    return {
        "per_split": args.min_positives_per_concept,
        "target_positives": target,
        "lists_added": sum(drawn_for.values()),
        "draws": draws,
        "drawn_for": drawn_for,
        "unreached": unreached,
        "rejected": dict(sorted(rejects.items())),
        "raw": _raw_summary(raw, raw_lists),  # the balancing draws' own rates, before rejection
        "concepts_below_target": {
            "before": int((before[carried] < target).sum()),
            "after": int((keeper.counts[carried] < target).sum()),
        },
        # how far balancing moves the kept lists' concept marginals
        "marginal_jsd_before_after": squared_jsd(before.astype(float), keeper.counts.astype(float)),
        "seconds": round(seconds, 3),
        "time_ratio_to_sampling": round(seconds / max(sampling_seconds, 1e-9), 3),
    }


def _decode(model: BetaVAE, z: np.ndarray) -> np.ndarray:
    """Per-concept probabilities of a batch of latents."""
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.from_numpy(z).to(next(model.parameters()).device))).cpu().numpy()


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


def sample_theory(args: SamplingArguments, out: Path) -> tuple[pa.Table, dict]:
    """The theory sampling mode: balanced theory clips for the renderer, with no VAE (`generation.theory_lists`)."""
    from generation.symbolic import RenderTables
    from generation.theory_lists import theory_lists, theory_summary

    output = Path(args.output or out / "tags.parquet")
    taxonomy_path = Path(args.taxonomy or output.with_name("taxonomy.json"))
    if not taxonomy_path.is_file():
        raise DataError(taxonomy_path, "not found: theory lists name the taxonomy's instruments (run the taxonomy "
                        "stage, or pass --taxonomy)")  # fmt: skip
    taxonomy = Taxonomy.load(taxonomy_path)
    rows = theory_lists(RenderTables(taxonomy), args.num_lists, args.seed, args.id_prefix)
    for row in rows:
        row.update({c: [t for t in row["tags"] if taxonomy.category_of[t] == c] for c in CATEGORIES})
    table = pa.Table.from_pylist(rows, schema=TAGS_SCHEMA)
    summary = {"sampling": "theory", "lists": len(rows), "considered": len(rows), "draws": len(rows),
               "rejected": {}, "theory": theory_summary(rows), "backend": {"name": "symbolic"},
               "arguments": asdict(args) | {"output": None, "taxonomy": None}}  # fmt: skip
    write_parquet(output, table)
    write_json(output.with_name("tags_summary.json"), summary)
    logger.info("wrote %d theory lists to %s: %s", len(rows), output, summary["theory"]["kind"])
    return table, summary


def main(argv: Sequence[str] | None = None) -> tuple[pa.Table, dict]:
    args = parse_args(ARGUMENTS, "sample", argv)
    out = run_dir()
    if args.sampling == "theory":
        return sample_theory(args, out)
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
    logger.info(
        "wrote %d lists to %s from %d draws; rejected %s; raw contradiction rate %.3f",
        summary["lists"],
        output,
        summary["draws"],
        summary["rejected"],
        summary["raw"]["contradiction_rate"],
    )
    return table, summary


if __name__ == "__main__":
    cli(main)
