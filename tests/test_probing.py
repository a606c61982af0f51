"""The probing tools on tiny random-weight models of the real classes and on a model with a planted feature."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import ConfigError, DataError
from fixtures.published import write_published
from fixtures.tiny_models import TINY_ENCODER
from probing.models import ProbedModel, load_model

RATE, N_FFT = 16000, 512
PIANO_HZ = 1000.0  # the planted "piano": a partial at 1 kHz, bin 32 of a 512-point spectrum at 16 kHz


def planted_wave(k: int, row: dict, seconds: float) -> np.ndarray:
    """A tone that changes with k, white noise of a random level, and for a row listing the piano its partial."""
    from core.constants import SAMPLING_RATE

    rng = np.random.default_rng(k)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    x = 0.2 * np.sin(2 * np.pi * (110 + 7 * k) * t) + 10 ** rng.uniform(-2.5, -1.5) * rng.standard_normal(len(t))
    if "piano" in row["instrument_aspects"]:
        x = x + 0.2 * np.sin(2 * np.pi * PIANO_HZ * t)
    return x.astype(np.float32)


class LogSpectrum(nn.Module):
    """Waveform at 16 kHz -> log power spectrum (batch, 257), averaged over frames."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, N_FFT, N_FFT // 4, window=torch.hann_window(N_FFT), return_complex=True).abs() ** 2
        return torch.log(spec.mean(-1) + 1e-10)


class PlantedNet(nn.Module):
    """Layer `planted` reads four spectrum bins around a centre frequency (a parameter: 1 kHz when "trained", where
    the piano's partial lies); layer `noise` reads 3-5 kHz, where only the noise is: it carries nothing of the piano."""

    def __init__(self, centre_hz: float):
        super().__init__()
        self.centre = nn.Parameter(torch.tensor(float(centre_hz)))
        self.planted, self.noise = nn.Identity(), nn.Identity()
        self.head = nn.Linear(12, 2)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        k = int(round(float(self.centre) * N_FFT / RATE))
        planted = self.planted(spec[:, k - 2 : k + 2])
        noise = self.noise(spec[:, 96:160].reshape(len(spec), 8, 8).mean(-1))
        return self.head(torch.cat([planted, noise], 1))


def planted_model() -> ProbedModel:
    """The factory `--model tests.test_probing:planted_model` names; its random init draws the centre uniformly."""

    def control(seed: int) -> nn.Module:
        return PlantedNet(50 + 7900 * float(torch.rand(1, generator=torch.Generator().manual_seed(seed))))

    return ProbedModel(
        "planted",
        PlantedNet(PIANO_HZ).eval(),
        LogSpectrum(),
        ["planted", "noise"],
        RATE,
        0.25,
        output_names=["up", "down"],
        control=control,
    )


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    write_published(folder, n=450, seconds=0.25, wave=planted_wave)
    return folder


def test_probe_finds_the_planted_instrument_at_its_layer_only(planted_dataset, tmp_path, monkeypatch):
    from probing.probe import main

    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    argv = [
        *"--model tests.test_probing:planted_model".split(),
        f"--dataset={planted_dataset}",
        *"--concepts piano rock --bootstrap 200".split(),
        f"--output={tmp_path / 'probe.json'}",
    ]
    report = main(argv)
    by = {(r["concept"], r["layer"]): r for r in report["results"]}
    planted, noise = by["piano", "planted"], by["piano", "noise"]
    assert planted["accuracy"] > 0.95 and planted["selectivity"] >= 0.3, planted
    assert abs(noise["selectivity"]) <= 0.1, noise
    assert planted["interval"][0] <= planted["accuracy"] <= planted["interval"][1]
    assert planted["shuffled_labels"] < 0.75  # shuffled labels teach nothing
    assert abs(by["rock", "planted"]["selectivity"]) < 0.3  # the rock clips carry no partial
    # every layer in one forward pass: each clip through the model once, and a rerun runs it zero times
    clips = sum(r["train"]["positive"] + r["train"]["negative"] for r in report["results"] if r["layer"] == "planted")
    assert (
        0
        < report["clips_run"]["model"]
        <= clips
        + sum(r["test"]["positive"] + r["test"]["negative"] for r in report["results"] if r["layer"] == "planted")
    )
    assert report["forward_calls"]["model"] == report["forward_calls"]["control"] > 0
    # the handcrafted baseline hears the planted partial too (its chroma bin: the clips' tones move up the spectrum
    # from the train split to the test split, so the log-mel bands shift under the probe), and knows no rock
    assert planted["handcrafted_best"] == "chroma" and planted["handcrafted"]["chroma"]["accuracy"] > 0.9
    assert planted["over_handcrafted"] < 0.1
    assert by["rock", "planted"]["handcrafted"][by["rock", "planted"]["handcrafted_best"]]["accuracy"] < 0.75
    again = main(argv)
    nothing = {"model": 0, "control": 0, "handcrafted": 0}
    assert again["clips_run"] == nothing and again["forward_calls"] == nothing
    assert [r["accuracy"] for r in again["results"]] == [r["accuracy"] for r in report["results"]]
    assert (tmp_path / "probe.md").read_text().count("| piano |") == 2 and (tmp_path / "probe.png").stat().st_size > 0


def test_probe_counts_a_concept_with_too_few_test_examples_and_names_bad_layers(planted_dataset, tmp_path, monkeypatch):
    from probing.probe import format_markdown, main

    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    base = ["--model", "tests.test_probing:planted_model", "--dataset", str(planted_dataset), "--bootstrap", "10"]
    with pytest.raises(DataError, match="no concept has enough examples"):
        main([*base, "--concepts", "piano", "--min_test", "1000"])
    report = main([*base, "--min_test", "20", "--layers", "planted"])
    assert {r["concept"] for r in report["results"]} == {"piano"}  # a third of the clips list the piano
    assert report["skipped_count"] > 0 and all("fewer than --min_test (20)" in reason for reason in report["skipped"])
    assert "min_positives" in report["skipped_remedy"] and "Skipped: fewer than --min_test (20)" in format_markdown(
        report
    )
    with pytest.raises(ConfigError, match=r"no layer 'block9'; its probing layers are \['planted', 'noise'\]"):
        main([*base, "--layers", "block9"])


def test_activation_store_survives_a_torn_write(tmp_path):
    from probing.activations import LayerStore

    store = LayerStore(tmp_path / "layer")
    store.append(["a", "b"], np.arange(6, dtype=np.float32).reshape(2, 3))
    with open(store.rows_path, "ab") as f:  # a batch whose index line was never written (a kill)
        f.write(np.ones(3, dtype=np.float32).tobytes())
    again = LayerStore(tmp_path / "layer")
    assert "a" in again and "c" not in again and again.rows_path.stat().st_size == 2 * 3 * 4
    again.append(["c"], np.full((1, 3), 7, dtype=np.float32))
    assert again.get(["c", "a"]).tolist() == [[7, 7, 7], [0, 1, 2]]


# ---- tiny random-weight models of the real classes -----------------------------------------------------------


def tiny_ast(folder):
    from fixtures.tiny_models import build_tiny_ast

    return build_tiny_ast(folder)


def tiny_wav2vec2(folder, kind: str = "wav2vec2"):
    """A tiny Wav2Vec2 or HuBERT encoder (the same convolutional front end and geometry) and its extractor."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config_class, model_class = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel)}[
        kind
    ]
    torch.manual_seed(0)
    config = config_class(**TINY_ENCODER, conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10)  # fmt: skip
    model_class(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def tiny_hubert(folder):
    return tiny_wav2vec2(folder, "hubert")


def tiny_whisper(folder):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=16,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=16,
        max_source_positions=50,
        max_target_positions=8,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=16, chunk_length=1).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("build", ["ast", "wav2vec2", "hubert", "whisper", "clap"])
def test_hugging_face_audio_models_give_every_layer_in_one_pass(build, tmp_path, tiny_models):
    folder = tiny_models / "tiny-clap" if build == "clap" else globals()[f"tiny_{build}"](tmp_path / build)
    model = load_model(str(folder), seconds=1.0 if build != "whisper" else None)
    assert model.name.startswith("local model sha256:") and str(tmp_path) not in model.name
    assert len(model.layers) >= 2, model.layers
    calls = []
    model.module.register_forward_hook(lambda *a: calls.append(1))
    wave = 0.1 * torch.randn(3, model.samples, generator=torch.Generator().manual_seed(0))
    acts = model.activations(model.preprocess(wave), model.layers)
    assert len(calls) == 1 and set(acts) == set(model.layers)
    assert all(a.shape[0] == 3 and a.dim() == 2 and torch.isfinite(a).all() for a in acts.values())
    control = model.random_init(0)
    other = control.activations(control.preprocess(wave), model.layers)
    assert not torch.allclose(other[model.layers[-1]], acts[model.layers[-1]])
    assert (model.output_names is not None) == (build == "ast")


def test_model_errors_are_one_line(tmp_path):
    (tmp_path / "mert").mkdir()
    (tmp_path / "mert" / "config.json").write_text(
        json.dumps({"model_type": "mert_model", "auto_map": {"AutoModel": "x.Y"}})
    )
    with pytest.raises(ConfigError, match="trust_remote_code.*module:factory"):
        load_model(str(tmp_path / "mert"))
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ConfigError, match="no audio feature extractor"):
        load_model(str(tmp_path / "bert"))
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path / "bert")  # an audio extractor, text weights
    with pytest.raises(ConfigError, match="a bert model takes no 'input_values', .* not an audio model"):
        load_model(str(tmp_path / "bert"))
    with pytest.raises(ConfigError, match="cannot import model factory"):
        load_model("no_such_module:factory")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: a folder without config.json is not a model"):
        load_model(str(tmp_path / "empty"))
    (tmp_path / "typeless").mkdir()
    (tmp_path / "typeless" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="its config.json names no model_type"):
        load_model(str(tmp_path / "typeless"))


def test_a_name_no_taxonomy_knows_is_named_as_such(tmp_path):
    from builder.reader import AudioSplit
    from fixtures.reviewable import write_reviewable

    write_reviewable(tmp_path / "ds", rows=20, seconds=0.5)
    audio = AudioSplit(str(tmp_path / "ds"), "train")
    assert audio.resolve("piano") == "piano" and audio.resolve("Rock (family)") == "rock (family)"
    with pytest.raises(ConfigError, match="'pianno' is not a concept of the taxonomy .*; did you mean piano"):
        audio.resolve("pianno")


def test_a_missing_wheel_is_one_line(tmp_path):
    from probing.convert_musicnn import main

    with pytest.raises(DataError, match="nope.whl: no such file: the musicnn==0.1.0 wheel"):
        main(["--wheel", str(tmp_path / "nope.whl"), "--output_dir", str(tmp_path / "out")])


def test_a_dataset_without_audio_is_one_line(tmp_path, monkeypatch):
    from probing.probe import main

    folder = tmp_path / "published"
    write_published(folder, n=30)
    readme = (folder / "README.md").read_text()
    (folder / "README.md").write_text(readme[: readme.index("- config_name: audio")] + readme[readme.index("---", 4) :])
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    with pytest.raises(DataError, match="no 'audio' config"):
        main(["--model", "tests.test_probing:planted_model", "--dataset", str(folder)])


def test_tcav_on_a_hugging_face_classifier_maps_its_outputs_to_concepts(tmp_path, monkeypatch):
    from probing.tcav import main, resolve_classes

    folder = tmp_path / "published"
    write_published(folder, n=60)
    model = load_model(str(tiny_ast(tmp_path / "ast")), seconds=0.5)
    assert model.vocabulary == "AudioSet"
    assert resolve_classes(model, ["Rock music", "jazz"], {}, 8, 5) == [(0, "rock"), (2, "jazz")]
    assert resolve_classes(model, [], {"rock": 9, "jazz": 20, "classical": 30}, 8, 5) == [(2, "jazz"), (0, "rock")]
    with pytest.raises(ConfigError, match="neither an output"):
        resolve_classes(model, ["polka"], {}, 8, 5)
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    report = main(
        [
            f"--dataset={folder}",
            f"--model={tmp_path / 'ast'}",
            *"--seconds 0.5".split(),
            f"--layer={model.layers[-1]}",
            f"--classes={'Rock music'}",
            *"--concepts piano --min_examples 3 --batch_size 4".split(),
            f"--output={tmp_path / 'tcav.json'}",
        ]
    )
    assert {r["class"] for r in report["results"]} == {0} and report["class_concepts"] == {"0": "rock"}
    assert report["classes"][0] == "Rock music" and (tmp_path / "tcav.png").is_file()


def test_tagger_table_names_real_tags_and_taxonomy_concepts(taxonomy):
    from probing.musicnn import MSD_LABELS, MTT_LABELS
    from probing.tagger_tags import tag_rows

    names = {c.name for c in taxonomy.concepts}
    for row in tag_rows():
        assert row.concept in names, row
        if row.vocabulary in ("MTT", "MSD"):
            assert row.tag in (MTT_LABELS if row.vocabulary == "MTT" else MSD_LABELS), row


def four_second_model() -> ProbedModel:
    """A model with no idea of tempo: a log spectrum and a random projection of it, reading 4 s at 16 kHz."""
    torch.manual_seed(0)
    module = nn.Sequential(LogSpectrum(), nn.Linear(N_FFT // 2 + 1, 8)).eval()
    return ProbedModel("four seconds", module, lambda w: w, ["0", "1"], RATE, 4.0,
                       control=lambda seed: nn.Sequential(LogSpectrum(), nn.Linear(N_FFT // 2 + 1, 8)))  # fmt: skip


def test_a_numeric_target_gets_ridge_probes_with_controls_and_the_handcrafted_baseline(tmp_path, monkeypatch):
    """BPM of click tracks (60-180 bpm): the handcrafted tempogram predicts it (R² >= 0.8 on the dataset's split,
    less when extrapolating to both tails); a spectrum that knows no tempo does not; a target the audio config
    lacks is one line."""
    from fixtures.reviewable import write_reviewable
    from probing.probe import main
    from tests.test_evidence import clicks

    def render(k, example, seconds):
        bpm = 60.0 + (k * 37) % 120
        return clicks(bpm, seconds, RATE, seed=k), {"bpm": bpm, "key": "C major", "mode": "major", "stems": []}

    folder = tmp_path / "ds"
    write_reviewable(folder, rows=240, seconds=4.0, render=render)
    monkeypatch.setenv("CONCEPTCAPS_RUN_DIR", str(tmp_path))
    base = ["--model", "tests.test_probing:four_second_model", f"--dataset={folder}", "--bootstrap=50",
            "--target=bpm"]  # fmt: skip
    report = main([*base, f"--output={tmp_path / 'bpm.json'}"])
    rows = {r["layer"]: r for r in report["results"]}
    hand = rows["1"]["handcrafted"]
    assert hand["tempogram"]["r2"] >= 0.8 and rows["1"]["handcrafted_best"] == "tempogram", hand
    assert rows["1"]["r2"] < 0.5 and rows["1"]["shuffled_labels"] < 0.2
    assert rows["1"]["test"] == 24 and "| 1 |" in (tmp_path / "bpm.md").read_text()
    tails = main([*base, "--target_split=extrapolate", f"--output={tmp_path / 'tails.json'}"])
    pooled = tails["results"][0]
    assert pooled["train"] + pooled["test"] == rows["1"]["train"] + rows["1"]["test"]  # both splits' clips, re-cut
    assert 0.25 < pooled["test"] / (pooled["train"] + pooled["test"]) < 0.35  # both 15 % tails
    with pytest.raises(DataError, match="no 'room_rt60_s' values: numeric ground truth exists for rendered clips"):
        main([*base[:-1], "--target=room_rt60_s"])
