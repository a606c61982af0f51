"""The review app, tested as a person uses it: headless Chromium (Debian's package) driven by Playwright on a
fixture dataset; verdicts appended without loss under concurrency and kill -9; the dataset keeping them."""

import asyncio
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from multiprocessing import Process
from pathlib import Path

import pytest

from builder.reviews import Verdict, apply_reviews, cohen_kappa, read_verdicts
from fixtures.reviewable import write_reviewable
from review.app import spawn
from review.store import ReviewStore, now

pytestmark = pytest.mark.slow  # a real browser against app servers: the full tier only


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIL = ' <script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    write_reviewable(root / "dataset", rows=60, seconds=4.0, caption_suffix=EVIL)
    process, url = spawn(root / "dataset", root)
    yield root, url, process
    process.kill()
    process.wait()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail("the browser tests need Debian's chromium (scripts/setup.sh installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path, request):
    context = browser.new_context()
    page = context.new_page()
    yield page
    if getattr(request.node, "failed", False):  # the page as it was, beside the test's other files
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
    context.close()


def show(page, url, reviewer, concept=None, role="positive"):
    page.goto(url + "/")
    page.wait_for_selector("#cc-show")
    box = page.locator("#cc-reviewer textarea, #cc-reviewer input").first
    if reviewer is not None:
        box.fill(reviewer)
    else:  # the name this browser gave before comes back from its local storage
        page.wait_for_function("document.querySelector('#cc-reviewer textarea, #cc-reviewer input').value !== ''")
    if concept:
        page.locator("#cc-concept input").first.click()
        page.get_by_role("option", name=concept, exact=True).click()
    if role != "positive":
        page.get_by_label(role, exact=True).check()
    page.click("#cc-show")
    page.wait_for_selector(".cc-clip")
    if concept:
        page.wait_for_selector(f'.cc-clip[data-concept="{concept}"]')
    return page.locator(".cc-clip")


def test_a_reviewer_listens_records_verdicts_and_finds_them_after_a_reload(server, page):
    root, url, _ = server
    clips = show(page, url, "Ann <b>bold</b>", concept="electric guitar")
    assert clips.count() == 12
    duration = page.evaluate("""async () => { const a = document.querySelector('.cc-clip audio');
        if (isNaN(a.duration)) await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));
        return a.duration; }""")
    assert duration == pytest.approx(4.0, abs=0.05)
    first = clips.first
    clip_id = first.get_attribute("data-id")
    first.locator('.cc-q[data-question="audible"] button[data-answer="no"]').click()
    first.locator('.cc-q[data-question="caption"] button[data-answer="wrong"]').click()
    page.wait_for_function("document.querySelectorAll('.cc-chosen').length == 2")
    assert first.locator(".cc-status").text_content() == "saved"
    page.reload()  # the name is kept in the browser; the verdicts come back from the reviews file
    clips = show(page, url, None, concept="electric guitar")
    assert page.locator("#cc-reviewer textarea, #cc-reviewer input").first.input_value() == "Ann <b>bold</b>"
    chosen = clips.first.locator(".cc-chosen")
    assert clips.first.get_attribute("data-id") == clip_id
    assert [chosen.nth(i).get_attribute("data-answer") for i in range(chosen.count())] == ["no", "wrong"]
    lines = [json.loads(x) for x in (root / "reviews.jsonl").read_text().splitlines()]
    mine = [x for x in lines if x["reviewer"] == "Ann <b>bold</b>"]
    assert {(x["id"], x["concept"], x["question"], x["answer"]) for x in mine} == {
        (clip_id, "electric guitar", "audible", "no"),
        (clip_id, "electric guitar", "caption", "wrong"),
    }
    assert mine[0]["dataset_version"] == "0.1.0" and len(mine[0]["audio_sha256"]) == 64
    # the judge line and the spectrogram load; the dataset's text is shown, never run
    page.wait_for_function("!document.querySelector('.cc-judge').textContent.includes('…')")
    page.wait_for_function(
        "document.querySelector('.cc-clip img').complete && document.querySelector('.cc-clip img').naturalWidth > 0"
    )
    assert page.evaluate("window.pwned") is None
    assert "<script>" in clips.first.locator(".cc-caption").text_content()


def test_pages_are_bounded_and_sets_switch(server, page):
    _, url, _ = server
    clips = show(page, url, "Bo", concept="piano", role="negative")
    ids = [clips.nth(i).get_attribute("data-id") for i in range(clips.count())]
    assert 0 < len(ids) <= 12
    assert "page 1 of" in page.locator("#cc-gallery").text_content()


def test_two_browsers_record_fifty_verdicts_each_at_once_and_none_is_lost(server):
    from playwright.async_api import async_playwright

    root, url, _ = server
    before = len((root / "reviews.jsonl").read_text().splitlines()) if (root / "reviews.jsonl").exists() else 0

    async def reviewer(browser, name):
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(url + "/")
        await page.wait_for_selector("#cc-show")
        await page.locator("#cc-reviewer textarea, #cc-reviewer input").first.fill(name)
        await page.click("#cc-show")
        await page.wait_for_selector(".cc-clip")
        buttons = page.locator("button.cc-v")
        count = await buttons.count()
        for k in range(50):
            async with page.expect_response("**/review_api/verdict") as response:
                await buttons.nth(k % count).click()
            assert (await response.value).ok
        await context.close()

    async def main():
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            await asyncio.gather(reviewer(browser, "Cy"), reviewer(browser, "Di"))
            await browser.close()

    asyncio.run(main())
    lines = (root / "reviews.jsonl").read_text().splitlines()[before:]
    assert len(lines) == 100
    rows = [json.loads(x) for x in lines]  # none torn
    assert sorted(r["reviewer"] for r in rows) == ["Cy"] * 50 + ["Di"] * 50


def test_the_app_serves_the_datasets_audio_and_nothing_else(server):
    root, url, _ = server
    (root / "dataset" / "audio" / "link.parquet").symlink_to("/etc/passwd")

    def status(path, data=None):
        try:
            request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
            return urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as e:
            return e.code

    assert status("/review_api/clip/train/rv000000/audio") == 200
    for path in [
        "/review_api/clip/train/..%2F..%2F..%2Fetc%2Fpasswd/audio",
        "/review_api/clip/train/%2Fetc%2Fpasswd/audio",
        "/review_api/clip/..%2Faudio/rv000000/audio",
        "/review_api/clip/train/link.parquet/audio",
        "/review_api/clip/train/rv999999/audio",
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={root}/dataset/audio/link.parquet",
        f"/gradio_api/file={root}/reviews.jsonl",
        "/gradio_api/file=../../etc/passwd",
    ]:
        assert status(path) in (403, 404), path
    bad = json.dumps(
        {
            "split": "train",
            "id": "rv000000",
            "concept": "rock",
            "question": "audible",
            "answer": "maybe",
            "reviewer": "Ann",
        }
    ).encode()
    assert status("/review_api/verdict", bad) == 400  # an unknown answer is refused, never written
    unknown = json.dumps(
        {
            "split": "train",
            "id": "rv000000",
            "concept": "<b>no such concept</b>",
            "question": "audible",
            "answer": "no",
            "reviewer": "Ann",
        }
    ).encode()
    assert status("/review_api/verdict", unknown) == 400
    missing = json.dumps(
        {"split": "train", "id": "../x", "concept": "rock", "question": "audible", "answer": "no", "reviewer": "Ann"}
    ).encode()
    assert status("/review_api/verdict", missing) == 404
    typed = json.dumps(
        {
            "split": "train",
            "id": "rv000000",
            "concept": "rock",
            "question": "audible",
            "answer": "no",
            "reviewer": {"a": 1},
        }
    ).encode()
    assert status("/review_api/verdict", typed) == 400  # an object is never stored as the name "{'a': 1}"
    assert not (root / "reviews.jsonl").exists() or "{'a': 1}" not in (root / "reviews.jsonl").read_text()


def _append_many(run, name, n):
    store = ReviewStore(run)
    for k in range(n):
        store.append(Verdict("d", "1", f"id{k}", "0" * 64, "rock", "audible", "yes", name, now()))


def test_processes_appending_at_once_never_tear_a_line_and_a_torn_line_is_skipped(tmp_path):
    workers = [Process(target=_append_many, args=(tmp_path, f"w{k}", 200)) for k in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    verdicts, skipped = read_verdicts(tmp_path / "reviews.jsonl")
    assert len(verdicts) == 600 and skipped == 0
    with (tmp_path / "reviews.jsonl").open("a") as f:
        f.write('{"dataset": "d", "id": "torn')  # a write cut off by a crash
    _append_many(tmp_path, "after", 1)
    verdicts, skipped = read_verdicts(tmp_path / "reviews.jsonl")
    assert len(verdicts) == 601 and skipped == 1 and verdicts[-1].reviewer == "after"


def test_a_killed_server_loses_no_answered_verdict(tmp_path):
    answered, train = 0, [e["id"] for e in write_reviewable(tmp_path / "dataset", rows=30, seconds=1.0)["train"]]
    for round_ in range(2):
        process, url = spawn(tmp_path / "dataset", tmp_path)
        try:
            for k in range(10):
                body = json.dumps(
                    {
                        "split": "train",
                        "id": train[k],
                        "concept": "rock",
                        "question": "audible",
                        "answer": "yes",
                        "reviewer": f"r{round_}",
                    }
                ).encode()
                request = urllib.request.Request(
                    url + "/review_api/verdict", data=body, headers={"Content-Type": "application/json"}
                )
                assert urllib.request.urlopen(request, timeout=30).status == 200
                answered += 1
        finally:
            os.kill(process.pid, signal.SIGKILL)  # between verdicts (and never left running)
            process.wait()
    verdicts, skipped = read_verdicts(tmp_path / "reviews.jsonl")
    assert len(verdicts) == answered == 20 and skipped == 0


def test_cohen_kappa():
    assert cohen_kappa(["yes", "no", "yes", "no"], ["yes", "no", "yes", "no"]) == 1.0
    assert cohen_kappa(["yes", "yes", "no", "no"], ["yes", "no", "yes", "no"]) == 0.0
    assert cohen_kappa(["yes", "yes"], ["yes", "yes"]) is None  # chance agreement is total: undefined
    assert cohen_kappa(["yes", "no", "no", "no"], ["yes", "yes", "no", "no"]) == 0.5


def test_verdicts_apply_to_the_audio_they_were_given_on(tmp_path):
    examples = [
        {"id": "a", "split": "train", "tags": ["rock", "piano"], "audio_sha256": "1" * 64},
        {"id": "b", "split": "test", "tags": ["jazz"], "audio_sha256": "2" * 64},
    ]
    store = ReviewStore(tmp_path)
    for reviewer, answer in (("x", "yes"), ("x", "no"), ("y", "yes")):  # x changed its mind: its last answer counts
        store.append(Verdict("d", "1", "a", "1" * 64, "rock", "audible", answer, reviewer, now()))
    store.append(Verdict("d", "1", "b", "9" * 64, "jazz", "audible", "no", "x", now()))  # the audio changed since
    store.append(Verdict("d", "1", "gone", "3" * 64, "jazz", "audible", "no", "x", now()))
    unheard, rows, summary = apply_reviews(tmp_path, examples)
    assert unheard == {"a": {"rock"}}
    assert summary["stale_audio_changed"] == 1 and summary["unknown_clip"] == 1 and summary["verdicts"] == 2
    assert summary["concepts"]["rock"] == {
        "clips_reviewed": 1,
        "judged": 2,
        "audible_share": 0.5,
        "unsure": 0,
        "removed_from_positives": 1,
    }
    assert {r["reviewer"] for r in rows} == {"reviewer-2d711642", "reviewer-a1fce436"}  # pseudonyms, not names
    assert all(r["split"] == "train" for r in rows)


def test_the_judge_scores_a_clip_or_says_why_not(tmp_path):
    import io

    import numpy as np
    import soundfile as sf

    from builder.reader import read_wave
    from review.app import Judge

    t = np.arange(4 * 32000) / 32000
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 32000, format="FLAC")

    def wave_of(seconds, rate):
        return read_wave(buffer.getvalue(), seconds, rate)

    def never(seconds, rate):
        raise AssertionError("decoded twice")

    judge = Judge("MTT_musicnn")
    text = judge.text(wave_of, "a" * 64, "piano")
    if judge.tagger is None:  # no converted weights on this machine: the page says so
        assert text.startswith("MTT_musicnn: unavailable (")
    else:
        assert text.startswith("MTT_musicnn 'piano' 0.") and "of 50)" in text
        assert judge.text(never, "a" * 64, "piano") == text  # scored once per audio sha256
    assert "no tag for 'jazz'" in judge.text(wave_of, "b" * 64, "jazz") or judge.tagger is None
    assert Judge("MSD_nope").text(never, "c" * 64, "rock").startswith("MSD_nope: unavailable")
