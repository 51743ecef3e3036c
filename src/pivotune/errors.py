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
    """A data file or row is invalid. ``problems``: every invalid row, one line each, when the error is
    about several (a file whose rows are all invalid)."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None, problems: list[str] | None = None):
        super().__init__(message)
        self.path, self.row, self.field = path, row, field
        self.problems = list(problems or [])


def located(path: str | None, row: int | None = None, field: str | None = None) -> str:
    """Human-readable location: ``file.jsonl, line 3, field 'output'``."""
    parts = [str(path) if path else "<data>"]
    if row is not None:
        parts.append(f"line {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


MESSAGE_LIMIT = 2000   # characters; no error message pivotune prints is longer


def short_repr(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so a message quoting a user's value stays short
    (a huge string, a deeply nested list or a YAML alias bomb included)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = max(limit, 12)
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = 6
    r.maxlevel = 3
    return shorten(r.repr(value), limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with "..."."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def bullet_list(header: str, items: list[str], *, limit: int = MESSAGE_LIMIT) -> str:
    """``header`` then ``  - item`` per item, each item cut to a few lines' length and the whole under
    ``limit`` characters (the items left out are counted at the end)."""
    out = shorten(header, 600)
    for i, item in enumerate(items):
        line = "\n  - " + shorten(item, 400)
        more = f"\n  ... and {len(items) - i} more"
        if len(out) + len(line) + len(more) + 20 > limit:
            return out + more
        out += line
    return out
