"""One interface for every model a researcher probes with ConceptCaps.

A `ProbedModel` says its sampling rate, how many seconds it reads, its layers, and maps a waveform batch to
{layer: time-pooled activations} in one forward pass (every requested layer through a forward hook); where it
has a head, its output scores and their names (what TCAV differentiates). `load_model(spec)` builds one from:

    musicnn:MTT_musicnn          a pretrained musicnn tagger (MTT_ or MSD_, musicnn or vgg; `probing.musicnn`)
    runs/demo/genre_cnn          this project's genre CNN checkpoint (`probing.genre_classifier`)
    pkg.module:factory           anything else: a factory returning a ProbedModel, or (model, preprocess, classes)
    MIT/ast-finetuned-audioset-10-10-0.4593, facebook/wav2vec2-base, openai/whisper-base, laion/clap-htsat-unfused
                                 a Hugging Face audio model by Hub id or local folder, through AutoFeatureExtractor
                                 and AutoModelForAudioClassification (where it has a head) or AutoModel; an
                                 encoder-decoder (Whisper) is probed in its encoder, CLAP in its audio tower

Resampling from the dataset's 32 kHz to the model's rate happens when a clip is decoded (`read_wave`).
`trust_remote_code` is never enabled: a model whose code lives in its Hub repository (MERT, for one) gets a
one-line error that points to `module:factory`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from core.constants import SAMPLING_RATE
from core.errors import ConfigError, ModelLoadError
from core.io import sha256_file
from core.provenance import loaded_commit, model_identity

POOLINGS = ("mean", "max")
CONTROL_SEED = 7_340_033


@dataclass
class ProbedModel:
    """A model of the probing interface.

    Attributes:
        name: how reports name it (a Hub id with its commit, or a content hash; never a local path).
        module: maps `preprocess` outputs to output scores (batch, outputs), or to any tensor when it has no head.
        preprocess: waveform (batch, samples) at `sampling_rate` -> the module's input.
        layers: the default layers probed (names in `module.named_modules()`).
        time_axis: the axis pooled over in a layer's 3- or 4-d activations (after the batch axis, the rest is
            flattened); a layer whose first axis holds several rows per clip (musicnn's 3 s patches) is pooled over
            those rows too.
        output_names: the names of the module's outputs, or None without a head.
        control: builds the randomly initialised copy of the same architecture (`random_init`).
    """

    name: str
    module: nn.Module
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    layers: list[str]
    sampling_rate: int
    seconds: float
    time_axis: int = -1
    output_names: list[str] | None = None
    vocabulary: str | None = None  # whose tag names its outputs carry (builder/data/tagger_tags.tsv)
    control: Callable[[int], nn.Module] | None = field(default=None, repr=False)
    random_seed: int | None = None  # set on a random-init control

    @property
    def samples(self) -> int:
        return int(round(self.seconds * self.sampling_rate))

    def check_layers(self, layers: Sequence[str]) -> list[str]:
        """The layers as given, each a module of the model; an unknown one lists the valid ones."""
        modules = dict(self.module.named_modules())
        unknown = [name for name in layers if not name or name not in modules]
        if unknown:
            raise ConfigError(
                f"{self.name} has no layer {unknown[0]!r}; its probing layers are {self.layers} "
                f"(any of its {len(modules) - 1} named modules may be given)"
            )
        return list(layers)

    def activations(
        self, inputs: torch.Tensor, layers: Sequence[str], pooling: str = "mean"
    ) -> dict[str, torch.Tensor]:
        """{layer: (batch, features)} from ONE forward pass, each layer pooled over time (`pooling`)."""
        modules = dict(self.module.named_modules())
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            modules[name].register_forward_hook(
                lambda module, args, output, name=name: captured.__setitem__(name, _first_tensor(output))
            )
            for name in layers
        ]
        try:
            with torch.no_grad():
                self.module(inputs)
        finally:
            for h in hooks:
                h.remove()
        return {name: pool_activation(captured[name], len(inputs), self.time_axis, pooling) for name in layers}

    def random_init(self, seed: int = 0) -> "ProbedModel":
        """The same architecture with random weights (the probes' control), drawn with torch seed
        `CONTROL_SEED + seed`: a model that was itself initialised from its config with a small seed (every tiny
        test model is, with seed 0) would otherwise be its own control."""
        seed = CONTROL_SEED + seed
        torch.manual_seed(seed)
        module = self.control(seed) if self.control else reinitialised(self.module, seed)
        return ProbedModel(
            f"{self.name} (random init, seed {seed})",
            module.eval(),
            self.preprocess,
            self.layers,
            self.sampling_rate,
            self.seconds,
            self.time_axis,
            self.output_names,
            self.vocabulary,
            None,
            seed,
        )


def _first_tensor(output):
    """A layer's activation: the tensor itself, or the first tensor of a tuple or model output (HF layers)."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output
    return next(v for v in values if isinstance(v, torch.Tensor))


def pool_activation(x: torch.Tensor, batch: int, time_axis: int, pooling: str) -> torch.Tensor:
    """(rows, ...) -> (batch, features): pooled over `time_axis` (3- and 4-d), flattened, and where a clip has
    several rows (patches), pooled over its rows."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    reduce = (lambda t, d: t.mean(d)) if pooling == "mean" else (lambda t, d: t.amax(d))
    x = x.detach().float()
    if x.dim() >= 3:
        x = reduce(x, time_axis if time_axis >= 0 else x.dim() + time_axis)
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] != batch:
        if x.shape[0] % batch:
            raise ConfigError(f"a layer gave {x.shape[0]} rows for {batch} clips")
        x = reduce(x.reshape(batch, x.shape[0] // batch, -1), 1)
    return x


def reinitialised(module: nn.Module, seed: int) -> nn.Module:
    """A copy of `module` whose every layer with `reset_parameters` is drawn afresh (batch-norm statistics too)."""
    torch.manual_seed(seed)
    fresh = copy.deepcopy(module)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh


# ---- this project's genre CNN -------------------------------------------------------------------------------


def genre_cnn_model(path: str | Path) -> ProbedModel:
    from probing.genre_classifier import load_classifier

    path = Path(path)
    model, mel, classes = load_classifier(path)
    layers = [n for n in ("block1", "block2", "block3", "embedding", "frames") if n in dict(model.named_modules())]
    return ProbedModel(
        f"genre CNN sha256:{sha256_file(path / 'model.safetensors')[:16]}",
        model,
        mel,
        layers,
        mel.config.sampling_rate,
        mel.config.duration_s,
        -1,
        list(classes),
        "concepts",
    )


def is_genre_cnn(path: Path) -> bool:
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        return {"classes", "mel"} <= set(json.loads(config.read_text()))
    except json.JSONDecodeError:
        return False


# ---- musicnn ------------------------------------------------------------------------------------------------


class _PatchTagger(nn.Module):
    """musicnn's network on a clip's log-mel patches (batch, patches, 187, 96) -> mean tag logits (batch, tags)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1).mean(1)


def musicnn_model(name: str, seconds: float | None = None) -> ProbedModel:
    from probing.musicnn import MODELS, build_net, load_musicnn, seconds_for

    tagger = load_musicnn(name)
    layers = [
        "net." + n
        for n in (
            ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "pool", "penultimate")
            if MODELS[name].architecture == "musicnn"
            else ("pool1", "pool2", "pool3", "pool4", "pool5")
        )
    ]

    def control(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _PatchTagger(build_net(MODELS[name]).to(memory_format=torch.channels_last))

    return ProbedModel(
        tagger.revision,
        _PatchTagger(tagger.net).eval(),
        tagger.logmel_patches,
        layers,
        tagger.sampling_rate,
        seconds or seconds_for(1),
        1 if MODELS[name].architecture == "musicnn" else 2,
        tagger.labels,
        MODELS[name].vocabulary,
        control,
    )


# ---- Hugging Face audio models ------------------------------------------------------------------------------


class _HFAudio(nn.Module):
    """A transformers model on its feature extractor's output: logits where it has a classification head, else the
    last hidden state averaged over time."""

    def __init__(self, backbone: nn.Module, input_name: str, head: bool):
        super().__init__()
        self.backbone, self.input_name, self.head = backbone, input_name, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(**{self.input_name: x})
        if self.head:
            return out.logits
        hidden = out.last_hidden_state
        return hidden.mean(1) if hidden.dim() == 3 else hidden.flatten(1)


class _HFPreprocess:
    """Waveforms -> the feature extractor's model input, as a tensor."""

    def __init__(self, extractor, input_name: str, sampling_rate: int):
        self.extractor, self.input_name, self.sampling_rate = extractor, input_name, sampling_rate

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        kwargs = {"sampling_rate": self.sampling_rate, "return_tensors": "pt"}
        if type(self.extractor).__name__ == "ClapFeatureExtractor":
            kwargs["truncation"] = "rand_trunc"  # never cuts: the interface hands it at most max_length_s seconds
        return self.extractor([w.numpy() for w in wave], **kwargs)[self.input_name].float()


def _block_list(module: nn.Module) -> str | None:
    """The name of the model's largest ModuleList (its transformer blocks or stages), whose items are the layers."""
    best, size = None, -1
    for name, m in module.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > 1:
            n = sum(p.numel() for p in m.parameters())
            if n > size:
                best, size = name, n
    return best


def _extractor_seconds(extractor, default: float) -> float:
    name = type(extractor).__name__
    if name == "ASTFeatureExtractor":
        return extractor.max_length * 0.01 + 0.015  # 10 ms frames of 25 ms
    if name == "WhisperFeatureExtractor":
        return extractor.n_samples / extractor.sampling_rate
    if name == "ClapFeatureExtractor":
        return float(extractor.max_length_s)
    return default


def hf_model(name: str, seconds: float | None = None, revision: str | None = None) -> ProbedModel:
    import transformers
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from core.hub import require_source

    require_source(name, "model")
    if Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise ConfigError(
            f"{name}: a folder without config.json is not a model; give a Hub id, a model folder (config.json, "
            "weights, preprocessor_config.json), a genre CNN folder, musicnn:MTT_musicnn or pkg.module:factory"
        )
    try:
        config_dict, _ = transformers.PretrainedConfig.get_config_dict(name, revision=revision)
    except (OSError, ValueError) as e:
        raise ModelLoadError(name, "a model config", e) from None
    model_type = config_dict.get("model_type")
    if not model_type:
        raise ConfigError(f"{name}: its config.json names no model_type, so transformers cannot build it")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"{name}: model type {model_type!r} needs its repository's own code (trust_remote_code), which "
            f"ConceptCaps never runs; wrap it in a 'module:factory' that returns a probing.models.ProbedModel"
        )
    try:
        extractor = AutoFeatureExtractor.from_pretrained(name, revision=revision)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(
            f"{name}: no audio feature extractor (preprocessor_config.json) to load "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    if not hasattr(extractor, "sampling_rate"):
        raise ConfigError(f"{name}: its feature extractor {type(extractor).__name__} is not an audio one")
    config = AutoConfig.from_pretrained(name, revision=revision)
    # a head only where the checkpoint has one: its saved architecture is a classifier (a base wav2vec2 would
    # otherwise get a random classification head)
    head = any(a.endswith(("ForAudioClassification", "ForSequenceClassification")) for a in config.architectures or [])
    auto = AutoModelForAudioClassification if head else AutoModel
    try:
        loaded = auto.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as e:
        raise ModelLoadError(name, "the model", e) from None
    identity = model_identity(name, revision, commit=loaded_commit(loaded))

    def tower(model: nn.Module) -> nn.Module:
        if hasattr(model, "audio_model"):  # CLAP: the audio tower
            return model.audio_model
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):  # Whisper
            return model.get_encoder()
        return model

    backbone = tower(loaded)
    input_name = extractor.model_input_names[0]
    if input_name not in inspect.signature(backbone.forward).parameters:
        raise ConfigError(
            f"{name}: a {model_type} model takes no {input_name!r}, what its audio feature extractor "
            f"({type(extractor).__name__}) gives: not an audio model"
        )
    module = _HFAudio(backbone, input_name, head).eval()
    block = _block_list(module)
    layers = [f"{block}.{i}" for i in range(len(dict(module.named_modules())[block]))] if block else []
    labels = [config.id2label[i] for i in range(len(config.id2label))] if head else None

    def control(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _HFAudio(tower(auto.from_config(config)), input_name, head)

    vocabulary = "AudioSet" if labels and any(label.endswith(" music") for label in labels) else None
    return ProbedModel(
        identity,
        module,
        _HFPreprocess(extractor, input_name, extractor.sampling_rate),
        layers,
        extractor.sampling_rate,
        seconds or _extractor_seconds(extractor, 10.0),
        1,
        labels,
        vocabulary,
        control,
    )


# ---- anything else ------------------------------------------------------------------------------------------


def factory_model(spec: str) -> ProbedModel:
    module_name, _, factory = spec.partition(":")
    try:
        made = getattr(importlib.import_module(module_name), factory)()
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import model factory {spec!r} ({e})") from None
    if isinstance(made, ProbedModel):
        return made
    model, preprocess, classes = made
    rate = getattr(preprocess, "sampling_rate", SAMPLING_RATE)
    samples = getattr(preprocess, "samples", None)
    if samples is None:
        raise ConfigError(
            f"{spec}: the factory's preprocess must say how many samples it reads (a `samples` attribute)"
        )
    layers = [n for n, m in model.named_children()]
    return ProbedModel(spec, model.eval(), preprocess, layers, rate, samples / rate, -1, list(classes) or None)


def load_model(spec: str, seconds: float | None = None) -> ProbedModel:
    """A model of the probing interface from its spec (see the module's docstring)."""
    if spec.startswith("musicnn:"):
        return musicnn_model(spec.partition(":")[2], seconds)
    path = Path(spec)
    if is_genre_cnn(path):
        model = genre_cnn_model(path)
        if seconds:
            model.seconds = seconds
        return model
    head, sep, tail = spec.partition(":")
    if sep and tail.isidentifier() and not path.exists():
        return factory_model(spec)
    return hf_model(spec, seconds)


def describe(model: ProbedModel) -> dict:
    return {
        "name": model.name,
        "sampling_rate": model.sampling_rate,
        "seconds": model.seconds,
        "layers": model.layers,
        "outputs": len(model.output_names) if model.output_names else 0,
        "random_seed": model.random_seed,
    }
