"""Dataset splits and per-concept example sets for TCAV and probing.

For every concept with at least `min_positives` positives in a split:
  positives  examples whose attribute list carries the concept;
  negatives  examples that carry neither the concept nor any of its surface forms (taxonomy aliases and
             reviewed paraphrases, searched in the caption), nor a concept narrower than it or overlapping it
             (`builder/data/relations.tsv`: no hard rock among rock's negatives, no medium to fast tempo among fast
             tempo's), listed or named, matched one-to-one to the positives on the other categories' concepts
             (nearest Jaccard distance, greedy, seeded, exact within seeded blocks of `MATCH_BLOCK` examples so that
             memory and time stay bounded at paper scale), so that the concept, not a confound such as genre, is
             what separates the two sets;
  random     R disjoint random sets drawn from the examples that are not positives, whose caption does not name
             the concept and that list no relative, for TCAV's significance test.
With `families`, "<concept> (family)" sets as well: positives list the concept or a narrower one. The matching
quality (Jensen-Shannon divergence between positives and negatives over the other categories' concepts, before
and after matching) and the candidates each relation rule removed are recorded per concept.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator, Sequence

import numpy as np

from builder.relations import Relations, load_relations
from builder.taxonomy import Taxonomy
from core.config import arg
from core.constants import CATEGORIES, SPLITS
from core.divergence import squared_jsd

EXAMPLE_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}  # the paper's 15,003 / 3,215 / 3,215


def seeded_split(keys: Sequence[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Deterministic split: the sorted unique keys in a seeded permutation, cut into the splits in the order of
    `fractions`, each taking its rounded share and the last one the rest."""
    ordered = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(ordered))
    names = list(fractions)
    bounds = np.cumsum([round(fractions[n] * len(ordered)) for n in names[:-1]])
    return {ordered[i]: names[int(np.searchsorted(bounds, rank, side="right"))] for rank, i in enumerate(order)}


def assign_example_splits(
    ids: Sequence[str], seed: int = 0, fractions: dict[str, float] = EXAMPLE_FRACTIONS
) -> dict[str, str]:
    """The dataset's split, by example id (ids are unique by construction; a duplicate is an error)."""
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate ids")
    return seeded_split(ids, fractions, seed)


@dataclass
class ConceptSetArguments:
    """How a split's concept sets are built: declared once, taken by every stage that builds them (assembly,
    republish) and by the readers that build a published dataset's sets on the fly."""

    min_positives: int = arg(10, "concepts with fewer positives get no set")
    num_random_sets: int = arg(5, "random sets per concept (TCAV)")
    concept_seed: int = arg(0, "seed of negative matching and random sets")
    families: bool = arg(
        True, "also '<concept> (family)' sets: the concept and every narrower one (builder/data/relations.tsv)"
    )


class SetRows:
    """Concept-set membership rows {concept, category, split, role, set_index, id}, held as index arrays into the
    examples and made into dicts only while iterated (a paper-scale build has about a million rows)."""

    def __init__(self, ids: Sequence[str]):
        self.ids = ids
        self.groups: list[tuple[str, str, str, str, int, np.ndarray]] = []

    def add(self, concept: str, category: str, split: str, role: str, set_index: int, members: np.ndarray) -> None:
        self.groups.append((concept, category, split, role, set_index, np.asarray(members, dtype=np.int64)))

    def __len__(self) -> int:
        return sum(len(g[-1]) for g in self.groups)

    def only(self, concept: str) -> "SetRows":
        """The rows of one set name."""
        out = SetRows(self.ids)
        out.groups = [g for g in self.groups if g[0] == concept]
        return out

    def __iter__(self) -> Iterator[dict]:
        for concept, category, split, role, set_index, members in self.groups:
            for i in members:
                yield {
                    "concept": concept,
                    "category": category,
                    "split": split,
                    "role": role,
                    "set_index": set_index,
                    "id": self.ids[i],
                }


RULE_NAMES = {"narrower": "lists a narrower concept", "overlaps": "lists an overlapping concept"}
FAMILY_SUFFIX = " (family)"  # a family's set name: "rock (family)" is rock and every concept narrower than rock


def build_concept_sets(
    examples: Sequence[dict],
    taxonomy: Taxonomy,
    mentions: Sequence[set[str]],
    args: ConceptSetArguments,
    concepts: Sequence[str] | None = None,
    relations: Relations | None = None,
    unheard: dict[str, set[str]] | None = None,
) -> tuple[SetRows, dict]:
    """Concept membership rows and a summary.

    Args:
        examples: rows with id, split and one list column per category.
        mentions: per example, the concepts its caption names (surface forms found by the caption checker).
        concepts: the concepts to build sets for (default: all); a concept's sets do not depend on the others'.
        relations: how concepts relate (default: `builder/data/relations.tsv`): a clip that lists a narrower or an
            overlapping concept, or whose caption names one, is neither a negative nor a random example; with
            `args.families`, sets for "<concept> (family)" too, whose positives list the concept or a narrower one.
    Returns:
        Rows {concept, category, split, role, set_index, id} and a summary with sizes, seeds, matching quality,
        the candidates each relation rule removed, and the concepts skipped for too few positives.
    """
    relations = relations or load_relations()
    names = taxonomy.names
    index = taxonomy.index
    x = np.zeros((len(examples), len(names)), dtype=bool)
    for i, e in enumerate(examples):
        for c in CATEGORIES:
            for t in e[c]:
                x[i, index[t]] = True
    not_heard = np.zeros_like(x)  # listed concepts a listener did not hear
    position = {e["id"]: i for i, e in enumerate(examples)}
    for id_, judged in (unheard or {}).items():
        for t in judged:
            if id_ in position and t in index:
                not_heard[position[id_], index[t]] = True
    named = np.zeros_like(x)
    for i, m in enumerate(mentions):
        for t in m:
            named[i, index[t]] = True
    wanted = set(names if concepts is None else concepts)
    split_of = np.array([e["split"] for e in examples])
    ids = [e["id"] for e in examples]
    category_ids = np.array([CATEGORIES.index(taxonomy.category_of[n]) for n in names])

    def columns(concepts_: set[str]) -> list[int]:
        return sorted(index[c] for c in concepts_ if c in index)

    targets = []  # (set name, column of the concept, member columns, {rule: excluded columns}, seed tag)
    for j, name in enumerate(names):
        if name not in wanted:
            continue
        rules = {rule: columns(cs) for rule, cs in relations.excluded_from_negatives(name).items()}
        targets.append((name, j, [j], rules, 0))
        family = columns(relations.family(name))
        if args.families and len(family) > 1:
            overlapping = set().union(*(relations.overlaps.get(names[k], set()) for k in family))
            targets.append(
                (name + FAMILY_SUFFIX, j, family, {"overlaps": columns(overlapping - relations.family(name))}, 1)
            )
    arguments = {f.name: getattr(args, f.name) for f in fields(ConceptSetArguments)}  # not a stage's other fields
    rows, summary = SetRows(ids), {"arguments": arguments, "concepts": {}, "skipped_too_few_positives": {}}
    for split in SPLITS:
        in_split = np.nonzero(split_of == split)[0]
        skipped = []
        for name, j, members_, rules, tag in targets:
            holds = x[in_split][:, members_].any(1)
            heard = (x[in_split][:, members_] & ~not_heard[in_split][:, members_]).any(1)
            pos = in_split[heard]
            if len(pos) < args.min_positives:
                skipped.append(name)
                continue
            rng = np.random.default_rng([args.concept_seed, j, SPLITS.index(split)] + ([tag] if tag else []))
            other = category_ids != category_ids[j]  # the other categories' concepts
            keep = ~holds & ~named[in_split][:, members_].any(1)
            removed = {}
            for rule, cols in rules.items():
                if cols:
                    hit = x[in_split][:, cols].any(1)
                    removed[RULE_NAMES[rule]] = int((keep & hit).sum())
                    keep &= ~hit
            relatives = sorted({c for cols in rules.values() for c in cols})
            if relatives:
                hit = named[in_split][:, relatives].any(1)
                removed["caption names a relative"] = int((keep & hit).sum())
                keep &= ~hit
            candidates = in_split[keep]
            negatives = match_negatives(x[pos][:, other], x[candidates][:, other], candidates, rng)
            # random sets: neither positives, nor clips whose caption names the concept, nor clips that list a
            # relative (a hard rock clip is rock music)
            free = ~holds & ~named[in_split][:, members_].any(1)  # nor a clip whose caption names the concept
            if relatives:
                free &= ~x[in_split][:, relatives].any(1)
            pool = in_split[free]
            size = min(len(pos), len(pool) // max(args.num_random_sets, 1))
            shuffled = rng.permutation(pool)
            randoms = [shuffled[r * size : (r + 1) * size] for r in range(args.num_random_sets)] if size > 0 else []
            for role, r, members in [
                ("positive", 0, pos),
                ("negative", 0, negatives),
                *[("random", r, members) for r, members in enumerate(randoms)],
            ]:
                rows.add(name, taxonomy.category_of[names[j]], split, role, r, members)
            summary["concepts"][f"{split}/{name}"] = {
                "positives": int(len(pos)),
                "negatives": int(len(negatives)),
                "random_sets": len(randoms),
                "random_set_size": int(size),
                "candidate_negatives": int(len(candidates)),
                "removed_by_relation": removed,
                "family": bool(tag),
                **({"removed_by_review": int((holds & ~heard).sum())} if unheard else {}),
                "jsd_other_categories_before": squared_jsd(x[pos][:, other].sum(0), x[candidates][:, other].sum(0)),
                "jsd_other_categories_after": squared_jsd(x[pos][:, other].sum(0), x[negatives][:, other].sum(0)),
            }
        summary["skipped_too_few_positives"][split] = skipped
    return rows, summary


def concepts_with_sets(summary: dict) -> dict[str, int]:
    """Per split, how many concepts (families not counted) got sets."""
    return {
        split: sum(1 for key, v in summary["concepts"].items() if key.startswith(split + "/") and not v.get("family"))
        for split in SPLITS
    }


def concept_sets(
    examples: Sequence[dict],
    taxonomy: Taxonomy,
    args: ConceptSetArguments,
    concepts: Sequence[str] | None = None,
    unheard: dict[str, set[str]] | None = None,
) -> tuple[SetRows, dict]:
    """`build_concept_sets` with each caption's surface forms found by the mention matcher (negated or not): what
    assembly and the published-schema tools both build."""
    from builder.mentions import ConceptMatcher

    matcher = ConceptMatcher(taxonomy)
    mentions = [set(matcher.surface_concepts(e["caption"])) for e in examples]
    return build_concept_sets(examples, taxonomy, mentions, args, concepts, unheard=unheard)


MATCH_BLOCK = 4096  # examples (positives and candidates) per matching block: memory and time per block bounded


def match_negatives(
    pos: np.ndarray, cand: np.ndarray, cand_ids: np.ndarray, rng: np.random.Generator, block: int = MATCH_BLOCK
) -> np.ndarray:
    """One-to-one matching of positives to candidates on Jaccard distance, in seeded blocks.

    Positives and candidates are shuffled (seeded) and dealt into blocks of at most `block` examples in
    proportion, and each block is matched exactly: greedy nearest neighbour, positives in a seeded order. What a
    block leaves unmatched (a block with more positives than candidates) is matched in a further round against
    the candidates no block used. Memory is bounded by a block's distance matrix and time grows linearly with the
    split (not as positives x candidates); a split no larger than `block` is one block: the exact greedy matching.
    """
    chosen: list[np.ndarray] = []
    left_pos, left_cand = rng.permutation(len(pos)), rng.permutation(len(cand))
    while len(left_pos) and len(left_cand):
        k = -(-(len(left_pos) + len(left_cand)) // block)
        pos_blocks, cand_blocks = np.array_split(left_pos, k), np.array_split(left_cand, k)
        used_now = [b[_greedy(pos[p], cand[b], rng)] for p, b in zip(pos_blocks, cand_blocks)]
        matched = sum(len(u) for u in used_now)
        if matched == 0:
            break
        chosen += used_now
        taken = np.concatenate(used_now)
        matched_pos = np.concatenate([p[: len(u)] for p, u in zip(pos_blocks, used_now)])
        left_pos = np.setdiff1d(left_pos, matched_pos, assume_unique=True)
        left_cand = np.setdiff1d(left_cand, taken, assume_unique=True)
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=int)
    return cand_ids[np.sort(picked)]


def _greedy(p: np.ndarray, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Greedy one-to-one nearest neighbours on Jaccard distance, positives in the given order: for the first
    min(len(p), len(c)) positives, the index into `c` of each one's match."""
    if len(p) == 0 or len(c) == 0:
        return np.zeros(0, dtype=int)
    p, c = p.astype(np.float32), c.astype(np.float32)
    inter = p @ c.T
    union = p.sum(1, keepdims=True) + c.sum(1) - inter
    dist = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    del inter, union
    dist += rng.random(dist.shape, dtype=np.float32) * 1e-6  # seeded tie-breaking
    out = np.empty(min(len(p), len(c)), dtype=int)
    for i in range(len(out)):
        k = int(np.argmin(dist[i]))
        out[i] = k
        dist[:, k] = np.inf
    return out
