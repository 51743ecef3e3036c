"""What every section of the run config shares, so that a method's settings class can live in its own package
(:mod:`pivotune.methods`) and the config (:mod:`pivotune.config`) gathers them without an import cycle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from .languages import check_syntax

#: A field holding a language code: its shape is checked where it stands (so the error names that field);
#: whether the language is known or declared (extra_languages) is checked by RunConfig, which sees both.
LanguageCode = Annotated[str, AfterValidator(check_syntax)]

#: the heads' cross-entropy (``prom.chunk_size``, ``prom.recompute_logits``; read by every head's loss):
#: supervised positions per chunk, and the value that lets the logits' size decide whether to recompute them
DEFAULT_CHUNK_SIZE = 2048
RECOMPUTE_AUTO = "auto"


class KeyProblem(ValueError):
    """A problem a whole-config check found at key path ``loc`` (e.g. ``("data", "1", "lang")``), so the error
    names that key and its line rather than the config as a whole."""

    def __init__(self, loc: tuple[str, ...], message: str):
        super().__init__(message)
        self.loc = loc


class Strict(BaseModel):
    """A config section: unknown keys are refused (with the nearest valid one), assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def language_codes(self) -> Iterator[tuple[str, str]]:
        """``(field, code)`` for every language code this section names (checked against the known and declared
        languages by the run config); none by default."""
        return iter(())
