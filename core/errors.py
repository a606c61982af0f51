"""The project's errors. Each is reported by a CLI as one line (`core.config.cli`), its traceback only with --debug."""

from __future__ import annotations

import os


class ConceptCapsError(Exception):
    """Base of the errors a user can act on: the message says what is wrong and where."""


class DataError(ConceptCapsError, ValueError):
    """Bad input: the message names the file, and where known the row and the field."""

    def __init__(self, path: str | os.PathLike | None, message: str, row: int | None = None, field: str | None = None):
        where = [str(path)] if path is not None else []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path, self.message, self.row, self.field = path, message, row, field

    def __reduce__(self):  # picklable, so that a worker process's error reaches its parent whole
        return type(self), (self.path, self.message, self.row, self.field)


class ConfigError(ConceptCapsError, ValueError):
    """A bad argument or preset key, or a name (layer, concept, stage) that does not exist."""


class ModelLoadError(ConceptCapsError, RuntimeError):
    """A model or tokenizer that cannot be loaded (a wrong id or path, no network, a gated model without access)."""

    def __init__(self, name: str | os.PathLike, what: str, cause: BaseException):
        first = (str(cause).strip().splitlines() or [""])[0]
        super().__init__(f"{name}: cannot load {what} ({cause.__class__.__name__}: {first[:200]})")
        self.name = str(name)


class PublishError(ConceptCapsError, RuntimeError):
    """The Hub refused or could not be reached; nothing was tagged."""
