"""Language codes: the one rule every code entering pivotune passes, and the language tables.

A code names a language everywhere (configs, the command line, data rows) and becomes part of file
names (``RUN/probe/lens_th.png``, ``alpaca.th.jsonl``), so it must be a code, never a path or a name:

- **Syntax** (BCP-47-like): a primary subtag of 2–3 lowercase letters (ISO 639), then optionally a
  script (``Latn``) and a region (``BR``, ``419``), joined by ``-`` or ``_`` (``th``, ``tha``,
  ``pt-BR``, ``sr-Latn``, ``zh-Hant-TW``, ``tha_Thai``). Nothing else, so no code holds ``/``, ``.``
  or a space.
- **Known**: the primary subtag is an ISO 639-1 code or the ISO 639-3 code of a FLORES-200 language
  (the tables below), so a typo (``thai``, ``xx``) never trains silently. A language the tables lack
  is declared explicitly: ``extra_languages: [xyz]`` in a run config, ``--extra-languages xyz`` on the
  command line.

:class:`LanguageCodeError` is both a :class:`~pivotune.errors.PivotuneError` (the CLI prints it) and a
``ValueError`` (a pydantic validator reports it at its field).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable

from .errors import PivotuneError

# English names as ISO 639 gives them (the first name, qualifiers dropped; a few common forms: Greek,
# Punjabi, Pashto, Kyrgyz, Odia, Uyghur). They name languages in translation-task instructions.
_ISO_639_1 = (
    ("aa", "Afar"), ("ab", "Abkhazian"), ("ae", "Avestan"), ("af", "Afrikaans"), ("ak", "Akan"), ("am", "Amharic"),
    ("an", "Aragonese"), ("ar", "Arabic"), ("as", "Assamese"), ("av", "Avaric"), ("ay", "Aymara"),
    ("az", "Azerbaijani"), ("ba", "Bashkir"), ("be", "Belarusian"), ("bg", "Bulgarian"), ("bh", "Bihari"),
    ("bi", "Bislama"), ("bm", "Bambara"), ("bn", "Bengali"), ("bo", "Tibetan"), ("br", "Breton"), ("bs", "Bosnian"),
    ("ca", "Catalan"), ("ce", "Chechen"), ("ch", "Chamorro"), ("co", "Corsican"), ("cr", "Cree"), ("cs", "Czech"),
    ("cu", "Church Slavic"), ("cv", "Chuvash"), ("cy", "Welsh"), ("da", "Danish"), ("de", "German"),
    ("dv", "Dhivehi"), ("dz", "Dzongkha"), ("ee", "Ewe"), ("el", "Greek"), ("en", "English"), ("eo", "Esperanto"),
    ("es", "Spanish"), ("et", "Estonian"), ("eu", "Basque"), ("fa", "Persian"), ("ff", "Fulah"), ("fi", "Finnish"),
    ("fj", "Fijian"), ("fo", "Faroese"), ("fr", "French"), ("fy", "Western Frisian"), ("ga", "Irish"),
    ("gd", "Scottish Gaelic"), ("gl", "Galician"), ("gn", "Guarani"), ("gu", "Gujarati"), ("gv", "Manx"),
    ("ha", "Hausa"), ("he", "Hebrew"), ("hi", "Hindi"), ("ho", "Hiri Motu"), ("hr", "Croatian"),
    ("ht", "Haitian Creole"), ("hu", "Hungarian"), ("hy", "Armenian"), ("hz", "Herero"), ("ia", "Interlingua"),
    ("id", "Indonesian"), ("ie", "Interlingue"), ("ig", "Igbo"), ("ii", "Sichuan Yi"), ("ik", "Inupiaq"),
    ("io", "Ido"), ("is", "Icelandic"), ("it", "Italian"), ("iu", "Inuktitut"), ("ja", "Japanese"),
    ("jv", "Javanese"), ("ka", "Georgian"), ("kg", "Kongo"), ("ki", "Kikuyu"), ("kj", "Kuanyama"), ("kk", "Kazakh"),
    ("kl", "Kalaallisut"), ("km", "Khmer"), ("kn", "Kannada"), ("ko", "Korean"), ("kr", "Kanuri"),
    ("ks", "Kashmiri"), ("ku", "Kurdish"), ("kv", "Komi"), ("kw", "Cornish"), ("ky", "Kyrgyz"), ("la", "Latin"),
    ("lb", "Luxembourgish"), ("lg", "Ganda"), ("li", "Limburgan"), ("ln", "Lingala"), ("lo", "Lao"),
    ("lt", "Lithuanian"), ("lu", "Luba-Katanga"), ("lv", "Latvian"), ("mg", "Malagasy"), ("mh", "Marshallese"),
    ("mi", "Maori"), ("mk", "Macedonian"), ("ml", "Malayalam"), ("mn", "Mongolian"), ("mr", "Marathi"),
    ("ms", "Malay"), ("mt", "Maltese"), ("my", "Burmese"), ("na", "Nauru"), ("nb", "Norwegian Bokmål"),
    ("nd", "North Ndebele"), ("ne", "Nepali"), ("ng", "Ndonga"), ("nl", "Dutch"), ("nn", "Norwegian Nynorsk"),
    ("no", "Norwegian"), ("nr", "South Ndebele"), ("nv", "Navajo"), ("ny", "Nyanja"), ("oc", "Occitan"),
    ("oj", "Ojibwa"), ("om", "Oromo"), ("or", "Odia"), ("os", "Ossetian"), ("pa", "Punjabi"), ("pi", "Pali"),
    ("pl", "Polish"), ("ps", "Pashto"), ("pt", "Portuguese"), ("qu", "Quechua"), ("rm", "Romansh"), ("rn", "Rundi"),
    ("ro", "Romanian"), ("ru", "Russian"), ("rw", "Kinyarwanda"), ("sa", "Sanskrit"), ("sc", "Sardinian"),
    ("sd", "Sindhi"), ("se", "Northern Sami"), ("sg", "Sango"), ("sh", "Serbo-Croatian"), ("si", "Sinhala"),
    ("sk", "Slovak"), ("sl", "Slovenian"), ("sm", "Samoan"), ("sn", "Shona"), ("so", "Somali"), ("sq", "Albanian"),
    ("sr", "Serbian"), ("ss", "Swati"), ("st", "Southern Sotho"), ("su", "Sundanese"), ("sv", "Swedish"),
    ("sw", "Swahili"), ("ta", "Tamil"), ("te", "Telugu"), ("tg", "Tajik"), ("th", "Thai"), ("ti", "Tigrinya"),
    ("tk", "Turkmen"), ("tl", "Tagalog"), ("tn", "Tswana"), ("to", "Tonga"), ("tr", "Turkish"), ("ts", "Tsonga"),
    ("tt", "Tatar"), ("tw", "Twi"), ("ty", "Tahitian"), ("ug", "Uyghur"), ("uk", "Ukrainian"), ("ur", "Urdu"),
    ("uz", "Uzbek"), ("ve", "Venda"), ("vi", "Vietnamese"), ("vo", "Volapük"), ("wa", "Walloon"), ("wo", "Wolof"),
    ("xh", "Xhosa"), ("yi", "Yiddish"), ("yo", "Yoruba"), ("za", "Zhuang"), ("zh", "Chinese"), ("zu", "Zulu"),
)

# FLORES-200's languages by ISO 639-3 code (NLLB's language tokens: tha_Thai -> tha), with their English names.
_FLORES_200 = (
    ("ace", "Achinese"), ("acm", "Mesopotamian Arabic"), ("acq", "Ta'izzi-Adeni Arabic"),
    ("aeb", "Tunisian Arabic"), ("afr", "Afrikaans"), ("ajp", "South Levantine Arabic"), ("aka", "Akan"),
    ("als", "Tosk Albanian"), ("amh", "Amharic"), ("apc", "North Levantine Arabic"), ("arb", "Standard Arabic"),
    ("ars", "Najdi Arabic"), ("ary", "Moroccan Arabic"), ("arz", "Egyptian Arabic"), ("asm", "Assamese"),
    ("ast", "Asturian"), ("awa", "Awadhi"), ("ayr", "Central Aymara"), ("azb", "South Azerbaijani"),
    ("azj", "North Azerbaijani"), ("bak", "Bashkir"), ("bam", "Bambara"), ("ban", "Balinese"),
    ("bel", "Belarusian"), ("bem", "Bemba"), ("ben", "Bengali"), ("bho", "Bhojpuri"), ("bjn", "Banjar"),
    ("bod", "Tibetan"), ("bos", "Bosnian"), ("bug", "Buginese"), ("bul", "Bulgarian"), ("cat", "Catalan"),
    ("ceb", "Cebuano"), ("ces", "Czech"), ("cjk", "Chokwe"), ("ckb", "Central Kurdish"), ("crh", "Crimean Tatar"),
    ("cym", "Welsh"), ("dan", "Danish"), ("deu", "German"), ("dik", "Southwestern Dinka"), ("dyu", "Dyula"),
    ("dzo", "Dzongkha"), ("ell", "Greek"), ("eng", "English"), ("epo", "Esperanto"), ("est", "Estonian"),
    ("eus", "Basque"), ("ewe", "Ewe"), ("fao", "Faroese"), ("fij", "Fijian"), ("fin", "Finnish"), ("fon", "Fon"),
    ("fra", "French"), ("fur", "Friulian"), ("fuv", "Nigerian Fulfulde"), ("gaz", "West Central Oromo"),
    ("gla", "Scottish Gaelic"), ("gle", "Irish"), ("glg", "Galician"), ("grn", "Guarani"), ("guj", "Gujarati"),
    ("hat", "Haitian Creole"), ("hau", "Hausa"), ("heb", "Hebrew"), ("hin", "Hindi"), ("hne", "Chhattisgarhi"),
    ("hrv", "Croatian"), ("hun", "Hungarian"), ("hye", "Armenian"), ("ibo", "Igbo"), ("ilo", "Iloko"),
    ("ind", "Indonesian"), ("isl", "Icelandic"), ("ita", "Italian"), ("jav", "Javanese"), ("jpn", "Japanese"),
    ("kab", "Kabyle"), ("kac", "Kachin"), ("kam", "Kamba"), ("kan", "Kannada"), ("kas", "Kashmiri"),
    ("kat", "Georgian"), ("kaz", "Kazakh"), ("kbp", "Kabiyè"), ("kea", "Kabuverdianu"), ("khk", "Halh Mongolian"),
    ("khm", "Khmer"), ("kik", "Kikuyu"), ("kin", "Kinyarwanda"), ("kir", "Kyrgyz"), ("kmb", "Kimbundu"),
    ("kmr", "Northern Kurdish"), ("knc", "Central Kanuri"), ("kon", "Kongo"), ("kor", "Korean"), ("lao", "Lao"),
    ("lij", "Ligurian"), ("lim", "Limburgan"), ("lin", "Lingala"), ("lit", "Lithuanian"), ("lmo", "Lombard"),
    ("ltg", "Latgalian"), ("ltz", "Luxembourgish"), ("lua", "Luba-Lulua"), ("lug", "Ganda"), ("luo", "Luo"),
    ("lus", "Lushai"), ("lvs", "Standard Latvian"), ("mag", "Magahi"), ("mai", "Maithili"), ("mal", "Malayalam"),
    ("mar", "Marathi"), ("min", "Minangkabau"), ("mkd", "Macedonian"), ("mlt", "Maltese"), ("mni", "Manipuri"),
    ("mos", "Mossi"), ("mri", "Maori"), ("mya", "Burmese"), ("nld", "Dutch"), ("nno", "Norwegian Nynorsk"),
    ("nob", "Norwegian Bokmål"), ("npi", "Nepali"), ("nso", "Pedi"), ("nus", "Nuer"), ("nya", "Nyanja"),
    ("oci", "Occitan"), ("ory", "Odia"), ("pag", "Pangasinan"), ("pan", "Punjabi"), ("pap", "Papiamento"),
    ("pbt", "Southern Pashto"), ("pes", "Iranian Persian"), ("plt", "Plateau Malagasy"), ("pol", "Polish"),
    ("por", "Portuguese"), ("prs", "Dari"), ("quy", "Ayacucho Quechua"), ("ron", "Romanian"), ("run", "Rundi"),
    ("rus", "Russian"), ("sag", "Sango"), ("san", "Sanskrit"), ("sat", "Santali"), ("scn", "Sicilian"),
    ("shn", "Shan"), ("sin", "Sinhala"), ("slk", "Slovak"), ("slv", "Slovenian"), ("smo", "Samoan"),
    ("sna", "Shona"), ("snd", "Sindhi"), ("som", "Somali"), ("sot", "Southern Sotho"), ("spa", "Spanish"),
    ("srd", "Sardinian"), ("srp", "Serbian"), ("ssw", "Swati"), ("sun", "Sundanese"), ("swe", "Swedish"),
    ("swh", "Swahili"), ("szl", "Silesian"), ("tam", "Tamil"), ("taq", "Tamasheq"), ("tat", "Tatar"),
    ("tel", "Telugu"), ("tgk", "Tajik"), ("tgl", "Tagalog"), ("tha", "Thai"), ("tir", "Tigrinya"),
    ("tpi", "Tok Pisin"), ("tsn", "Tswana"), ("tso", "Tsonga"), ("tuk", "Turkmen"), ("tum", "Tumbuka"),
    ("tur", "Turkish"), ("twi", "Twi"), ("tzm", "Central Atlas Tamazight"), ("uig", "Uyghur"), ("ukr", "Ukrainian"),
    ("umb", "Umbundu"), ("urd", "Urdu"), ("uzn", "Northern Uzbek"), ("vec", "Venetian"), ("vie", "Vietnamese"),
    ("war", "Waray"), ("wol", "Wolof"), ("xho", "Xhosa"), ("ydd", "Eastern Yiddish"), ("yor", "Yoruba"),
    ("yue", "Yue Chinese"), ("zho", "Chinese"), ("zsm", "Standard Malay"), ("zul", "Zulu"),
)

#: Language names written in their own language, for the logit-lens probe's prompts.
OWN_NAMES: dict[str, str] = {
    "en": "English", "fr": "Français", "de": "Deutsch", "es": "Español", "it": "Italiano",
    "pt": "Português", "nl": "Nederlands", "pl": "Polski", "et": "Eesti", "tr": "Türkçe",
    "id": "Bahasa Indonesia", "vi": "Tiếng Việt", "sw": "Kiswahili", "yo": "Yorùbá",
    "zh": "中文", "ja": "日本語", "ko": "한국어", "ru": "Русский", "uk": "Українська", "el": "Ελληνικά",
    "th": "ไทย", "ar": "العربية", "fa": "فارسی", "he": "עברית", "ur": "اردو",
    "hi": "हिन्दी", "mr": "मराठी", "ne": "नेपाली", "bn": "বাংলা", "gu": "ગુજરાતી",
    "ta": "தமிழ்", "te": "తెలుగు", "kn": "ಕನ್ನಡ", "ml": "മലയാളം",
}

# ISO 639-1 -> FLORES-200 code (language_Script), for MT models and corpora that spell languages so. NLLB uses
# the individual language where ISO 639-1 names a macrolanguage (ar -> arb, sw -> swh, fa -> pes).
FLORES_CODES: dict[str, str] = {
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

#: code -> English name, every known code (ISO 639-1 and FLORES-200's ISO 639-3).
ENGLISH_NAMES: dict[str, str] = dict(_ISO_639_1 + _FLORES_200)
_BY_NAME = {name.lower(): code for code, name in _FLORES_200 + _ISO_639_1}   # a two-letter code wins

SYNTAX = re.compile(r"[a-z]{2,3}(?:[-_][A-Z][a-z]{3})?(?:[-_](?:[A-Z]{2}|[0-9]{3}))?")
EXAMPLES = "th, tha, pt-BR, sr-Latn, zh-Hant-TW, tha_Thai"

#: How to declare a code the tables lack, by where it came from (``{code}`` is filled in).
CONFIG_HATCH = "declare it in the run config: extra_languages: [{code}]"
CLI_HATCH = "declare it: --extra-languages {code}"


class LanguageCodeError(PivotuneError, ValueError):
    """A string that is not a (known, or declared) language code."""


def primary(code: str) -> str:
    """The language subtag: ``pt`` of ``pt-BR``, ``tha`` of ``tha_Thai``."""
    return re.split(r"[-_]", code, maxsplit=1)[0]


def iso639_1(code: str) -> str:
    """``th`` for ``th``, ``th-TH``, ``tha`` or ``tha_Thai``: the two-letter code of a language of the FLORES
    table, else the primary subtag (most corpora, harness tasks and identifiers name languages so)."""
    code = primary(code)
    if len(code) == 3:
        return next((iso1 for iso1, fl in FLORES_CODES.items() if primary(fl) == code), code)
    return code


def english_name(code: str) -> str:
    """``Thai`` for ``th`` (and ``th-TH``); the code itself for a language the table lacks."""
    return ENGLISH_NAMES.get(code) or ENGLISH_NAMES.get(primary(code), code)


def _canonical(text: str) -> str:
    """``pt-BR`` for ``PT-br``: the case BCP 47 recommends, subtag by subtag."""
    parts = re.split(r"([-_])", text.strip())
    fixed = [p.lower() if i == 0 else p.title() if len(p) == 4 else p.upper() if len(p) == 2 else p
             for i, p in enumerate(parts)]
    return "".join(fixed)


def _nearest(text: str, pool: Collection[str]) -> str | None:
    """The code most likely meant by ``text``, among ``pool``: its language's name, its case, or difflib."""
    by_name = _BY_NAME.get(text.strip().lower())
    if by_name in pool:
        return by_name
    canonical = _canonical(text)
    if SYNTAX.fullmatch(canonical) and primary(canonical) in pool:
        return canonical
    close = difflib.get_close_matches(text.strip().lower(), sorted(pool), n=1, cutoff=0.5)
    return close[0] if close else None


def _hint(text: str, pool: Collection[str]) -> str:
    near = _nearest(text, pool)
    if near is None:
        return ""
    name = english_name(near)
    return f" Did you mean '{near}'" + (f" ({name})?" if name != near else "?")


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def check_syntax(code: object, where: str = "") -> str:
    """``code`` if it is shaped like a language code (see the module docstring); else a
    :class:`LanguageCodeError` naming ``where``. No membership test: see :func:`check_code`."""
    return _syntax(code, where, ENGLISH_NAMES)


def _syntax(code: object, where: str, pool: Collection[str]) -> str:
    if isinstance(code, str) and SYNTAX.fullmatch(code):
        return code
    shown = repr(code) if isinstance(code, str) else f"{type(code).__name__} {code!r}"
    raise LanguageCodeError(
        f"{_prefix(where)}{shown} is not a language code: a code is 2-3 lowercase letters (ISO 639), optionally "
        f"followed by a script and a region, such as {EXAMPLES}.{_hint(str(code), pool)}")


def check_code(code: object, where: str = "", *, extra: Iterable[str] = (), hatch: str = CONFIG_HATCH) -> str:
    """``code`` if it is a language code whose language is in the tables or in ``extra`` (declared codes);
    else a :class:`LanguageCodeError` naming ``where``, the nearest known code and how to declare it."""
    check_syntax(code, where)
    extra = set(extra)
    if primary(code) in ENGLISH_NAMES or code in extra or primary(code) in extra:
        return code
    raise LanguageCodeError(
        f"{_prefix(where)}'{code}' is not a language code pivotune knows (ISO 639-1, or the ISO 639-3 code of a "
        f"FLORES-200 language).{_hint(code, ENGLISH_NAMES)} If '{code}' is the code you mean, "
        f"{hatch.format(code=code)}.")


def declared(codes: Iterable[object], where: str) -> list[str]:
    """The codes a user declares beyond the tables (``extra_languages``, ``--extra-languages``): codes still."""
    return [check_syntax(c, where) for c in codes]


def check_choice(code: object, choices: Collection[str], where: str = "", *, what: str = "the languages here") -> str:
    """``code`` if it is one of ``choices``, a fixed set such as the toy world's languages (``what`` names it)."""
    _syntax(code, where, choices)
    if code in choices:
        return code
    raise LanguageCodeError(f"{_prefix(where)}'{code}' is not one of {what}: "
                            f"{', '.join(choices)}.{_hint(code, choices)}")


def add_extra_languages_option(parser) -> None:
    """The command-line escape hatch, for a command that takes language codes."""
    parser.add_argument("--extra-languages", nargs="+", default=[], metavar="CODE",
                        help="language codes to accept although pivotune's table lacks them (still codes: "
                             "2-3 lowercase letters, optional -Script/-REGION)")
