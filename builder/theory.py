"""Theory concept families: exact music-theory facts of rendered clips as concept sets (SynTheory's concepts, with
ConceptCaps' controls).

A rendered clip's ground truth (the `audio` config's typed columns: `generation.symbolic`) states its meter,
key, tempo and every bar's chord. Those facts become concepts named `<family>=<value>`, in the `concepts` config
beside the taxonomy's (whose names never hold "="), with the category `theory/<family>`:
  mode         major, minor                       clips played in a key (not a theory chord clip)
  meter        4/4, 3/4, 6/8, 7/8
  tonic        C ... B                            the key's tonic, or a theory chord clip's root
  tempo        50-89, 90-129, 130-169, 170-210 bpm
  chord        major, minor, diminished, augmented, major 7, minor 7, dominant 7 ...   clips of one chord quality
  inversion    root position, first, second       theory chord clips
  progression  I-IV-V-I, I-V-vi-IV, ii-V-I, i-iv-v-i, i-VI-III-VII, i-iv-VII-III     theory progression clips
For each value with at least `min_positives` clips in a split, and as many of the family's other values: positives
hold the value; negatives hold another value of the same family, one per positive, chosen so that every nuisance
variable (the instruments, the register, the kind of theory clip, an attribute list's genre and mood, and the other
families' values) is as frequent among them as among the positives (`match_marginals`), so that the fact, not a
confound, separates the sets; random sets are drawn from the clips that do not hold the value. A family another one
fixes (a progression fixes its mode) is left out of that one's matching (`NESTED`). The summary records,
per set, the Jensen-Shannon divergence of every nuisance variable between positives and negatives, before and after
matching. Clips without ground truth (MusicGen or published audio) hold no fact: such a dataset has no theory sets.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from builder.splits import ConceptSetArguments, SetRows
from core.constants import SPLITS
from core.divergence import squared_jsd

SEPARATOR = "="  # "mode=minor": never in a taxonomy concept's name
NUISANCE_JSD_BOUND = 0.05  # a set whose largest nuisance divergence after matching exceeds this is named as such
TEMPO_BANDS = ((50, 90), (90, 130), (130, 170), (170, 211))  # [low, high) bpm: SynTheory's 50-210 in four bands
INVERSIONS = ("root position", "first", "second", "third")
FAMILIES = ("mode", "meter", "tonic", "tempo", "chord", "inversion", "progression")
NESTED = {  # a family another one fixes, left out of its matching: a progression fixes its mode, a chord clip's
    # inversion is its chord's, and an attribute list's clip of one chord quality (I-IV-V-I) has the mode that gives it
    "mode": {"progression", "chord"},
    "progression": {"mode"},
    "chord": {"inversion", "mode"},
    "inversion": {"chord"},
}


def concept_name(family: str, value: str) -> str:
    return f"{family}{SEPARATOR}{value}"


def is_theory_concept(name: str) -> bool:
    return name.partition(SEPARATOR)[0] in FAMILIES and SEPARATOR in name


def theory_category(name: str) -> str:
    """The category of a theory concept ("theory/mode"), or "" for any other name."""
    return f"theory/{name.partition(SEPARATOR)[0]}" if is_theory_concept(name) else ""


def tempo_band(bpm: float | None) -> str | None:
    for low, high in TEMPO_BANDS:
        if bpm is not None and low <= bpm < high:
            return f"{low}-{high - 1} bpm"
    return None


def clip_facts(truth: dict | str | None) -> dict[str, str] | None:
    """{family: value} of a rendered clip's ground truth (the synthesis stage's JSON, or the audio config's typed
    columns); None without ground truth. A family the clip does not fix (a progression of mixed qualities has no
    one chord quality) is absent."""
    truth = json.loads(truth) if isinstance(truth, str) else truth
    if not truth or truth.get("bpm") is None:
        return None
    chords = truth.get("chords") or []
    facts = {"meter": truth.get("meter"), "tempo": tempo_band(truth.get("bpm"))}
    if truth.get("key"):
        facts["tonic"], _, facts["mode"] = truth["key"].partition(" ")
    elif chords and len({c["root"] for c in chords}) == 1:
        facts["tonic"] = chords[0]["root"]
    qualities = {c["quality"] for c in chords}  # a progression's chords are its own family, not one quality
    if len(qualities) == 1 and "other" not in qualities and truth.get("theory") != "progression":
        facts["chord"] = qualities.pop()
    inversions = {c.get("inversion") for c in chords}
    if truth.get("theory") == "chord" and len(inversions) == 1 and None not in inversions:
        facts["inversion"] = INVERSIONS[inversions.pop()]
    if truth.get("theory") == "progression" and truth.get("progression"):
        if len(chords) >= len(truth["progression"].split("-")):  # the clip plays every chord of it
            facts["progression"] = truth["progression"]
    return {k: v for k, v in facts.items() if v}


def nuisance(example: dict, truth: dict | None) -> dict[str, list[str]]:
    """A clip's nuisance variables, each a list of values: its instruments, its register, its kind and, for an
    attribute list's clip, its genre and mood concepts (which choose its mode and tempo: a confound to match)."""
    truth = json.loads(truth) if isinstance(truth, str) else (truth or {})
    return {
        "instruments": sorted(example.get("instrument") or []),
        "genre": sorted(example.get("genre") or []),
        "mood": sorted(example.get("mood") or []),
        "register": [str(truth.get("register") or 0)],
        "kind": [truth.get("theory") or "attribute list"],
    }


def build_theory_sets(
    examples: Sequence[dict], args: ConceptSetArguments, rows: SetRows | None = None
) -> tuple[SetRows, dict]:
    """Theory concept sets for the examples that carry `facts` (clip_facts) and `nuisance`; added to `rows` (whose
    ids must be the examples' ids in order) or to new rows. Returns the rows and a summary."""
    rows = rows if rows is not None else SetRows([e["id"] for e in examples])
    summary = {"families": {}, "concepts": {}, "skipped_too_few_positives": {s: [] for s in SPLITS}}
    with_facts = [i for i, e in enumerate(examples) if e.get("facts")]
    if not with_facts:
        return rows, summary
    summary["theory_clips"] = sum(examples[i]["nuisance"]["kind"] != ["attribute list"] for i in with_facts)
    columns: dict[tuple[str, str], int] = {}  # (variable, value) -> column of the one-hot matrix
    for e in examples:
        for variable, values in [*((f, [v]) for f, v in (e.get("facts") or {}).items()),
                                 *(e.get("nuisance") or {}).items()]:  # fmt: skip
            for v in values:
                columns.setdefault((variable, v), len(columns))
    x = np.zeros((len(examples), len(columns)), dtype=bool)
    for i in with_facts:
        e = examples[i]
        for variable, values in [*((f, [v]) for f, v in e["facts"].items()), *e["nuisance"].items()]:
            for v in values:
                x[i, columns[variable, v]] = True
    variable_of = np.array([variable for variable, _ in columns])
    split_of = np.array([e["split"] for e in examples])
    has_facts = np.zeros(len(examples), dtype=bool)
    has_facts[with_facts] = True
    values = {f: sorted(v for (variable, v) in columns if variable == f) for f in FAMILIES}
    summary["families"] = {f: vs for f, vs in values.items() if vs}
    for (family, value), j in sorted(columns.items()):
        if family not in FAMILIES:
            continue
        name = concept_name(family, value)
        in_family = x[:, variable_of == family].any(1)
        matched_on = ~np.isin(variable_of, [family, *NESTED.get(family, ())])
        for s, split in enumerate(SPLITS):
            here = np.flatnonzero((split_of == split) & has_facts)
            pos = here[x[here, j]]
            candidates = here[in_family[here] & ~x[here, j]]
            if len(pos) < args.min_positives or len(candidates) < args.min_positives:
                summary["skipped_too_few_positives"][split].append(name)  # or too few clips of the other values
                continue
            rng = np.random.default_rng([args.concept_seed, 43, j, s])
            negatives = match_marginals(x[pos][:, matched_on], x[candidates][:, matched_on], candidates, rng)
            pool = rng.permutation(here[~x[here, j]])
            size = min(len(pos), len(pool) // max(args.num_random_sets, 1))
            randoms = [pool[r * size : (r + 1) * size] for r in range(args.num_random_sets)] if size else []
            category = theory_category(name)
            rows.add(name, category, split, "positive", 0, pos)
            rows.add(name, category, split, "negative", 0, negatives)
            for r, members in enumerate(randoms):
                rows.add(name, category, split, "random", r, members)
            summary["concepts"][f"{split}/{name}"] = {
                "family": family,
                "positives": int(len(pos)),
                "negatives": int(len(negatives)),
                "candidate_negatives": int(len(candidates)),
                "random_sets": len(randoms),
                "random_set_size": int(size),
                "jsd_nuisance_before": _divergences(x, variable_of, matched_on, pos, candidates),
                "jsd_nuisance_after": _divergences(x, variable_of, matched_on, pos, negatives),
            }
    return rows, summary


def _divergences(x, variable_of, matched_on, pos, other) -> dict[str, float]:
    """Per nuisance variable (and other family), the JSD of its values between two sets of clips."""
    out = {}
    for variable in dict.fromkeys(variable_of[matched_on]):
        cols = matched_on & (variable_of == variable)
        a, b = x[pos][:, cols].sum(0), x[other][:, cols].sum(0)
        if a.sum() and b.sum():
            out[str(variable)] = round(squared_jsd(a, b), 5)
    return out


def max_jsd(entry: dict, when: str = "after") -> float:
    """The largest nuisance divergence of one set's summary entry (0 when none was measurable)."""
    return max(entry[f"jsd_nuisance_{when}"].values(), default=0.0)


def theory_counts(summary: dict) -> dict[str, dict[str, int]]:
    """Per split, how many theory concepts of each family got sets: what the build summary and the card show."""
    out = {split: {} for split in SPLITS}
    for key, entry in summary.get("concepts", {}).items():
        split = key.partition("/")[0]
        out[split][entry["family"]] = out[split].get(entry["family"], 0) + 1
    return out


def match_marginals(pos: np.ndarray, cand: np.ndarray, cand_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One negative per positive (while candidates last), chosen so that every nuisance variable's values are as
    frequent among the negatives as among the positives: each positive in a seeded order takes the free candidate
    whose values are most wanted (the positives' count of each value less the negatives' so far, summed over the
    candidate's values), ties going to the candidate most like that positive (Jaccard). Exact pairs on every
    variable are rare when there are seven of them; equal marginals are what the divergence measures and what a
    probe could exploit."""
    if len(pos) == 0 or len(cand) == 0:
        return np.zeros(0, dtype=cand_ids.dtype)
    p, c = pos.astype(np.float32), cand.astype(np.float32)
    need = p.sum(0)
    size = c.sum(1)
    free = np.ones(len(c), dtype=bool)
    picked = []
    for i in rng.permutation(len(p)):
        if not free.any():
            break
        inter = c @ p[i]
        similarity = inter / np.maximum(size + p[i].sum() - inter, 1)
        score = c @ need + similarity + rng.random(len(c)) * 1e-3  # similarity in [0, 1]: a tie-break
        score[~free] = -np.inf
        k = int(np.argmax(score))
        picked.append(k)
        free[k] = False
        need -= c[k]
    return cand_ids[np.sort(picked)]
