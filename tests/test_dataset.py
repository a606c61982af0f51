import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builder.assemble import main as assemble_main
from builder.push import PushArguments, push_dataset
from builder.relations import load_relations
from builder.splits import FAMILY_SUFFIX, assign_example_splits
from card.render import main as card_main
from card.render import read_examples
from core.errors import DataError, PublishError
from evaluation.score import main as clap_main
from generation.synthesize import main as synth_main
from tests.test_synthesis import write_captions

LISTS = [
    ["rock", "energetic", "electric guitar", "fast tempo"],
    ["jazz", "mellow", "piano", "slow tempo"],
    ["pop", "happy", "female vocal", "groovy"],
    ["classical", "calming", "strings", "medium tempo"],
    ["rock", "happy", "piano", "medium tempo"],
    ["pop", "energetic", "electric guitar", "slow tempo"],
    ["jazz", "calming", "strings", "fast tempo"],
    ["classical", "mellow", "female vocal", "groovy"],
]


def build_run(root: Path, tiny_models: Path, taxonomy, n: int = 48) -> Path:
    taxonomy.save(root / "taxonomy.json")
    write_captions(root / "captions.parquet", [LISTS[i % len(LISTS)] for i in range(n)], rejected=(n - 1,))
    synth_main(
        [
            f"--captions={root / 'captions.parquet'}",
            f"--output_dir={root / 'audio_shards'}",
            f"--model={tiny_models / 'tiny-musicgen'}",
            *"--duration_s 1 --batch_size 8 --shard_size 16 --top_k 50".split(),
        ]
    )
    clap_main(
        [
            "--audio_dir",
            str(root / "audio_shards"),
            "--output_dir",
            str(root / "clap_scores"),
            "--model",
            str(tiny_models / "tiny-clap"),
        ]
    )
    return root


def assemble_argv(run: Path, *extra):
    return [f"--run_dir={run}", *"--min_positives 3 --num_random_sets 2 --version 0.1.0".split(), *extra]


def assemble_with_card(run: Path, *card_extra) -> dict:
    summary = assemble_main(assemble_argv(run))
    card_main(["--dataset", str(run / "dataset"), "--repo_id", "someone/conceptcaps-test", *card_extra])
    return summary


@pytest.fixture(scope="module")
def assembled(tiny_models, taxonomy, tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("dataset_run"), tiny_models, taxonomy)
    summary = assemble_with_card(run)
    return run, run / "dataset", summary


def test_every_config_and_split_loads(assembled, tmp_path):
    from conceptcaps import open_dataset as load_dataset  # load_dataset with the folder's own cache

    _, folder, summary = assembled
    assert summary["examples"] == 47 and summary["rejected"] == {}  # the rejected caption was never synthesised
    default = load_dataset(str(folder))
    assert {s: len(default[s]) for s in default} == summary["per_split"]
    features = default["train"].features
    assert features["tags"].feature.dtype == "string" and features["clap_score"].dtype == "float32"
    audio = load_dataset(str(folder), "audio", split="validation")
    example = audio[0]
    decoded = example["audio"]
    samples = decoded.get_all_samples()  # torchcodec AudioDecoder
    assert samples.sample_rate == 32000 and samples.data.shape[-1] == 32000
    assert example["id"] == default["validation"][0]["id"] and example["caption"]
    streamed = next(iter(load_dataset(str(folder), "audio", split="train", streaming=True)))
    assert streamed["id"] == default["train"][0]["id"]
    concepts = load_dataset(str(folder), "concepts", split="train")
    assert set(concepts.features["role"].names) == {"positive", "negative", "random"}
    import datasets  # what a user types, with nothing of ours

    plain = datasets.load_dataset(str(folder), "concepts", split="test", cache_dir=str(tmp_path))
    assert len(plain) == len(load_dataset(str(folder), "concepts", split="test"))


def test_no_id_in_two_splits_and_parquet_reads_elsewhere(assembled):
    import pandas as pd

    _, folder, _ = assembled
    seen = {}
    for path in sorted((folder / "data").glob("*.parquet")):
        split = path.name.split("-")[0]
        for id_ in pq.read_table(path, columns=["id"]).column("id").to_pylist():
            assert seen.setdefault(id_, split) == split
    assert len(seen) == 47
    frame = pd.read_parquet(next((folder / "audio").glob("train-*.parquet")))
    assert isinstance(frame.iloc[0]["audio"]["bytes"], bytes)


def test_concept_set_rules(assembled):
    _, folder, _ = assembled
    rows = pq.read_table(next((folder / "concepts").glob("train-*.parquet"))).to_pylist()
    examples = {r["id"]: r for r in pq.read_table(next((folder / "data").glob("train-*.parquet"))).to_pylist()}
    roles = ["positive", "negative", "random"]
    by_concept = {}
    for r in rows:
        by_concept.setdefault(r["concept"], []).append(r)
    assert by_concept, "no concept got a set"
    relations = load_relations()
    assert any(c.endswith(FAMILY_SUFFIX) for c in by_concept)
    for concept, members in by_concept.items():
        positives = {m["id"] for m in members if roles[m["role"]] == "positive"}
        negatives = {m["id"] for m in members if roles[m["role"]] == "negative"}
        randoms = [{m["id"] for m in members if roles[m["role"]] == "random" and m["set_index"] == k} for k in (0, 1)]
        members = (
            relations.family(concept.removesuffix(FAMILY_SUFFIX)) if concept.endswith(FAMILY_SUFFIX) else {concept}
        )
        assert all(members & set(examples[i]["tags"]) for i in positives)
        assert not negatives & positives and all(not members & set(examples[i]["tags"]) for i in negatives)
        assert all(not s & positives for s in randoms) and not randoms[0] & randoms[1]
    summary = json.loads((folder / "concept_sets_summary.json").read_text())
    pairs = [
        (s["jsd_other_categories_before"], s["jsd_other_categories_after"])
        for s in summary["concepts"].values()
        if s["negatives"] and s["jsd_other_categories_before"] == s["jsd_other_categories_before"]
    ]
    assert sum(a for _, a in pairs) < sum(b for b, _ in pairs)  # matching brings negatives closer on other categories


def test_concept_examples_in_one_call(assembled):
    from conceptcaps import concept_examples

    _, folder, _ = assembled
    rows = pq.read_table(next((folder / "concepts").glob("train-*.parquet"))).to_pylist()
    concept = rows[0]["concept"]
    sets = concept_examples(str(folder), concept, split="train")
    assert all(concept in t for t in sets["positive"]["tags"]) and all(
        concept not in t for t in sets["negative"]["tags"]
    )
    assert len(sets["random"]) == 2
    with pytest.raises(ValueError, match="no concept set"):
        concept_examples(str(folder), "didgeridoo", split="train")


def test_card_yaml_parses_and_numbers_match(assembled):
    from huggingface_hub import DatasetCard

    _, folder, summary = assembled
    card = DatasetCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-sa-4.0" and {c["config_name"] for c in data["configs"]} == {
        "default",
        "audio",
        "concepts",
    }
    assert data["size_categories"] == ["n<1K"]
    for split, n in summary["per_split"].items():
        assert f"| {split} | {n} |" in card.text
    assert f"| **total** | **{summary['examples']}** |" in card.text
    assert (
        "ShareAlike term requires adaptations to carry the same licence" in card.text and "Western-centric" in card.text
    )
    assert str(folder.parent) not in card.text and "local model sha256:" in card.text  # model ids, never a path
    for image in ("concept_frequency.png", "cooccurrence.png", "clap_histogram.png"):
        assert (folder / "images" / image).stat().st_size > 1000


@pytest.mark.slow
def test_card_reports_sampling_and_lists_drawn_for_balance(tiny_models, taxonomy, tmp_path):
    import pyarrow as pa

    from generation.sample_tags import TAGS_SCHEMA

    run = build_run(tmp_path, tiny_models, taxonomy)
    captions = pq.read_table(run / "captions.parquet").to_pylist()
    rows = [
        {
            "id": r["id"],
            "tags": r["tags"],
            "genre": [],
            "mood": [],
            "instrument": [],
            "tempo": [],
            "seed": 0,
            "draw": k,
            "balanced_for": "piano" if "piano" in r["tags"] else None,
        }
        for k, r in enumerate(captions)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=TAGS_SCHEMA), run / "tags.parquet")
    (run / "tags_summary.json").write_text(
        json.dumps(
            {
                "lists": len(rows),
                "backend": {
                    "name": "symbolic",
                    "excluded": {"female vocal": "no vocals in the renderer"},
                    "marginal_jsd_before_after_exclusion": 0.01,
                },
                "balance": {"per_split": 1, "target_positives": 35, "lists_added": 12, "unreached": {"groovy": {}}},
            }
        )
    )
    judge = {
        "clips": 3000,
        "seconds": 10.0,
        "models": {
            "MTT_musicnn": {
                "tests": 152,
                "significant": [["violin", "classical", 1.0]],
                "expected_significant_up": [["violin", "classical"]],
                "expected_tested": [["violin", "classical"], ["piano", "classical"]],
                "random_concepts_significant_share": 0.0,
                "audit": {
                    "median_auc": 0.66,
                    "mapped": 2,
                    "concepts": {
                        "country": {"auc": 0.49, "interval": [0.45, 0.53]},
                        "piano": {"auc": 0.8, "interval": [0.75, 0.85]},
                    },
                },
            }
        },
    }
    (tmp_path / "judge.json").write_text(json.dumps(judge))
    summary = assemble_with_card(run, "--judge_tcav", str(tmp_path / "judge.json"))
    positives = summary["sampling"]["positives"]
    accepted = read_examples(run / "dataset", summary["configs"]["default"])
    assert positives["piano"]["drawn_for_balance"] == sum("piano" in e["tags"] for e in accepted) > 0
    assert positives["rock"]["drawn_for_balance"] == 0
    assert sum(positives["rock"][s] for s in ("train", "validation", "test")) == sum(
        "rock" in e["tags"] for e in accepted
    )
    card = (run / "dataset" / "README.md").read_text()
    assert "female vocal (no vocals in the renderer)" in card and "12 lists added" in card and "(groovy)" in card
    assert "| MTT_musicnn | 152 | violin → classical 1.00 | 1 of 2 | 0 % |" in card
    assert "| MTT_musicnn | 0.66 | 1 of 2 | country 0.49 [0.45, 0.53]; piano 0.80 [0.75, 0.85] |" in card
    assert "**country** (MTT_musicnn 0.49): a singer, twang" in card  # a genre short of 0.7, with its reason
    piano = positives["piano"]
    assert (
        f"| piano | instrument | {piano['train']} | {piano['validation']} | {piano['test']} | "
        f"{piano['drawn_for_balance']} |" in card
    )


def test_push_dry_run_and_calls_at_the_hub_boundary(assembled, monkeypatch):
    _, folder, _ = assembled
    plan = push_dataset(PushArguments(repo_id="someone/cc", dry_run=True), folder)
    assert plan["version"] == "0.1.0" and any(f["path"] == "README.md" for f in plan["files"])
    assert plan["order"] == ["data files", "README.md", "tag 0.1.0"]

    calls = []

    class FakeApi:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, a, k))

    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    push_dataset(PushArguments(repo_id="someone/cc", private=True), folder, api=FakeApi())
    assert [c[0] for c in calls] == ["create_repo", "upload_large_folder", "upload_file", "create_tag"]
    assert calls[0][2]["private"] is True and "README.md" in calls[1][2]["ignore_patterns"]
    assert calls[3][2]["tag"] == "0.1.0"


def test_the_push_checks_the_dataset_not_only_its_record(assembled, tmp_path):
    """A split's file deleted together with its line in checksums.json, a symbolic link to a file outside the
    folder, ids repeated across splits, a concept set naming an id its split lacks, an unreadable record: each
    refused in one line before anything is uploaded."""
    import json
    import shutil

    import pyarrow.parquet as pq

    from core.io import write_folder_record

    _, folder, _ = assembled

    def copy(name):
        out = tmp_path / name
        shutil.copytree(folder, out, ignore=shutil.ignore_patterns(".cache"))
        return out

    def push(path):
        return push_dataset(PushArguments(repo_id="someone/cc", dry_run=True), path)

    gone = copy("gone")
    test_file = next((gone / "data").glob("test-*.parquet"))
    record = json.loads((gone / "checksums.json").read_text())
    del record["files"][test_file.relative_to(gone).as_posix()]
    test_file.unlink()
    (gone / "checksums.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"README.md: config 'default' declares split 'test' \(data/test-\*\), which "
                       "matches no file"):  # fmt: skip
        push(gone)

    linked = copy("linked")
    (linked / "data" / "extra.parquet").symlink_to("/etc/passwd")
    with pytest.raises(DataError, match="data/extra.parquet is a symbolic link"):
        write_folder_record(linked)  # the card stage refuses to record it
    with pytest.raises(DataError, match="data/extra.parquet is a symbolic link"):
        push(linked)

    twice = copy("twice")
    train = next((twice / "data").glob("train-*.parquet"))
    validation = next((twice / "data").glob("validation-*.parquet"))
    rows = pq.read_table(validation)
    first = pq.read_table(train, columns=["id"])["id"][0].as_py()
    pq.write_table(rows.set_column(rows.schema.get_field_index("id"), "id", [[first] + rows["id"].to_pylist()[1:]]),
                   validation)  # fmt: skip
    write_folder_record(twice)  # recorded as it is: only the dataset's own checks can tell
    with pytest.raises(DataError, match=f"id '{first}' is in split 'train' and again in 'validation'"):
        push(twice)

    orphan = copy("orphan")
    sets = next((orphan / "concepts").glob("test-*.parquet"))
    rows = pq.read_table(sets)
    pq.write_table(rows.set_column(rows.schema.get_field_index("id"), "id", [["nobody"] * len(rows)]), sets)
    write_folder_record(orphan)
    with pytest.raises(
        DataError, match="the concepts config's test split names 1 id.s. the split lacks, e.g. 'nobody'"
    ):
        push(orphan)

    broken = copy("broken")
    (broken / "checksums.json").write_text("{not json")
    with pytest.raises(DataError, match=r"checksums.json: not valid JSON \("):
        push(broken)


def test_push_without_token_or_permission(assembled, monkeypatch, caplog):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    _, folder, _ = assembled
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PublishError, match="no Hugging Face token to push to someone/cc"):
        push_dataset(PushArguments(repo_id="someone/cc"), folder)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_secret_value")

    class Response:  # what the Hub answers a token without write access (no network here)
        status_code, headers, request = 403, {}, None

    class Forbidden:
        def create_repo(self, *a, **k):
            raise HfHubHTTPError("forbidden", response=Response())

    with pytest.raises(PublishError, match="someone/cc failed .the token cannot write to this repo.: HTTP 403") as e:
        push_dataset(PushArguments(repo_id="someone/cc"), folder, api=Forbidden())
    assert "hf_secret_value" not in str(e.value) and "hf_secret_value" not in caplog.text


def test_bad_shards_and_missing_pieces(assembled, tmp_path):
    run, _, _ = assembled
    broken = tmp_path / "run"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("dataset", "assembly"))
    shards = sorted((broken / "audio_shards").glob("shard-*.parquet"))
    shards[1].write_bytes(shards[1].read_bytes()[:100])
    with pytest.raises(DataError, match="shard-00001.parquet: unreadable shard"):
        assemble_main(assemble_argv(broken))
    assert not (broken / "dataset").exists()  # nothing half-published
    shards[1].unlink()
    with pytest.raises(DataError, match="shard-00001.parquet: missing, incomplete or corrupt shard"):
        assemble_main(assemble_argv(broken))


def test_a_corrupt_shard_or_clip_never_reaches_the_dataset(assembled, tmp_path):
    import pyarrow as pa

    from core.shards import write_shard
    from tests.test_reliability import flip_byte

    run, _, _ = assembled
    broken = tmp_path / "run"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("dataset", "assembly"))
    shard = broken / "audio_shards" / "shard-00002.parquet"
    flip_byte(shard)  # the footer stays intact: the ids still read
    with pytest.raises(DataError, match="shard-00002.parquet: missing, incomplete or corrupt shard"):
        assemble_main(assemble_argv(broken))
    assert not (broken / "dataset").exists() and not shard.exists()  # removed: rerunning synthesis redoes it
    shutil.copy(run / "audio_shards" / shard.name, shard)
    rows = pq.read_table(shard).to_pylist()
    audio = bytearray(rows[0]["audio"]["bytes"])
    audio[len(audio) // 2] ^= 0xFF  # a clip damaged before its shard was written: the shard's checksum matches
    rows[0]["audio"]["bytes"] = bytes(audio)
    write_shard(shard, pa.Table.from_pylist(rows, schema=pq.read_schema(shard)))
    with pytest.raises(DataError, match=f"shard-00002.parquet: id '{rows[0]['id']}': its audio does not match"):
        assemble_main(assemble_argv(broken))
    assert not (broken / "dataset").exists()


def test_caption_without_audio_is_an_error(assembled, tmp_path):
    run, _, _ = assembled
    broken = tmp_path / "run"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("dataset", "assembly"))
    rows = pq.read_table(broken / "captions.parquet").to_pylist()
    rows[-1]["status"] = "ok"  # the caption that was never synthesised now claims to be accepted
    import pyarrow as pa

    from generation.caption import CAPTION_SCHEMA

    pq.write_table(pa.Table.from_pylist(rows, schema=CAPTION_SCHEMA), broken / "captions.parquet")
    with pytest.raises(DataError, match="'cc-047' has an accepted caption but no audio"):
        assemble_main(assemble_argv(broken))


def test_too_few_positives_is_a_counted_skip(assembled):
    _, folder, summary = assembled
    skipped = json.loads((folder / "concept_sets_summary.json").read_text())["skipped_too_few_positives"]
    assert "didgeridoo" in skipped["train"]
    concepts_skipped = [c for c in skipped["train"] if not c.endswith(FAMILY_SUFFIX)]  # families are counted apart
    assert summary["concepts_with_sets"]["train"] == 200 - len(concepts_skipped)


def test_dataset_splits_are_deterministic():
    ids = [f"x{i}" for i in range(100)]
    a = assign_example_splits(ids, seed=0)
    assert a == assign_example_splits(list(reversed(ids)), seed=0)
    assert sorted(list(a.values()).count(s) for s in ("train", "validation", "test")) == [15, 15, 70]


def test_negative_matching_in_blocks_is_one_to_one_bounded_and_close_to_the_exact_one():
    import numpy as np

    from builder.splits import match_negatives

    rng = np.random.default_rng(1)
    pos = rng.random((300, 20)) < 0.3
    pos[:, 0] = True  # a confound: positives favour attribute 0
    cand = rng.random((900, 20)) < 0.3
    cand_ids = np.arange(1000, 1900)

    def imbalance(chosen):  # how far the chosen candidates' attribute frequencies are from the positives'
        return np.abs(cand[chosen - 1000].mean(0) - pos.mean(0)).sum()

    exact = match_negatives(pos, cand, cand_ids, np.random.default_rng(0), block=10_000)  # one block
    blocked = match_negatives(pos, cand, cand_ids, np.random.default_rng(0), block=400)  # three blocks
    for chosen in (exact, blocked):
        assert len(chosen) == len(set(chosen)) == 300 and set(chosen) <= set(cand_ids)
    assert cand[blocked - 1000, 0].mean() > cand[:, 0].mean() + 0.2  # the confound is matched in blocks too
    assert imbalance(blocked) < min(imbalance(cand_ids[:300]), imbalance(exact) + 0.25)
    assert np.array_equal(blocked, match_negatives(pos, cand, cand_ids, np.random.default_rng(0), block=400))  # seeded
    # more positives than candidates in a block, and overall: every candidate is used once, then it stops
    few = match_negatives(pos, cand[:200], cand_ids[:200], np.random.default_rng(0), block=64)
    assert sorted(few) == list(cand_ids[:200])


def test_fad_per_split_against_a_reference_set(assembled, tiny_models, tmp_path):
    import numpy as np
    import soundfile as sf

    from evaluation.fad import main as fad_main
    from evaluation.fad_reference import main as reference_main

    run, folder, _ = assembled
    rng = np.random.default_rng(0)
    for i in range(6):
        sf.write(tmp_path / f"ref{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    reference = tmp_path / "reference.npy"
    embeddings = reference_main(
        ["--audio_dir", str(tmp_path), "--output", str(reference), "--model", str(tiny_models / "tiny-clap")]
    )
    assert embeddings.shape[0] == 6
    report_path = tmp_path / "fad_report.json"
    report = fad_main(
        [
            f"--reference={reference}",
            f"--dataset={folder}",
            f"--clap_dir={run / 'clap_scores'}",
            f"--output={report_path}",
        ]
    )
    assert set(report["fad_per_split"]) == {"train", "validation", "test"}
    # the reference against itself is 0; against a copy shifted by d (same covariance) it is |d|^2 in closed form
    from evaluation.fad import frechet_audio_distance

    ref = np.load(reference)
    assert abs(frechet_audio_distance(ref, ref)) < 1e-6
    d = np.full(ref.shape[1], 0.05)
    assert frechet_audio_distance(ref, ref + d) == pytest.approx(float(d @ d), rel=1e-4, abs=1e-6)
    assert report["fad_per_split"]["train"] > 0  # generated clips are not the white-noise reference
    copy = tmp_path / "ds"
    shutil.copytree(folder, copy)
    card_main(["--dataset", str(copy), "--fad_report", str(report_path)])
    assert "FAD (CLAP embeddings) against the reference set: train" in (copy / "README.md").read_text()
    with pytest.raises(DataError, match="nope.npy: FAD reference embeddings not found"):
        fad_main(
            [
                f"--reference={tmp_path / 'nope.npy'}",
                f"--dataset={folder}",
                f"--clap_dir={run / 'clap_scores'}",
                f"--output={report_path}",
            ]
        )


def test_a_full_disk_at_assembly_is_one_clear_error_and_leaves_no_partial_folder(assembled, tmp_path, monkeypatch):
    import errno
    from collections import namedtuple

    import builder.assemble as assemble_module

    run, _, _ = assembled
    out = tmp_path / "ds"

    def full_disk(run_dir, folder, *args):
        (folder / "data").mkdir(exist_ok=True)
        (folder / "data" / "train-00000-of-00001.parquet").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(assemble_module, "write_configs", full_disk)
    with pytest.raises(
        DataError, match=r"ds.tmp: stage assemble: no space left on the device .* partial folder was removed"
    ):
        assemble_main(assemble_argv(run, "--output_dir", str(out)))
    assert not out.exists() and not out.with_name("ds.tmp").exists()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(assemble_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    with pytest.raises(DataError, match=r"stage assemble needs about .* GB free here"):
        assemble_main(assemble_argv(run, "--output_dir", str(out)))


def test_assembly_streams_into_the_dataset_with_no_other_copy(assembled, tmp_path, monkeypatch):
    """No datasets cache, no temporary directory: what assembly writes is the dataset folder, and its audio files
    are bounded by --max_shard_mb (several files per split when the audio is larger)."""
    import tempfile

    import datasets

    run, reference, summary = assembled

    def forbidden(*args, **kwargs):
        raise AssertionError("assembly wrote a copy outside the dataset folder")

    monkeypatch.setattr(tempfile, "mkdtemp", forbidden)
    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "__init__", forbidden)
    before = {p for p in run.rglob("*")}
    out = tmp_path / "ds"
    again = assemble_main(assemble_argv(run, "--output_dir", str(out), "--max_shard_mb", "0.05"))
    assert {p for p in run.rglob("*")} == before  # nothing new in the run directory either
    assert again["per_split"] == summary["per_split"]
    audio_files = sorted((out / "audio").glob("train-*.parquet"))
    assert len(audio_files) > 1 and all(p.stat().st_size < 0.05e6 + 40e3 for p in audio_files)
    ids = [i for p in audio_files for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    reference_ids = [
        i
        for p in sorted((reference / "audio").glob("train-*.parquet"))
        for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()
    ]
    assert ids == reference_ids and len(ids) == summary["per_split"]["train"]


def test_a_clip_whose_clap_score_is_not_finite_is_a_counted_skip(assembled, tiny_models, tmp_path, monkeypatch):
    import numpy as np

    from evaluation.score import ClapScorer

    run, _, summary = assembled
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("dataset", "assembly", "clap_scores"))
    real = ClapScorer.text_embeddings

    def one_nan(self, texts, batch_size=64):
        out = real(self, texts, batch_size)
        out[0] = np.nan
        return out

    monkeypatch.setattr(ClapScorer, "text_embeddings", one_nan)
    clap_main(
        [
            "--audio_dir",
            str(copy / "audio_shards"),
            "--output_dir",
            str(copy / "clap_scores"),
            "--model",
            str(tiny_models / "tiny-clap"),
        ]
    )
    shards = len(list((copy / "clap_scores").glob("shard-*.parquet")))
    again = assemble_main(assemble_argv(copy))
    assert again["rejected"] == {"score: non-finite CLAP score": shards}  # the first clip of each shard
    assert again["examples"] == summary["examples"] - shards


def test_listeners_verdicts_leave_the_positives_and_are_published_with_agreement(assembled, tmp_path):
    """A clip a reviewer judged "not audible" for a listed concept leaves that concept's positive set, stays in the
    dataset; the `reviews` config and the card's section report it, with Cohen's kappa between two reviewers."""
    from builder.reviews import Verdict
    from conceptcaps import open_dataset as load_dataset
    from review.store import ReviewStore

    source, folder, _ = assembled
    run = tmp_path / "run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("dataset"))
    roles = ["positive", "negative", "random"]
    rows = pq.read_table(next((folder / "concepts").glob("train-*.parquet"))).to_pylist()
    positives = sorted(r["id"] for r in rows if r["concept"] == "rock" and roles[r["role"]] == "positive")
    audio = {
        r["id"]: r["audio_sha256"]
        for p in (source / "audio_shards").glob("shard-*.parquet")
        for r in pq.read_table(p, columns=["id", "audio_sha256"]).to_pylist()
    }
    store = ReviewStore(run)
    for k, id_ in enumerate(positives[:4]):  # Ann hears rock in all but the first; Bo agrees on three of four
        store.append(
            Verdict("dataset", "0.1.0", id_, audio[id_], "rock", "audible", "no" if k == 0 else "yes", "Ann", 1.0)
        )
        store.append(
            Verdict("dataset", "0.1.0", id_, audio[id_], "rock", "audible", "yes" if k in (1, 2) else "no", "Bo", 2.0)
        )
    store.append(Verdict("dataset", "0.1.0", positives[5], "0" * 64, "rock", "audible", "no", "Bo", 3.0))  # stale audio
    summary = assemble_main(assemble_argv(run))
    card_main(["--dataset", str(run / "dataset"), "--repo_id", "someone/conceptcaps-test"])
    after = pq.read_table(next((run / "dataset" / "concepts").glob("train-*.parquet"))).to_pylist()
    kept = {r["id"] for r in after if r["concept"] == "rock" and roles[r["role"]] == "positive"}
    assert kept == set(positives) - {positives[0], positives[3]}  # judged not audible by a reviewer: out
    assert summary["examples"] == 47  # still in the dataset
    reviews = summary["reviews"]
    assert reviews["removed_from_positives"] == 2 and reviews["stale_audio_changed"] == 1 and reviews["reviewers"] == 2
    assert reviews["concepts"]["rock"]["audible_share"] == 0.625 and reviews["concepts"]["rock"]["clips_reviewed"] == 4
    assert reviews["agreement"] == [
        {"question": "audible", "reviewers": reviews["agreement"][0]["reviewers"], "shared": 4, "kappa": 0.5}
    ]
    published = load_dataset(str(run / "dataset"), "reviews", split="train")
    assert len(published) == 8 and len(set(published["reviewer"])) == 2  # the stale verdict is not published
    assert all(r.startswith("reviewer-") for r in published["reviewer"])  # pseudonyms, never names
    card = (run / "dataset" / "README.md").read_text()
    assert "## Listened to" in card and "| rock | 4 | 62 % | 0 | 2 |" in card and "0.50 over 4" in card
    assert "config_name: reviews" in card
    assert "config_name: reviews" not in (folder / "README.md").read_text()  # no verdicts: no such config


def test_a_folder_regenerated_in_place_never_opens_stale(tmp_path):
    """datasets keys its cache of a folder with a card on the card's `configs:` patterns, which stay the same when
    the folder is regenerated: the card's `dataset_info` (each split's rows and bytes) makes the key follow the
    content. Plain `load_dataset` on the same path, the same cache, after a regeneration with other rows."""
    import shutil

    from datasets import load_dataset

    from fixtures.reviewable import write_card, write_reviewable

    folder, cache = tmp_path / "ds", tmp_path / "cache"

    def build(rows):
        shutil.rmtree(folder, ignore_errors=True)
        write_reviewable(folder, rows=rows)
        write_card(folder)
        return len(load_dataset(str(folder), split="train", cache_dir=str(cache)))

    assert build(40) == 32
    assert build(80) == 64  # not the 32 rows of the first build
