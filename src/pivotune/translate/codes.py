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

# ISO 639-1 -> FLORES-200 code (language_Script). NLLB uses the individual
# language where ISO 639-1 names a macrolanguage (ar -> arb, sw -> swh, fa -> pes).
FLORES_CODES = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng", "az": "azj_Latn",
    "be": "bel_Cyrl", "bg": "bul_Cyrl", "bn": "ben_Beng", "bs": "bos_Latn", "ca": "cat_Latn",
    "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek",
    "en": "eng_Latn", "es": "spa_Latn", "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab",
    "fi": "fin_Latn", "fr": "fra_Latn", "ga": "gle_Latn", "gl": "glg_Latn", "gu": "guj_Gujr",
    "ha": "hau_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn",
    "hy": "hye_Armn", "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn",
    "ja": "jpn_Jpan", "jv": "jav_Latn", "ka": "kat_Geor", "kk": "kaz_Cyrl", "km": "khm_Khmr",
    "kn": "kan_Knda", "ko": "kor_Hang", "ky": "kir_Cyrl", "lo": "lao_Laoo", "lt": "lit_Latn",
    "lv": "lvs_Latn", "mg": "plt_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl",
    "mr": "mar_Deva", "ms": "zsm_Latn", "my": "mya_Mymr", "ne": "npi_Deva", "nl": "nld_Latn",
    "no": "nob_Latn", "or": "ory_Orya", "pa": "pan_Guru", "pl": "pol_Latn", "ps": "pbt_Arab",
    "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "si": "sin_Sinh", "sk": "slk_Latn",
    "sl": "slv_Latn", "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn",
    "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
    "tl": "tgl_Latn", "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn",
    "vi": "vie_Latn", "xh": "xho_Latn", "yo": "yor_Latn", "zh": "zho_Hans", "zu": "zul_Latn",
}

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
                "code exactly as listed.")


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
