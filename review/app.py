"""Listen and judge: a Gradio app that pages through a concept's positive, negative or random clips and records,
per clip, whether the concept is audible and whether the caption is right.

    python -m review --dataset runs/demo/dataset --run_dir runs/demo
    python -m review --dataset bsienkiewicz/ConceptCaps --run_dir runs/my_reviews   # a published dataset

The page (12 clips) shows each clip's audio player, log-mel spectrogram, caption, attribute lists, CLAP score, the
rendered ground truth where there is one (tempo, meter, key, style, stems and their levels) and the musicnn
judge's probability for the concept's paired tag (computed for the clips on the page, when the converted weights
are there). Verdicts are appended to `<run_dir>/reviews.jsonl` (`review.store`); the `reviews` pipeline step
publishes them with the dataset. The server binds to 127.0.0.1 unless `--host` says otherwise, makes no share
link and serves the dataset's audio by (split, id) and nothing else: Gradio's own file route gets no allowed path.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fastapi import Request

from builder.reader import ClipError
from builder.reviews import QUESTIONS, Verdict
from core.cli import cli
from core.config import arg, parse_args, run_dir
from core.constants import SPLITS
from core.errors import DataError
from core.log import get_logger
from probing.musicnn import DEFAULT_TAGGERS, MODELS
from review.data import ROLES, ReviewData, media_type, spectrogram_png
from review.store import ReviewStore, now

logger = get_logger(__name__)

CSS = """
.cc-page { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
.cc-clip { border: 1px solid #ccc; border-radius: 6px; padding: 8px; font-size: 13px; }
.cc-clip audio { width: 100%; } .cc-clip img { width: 100%; height: 96px; image-rendering: pixelated; }
.cc-caption { font-style: italic; } .cc-meta { color: #555; } .cc-judge { color: #345; }
.cc-v { margin: 2px; padding: 2px 8px; border: 1px solid #888; border-radius: 4px; background: #f4f4f4; cursor:
pointer; }
.cc-v.cc-chosen { background: #2b6cb0; color: white; border-color: #2b6cb0; }
.cc-error { color: #b00; }
"""

# Verdict buttons and judge scores, handled in the page: one delegated listener on the gallery.
PAGE_JS = """
const nameBox = () => document.querySelector('#cc-reviewer textarea, #cc-reviewer input');
element.addEventListener('click', async (event) => {
  const button = event.target.closest('button.cc-v');
  if (!button) return;
  const clip = button.closest('.cc-clip'), question = button.closest('.cc-q');
  const reviewer = (nameBox() && nameBox().value.trim()) || '';
  const status = clip.querySelector('.cc-status');
  if (!reviewer) { status.textContent = 'enter your name above first'; status.className = 'cc-status cc-error';
  return; }
  const body = {split: clip.dataset.split, id: clip.dataset.id, concept: clip.dataset.concept,
                question: question.dataset.question, answer: button.dataset.answer, reviewer: reviewer};
  const response = await fetch('/review_api/verdict', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                      body: JSON.stringify(body)});
  if (response.ok) {
    question.querySelectorAll('button.cc-v').forEach(b => b.classList.toggle('cc-chosen', b === button));
    status.textContent = 'saved'; status.className = 'cc-status';
  } else {
    status.textContent = 'not saved: ' + (await response.text()); status.className = 'cc-status cc-error';
  }
});
new MutationObserver(() => {
  element.querySelectorAll('.cc-judge[data-src]').forEach(async (node) => {
    const src = node.dataset.src; node.removeAttribute('data-src');
    const response = await fetch(src);
    node.textContent = response.ok ? (await response.json()).text : 'judge: unavailable';
  });
}).observe(element, {childList: true, subtree: true});
"""


@dataclass
class ReviewArguments:
    """Listen to a dataset's concept sets and record verdicts."""

    dataset: str | None = arg(None, "dataset folder or Hub id (default: run dir/dataset)")
    run_dir: str | None = arg(None, "where reviews.jsonl is written (default: $CONCEPTCAPS_RUN_DIR, else runs/demo)")
    host: str = arg("127.0.0.1", "address to bind (0.0.0.0 exposes the app to the network)")
    port: int = arg(7860, "port")
    judges: list[str] = arg(
        factory=lambda: list(DEFAULT_TAGGERS), help="musicnn models whose tag scores are shown ('none' for no judge)"
    )


class Judge:
    """The musicnn tagger's probability for a concept's paired tag on a clip's first 3 s patch (the clips on the
    page only; a few hundred kept)."""

    def __init__(self, name: str):
        from probing.musicnn import load_musicnn
        from probing.tagger_tags import concept_tags
        from review.data import LRU

        self.name, self.error, self.tagger, self.pairs = name, None, None, {}
        try:
            self.tagger = load_musicnn(name)
            self.pairs = concept_tags(MODELS[name].vocabulary, self.tagger.labels)
        except Exception as e:  # no converted weights here: the page says so
            self.error = str(e).splitlines()[0][:200]
        self.cache = LRU(512)

    def text(self, wave_of, sha: str, concept: str) -> str:
        """The judge's score of the clip for `concept`; `wave_of(seconds, rate)` decodes it (checked) if needed."""
        if self.tagger is None:
            return f"{self.name}: unavailable ({self.error})"
        tag = self.pairs.get(concept)
        if tag is None:
            return f"{self.name}: no tag for {concept!r}"
        if sha not in self.cache:
            import numpy as np
            import torch

            from probing.musicnn import SAMPLING_RATE, seconds_for

            wave = wave_of(seconds_for(1), SAMPLING_RATE)
            if len(wave) < int(seconds_for(1) * SAMPLING_RATE):
                return f"{self.name}: the clip is shorter than its 3 s patch"
            with torch.no_grad():
                self.cache.put(sha, self.tagger(torch.from_numpy(wave[None].astype(np.float32)))[0].numpy())
        probs = self.cache[sha]
        k = self.tagger.labels.index(tag)
        rank = int((probs > probs[k]).sum()) + 1
        return f"{self.name} '{tag}' {probs[k]:.2f} (rank {rank} of {len(probs)})"


def clip_card(row: dict, split: str, concept: str, given: dict[str, str]) -> str:
    """One clip's card; every text from the dataset or a reviewer is escaped."""
    e = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    base = f"/review_api/clip/{e(split)}/{e(row['id'])}"
    lists = " · ".join(f"<b>{e(c)}</b>: {e(', '.join(v))}" for c, v in row["categories"].items() if v)
    facts = []
    if row.get("clap_score") is not None:
        facts.append(f"CLAP {row['clap_score']:.3f}")
    if row.get("bpm") is not None:
        facts.append(f"{row['bpm']:.0f} bpm {e(row.get('meter', ''))} {e(row.get('key', ''))}")
    if row.get("style"):
        facts.append(f"style {e(row['style'])}")
    stems = ", ".join(f"{e(s['concept'])} {s['share_db']:.1f} dB" for s in row.get("stems") or [])
    if stems:
        facts.append(f"stems: {stems}")
    questions = []
    for question, answers in QUESTIONS.items():
        prompt = f"Is “{e(concept)}” audible?" if question == "audible" else "Is the caption right?"
        buttons = "".join(
            f'<button class="cc-v{" cc-chosen" if given.get(question) == a else ""}" data-answer="{a}">{a}</button>'
            for a in answers
        )
        questions.append(f'<div class="cc-q" data-question="{question}">{prompt} {buttons}</div>')
    judge = f"{base}/judge?concept={html.escape(concept, quote=True)}"
    return (
        f'<div class="cc-clip" data-split="{e(split)}" data-id="{e(row["id"])}" data-concept="{e(concept)}">'
        f'<div><b>{e(row["id"])}</b></div><audio controls preload="metadata" src="{base}/audio"></audio>'
        f'<img alt="log-mel spectrogram" src="{base}/spectrogram.png">'
        f'<p class="cc-caption">{e(row.get("caption", ""))}</p><p>{lists}</p>'
        f'<p class="cc-meta">{" · ".join(facts)}</p><p class="cc-judge" data-src="{judge}">judge: …</p>'
        f'{"".join(questions)}<div class="cc-status"></div></div>'
    )


VERDICT_FIELDS = ("split", "id", "concept", "question", "answer", "reviewer")
MAX_FIELD = 200  # characters of any field a browser sends


def verdict_fields(body) -> dict[str, str]:
    """The fields of a posted verdict, each a string of at most MAX_FIELD characters; else a ValueError naming the
    field (a JSON object, number or list is never turned into text)."""
    if not isinstance(body, dict):
        raise ValueError("a verdict is a JSON object: " + ", ".join(VERDICT_FIELDS))
    out = {}
    for name in VERDICT_FIELDS:
        value = body.get(name)
        if not isinstance(value, str):
            raise ValueError(f"field {name!r}: a string is required, not {type(value).__name__}")
        if len(value) > MAX_FIELD:
            raise ValueError(f"field {name!r}: at most {MAX_FIELD} characters")
        out[name] = value
    return out


def build_app(data: ReviewData, store: ReviewStore, judges: Sequence[Judge] = ()):
    """The FastAPI app: the review API under /review_api and the Gradio page at /."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    app = FastAPI()
    splits = [s for s in SPLITS if _has_split(data, s)]
    if not splits:
        raise DataError(data.dataset, "no split with audio and concept sets to review")

    def clip_or_404(split: str, id_: str) -> tuple[bytes, str]:
        try:
            if not data.has(split, id_):
                raise KeyError(id_)
            return data.encoded(split, id_)
        except ClipError as e:  # a clip whose bytes changed: named, never served
            raise HTTPException(422, str(e)) from None
        except (KeyError, DataError):
            raise HTTPException(404, "no such clip in this dataset") from None

    def wave_or_422(split: str, id_: str, seconds: float, rate: int):
        clip_or_404(split, id_)
        try:
            return data.wave(split, id_, seconds, rate)
        except ClipError as e:  # undecodable or silent: the page says which clip and why
            raise HTTPException(422, str(e)) from None

    @app.get("/review_api/clip/{split}/{id_}/audio")
    def audio(split: str, id_: str):
        body, _ = clip_or_404(split, id_)
        return Response(body, media_type=media_type(body), headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/review_api/clip/{split}/{id_}/spectrogram.png")
    def spectrogram(split: str, id_: str):
        return Response(spectrogram_png(wave_or_422(split, id_, 30.0, 16000)), media_type="image/png")

    @app.get("/review_api/clip/{split}/{id_}/judge")
    def judge_score(split: str, id_: str, concept: str):
        _, sha = clip_or_404(split, id_)

        def wave_of(seconds: float, rate: int):
            return wave_or_422(split, id_, seconds, rate)

        return JSONResponse({"text": " · ".join(j.text(wave_of, sha, concept) for j in judges) or "judge: none"})

    @app.post("/review_api/verdict")
    async def verdict(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("a verdict is a JSON object: " + ", ".join(VERDICT_FIELDS), 400)
        try:
            fields = verdict_fields(body)
        except ValueError as e:
            return PlainTextResponse(str(e), 400)
        split, id_, concept = fields["split"], fields["id"], fields["concept"]
        if split not in SPLITS:
            return PlainTextResponse(f"field 'split': {split[:40]!r} is not one of {list(SPLITS)}", 400)
        if not data.has(split, id_):
            return PlainTextResponse(f"field 'id': no clip {id_[:80]!r} in the {split} split of this dataset", 404)
        if concept not in data.concepts(split):
            return PlainTextResponse(f"field 'concept': the {split} split has no sets for {concept[:80]!r}", 400)
        try:
            sha = data.audio_sha256(split, id_)
            verdict = Verdict(data.name, data.version, id_, sha, concept, fields["question"], fields["answer"],
                              fields["reviewer"].strip(), now())  # fmt: skip
            store.append(verdict)
        except ClipError as e:
            return PlainTextResponse(str(e), 422)
        except ValueError as e:
            return PlainTextResponse(str(e), 400)
        return JSONResponse({"ok": True})

    def show(reviewer: str, split: str, concept: str, role: str, page: float):
        if not concept:
            return "<p>Choose a concept.</p>", gr.update()
        try:
            rows, pages = data.page(split, concept, role, int(page or 1) - 1)
        except DataError as e:
            return f'<p class="cc-error">{html.escape(str(e))}</p>', gr.update()
        given = {}
        for v in store.latest(reviewer.strip()) if reviewer.strip() else []:
            if v.concept == concept:
                given.setdefault(v.id, {})[v.question] = v.answer
        cards = "".join(clip_card(r, split, concept, given.get(r["id"], {})) for r in rows)
        head = (
            f"<p>{html.escape(concept)} · {html.escape(split)} · {role}: page {min(int(page or 1), pages)} of {pages}"
            f" · dataset {html.escape(data.name)} {html.escape(data.version)}</p>"
        )
        return head + f'<div class="cc-page">{cards}</div>', gr.update(maximum=pages)

    def concepts_of(split: str):
        names = data.concepts(split)
        return gr.update(choices=names, value=names[0] if names else None)

    with gr.Blocks(title="ConceptCaps review") as page:
        gr.Markdown("## ConceptCaps review: is the concept audible, is the caption right?")
        with gr.Row():
            reviewer = gr.Textbox(
                label="Your name (asked once, kept in this browser)", elem_id="cc-reviewer", max_length=80
            )
            split = gr.Dropdown(splits, value=splits[0], label="Split", elem_id="cc-split")
            first = data.concepts(splits[0])
            concept = gr.Dropdown(first, value=first[0] if first else None, label="Concept", elem_id="cc-concept")
            role = gr.Radio(list(ROLES), value="positive", label="Set", elem_id="cc-role")
            number = gr.Number(value=1, minimum=1, precision=0, label="Page", elem_id="cc-pageno")
            button = gr.Button("Show", elem_id="cc-show")
        gallery = gr.HTML(elem_id="cc-gallery", js_on_load=PAGE_JS)
        # the name is asked once: kept in the browser's local storage (the secret only obscures it there)
        saved_name = gr.BrowserState("", storage_key="cc-reviewer", secret="conceptcaps-review")
        page.load(lambda name: name or gr.update(), saved_name, reviewer)  # never over a name being typed
        reviewer.change(lambda name: name, reviewer, saved_name)
        inputs = [reviewer, split, concept, role, number]
        button.click(show, inputs, [gallery, number])
        split.change(concepts_of, split, concept)
        for control in (concept, role, number):
            control.change(show, inputs, [gallery, number])
    return gr.mount_gradio_app(
        app, page, path="/", allowed_paths=[], css=CSS, footer_links=[], run_history=False
    )  # no copy of inputs kept in the browser


def _has_split(data: ReviewData, split: str) -> bool:
    try:
        data.split(split)
        return bool(data.concepts(split))
    except DataError:
        return False


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = parse_args(ReviewArguments, "review", argv)
    run = run_dir(args.run_dir)
    dataset = args.dataset or str(run / "dataset")
    data = ReviewData(dataset)
    app = build_app(data, ReviewStore(run), [Judge(name) for name in args.judges if name != "none"])
    logger.info(
        "reviewing %s (%s); verdicts go to %s; open http://%s:%d",
        data.name,
        data.version,
        Path(run) / "reviews.jsonl",
        args.host,
        args.port,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    cli(main, lock=False)


def spawn(dataset: str | Path, run: str | Path, judges: Sequence[str] = ("none",), timeout_s: float = 120.0):
    """Start the app in a process of its own on a free local port; returns (process, base URL) once it answers.
    For tests and benchmarks: stop it with `process.kill()`."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(run) / "review_server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # a file, not a pipe: a pipe nobody reads would block the server when full
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "review",
                "--dataset",
                str(dataset),
                "--run_dir",
                str(run),
                "--port",
                str(port),
                "--judges",
                *judges,
            ],
            cwd=Path(__file__).resolve().parents[1],
            stdout=out,
            stderr=out,
        )
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the review app exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"the review app did not answer at {url} within {timeout_s:.0f} s")
