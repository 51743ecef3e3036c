"""User-facing errors.

Anything a user can fix (a bad config value, a malformed row, a missing file)
is raised as a :class:`PivotuneError`; the CLI prints its message as one
paragraph and exits non-zero, never a traceback.
"""

from __future__ import annotations


class PivotuneError(Exception):
    """An error the user can act on; ``str(err)`` is the whole message."""


class ConfigError(PivotuneError):
    """The run configuration is invalid."""


class DataError(PivotuneError):
    """A data file or row is invalid."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None):
        super().__init__(message)
        self.path, self.row, self.field = path, row, field


def located(path: str | None, row: int | None = None, field: str | None = None) -> str:
    """Human-readable location: ``file.jsonl, line 3, field 'output'``."""
    parts = [str(path) if path else "<data>"]
    if row is not None:
        parts.append(f"line {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)
