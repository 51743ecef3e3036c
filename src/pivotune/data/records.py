"""The sample record that travels from loading to the loss.

A sample carries its role and language from the loader to the objective, so
objectives route by role, never by sniffing text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import PivotuneError
from ..languages import check_syntax

Role = Literal["en", "tgt", "mt", "cs"]
ROLES: tuple[str, ...] = ("en", "tgt", "mt", "cs")
ROLE_IDS: dict[str, int] = {r: i for i, r in enumerate(ROLES)}
#: the label of a position no loss reads (prompt, padding): torch's cross-entropy ``ignore_index`` default
IGNORE_INDEX = -100


def parse_source(spec: str) -> tuple[str, str | None]:
    """A data source named by ``ROLE`` or ``ROLE:LANG`` → (role, lang or None); LANG must be a language code."""
    role, sep, lang = str(spec).partition(":")
    if role not in ROLES or (sep and not lang):
        raise PivotuneError(f"source {spec!r}: expected ROLE or ROLE:LANG with ROLE one of {', '.join(ROLES)} "
                            "(e.g. 'en', 'tgt:el', 'mt').")
    return role, (check_syntax(lang, f"source {spec!r}") if sep else None)


@dataclass(frozen=True)
class Sample:
    """One instruction-tuning example.

    Alpaca form fills ``instruction``/``input``/``output``; chat form fills
    ``messages`` (a tuple of ``{"role", "content"}`` dicts, loss on assistant
    turns) and leaves the Alpaca fields empty.
    """

    instruction: str = ""
    input: str = ""
    output: str = ""
    messages: tuple[dict, ...] | None = None
    role: str = "en"          # one of ROLES
    lang: str = "en"          # language code of the text the model reads/writes
    source: str = ""          # name of the data source it came from
    weight: float = 1.0       # per-source loss weight
    origin: str = ""          # "file, line N" for error messages
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ParallelPair:
    """One aligned sentence pair of a parallel corpus."""

    source: str
    target: str
    src_lang: str = "en"
    tgt_lang: str = ""
    origin: str = ""
