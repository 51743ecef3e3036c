"""Language codes as each family of MT model spells them.

Users name languages by ISO 639-1 code (``th``) as everywhere else in pivotune;
each model family wants its own spelling of the target language:

- NLLB-200 (``model_type`` ``m2m_100`` with FLORES-200 tokens): ``tha_Thai``;
- M2M-100: ``__th__`` tokens, set through ``tokenizer.src_lang`` / ``get_lang_id``;
- mBART-50: ``th_TH``;
- Marian / OPUS-MT with several target languages: a ``>>tha<<`` token prefixed
  to the source text; a single-pair Marian model (``opus-mt-en-de``) has none.

:func:`convention_for` reads which one a tokenizer uses from its vocabulary, so a
model saved under any name is handled; :meth:`Convention.resolve` maps a code and
fails with the model's nearest codes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ..errors import PivotuneError
from ..languages import FLORES_CODES


_FLORES_TOKEN = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
_M2M_TOKEN = re.compile(r"^__([a-z]{2,3})__$")
_MBART_TOKEN = re.compile(r"^[a-z]{2}_[A-Z]{2}$")
_MARIAN_TOKEN = re.compile(r"^>>([a-z]{2,3}(?:_[A-Za-z]+)?)<<$")

SUPPORTED_MODEL_TYPES = ("m2m_100 (M2M-100 and NLLB-200)", "marian (OPUS-MT)", "mbart (mBART-50)")


@dataclass(frozen=True)
class Convention:
    """How one model spells languages: ``name`` and the codes its vocabulary holds."""

    name: str                                     # nllb | m2m100 | mbart50 | marian-multi | marian-pair
    codes: frozenset = field(default_factory=frozenset)   # the model's own spellings ("tha_Thai", "th", ">>tha<<")
    model: str = ""                               # for messages

    def candidates(self, lang: str) -> list[str]:
        """The model spellings ``lang`` may have, most likely first."""
        flores = FLORES_CODES.get(lang, lang if _FLORES_TOKEN.match(lang) else "")
        iso3 = flores.split("_")[0] if flores else ""
        if self.name == "nllb":
            by_prefix = sorted(c for c in self.codes if c.split("_")[0] == lang)   # ISO 639-3 "tha" -> "tha_Thai"
            return [c for c in (lang, flores) if c] + by_prefix
        if self.name == "m2m100":
            return [lang] + ([iso3] if iso3 else [])
        if self.name == "mbart50":
            return [lang] + sorted(c for c in self.codes if c.split("_")[0] == lang)
        if self.name == "marian-multi":
            return [f">>{c}<<" for c in (lang, iso3) if c]
        return [lang]

    def resolve(self, lang: str, *, role: str = "target") -> str:
        """The model's code for ``lang`` (``"th"`` or an already model-specific code)."""
        if self.name == "marian-pair":
            return ""                             # the language is fixed by the model itself
        for code in self.candidates(lang):
            if code in self.codes:
                return code
        raise PivotuneError(self._unknown(lang, role))

    def _unknown(self, lang: str, role: str) -> str:
        shown = sorted(self.codes)
        wanted = self.candidates(lang) or [lang]
        near = []
        for w in wanted:
            near += [c for c in difflib.get_close_matches(w, shown, n=5, cutoff=0.5) if c not in near]
        near += [c for c in shown if c.strip("_<>").startswith(lang[:2]) and c not in near]
        hint = (f"Nearest codes the model knows: {', '.join(near[:8])}." if near
                else f"The model knows {len(shown)} codes, e.g. {', '.join(shown[:8])}.")
        return (f"unknown {role} language '{lang}' for model '{self.model}' ({self.name} convention, "
                f"tried {', '.join(wanted)}). {hint} Pass an ISO 639-1 code such as 'th', or the model's own "
                "code as listed (a Marian >>tha<< token without its brackets: tha).")


def convention_for(model_type: str, vocab: dict | set | list, model: str = "") -> Convention:
    """Which language-code convention a model of ``model_type`` with this tokenizer vocabulary uses."""
    tokens = set(vocab)
    if model_type == "m2m_100":
        flores = frozenset(t for t in tokens if _FLORES_TOKEN.match(t))
        if flores:
            return Convention("nllb", flores, model)
        m2m = frozenset(m.group(1) for t in tokens if (m := _M2M_TOKEN.match(t)))
        if m2m:
            return Convention("m2m100", m2m, model)
        raise PivotuneError(f"model '{model}' is an M2M-100-type model but its tokenizer has neither FLORES-200 "
                            "language tokens (eng_Latn, as NLLB-200 has) nor M2M-100 ones (__en__); cannot tell "
                            "how to select the target language. Check that the tokenizer files belong to the model.")
    if model_type == "mbart":
        codes = frozenset(t for t in tokens if _MBART_TOKEN.match(t))
        if not codes:
            raise PivotuneError(f"model '{model}' is an mBART model without language tokens (en_XX, th_TH): only "
                                "mBART-50 translation checkpoints are supported.")
        return Convention("mbart50", codes, model)
    if model_type == "marian":
        marian = frozenset(t for t in tokens if _MARIAN_TOKEN.match(t))
        return Convention("marian-multi", marian, model) if marian else Convention("marian-pair", frozenset(), model)
    raise PivotuneError(f"model '{model}' has model_type '{model_type}', which is not a supported translation model. "
                        f"Supported: {', '.join(SUPPORTED_MODEL_TYPES)}. For other models, translate elsewhere and "
                        "join the result with --engine pretranslated.")


def marian_pair_langs(model: str) -> tuple[str, str] | None:
    """(source, target) from an OPUS-MT name such as ``Helsinki-NLP/opus-mt-en-th``; None if it has none."""
    m = re.search(r"opus-mt-(?:tc-big-|tc-base-)?([a-z]{2,3})-([a-z]{2,3})$", model.rstrip("/"))
    return (m.group(1), m.group(2)) if m else None
