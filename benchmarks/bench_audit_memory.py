"""The audit's memory is flat in the dataset's size: peak resident memory of `probing.audit` on fixture datasets
of N and 4N clips (each audited in a fresh process), and their ratio.

    python -m benchmarks.bench_audit_memory --small 2000 --large 8000

The datasets are written by `fixtures.reviewable` (3.1 s tones with ground truth, in our assembled schema); the
audit runs with one musicnn tagger (when converted) and every signal judge, as the pipeline's stage does. Prints
one JSON line: per size the peak RSS in MiB and the seconds taken, and `ratio` (large over small; target <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = (
    "import resource, sys; from probing.audit import main; main(sys.argv[1:]); "
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def audit_peak(folder: Path, models: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of one audit of `folder` in a fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PROBE, f"--dataset={folder}", "--models", *models, "--bootstrap=200",
         f"--output={folder.parent / (folder.name + '_audit.json')}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    peak = next(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("PEAK_KIB"))
    return peak / 1024, time.perf_counter() - start


def main(argv=None) -> dict:
    from fixtures.reviewable import write_reviewable

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=8000)
    parser.add_argument("--models", nargs="*", default=["MTT_musicnn"])
    args = parser.parse_args(argv)
    result = {"benchmark": "audit_memory", "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            folder = Path(tmp) / f"ds{n}"
            write_reviewable(folder, rows=n, seconds=3.1)
            peak, seconds = audit_peak(folder, args.models)
            result["sizes"][n] = {"peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1)}
    small, large = (result["sizes"][n]["peak_rss_mib"] for n in (args.small, args.large))
    result["ratio"] = round(large / small, 3)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
