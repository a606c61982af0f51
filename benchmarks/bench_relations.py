"""Concept relations in the concept sets: negatives that hold a relative, with and without the relations table, and
the confound matching's quality in both, measured in one run on the same examples.

    python -m benchmarks.bench_relations --dataset runs/demo/dataset          # an assembled dataset of ours
    python -m benchmarks.bench_relations --published 600                      # the published-schema fixture, n rows

For every concept set built with the relations table and without it (an empty table: the rules before
`builder/data/relations.tsv`): how many negatives list the concept, a narrower or an overlapping concept, or have
a caption that names one of them (target: 0 with the table), and the mean Jensen-Shannon divergence between
positives and negatives over the other categories after matching (target: no worse than without). Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from builder.relations import Relations, load_relations
from core.constants import SPLITS


def violations(rows, examples: dict, mentions: dict, relations: Relations) -> dict:
    """Negatives that hold the concept or a relative in their list, or name one in their caption."""
    listed = named = 0
    for r in rows:
        if r["role"] != "negative" or r["concept"].endswith(" (family)"):
            continue
        relatives = {r["concept"]} | set().union(*relations.excluded_from_negatives(r["concept"]).values())
        listed += bool(relatives & set(examples[r["id"]]["tags"]))
        named += bool(relatives & mentions[r["id"]])
    return {"negatives_listing_a_relative": listed, "negatives_naming_a_relative": named}


def measure(examples: list[dict], taxonomy) -> dict:
    from builder.mentions import ConceptMatcher
    from builder.splits import ConceptSetArguments, build_concept_sets

    matcher = ConceptMatcher(taxonomy)
    mentions = [set(matcher.surface_concepts(e["caption"])) for e in examples]
    by_id, mention_of = {e["id"]: e for e in examples}, {e["id"]: m for e, m in zip(examples, mentions)}
    table = load_relations()
    out = {}
    for name, relations in (("with_relations", table), ("without_relations", Relations({}, {}, frozenset()))):
        rows, summary = build_concept_sets(
            examples, taxonomy, mentions, ConceptSetArguments(min_positives=5, families=False), None, relations
        )
        jsd = [
            v["jsd_other_categories_after"]
            for v in summary["concepts"].values()
            if v["negatives"] and v["jsd_other_categories_after"] == v["jsd_other_categories_after"]
        ]
        removed = {}
        for v in summary["concepts"].values():
            for rule, n in v.get("removed_by_relation", {}).items():
                removed[rule] = removed.get(rule, 0) + n
        out[name] = {
            **violations(list(rows), by_id, mention_of, table),
            "concept_sets": len(summary["concepts"]),
            "mean_jsd_after_matching": float(np.mean(jsd)) if jsd else None,
            "removed_by_relation": removed,
        }
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="an assembled dataset folder of ours")
    parser.add_argument("--published", type=int, default=0, help="rows of the published-schema fixture to measure")
    args = parser.parse_args(argv)
    result = {}
    if args.dataset:
        import pyarrow.parquet as pq

        from builder.taxonomy import Taxonomy

        folder = Path(args.dataset)
        taxonomy = Taxonomy.load(folder / "taxonomy.json")
        examples = []
        for split in SPLITS:
            for path in sorted((folder / "data").glob(f"{split}-*.parquet")):
                examples += [{**r, "split": split} for r in pq.read_table(path).to_pylist()]
        result["dataset"] = {"examples": len(examples), **measure(examples, taxonomy)}
    if args.published:
        from builder.published import PublishedReader
        from conceptcaps import open_dataset
        from fixtures.published import write_published

        with tempfile.TemporaryDirectory() as tmp:
            write_published(Path(tmp), n=args.published)
            reader = PublishedReader()
            examples = [
                {**r, "split": s} for s in SPLITS for r in reader.convert(open_dataset(tmp, "default", split=s), s)
            ]
            result["published_fixture"] = {"examples": len(examples), **measure(examples, reader.taxonomy)}
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
