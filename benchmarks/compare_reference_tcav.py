"""Our TCAV results beside the reference implementation's published ones: the (concept, genre) pairs both studies
test, their TCAV score and CAV accuracy next to ours, with our corrected p-values.

    python -m benchmarks.compare_reference_tcav --reference tcav_genre_classification_results.json \\
        --ours judge_independent.json judge_vae.json

`--reference` is `data/tcav_genre_classification_results.json` of the reference repository
(BrunoSienkiewicz/ConceptCaps): TCAV on their GTZAN genre CNN with MusicGen audio, one CAV per concept, no
significance test. `--ours` are outputs of `benchmarks.bench_judge_tcav`. Concepts are matched through our
reviewed aliases (`builder/data/concepts.tsv`: their "drums" is our drum kit), genres by name (GTZAN's "hiphop" is
our hip hop). Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GENRE_NAMES = {"hiphop": "hip hop"}  # GTZAN's class names that differ from our concepts


def reference_pairs(reference: dict, taxonomy) -> dict[tuple[str, str], dict]:
    """{(our concept, our genre): {"score", "cav_accuracy", "their"}} of the reference's results ("their": the tag
    it was measured for)."""
    out = {}
    rows = [(name, row) for concepts in reference.values() for name, row in concepts.items()]
    # a tag that is our concept's own name wins over one that is only an alias of it ("uptempo" is fast tempo too)
    for name, row in sorted(rows, key=lambda item: taxonomy.concept_for(item[0]) == item[0]):
        concept = taxonomy.concept_for(name)
        if concept is None:
            continue
        for genre, score in row["genre_scores"].items():
            ours = GENRE_NAMES.get(genre, genre)
            out[concept, ours] = {"score": float(score), "cav_accuracy": float(row["cav_accuracy"]), "their": name}
    return out


def main(argv=None) -> dict:
    from builder.taxonomy import Taxonomy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="the reference's tcav_genre_classification_results.json")
    parser.add_argument("--ours", nargs="+", required=True, help="bench_judge_tcav outputs (one JSON line each)")
    args = parser.parse_args(argv)
    theirs = reference_pairs(json.loads(Path(args.reference).read_text()), Taxonomy.from_concept_table())
    rows = []
    for path in args.ours:
        ours = json.loads(Path(path).read_text().strip().splitlines()[-1])
        design = "VAE lists" if ours["arguments"].get("lists") else "independent"
        for model, result in ours["models"].items():
            significant = {(c, g) for c, g, _ in result.get("significant", [])}
            for key, score in result.get("scores", {}).items():
                concept, genre = key.split(" -> ")
                if (concept, genre) not in theirs:
                    continue
                ref = theirs[concept, genre]
                rows.append({"concept": concept, "genre": genre, "reference": ref["score"],
                             "reference_cav_accuracy": ref["cav_accuracy"], "model": model, "design": design,
                             "ours": score, "p_corrected": result.get("p_corrected", {}).get(key),
                             "q_value": result.get("q_value", {}).get(key),
                             "significant": (concept, genre) in significant,
                             "same_side": (ref["score"] - 0.5) * (score - 0.5) > 0})  # fmt: skip
    rows.sort(key=lambda r: (r["concept"], r["genre"], r["design"], r["model"]))
    lines = ["| concept | genre | reference (CAV acc.) | ours | model, design | p (Bonferroni) | q (BH) | same side |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        mark = "**" if r["significant"] else ""
        reference = f"{r['reference']:.2f} ({r['reference_cav_accuracy']:.2f})"
        side = "yes" if r["same_side"] else "no"
        cells = [r["concept"], r["genre"], reference, f"{mark}{r['ours']:.2f}{mark}", f"{r['model']}, {r['design']}",
                 str(r["p_corrected"]), str(r["q_value"]), side]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    sys.stderr.write("\n".join(lines) + "\n")
    decided = [r for r in rows if r["significant"]]
    out = {"shared_pairs": len(rows), "significant_ours": len(decided),
           "significant_on_the_reference_side": sum(r["same_side"] for r in decided),
           "all_on_the_reference_side": sum(r["same_side"] for r in rows), "rows": rows}  # fmt: skip
    sys.stdout.write(json.dumps(out) + "\n")
    return out


if __name__ == "__main__":
    main()
