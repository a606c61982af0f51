"""The review app's page time and memory, measured in a real browser: is a page of 12 clips ready in 2 s, on a small
dataset and on a large one, and is the server's memory flat in the dataset's size?

    python -m benchmarks.bench_review                                   # fixtures of 200 and 20,000 rows
    python -m benchmarks.bench_review --datasets runs/demo/dataset      # and the demo's dataset

For each dataset: the app in a process of its own (no judge: its musicnn scores load after the page), headless
Chromium (Debian's) through Playwright; per page, the time from clicking "Show" until all 12 cards are there,
every audio element has loaded its metadata (duration) and every spectrogram image has loaded; pages 1..N of the
first concept's positives, so no page is served from the app's clip cache. Then the server's resident memory
(VmRSS). Prints one JSON line: per dataset the page times (median, max) and RSS, and the RSS ratio of the
largest fixture to the smallest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.log import get_logger

logger = get_logger(__name__)

READY = """() => { const cards = document.querySelectorAll('.cc-clip');
  if (cards.length === 0) return false;
  return [...cards].every(c => c.querySelector('audio').readyState >= 1 && c.querySelector('img').complete
                               && c.querySelector('img').naturalWidth > 0); }"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(dataset: Path, run: Path, pages: int) -> dict:
    from playwright.sync_api import sync_playwright

    from review.app import spawn

    process, url = spawn(dataset, run)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#cc-show")
            page.locator("#cc-reviewer textarea, #cc-reviewer input").first.fill("bench")
            times, shown, available = [], [], pages
            for k in range(1, pages + 1):
                if k > available:
                    break  # the concept has fewer pages
                page.locator("#cc-pageno input").first.fill(str(k))
                start = time.perf_counter()
                page.click("#cc-show")
                page.wait_for_function(
                    f"() => document.querySelector('#cc-gallery').textContent.includes('page {k} of')"
                )
                page.wait_for_function(READY, timeout=30000)
                times.append(time.perf_counter() - start)
                shown.append(page.locator(".cc-clip").count())
                text = page.locator("#cc-gallery p").first.text_content()
                available = int(text.split(" of ")[1].split()[0])
            browser.close()
        return {
            "page_seconds_median": round(statistics.median(times), 3),
            "page_seconds_max": round(max(times), 3),
            "pages": len(times),
            "clips_per_page": shown,
            "server_rss_mb": round(rss_mb(process.pid), 1),
        }
    finally:
        process.kill()
        process.wait()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200, 20000], help="fixture sizes")
    parser.add_argument("--seconds", type=float, default=1.0, help="each fixture clip's length")
    parser.add_argument("--datasets", nargs="*", default=[], help="further dataset folders (the demo's)")
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="where fixtures and reviews go (default: a temporary folder)")
    args = parser.parse_args(argv)
    from fixtures.reviewable import write_reviewable

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_review_"))
    result = {"datasets": {}}
    for n in args.rows:
        folder = root / f"fixture_{n}"
        if not (folder / "build_summary.json").is_file():
            start = time.perf_counter()
            write_reviewable(folder, rows=n, seconds=args.seconds)
            logger.info("fixture of %d rows written in %.0f s", n, time.perf_counter() - start)
        result["datasets"][f"fixture {n} rows"] = measure(folder, root / f"run_{n}", args.pages)
        logger.info("%d rows: %s", n, result["datasets"][f"fixture {n} rows"])
    for dataset in args.datasets:
        result["datasets"][dataset] = measure(Path(dataset), root / "run_extra", args.pages)
    sizes = sorted(args.rows)
    if len(sizes) > 1:
        low, high = (result["datasets"][f"fixture {n} rows"]["server_rss_mb"] for n in (sizes[0], sizes[-1]))
        result["rss_ratio_largest_to_smallest"] = round(high / low, 3)
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
