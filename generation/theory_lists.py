"""The "theory" sampling mode: SynTheory-like clips (Wei et al., 2024) whose music-theory facts are exact and
balanced, for the theory concept families (`builder.theory`).

    python -m generation.sample_tags --sampling theory --num_lists 6000 --output runs/theory/tags.parquet

Each clip is one instrument, or a small band (a chord instrument with a drum kit, and a bass), playing facts
drawn here and recorded in `tags.parquet`'s `theory` column (JSON, checked by
`generation.arrangement.theory_errors`):
  kind         progression (half the clips: a named progression of the mode's triads, looped) or chord (one chord
               of a quality on the tonic, repeated, in an inversion)
  bpm          an integer of 50-210, uniform (SynTheory's range)
  meter        4/4, 3/4, 6/8 or 7/8
  tonic        a pitch class 0-11
  mode, degrees  (progression) major or minor, one of `PROGRESSIONS[mode]`
  quality, inversion  (chord) one of `THEORY_QUALITIES`, root position or the first or second inversion
  register     the pitched parts an octave down, as written or an octave up (a nuisance variable)
Every categorical fact is dealt in equal shares (a seeded permutation of a balanced deck), independently of the
others, so each family's values are balanced and the nuisance variables (instruments, register, the other
families) spread evenly over them. The attribute list names the instruments only: the clip's caption and its
instrument concept sets stay exact; its theory facts reach the dataset through the renderer's ground truth.
"""

from __future__ import annotations

import json

import numpy as np

from generation.arrangement import DRUM_ROLES, PROGRESSIONS, THEORY_KINDS, THEORY_METERS, THEORY_QUALITIES
from generation.symbolic import RenderTables, render_evidence

BPM_RANGE = (50, 210)
BANDS = ("solo", "with drums", "with drums and bass")  # who plays, dealt like the facts
KITS = ("drum kit",)  # the band's drum part: the General MIDI standard kit


def theory_pools(tables: RenderTables) -> dict[str, list[str]]:
    """The instruments a theory clip draws from: chord instruments (a program that comps, holds, runs or leads),
    bass instruments and kits; only concepts the renderer plays and no judge contradicts."""
    verdicts = render_evidence()
    pools = {"chord": [], "bass": [], "kit": [c for c in KITS if c in tables.rows and not tables.rows[c].reason]}
    for concept, row in sorted(tables.rows.items()):
        v = row.values
        if row.reason or v.get("kind") != "program" or "," in v["value"] or verdicts.get(concept) == "contradicted":
            continue
        if v["role"] == "bass":
            pools["bass"].append(concept)
        elif v["role"] not in DRUM_ROLES:
            pools["chord"].append(concept)
    return pools


def _deck(values, n: int, rng: np.random.Generator) -> list:
    """`n` values in equal shares (the remainder spread from the first), in a seeded order."""
    values = list(values)
    deck = [values[i % len(values)] for i in range(n)]
    return [deck[i] for i in rng.permutation(n)]


def theory_lists(tables: RenderTables, num_lists: int, seed: int, id_prefix: str) -> list[dict]:
    """`num_lists` rows of tags.parquet (the instruments as the attribute list, the facts as `theory` JSON)."""
    rng = np.random.default_rng([seed, 43])
    pools = theory_pools(tables)
    kinds = _deck(THEORY_KINDS, num_lists, rng)
    meters, tonics = _deck(THEORY_METERS, num_lists, rng), _deck(range(12), num_lists, rng)
    registers, bands = _deck((-1, 0, 1), num_lists, rng), _deck(BANDS, num_lists, rng)
    chord_players = _deck(pools["chord"], num_lists, rng)
    progressions = iter(_deck([(m, d) for m in PROGRESSIONS for d in PROGRESSIONS[m]], kinds.count("progression"),
                              rng))  # fmt: skip
    chords = iter(_deck([(q, i) for q in THEORY_QUALITIES for i in (0, 1, 2)], kinds.count("chord"), rng))
    rows = []
    for i in range(num_lists):
        spec = {"kind": kinds[i], "bpm": int(rng.integers(BPM_RANGE[0], BPM_RANGE[1] + 1)), "meter": meters[i],
                "tonic": int(tonics[i]), "register": int(registers[i])}  # fmt: skip
        if kinds[i] == "progression":
            mode, degrees = next(progressions)
            spec.update(mode=mode, degrees=list(degrees))
        else:
            quality, inversion = next(chords)
            spec.update(quality=quality, inversion=inversion)
        tags = [chord_players[i]]
        if bands[i] != "solo" and pools["kit"]:
            tags.append(pools["kit"][int(rng.integers(len(pools["kit"])))])
        if bands[i] == "with drums and bass" and pools["bass"]:
            tags.append(pools["bass"][int(rng.integers(len(pools["bass"])))])
        rows.append(
            {
                "id": f"{id_prefix}-t{seed}-{i:06d}",
                "tags": tags,
                "seed": int(rng.integers(2**31)),
                "draw": i,
                "theory": json.dumps(spec, sort_keys=True),
            }
        )
    return rows


def theory_summary(rows: list[dict]) -> dict:
    """How many clips hold each fact's value: what the sampling summary records."""
    counts: dict[str, dict] = {}
    for r in rows:
        spec = json.loads(r["theory"])
        facts = {k: spec.get(k) for k in ("kind", "meter", "tonic", "mode", "quality", "inversion", "register")}
        facts["progression"] = "-".join(map(str, spec["degrees"])) if "degrees" in spec else None
        facts["instruments"] = len(r["tags"])
        for family, value in facts.items():
            if value is not None:
                counts.setdefault(family, {}).setdefault(str(value), 0)
                counts[family][str(value)] += 1
    return counts
