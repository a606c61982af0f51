"""What the checked decode path costs: every clip of a split decoded through `AudioSplit.clips` (bytes checked
against the recorded audio_sha256, decoded, checked for silence) against the same clips' bytes decoded plainly
(`read_wave`), in the same run, the two interleaved over repeats; prints the median ratio (target <= 1.05).

    python -m benchmarks.bench_decode --dataset runs/demo/dataset
    python -m benchmarks.bench_decode --rows 400 --seconds 10       # a fixture in our layout, written first
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from builder.reader import AudioSplit, read_wave


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="a dataset folder (default: a fixture written here)")
    parser.add_argument("--rows", type=int, default=200, help="fixture rows")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixture clip length")
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            from fixtures.reviewable import write_reviewable

            write_reviewable(tmp, rows=args.rows, seconds=args.seconds)
            dataset = tmp
        audio = AudioSplit(dataset, args.split)
        ids = sorted(audio.position)
        encoded = dict(audio.encoded(ids))  # read once: both sides decode the same bytes from memory
        assert audio.sha256, "the dataset records no audio_sha256: nothing to check against"

        def plain():
            for data in encoded.values():
                read_wave(data)

        def checked():
            for id_, data in audio.encoded(ids):
                audio.decode(id_, data)

        def read_only():
            for _ in audio.encoded(ids):
                pass

        times = {"plain": [], "checked": [], "read": []}
        for _ in range(args.repeats):
            for name, fn in (("read", read_only), ("plain", plain), ("checked", checked)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    # the checked path reads the row groups too: compare decoding work, read time taken off
    ratio = statistics.median((c - r) / p for c, r, p in zip(times["checked"], times["read"], times["plain"]))
    result = {"clips": len(ids), "skipped": len(audio.skipped), "median_s": {k: round(statistics.median(v), 3)
              for k, v in times.items()}, "checked_over_plain": round(ratio, 3)}  # fmt: skip
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
