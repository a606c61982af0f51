"""Convert musicnn's pretrained TensorFlow checkpoints (inside PyPI's `musicnn` 0.1.0 wheel, ISC licence) to
safetensors in the user's cache, once. Needs neither TensorFlow nor the musicnn package: the checkpoints are read
by `probing.tf_checkpoint`.

    python -m probing.convert_musicnn                              # pip-downloads the wheel, checks its sha256
    python -m probing.convert_musicnn --wheel musicnn-0.1.0-py3-none-any.whl --output_dir ~/.cache/conceptcaps/musicnn

Writes `<name>.safetensors` for MTT_musicnn, MSD_musicnn, MTT_vgg and MSD_vgg, with the wheel's sha256 and this
converter's own sha256 in each file's metadata (and in `<name>.json`), so a converted file says what it came from.
Nothing is written to the repository; the weights are never committed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file

from core.cli import cli
from core.config import arg, parse_args
from core.errors import ConfigError, DataError
from core.io import sha256_file, write_json
from core.log import get_logger
from probing.musicnn import MODELS, MusicnnSpec, build_net, cache_dir, weights_path
from probing.tf_checkpoint import read_checkpoint

logger = get_logger(__name__)

WHEEL = "musicnn==0.1.0"
WHEEL_SHA256 = (
    "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"  # PyPI's musicnn-0.1.0-py3-none-any.whl
)


def tf_names(spec: MusicnnSpec) -> dict[str, str]:
    """Our module prefix for each TF layer name, in the order the original graph creates its layers."""
    if spec.architecture == "musicnn":
        convs = [
            "timbral_convs.0",
            "timbral_convs.1",
            "temporal_convs.0",
            "temporal_convs.1",
            "temporal_convs.2",
            "mid_convs.0",
            "mid_convs.1",
            "mid_convs.2",
        ]
        bns = [
            "bn_input",
            "timbral_bns.0",
            "timbral_bns.1",
            "temporal_bns.0",
            "temporal_bns.1",
            "temporal_bns.2",
            "mid_bns.0",
            "mid_bns.1",
            "mid_bns.2",
            "bn_pool",
            "bn_dense",
        ]
        dense = {"dense": "dense", "dense_1": "out"}
        conv_names = ["conv2d"] + [f"conv2d_{i}" for i in range(1, len(convs))]
    else:
        convs = [f"convs.{i}" for i in range(5)]
        bns = ["bn_input"] + [f"bns.{i}" for i in range(5)]
        dense = {"dense": "out"}
        conv_names = [f"{i}CNN" for i in range(1, 6)]
    names = dict(zip(conv_names, convs))
    names.update(zip(["batch_normalization"] + [f"batch_normalization_{i}" for i in range(1, len(bns))], bns))
    names.update(dense)
    return names


def state_dict_from_tf(spec: MusicnnSpec, variables: dict) -> dict[str, torch.Tensor]:
    """Our state dict from the checkpoint's variables: conv kernels (h, w, in, out) -> (out, in, h, w), dense
    kernels (in, out) -> (out, in), batch norms' gamma/beta/moving statistics -> weight/bias/running statistics."""
    ours = {}
    for tf_name, prefix in tf_names(spec).items():

        def get(suffix):
            key = f"{tf_name}/{suffix}"
            if key not in variables:
                raise DataError(spec.name, f"the checkpoint has no variable {key!r}")
            return torch.from_numpy(variables[key].copy())

        if tf_name.startswith("batch_normalization"):
            ours.update(
                {
                    f"{prefix}.weight": get("gamma"),
                    f"{prefix}.bias": get("beta"),
                    f"{prefix}.running_mean": get("moving_mean"),
                    f"{prefix}.running_var": get("moving_variance"),
                    f"{prefix}.num_batches_tracked": torch.tensor(0),
                }
            )
        elif tf_name.startswith("dense"):
            ours.update({f"{prefix}.weight": get("kernel").T.contiguous(), f"{prefix}.bias": get("bias")})
        else:
            ours.update(
                {f"{prefix}.weight": get("kernel").permute(3, 2, 0, 1).contiguous(), f"{prefix}.bias": get("bias")}
            )
    return ours


def convert_wheel(wheel: Path, output_dir: Path, names: Sequence[str] = tuple(MODELS)) -> dict[str, Path]:
    """Convert the named models of the wheel; returns {name: safetensors path}."""
    wheel_sha = sha256_file(wheel)
    if wheel_sha != WHEEL_SHA256:
        raise DataError(wheel, f"sha256 {wheel_sha} is not that of PyPI's {WHEEL} wheel ({WHEEL_SHA256})")
    converter_sha = sha256_file(Path(__file__))
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        for name in names:
            spec = MODELS[name]
            members = [m for m in archive.namelist() if m.startswith(f"musicnn/{name}/.")]
            archive.extractall(tmp, members)
            variables = read_checkpoint(f"{Path(tmp) / 'musicnn' / name}/")  # files named ".index", ".data-…"
            net = build_net(spec)
            state = state_dict_from_tf(spec, variables)
            net.load_state_dict(state, strict=True)  # every tensor present, every shape right
            metadata = {
                "model": name,
                "source": f"PyPI {WHEEL}",
                "wheel_sha256": wheel_sha,
                "converter_sha256": converter_sha,
                "licence": "ISC (musicnn, Pons & Serra 2019)",
            }
            path = weights_path(name, output_dir)
            partial = path.with_name(path.name + ".partial")
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(partial), metadata=metadata)
            partial.replace(path)
            write_json(
                path.with_suffix(".json"),
                {**metadata, "weights_sha256": sha256_file(path), "labels": list(spec.labels)},
            )
            written[name] = path
            logger.info("musicnn: %s -> %s", name, path)
    return written


def download_wheel(folder: Path) -> Path:
    """`pip download musicnn==0.1.0 --no-deps` into `folder`."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), WHEEL],
        capture_output=True,
        text=True,
    )
    wheels = sorted(folder.glob("musicnn-0.1.0-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ConfigError(
            f"could not download {WHEEL} from PyPI ({result.stderr.strip()[-200:]}); "
            f"download it elsewhere and pass --wheel"
        )
    return wheels[0]


@dataclass
class ConvertArguments:
    """Convert musicnn's TF checkpoints (PyPI wheel) to safetensors."""

    wheel: str | None = arg(None, f"the {WHEEL} wheel (default: pip-download it)")
    output_dir: str | None = arg(None, "where to write (default: ~/.cache/conceptcaps/musicnn)")
    models: list[str] = arg(factory=lambda: list(MODELS), help=f"which of {list(MODELS)}")

    def __post_init__(self):
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown musicnn model(s) {unknown}; choose from {list(MODELS)}")


ARGUMENTS = ConvertArguments


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args = parse_args(ARGUMENTS, "convert_musicnn", argv)
    output_dir = Path(args.output_dir).expanduser() if args.output_dir else cache_dir() / "musicnn"
    if args.wheel:
        if not Path(args.wheel).is_file():
            raise DataError(args.wheel, f"no such file: the {WHEEL} wheel (pip download musicnn==0.1.0 --no-deps)")
        return convert_wheel(Path(args.wheel), output_dir, args.models)
    with tempfile.TemporaryDirectory() as tmp:
        return convert_wheel(download_wheel(Path(tmp)), output_dir, args.models)


if __name__ == "__main__":
    cli(main, lock=False)
