"""The run directory, strict presets and argument parsing every stage uses (logging: `core.log`; the command wrapper:
`core.cli`)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from core.errors import ConfigError, DataError

RUN_DIR_ENV = "CONCEPTCAPS_RUN_DIR"
DEFAULT_RUN_DIR = "runs/demo"
REPO_ROOT = Path(__file__).resolve().parent.parent
# MusicCaps comes from the Hub unless this variable names a local copy (machines without Hub access, CI)
MUSICCAPS_ENV = "CONCEPTCAPS_MUSICCAPS_CSV"
DEFAULT_MUSICCAPS = "hf://google/MusicCaps"
RUN_DIR_VARIABLE = "${run_dir}"


def arg(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None):
    """An argument dataclass's field: its default (or `factory` for a mutable one) and the help text `--help`
    shows."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def run_dir(path: str | os.PathLike | None = None) -> Path:
    """The run directory: `path` if given, else $CONCEPTCAPS_RUN_DIR, else runs/demo. Created if missing."""
    out = Path(path or os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_preset(path: str | os.PathLike) -> dict[str, Any]:
    """A preset's raw mapping: shared top-level keys and one mapping per stage."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: preset not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(path, "a preset must be a YAML mapping")
    return raw


def load_preset(path: str | os.PathLike, section: str | None = None, expand: bool = True) -> dict[str, Any]:
    """A preset's shared top-level keys, overridden by the keys of its `section` mapping.

    Args:
        expand: replace `${run_dir}` by the run directory; False keeps it, as the pipeline's fingerprints do, so
            that a run directory copied or moved elsewhere still matches them.
    """
    raw = read_preset(path)
    flat = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    if section is not None:
        sub = raw.get(section) or {}
        if not isinstance(sub, dict):
            raise DataError(path, "must be a mapping", field=section)
        flat.update(sub)
    return {k: _expand(v) for k, v in flat.items()} if expand else flat


def _expand(value: Any) -> Any:
    """Presets may write ${run_dir} for the run directory (e.g. tiny models built inside the run)."""
    if isinstance(value, str) and RUN_DIR_VARIABLE in value:
        return value.replace(RUN_DIR_VARIABLE, str(run_dir()))
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def field_names(dataclass_types) -> set[str]:
    types = dataclass_types if isinstance(dataclass_types, tuple) else (dataclass_types,)
    return {f.name for t in types for f in dataclasses.fields(t)}


def unknown_key_error(preset, section: str | None, key: str, known: set[str]) -> ConfigError:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    where = f"section {section!r}" if section else "the top level"
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{preset}: unknown key {key!r} in {where}{hint}")


def parse_args(
    dataclass_types, section: str, argv: Sequence[str] | None = None, defaults: dict | None = None, parser_class=None
):
    """Parse argument dataclass(es) from the command line; `--config preset.yaml` sets defaults first.

    A preset holds shared top-level keys and one mapping per stage (`section`). Every key of the stage's own
    section must be one of its arguments (a misspelt key is an error naming the closest valid one); top-level keys
    it does not know belong to other stages (the pipeline checks that some stage knows each). Precedence:
    `defaults` < preset < command line.

    Returns:
        One dataclass instance, or a tuple of them when `dataclass_types` is a tuple.
    """
    from transformers import HfArgumentParser

    types = dataclass_types if isinstance(dataclass_types, tuple) else (dataclass_types,)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = (parser_class or HfArgumentParser)(types, description=types[0].__doc__)
    parser.add_argument("--config", default=None, help="YAML preset whose keys set this stage's defaults")
    if not any("--debug" in a.option_strings for a in parser._actions):  # TrainingArguments has its own
        parser.add_argument("--debug", action="store_true", help="an error's traceback instead of its one line")
    for action in parser._actions:  # a help text that says its own default is not given a second one
        if action.help and "(default" in action.help:
            action.help += "%(default).0s"
    names = field_names(types)
    parser.set_defaults(**{k: v for k, v in (defaults or {}).items() if k in names})
    known, _ = parser.parse_known_args(argv)
    if known.config:
        own = read_preset(known.config).get(section) or {}
        for key in own if isinstance(own, dict) else ():
            if key not in names:
                raise unknown_key_error(known.config, section, key, names)
        preset = load_preset(known.config, section)
        parser.set_defaults(**{k: v for k, v in preset.items() if k in names})
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)[: len(types)]
    except ValueError as e:  # a dataclass's __post_init__ check
        raise ConfigError(f"{section}: {e}") from None
    return tuple(parsed) if isinstance(dataclass_types, tuple) else parsed[0]
