import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from builder.caption_checks import CaptionChecker
from builder.prompting import build_example, build_messages, format_attributes
from builder.taxonomy import Taxonomy
from core.constants import CATEGORIES
from core.errors import DataError, ModelLoadError
from evaluation.caption_metrics import bertscore_f1, bleu, check_rates, mauve_score, rouge_l
from generation.caption import CaptionArguments, LLMCaptioner, caption_rows, read_tag_lists
from generation.caption import main as caption_main
from generation.sample_tags import TAGS_SCHEMA
from generation.template_captioner import template_caption
from tests.conftest import sft_argv
from training.train_captioner import main as sft_main
from training.train_captioner import parse


def write_tags(path, lists):
    rows = []
    for i, tags in enumerate(lists):
        rows.append(
            {
                "id": f"t-{i:04d}",
                "tags": tags,
                "genre": [],
                "mood": [],
                "instrument": [],
                "tempo": [],
                "seed": 0,
                "draw": i,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows, schema=TAGS_SCHEMA), path)
    return path


LISTS = [
    ["rock", "energetic", "electric guitar", "fast tempo"],
    ["jazz", "mellow", "piano", "upright bass", "slow tempo"],
    ["pop", "happy", "female vocal", "synthesizer", "groovy"],
    ["classical", "calming", "strings", "medium tempo"],
]


def test_prompt_format_is_shared_by_training_and_generation():
    attrs = {"genre": ["rock"], "mood": ["happy", "energetic"], "instrument": ["piano"], "tempo": []}
    assert format_attributes(attrs) == "Genre: rock\nMood: happy, energetic\nInstruments: piano"
    example = build_example(attrs, "A caption.")
    assert example["prompt"] == build_messages(attrs) and example["completion"][0]["content"] == "A caption."
    with pytest.raises(ValueError):
        format_attributes({c: [] for c in CATEGORIES})


def test_checks_on_hand_written_captions(taxonomy):
    checker = CaptionChecker(taxonomy)
    tags = ["rock", "energetic", "electric guitar", "fast tempo"]
    good = checker.check("An energetic rock song at a fast tempo, driven by a crunchy electric guitar riff.", tags)
    assert good.ok, good
    missing = checker.check("An energetic rock song driven by a crunchy electric guitar riff throughout.", tags)
    assert missing.reasons == ("missing attribute",) and missing.missing == ("fast tempo",)
    invented = checker.check(
        "An energetic rock song at a fast tempo with electric guitar, piano and a saxophone solo.", tags
    )
    assert invented.reasons == ("hallucinated attribute",) and set(invented.hallucinated) == {"piano", "saxophone"}
    # the longest match wins: an upright bass is not also a bass guitar
    assert checker.named_concepts("A jazz trio with upright bass and piano.") == ["jazz", "upright bass", "piano"]
    assert checker.check("", tags).reasons == ("empty",)
    assert "too short" in checker.check("Rock, energetic, electric guitar, fast.", tags).reasons
    assert (
        "prompt echo"
        in checker.check(
            "Genre: rock. Mood: energetic. Instruments: electric guitar. Tempo and rhythm: fast tempo.", tags
        ).reasons
    )
    assert (
        "too long"
        in checker.check("An energetic rock song at a fast tempo with electric guitar " + "la " * 100, tags).reasons
    )


def test_template_captioner_passes_the_checks(taxonomy, tiny_vae):
    checker = CaptionChecker(taxonomy)
    from generation.sample_tags import SamplingArguments, sample_tag_lists
    from training.constraints import CONSTRAINTS_NAME, Constraints
    from training.vae import load_checkpoint

    model, _, _ = load_checkpoint(tiny_vae[0])
    table, _ = sample_tag_lists(
        model, taxonomy, Constraints.load(tiny_vae[0] / CONSTRAINTS_NAME), SamplingArguments(num_lists=200)
    )
    for row in table.to_pylist():
        caption = template_caption({c: row[c] for c in CATEGORIES}, row["id"])
        assert checker.check(caption, row["tags"]).ok, caption
        assert caption == template_caption({c: row[c] for c in CATEGORIES}, row["id"])


def test_completion_only_label_mask(tiny_models, distilled_dir, tmp_path):
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from training.train_captioner import load_sft_datasets

    script_args, training_args, model_args = parse(sft_argv(tiny_models / "tiny-llama", distilled_dir, tmp_path))
    train, _, _ = load_sft_datasets(
        distilled_dir / "distilled.parquet",
        Taxonomy.load(distilled_dir / "taxonomy.json"),
        max_train_rows=4,
        max_eval_rows=1,
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_models / "tiny-llama")
    trainer = SFTTrainer(
        model=str(tiny_models / "tiny-llama"), args=training_args, train_dataset=train, processing_class=tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    for i in range(len(batch["input_ids"])):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        supervised = tokenizer.decode(ids[labels != -100])
        prompt = tokenizer.decode(ids[(labels == -100) & (batch["attention_mask"][i] == 1)])
        captions = [ex["completion"][0]["content"] for ex in train]
        assert supervised.replace("<|eot_id|>", "").strip() in captions  # the loss covers the caption only
        assert "Genre:" in prompt or "Mood:" in prompt or "Instruments:" in prompt
        assert "Genre:" not in supervised and "<|start_header_id|>" not in supervised


@pytest.mark.slow
@pytest.mark.parametrize("quantized", [True, False], ids=["qlora", "lora"])
def test_short_sft_run_lowers_validation_loss_and_saves_adapter(tiny_models, distilled_dir, tmp_path, quantized):
    out = tmp_path / "captioner"
    result = sft_main(
        sft_argv(
            tiny_models / "tiny-llama",
            distilled_dir,
            out,
            "--load_in_4bit",
            str(quantized).lower(),
            "--use_peft",
            "true",
        )
    )
    assert result["eval_loss_after"] < result["eval_loss_before"]
    assert (result["linear4bit_layers"] > 0) == quantized
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    meta = json.loads((out / "captioner.json").read_text())
    assert meta["prompt_version"] == "1" and meta["peft"] is True
    captioner = LLMCaptioner(out)  # adapter + tokenizer load back onto the base model
    args = CaptionArguments(backend="llm", do_sample=False, max_new_tokens=8)
    assert (
        len(captioner.generate([{"genre": ["rock"], "mood": [], "instrument": ["piano"], "tempo": []}], args, 0)) == 1
    )


def test_batched_greedy_generation_equals_unbatched(tiny_models, tmp_path):
    import shutil

    folder = tmp_path / "full"
    shutil.copytree(tiny_models / "tiny-llama", folder)
    (folder / "captioner.json").write_text(json.dumps({"prompt_version": "1", "base_model": str(folder)}))
    captioner = LLMCaptioner(folder, dtype="float32")
    args = CaptionArguments(backend="llm", do_sample=False, max_new_tokens=12, repetition_penalty=1.0)
    attrs = [
        {"genre": [g], "mood": m, "instrument": i, "tempo": t}
        for g, m, i, t in [
            ("rock", ["energetic"], ["electric guitar", "male vocal"], ["fast tempo"]),
            ("jazz", [], ["piano"], []),
            ("pop", ["happy", "fun", "cheerful"], ["synthesizer", "female vocal", "bass guitar"], ["groovy", "upbeat"]),
            ("folk", ["calming"], ["acoustic guitar"], ["slow tempo"]),
        ]
    ]
    batched = captioner.generate(attrs, args, seed=0)
    single = [captioner.generate([a], args, seed=0)[0] for a in attrs]
    assert batched == single


def test_caption_resume_and_rejections(tmp_path, taxonomy, monkeypatch):
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    taxonomy.save(tmp_path / "taxonomy.json")
    write_tags(tmp_path / "tags.parquet", LISTS * 1 + [["metal", "aggressive", "drum kit", "fast tempo"]])
    argv = ["--shard_size", "2"]
    first = caption_main(argv)
    assert first["ok"] == 5 and first["shards"]["done"] == 3
    assert first["acceptance_by_concept"]["metal"] == {"lists": 1, "accepted_by_attempt": [1, 1, 1]}
    original = (tmp_path / "captions.parquet").read_bytes()
    shards = sorted((tmp_path / "captions_shards").glob("shard-*.parquet"))
    shards[1].unlink()  # a lost shard
    shards[2].write_bytes(shards[2].read_bytes()[:50])  # a truncated one
    again = caption_main(argv)
    assert again["shards"] == {"shards": 3, "done": 2, "skipped": 1}
    assert (tmp_path / "captions.parquet").read_bytes() == original
    with pytest.raises(DataError, match="made with other arguments"):
        caption_main(argv + ["--min_words", "3"])


def test_llm_failures_are_retried_then_rejected_with_reasons(tiny_models, tmp_path, taxonomy, monkeypatch):
    import shutil

    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    folder = tmp_path / "captioner"
    shutil.copytree(tiny_models / "tiny-llama", folder)
    (folder / "captioner.json").write_text(json.dumps({"prompt_version": "1", "base_model": str(folder)}))
    taxonomy.save(tmp_path / "taxonomy.json")
    write_tags(tmp_path / "tags.parquet", LISTS)
    summary = caption_main(["--backend", "llm", "--max_new_tokens", "12", "--max_attempts", "2", "--batch_size", "4"])
    rows = pq.read_table(tmp_path / "captions.parquet").to_pylist()
    assert summary["rejected"] == 4  # a random tiny model names nothing right
    assert all(r["status"] == "rejected" and r["attempts"] == 2 and "missing attribute" in r["reasons"] for r in rows)
    assert summary["rejected_by_reason"]["missing attribute"] == 4
    assert all(e["accepted_by_attempt"] == [0, 0] for e in summary["acceptance_by_concept"].values())


def test_bad_input(tmp_path, taxonomy):
    with pytest.raises(
        DataError, match=r"tags.parquet, row 1, field 'tags': concept\(s\) not in the taxonomy: \['kazoo'\]"
    ):
        read_tag_lists(write_tags(tmp_path / "tags.parquet", [["rock"], ["kazoo", "pop"]]), taxonomy)
    with pytest.raises(DataError, match=r"row 0, field 'tags': empty attribute list"):
        read_tag_lists(write_tags(tmp_path / "tags.parquet", [[]]), taxonomy)
    with pytest.raises(DataError, match="captioner.json: missing"):
        LLMCaptioner(tmp_path / "nowhere")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "captioner.json").write_text(json.dumps({"prompt_version": "1", "base_model": "no/such-model"}))
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer"):
        LLMCaptioner(folder)


def test_unloadable_base_model_is_named(tiny_models, tmp_path):
    import shutil

    folder = tmp_path / "adapter"
    shutil.copytree(tiny_models / "tiny-llama", folder)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "captioner.json").write_text(json.dumps({"prompt_version": "1", "base_model": "no/such-model"}))
    with pytest.raises(ModelLoadError, match="no/such-model: cannot load the model"):
        LLMCaptioner(folder)


def test_metrics_on_small_fixtures(tiny_models, taxonomy):
    refs = [
        "A fast rock song with electric guitar and energetic male vocals.",
        "A calm piano piece, slow and mellow.",
        "Upbeat pop with synthesizer and a female vocal.",
        "A jazz trio with upright bass and soft drums.",
    ] * 5
    assert bleu(refs, refs) == pytest.approx(1.0) and rouge_l(refs, refs) == pytest.approx(1.0)
    hyps = refs[1:] + refs[:1]
    assert bleu(hyps, refs) < 0.5 and rouge_l(hyps, refs) < 1.0
    model = str(tiny_models / "tiny-bert")
    assert bertscore_f1(refs, refs, model, num_layers=2) == pytest.approx(1.0, abs=1e-4)
    assert bertscore_f1(hyps, refs, model, num_layers=2) < 1.0
    mauve_model = str(tiny_models / "tiny-bert")
    same = mauve_score(refs, refs, mauve_model)
    foreign = ["0 1 2 3 4 5 6 7 8 9", "zzz qqq xxx", "the the the the the the", "!!! ??? ... ;;;"] * 5
    assert mauve_score(foreign, refs, mauve_model) < 0.5 * same  # a set against itself scores far above a foreign one
    rates = check_rates(
        CaptionChecker(taxonomy),
        refs[:1] * 2,
        [["rock", "fast tempo", "electric guitar", "energetic", "male vocal"], ["jazz"]],
    )
    assert rates["coverage_rate"] == 0.5 and rates["hallucination_rate"] == 0.5


def full_captioner(tiny_models, tmp_path):
    import shutil

    folder = tmp_path / "full"
    shutil.copytree(tiny_models / "tiny-llama", folder)
    (folder / "captioner.json").write_text(json.dumps({"prompt_version": "1", "base_model": str(folder)}))
    return LLMCaptioner(folder, dtype="float32")


def test_the_guard_blocks_an_unlisted_instrument_the_model_is_biased_to_emit(tiny_models, tmp_path, taxonomy):
    captioner = full_captioner(tiny_models, tmp_path)
    checker = CaptionChecker(taxonomy)
    # an instrument that the tiny tokenizer writes as one token after a space
    single = next(
        c.name
        for c in taxonomy.by_category("instrument")
        if c.name != "piano" and len(captioner.tokenizer.encode(" " + c.name, add_special_tokens=False)) == 1
    )
    token = captioner.tokenizer.encode(" " + single, add_special_tokens=False)[0]
    # bias the model itself: its output layer favours that token over anything else
    captioner.model.lm_head.register_forward_hook(
        lambda module, inputs, out: out.index_add(-1, torch.tensor([token]), torch.full((*out.shape[:-1], 1), 50.0))
    )
    args = CaptionArguments(backend="llm", do_sample=False, max_new_tokens=10, repetition_penalty=1.0)
    unlisted = {"genre": ["jazz"], "mood": [], "instrument": ["piano"], "tempo": []}
    listed = {"genre": ["jazz"], "mood": [], "instrument": ["piano", single], "tempo": []}
    assert single in checker.named_concepts(captioner.generate([unlisted], args, 0)[0].text)  # the bias works
    guard = captioner.guard([["jazz", "piano"], ["jazz", "piano", single]], checker.matcher)
    guarded, kept = captioner.generate([unlisted, listed], args, 0, guard)
    assert single not in checker.named_concepts(guarded.text) and single not in guarded.text.lower()
    assert single in checker.named_concepts(kept.text)  # a listed concept's forms stay allowed


def test_a_banned_form_stays_writable_inside_a_listed_one(tiny_models, tmp_path, taxonomy):
    from generation.decoding import ForbiddenForms, FormTokens

    captioner = full_captioner(tiny_models, tmp_path)
    tokens = FormTokens(captioner.tokenizer, CaptionChecker(taxonomy).matcher, ("genre", "instrument"))
    encode = lambda text: tuple(captioner.tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    listed = ["rock", "synth bass"]
    banned = set(tokens.banned_for(listed))
    assert encode(" drums") in banned and encode(" bass") in banned and encode(" pop") in banned
    assert encode(" rock") not in banned and encode(" synth bass") not in banned
    guard = ForbiddenForms([sorted(banned)], prompt_length=0, allowed=[tokens.allowed_for(listed)])
    bass = encode(" bass")[-1]
    after = lambda text: guard(torch.tensor([list(encode(text))]), torch.zeros(1, len(captioner.tokenizer)))  # noqa: E731
    assert after(" a synth")[0, bass] == 0.0  # completes the listed "synth bass"
    assert after(" a deep")[0, bass] == -float("inf")  # a lone "bass" would name the bass guitar


def test_the_repetition_penalty_leaves_the_prompt_alone():
    from generation.decoding import generated_repetition_penalty

    prompt, generated = [5, 6], [7]
    scores = torch.full((1, 10), 2.0)
    out = generated_repetition_penalty(1.5, len(prompt))(torch.tensor([prompt + generated]), scores.clone())
    assert out[0, 5] == out[0, 6] == 2.0 and out[0, 7] == pytest.approx(2.0 / 1.5)


def test_a_caption_cut_at_max_new_tokens_is_rejected_as_truncated(tiny_models, tmp_path, taxonomy):
    captioner = full_captioner(tiny_models, tmp_path)
    args = CaptionArguments(backend="llm", do_sample=False, max_new_tokens=3, max_attempts=1, guard=False)
    rows = [{"id": "x", "tags": ["jazz", "piano"], "genre": ["jazz"], "mood": [], "instrument": ["piano"], "tempo": []}]
    record = caption_rows(rows, args, CaptionChecker(taxonomy), captioner, shard=0)[0]
    assert record["status"] == "rejected" and "truncated" in record["reasons"]
    assert not CaptionChecker(taxonomy, min_words=1).check("Jazz with piano.", ["jazz", "piano"], truncated=True).ok


def test_training_pairs_agree_with_the_checks(distilled_dir, taxonomy):
    from training.train_captioner import training_pairs

    rows = [r for r in pq.read_table(distilled_dir / "distilled.parquet").to_pylist() if r["split"] == "train"][:400]
    pairs, stats = training_pairs(rows, taxonomy, "caption")
    checker = CaptionChecker(taxonomy)
    assert stats["training_pair_consistency"] == 1.0 and all(checker.check(p["caption"], p["tags"]).ok for p in pairs)
    assert stats["pairs"] + sum(stats["dropped"].values()) == len(rows) and stats["dropped"]
    _, aspects = training_pairs(rows, taxonomy, "aspects")
    assert aspects["pairs"] == len(rows) and aspects["training_pair_consistency"] < 0.2  # MusicCaps' own pairing
    assert 0.3 < stats["mean_jaccard_caption_vs_aspects"] < 0.8


def test_the_sft_recipe_keeps_its_effective_batch_on_any_number_of_processes():
    from core.errors import ConfigError
    from training.train_captioner import recipe_batch

    paper = recipe_batch(8, 2, 1)  # the paper's 8 x 2 on one GPU
    assert paper == {
        "effective_batch_size": 16,
        "num_processes": 1,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
    }
    assert recipe_batch(8, 2, 2)["gradient_accumulation_steps"] == 1  # 2 GPUs x 8
    four = recipe_batch(8, 2, 4)  # 4 GPUs: 4 per device, no accumulation
    assert four["per_device_train_batch_size"] * four["gradient_accumulation_steps"] * 4 == 16
    assert recipe_batch(16, 1, 2, effective=48)["per_device_train_batch_size"] == 12
    with pytest.raises(ConfigError, match="effective batch 16 does not divide evenly among 3 processes"):
        recipe_batch(8, 2, 3)


def test_template_captions_read_as_english_for_every_concept(taxonomy):
    """Every concept of the taxonomy alone and beside others: the caption names exactly the listed concepts, and
    reads as sentences (articles agree, no doubled word, no "with with", each sentence capitalised and closed)."""
    import re

    from builder.caption_checks import CaptionChecker
    from generation.template_captioner import tempo_phrase

    checker = CaptionChecker(taxonomy)
    by_category = {c: [x.name for x in taxonomy.by_category(c)] for c in CATEGORIES}
    for category, names in by_category.items():
        for k, name in enumerate(names):
            attrs = {"genre": ["rock"], "instrument": ["piano"], "tempo": ["slow tempo"], "mood": ["happy"]}
            attrs[category] = [name, names[(k + 7) % len(names)]]
            caption = template_caption(attrs, f"{category}-{k}")
            tags = [t for c in CATEGORIES for t in attrs[c]]
            named = set(checker.named_concepts(caption))
            assert set(tags) <= checker.relations.with_broader(named), (caption, tags)
            assert not checker.check(caption, tags).hallucinated, caption
            assert not re.search(r"\b(\w+) \1\b", caption) and "with with" not in caption, caption
            assert not re.search(r"\ba [aeiou]", caption.lower()) and not re.search(
                r"\ban [^aeiour]", caption.lower()
            ), caption
            assert all(s[0].isupper() for s in caption.split(". ")) and caption.endswith("."), caption
    assert tempo_phrase("fast tempo") == "at a fast tempo" and tempo_phrase("waltz time") == "in waltz time"
    assert tempo_phrase("groovy") == "with a groovy feel" and tempo_phrase("odd meter") == "in an odd meter"
    assert "It moves with groovy" not in template_caption({"tempo": ["groovy", "upbeat"]}, "x")
