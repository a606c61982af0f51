"""The ConceptCaps datasets builder: features, configs and splits.

datasets >= 4 runs no loading scripts, so this builder is not what `load_dataset` calls on the Hub: it is what
`builder.assemble` runs to turn a run directory's stage outputs into the published form (parquet per config
and split, plus a README whose YAML `configs:` tells `load_dataset` where they are).

    from datasets import load_dataset
    ds = load_dataset("<repo or folder>")                       # default: captions, attributes, CLAP score
    ds = load_dataset("<repo or folder>", "audio")              # the same plus 32 kHz audio
    sets = load_dataset("<repo or folder>", "concepts")         # per-concept positive / negative / random sets
    from conceptcaps import concept_examples
    piano = concept_examples("<repo or folder>", "piano", split="train")   # {"positive", "negative", "random"}

Configs:
  default   id, caption, attribute list and one list per category, CLAP score, duration, provenance
  audio     default's columns plus `audio` (Audio, 32 kHz) and, for rendered audio, `ground_truth` and `midi`
  concepts  concept, category, split, role (positive / negative / random), set_index, id
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from core.constants import CATEGORIES, CITATION, DATA_LICENSE, DESCRIPTION, SAMPLING_RATE, SPLITS

BASE_FEATURES = {
    "id": datasets.Value("string"),
    "caption": datasets.Value("string"),
    "tags": datasets.Sequence(datasets.Value("string")),
    **{c: datasets.Sequence(datasets.Value("string")) for c in CATEGORIES},
    "clap_score": datasets.Value("float32"),
    "duration_s": datasets.Value("float32"),
    "caption_model": datasets.Value("string"),
    "audio_model": datasets.Value("string"),
    "audio_model_revision": datasets.Value("string"),
    "generation_params": datasets.Value("string"),
    "seed": datasets.Value("int64"),
}
RENDER_FEATURES = {  # the symbolic backend's ground truth (None for MusicGen audio)
    "ground_truth": datasets.Value("string"),  # JSON: bpm, meter, key, mode, feels, instruments with stem shares, soundfont
    "midi": datasets.Value("binary"),  # the rendered score as a standard MIDI file
}
CONCEPT_FEATURES = {
    "concept": datasets.Value("string"),
    "category": datasets.Value("string"),
    "split": datasets.Value("string"),
    "role": datasets.ClassLabel(names=["positive", "negative", "random"]),
    "set_index": datasets.Value("int32"),
    "id": datasets.Value("string"),
}


@dataclass
class ConceptCapsConfig(datasets.BuilderConfig):
    """Which table a config holds; `data_dir` is the run directory (its `assembly/` and `audio_shards/`)."""

    with_audio: bool = False
    concepts: bool = False


class ConceptCaps(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = ConceptCapsConfig
    BUILDER_CONFIGS = [
        ConceptCapsConfig(name="default", description="captions, attributes and scores"),
        ConceptCapsConfig(name="audio", description="default plus 32 kHz audio", with_audio=True),
        ConceptCapsConfig(name="concepts", description="per-concept positive, negative and random sets", concepts=True),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        if self.config.concepts:
            features = CONCEPT_FEATURES
        elif self.config.with_audio:
            features = {**BASE_FEATURES, "audio": datasets.Audio(sampling_rate=SAMPLING_RATE), **RENDER_FEATURES}
        else:
            features = BASE_FEATURES
        return datasets.DatasetInfo(description=DESCRIPTION, features=datasets.Features(features), citation=CITATION,
                                    license=DATA_LICENSE, homepage="https://arxiv.org/abs/2601.14157")

    def _split_generators(self, dl_manager):
        root = Path(self.config.data_dir)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"root": root, "split": split}) for split in SPLITS]

    def _generate_examples(self, root: Path, split: str):
        assembly = root / "assembly"
        if self.config.concepts:
            for i, row in enumerate(r for r in pq.read_table(assembly / "concept_sets.parquet").to_pylist() if r["split"] == split):
                yield i, row
            return
        examples = [r for r in pq.read_table(assembly / "examples.parquet").to_pylist() if r["split"] == split]
        if not self.config.with_audio:
            for row in examples:
                yield row["id"], {k: row[k] for k in BASE_FEATURES}
            return
        wanted = {r["id"]: r for r in examples}
        for shard in json.loads((assembly / "audio_shards.json").read_text()):  # one shard in memory at a time
            present = [c for c in ("id", "audio", *RENDER_FEATURES) if c in pq.read_schema(root / shard).names]
            for row in pq.read_table(root / shard, columns=present).to_pylist():
                if row["id"] in wanted:
                    yield row["id"], {**{k: wanted[row["id"]][k] for k in BASE_FEATURES}, "audio": row["audio"],
                                      **{k: row.get(k) for k in RENDER_FEATURES}}


def open_dataset(path: str, config: str = "default", split: str | None = None, **kwargs):
    """`load_dataset` for a Hub id or a local folder. For a local folder, the cache lives inside it: datasets keys
    a local folder's cache by the folder's name, so two folders named alike would otherwise share (and mix up)
    one cache."""
    if Path(path).is_dir():
        kwargs.setdefault("cache_dir", str(Path(path) / ".cache"))
    return datasets.load_dataset(str(path), config, split=split, **kwargs)


def concept_examples(path: str, concept: str, split: str = "train", config: str = "default", **kwargs) -> dict:
    """A concept's positive and negative examples and its random sets, as datasets, in one call.

    Args:
        path: a Hub dataset id or a local folder of the published dataset.
        config: which examples to return: "default" (no audio) or "audio".
    Returns:
        {"positive": Dataset, "negative": Dataset, "random": [Dataset, ...]}
    """
    sets = open_dataset(path, "concepts", split=split, **kwargs).filter(lambda r: r["concept"] == concept)
    if len(sets) == 0:
        raise ValueError(f"no concept set for {concept!r} in split {split!r} (too few positives, or not a concept)")
    examples = open_dataset(path, config, split=split, **kwargs)
    position = {id_: i for i, id_ in enumerate(examples["id"])}
    roles = sets.features["role"].names

    def select(role: str, index: int | None = None):
        ids = [r["id"] for r in sets if roles[r["role"]] == role and (index is None or r["set_index"] == index)]
        return examples.select([position[i] for i in ids])

    n_random = len({r["set_index"] for r in sets if roles[r["role"]] == "random"})
    return {"positive": select("positive"), "negative": select("negative"),
            "random": [select("random", i) for i in range(n_random)]}
