"""Probe items for the logit lens: word-pair files, few-shot prompts, token sets, item filters.

Word-pair files (``probe/{lang}.tsv``)
    UTF-8 text, one pair per line: ``english<TAB>target``. Blank lines and lines whose first non-blank
    character is ``#`` are ignored. Surrounding whitespace of each field is stripped; a line must have
    exactly two tab-separated fields and neither may be empty. Example::

        # English<TAB>French
        cat\tchat
        water\teau

Cloze files (``probe/{lang}.cloze.tsv``)
    UTF-8 text, one item per line: ``english<TAB>target<TAB>sentence``, where ``sentence`` is written in the
    target language and holds the target word's place exactly once as ``___``; blank and ``#`` lines are
    ignored. Example (French)::

        cat\tchat\tLe ___ dort sur le canapé et miaule.

Prompt templates
    A template holds ``{target}`` (translation, repetition) or ``{answer}`` (cloze) once, as its last field;
    the query line is the template cut just before it (trailing spaces dropped, so a tokenizer that marks
    word starts predicts the word with its marker). Defaults follow Wendler et al.:
    ``{source_name}: "{source}" - {target_name}: "{target}"`` and ``{sentence} {label}: "{answer}"``. A
    model that never saw quotes (the toy world) gets its own corpus format instead.

Token sets (see :func:`word_token_ids`)
    The ids of every *character* prefix of the word (lengths 1..len) that is a vocabulary entry, each
    with and without the tokenizer's word-start marker (``▁`` SentencePiece, ``Ġ`` byte-level BPE, none
    otherwise). This contains every prefix of the word's own tokenisation that is itself one token. The
    original's byte-fallback token of the word's first UTF-8 byte is deliberately **not** added: for Thai
    and Indic scripts nearly every word starts with byte 0xE0, so that token would count for every word.
    A bare marker token is never included either. An item is *single-token* when the whole word (with or
    without the marker) is one vocabulary entry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from ..errors import DataError, PivotuneError, located, short_repr
from ..languages import OWN_NAMES

SP_MARKER = "\u2581"  # ▁
BYTE_LEVEL_MARKER = "\u0120"  # Ġ (the byte-level alphabet's space)

#: "Answer" in each language, for cloze prompts. Pass ``labels=`` for anything else.
ANSWER_LABELS: dict[str, str] = {
    "en": "Answer", "fr": "Réponse", "de": "Antwort", "es": "Respuesta", "it": "Risposta", "pt": "Resposta",
    "nl": "Antwoord", "pl": "Odpowiedź", "ru": "Ответ", "uk": "Відповідь", "el": "Απάντηση", "tr": "Cevap",
    "id": "Jawaban", "sw": "Jibu", "zh": "答案", "ja": "答え", "ko": "답", "th": "คำตอบ", "ar": "الإجابة",
    "hi": "उत्तर", "bn": "উত্তর", "mr": "उत्तर",
}

N_DEMOS = 4
N_CLOZE_DEMOS = 2
TRANSLATION_TEMPLATE = '{source_name}: "{source}" - {target_name}: "{target}"'
CLOZE_TEMPLATE = '{sentence} {label}: "{answer}"'
CLOZE_GAP = "___"


# ----------------------------------------------------------------------------------------------------
# Word-pair files
# ----------------------------------------------------------------------------------------------------

def _data_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """``(line number, raw line)`` of a UTF-8 probe file, blank and ``#`` lines skipped; clear errors for a
    missing or non-UTF-8 file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found.", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}).", path=str(path)) from None
    return [(n, raw) for n, raw in enumerate(text.splitlines(), start=1)
            if raw.strip() and not raw.strip().startswith("#")]


def read_word_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read a word-pair file (format in the module docstring) into ``[(english, target), ...]``.

    Raises :class:`DataError` naming the file and line for a line without exactly two tab-separated
    fields or with an empty side, and for a file that is missing, not UTF-8 or holds no pairs.
    """
    path = Path(path)
    pairs = []
    for lineno, raw in _data_lines(path, "word-pair"):
        fields = raw.rstrip("\r\n").split("\t")
        if len(fields) != 2:
            raise DataError(f"{located(str(path), lineno)}: expected 2 tab-separated fields "
                            f"(english<TAB>target), found {len(fields)}: {short_repr(raw, 120)}",
                            path=str(path), row=lineno)
        en, tgt = fields[0].strip(), fields[1].strip()
        for name, value in (("english", en), ("target", tgt)):
            if not value:
                raise DataError(f"{located(str(path), lineno, name)}: the {name} word is empty: {short_repr(raw, 120)}",
                                path=str(path), row=lineno, field=name)
        pairs.append((en, tgt))
    if not pairs:
        raise DataError(f"{path}: no word pairs (expected lines 'english<TAB>target').", path=str(path))
    return pairs


def read_cloze_file(path: str | Path) -> list[tuple[str, str, str]]:
    """Read a cloze file (format in the module docstring) into ``[(english, target, sentence), ...]``.

    Raises :class:`DataError` naming the file, line and field for a wrong field count, an empty field, or
    a sentence without exactly one ``___``; and for a missing, non-UTF-8 or empty file.
    """
    path = Path(path)
    rows = []
    for lineno, raw in _data_lines(path, "cloze"):
        fields = [f.strip() for f in raw.rstrip("\r\n").split("\t")]
        if len(fields) != 3:
            raise DataError(f"{located(str(path), lineno)}: expected 3 tab-separated fields "
                            f"(english<TAB>target<TAB>sentence), found {len(fields)}: {short_repr(raw, 120)}",
                            path=str(path), row=lineno)
        for name, value in zip(("english", "target", "sentence"), fields):
            if not value:
                raise DataError(f"{located(str(path), lineno, name)}: the {name} field is empty: "
                                f"{short_repr(raw, 120)}",
                                path=str(path), row=lineno, field=name)
        if fields[2].count(CLOZE_GAP) != 1:
            raise DataError(f"{located(str(path), lineno, 'sentence')}: the sentence must hold the gap "
                            f"'{CLOZE_GAP}' exactly once, found {fields[2].count(CLOZE_GAP)}: {short_repr(raw, 120)}",
                            path=str(path), row=lineno, field="sentence")
        rows.append((fields[0], fields[1], fields[2]))
    if not rows:
        raise DataError(f"{path}: no cloze items (expected lines 'english<TAB>target<TAB>sentence').",
                        path=str(path))
    return rows


# ----------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------

def language_display_name(lang: str, names: dict[str, str] | None = None) -> str:
    """The name of ``lang`` in its own language: ``names[lang]`` if given, else
    :data:`pivotune.languages.OWN_NAMES`."""
    if names and lang in names:
        return names[lang]
    if lang in OWN_NAMES:
        return OWN_NAMES[lang]
    raise PivotuneError(f"No language name known for '{lang}'; known codes: {', '.join(sorted(OWN_NAMES))}. "
                        f"Pass the name explicitly (CLI: --names {lang}=NAME).")


def answer_label(lang: str, labels: dict[str, str] | None = None) -> str:
    """"Answer" in ``lang`` for cloze prompts: ``labels[lang]`` if given, else :data:`ANSWER_LABELS`."""
    if labels and lang in labels:
        return labels[lang]
    if lang in ANSWER_LABELS:
        return ANSWER_LABELS[lang]
    raise PivotuneError(f"No cloze answer label known for '{lang}'; known codes: {', '.join(sorted(ANSWER_LABELS))}. "
                        f"Pass the word for 'Answer' in that language (CLI: --labels {lang}=WORD).")


def _template_query(template: str, slot: str) -> str:
    """The part of ``template`` before its last field ``{slot}`` (checked), trailing spaces dropped."""
    mark = "{" + slot + "}"
    if template.count(mark) != 1:
        raise PivotuneError(f"Prompt template {template!r} must hold {mark} exactly once.")
    return template[:template.index(mark)].rstrip(" ")


def _filler(template: str, **fields) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise PivotuneError(f"Prompt template {template!r}: {e!r}; its fields are "
                            f"{{{'}, {'.join(fields)}}}.") from None


def _line(src_name: str, src: str, tgt_name: str, tgt: str | None, template: str = TRANSLATION_TEMPLATE) -> str:
    fields = dict(source_name=src_name, source=src, target_name=tgt_name)
    if tgt is None:
        return _filler(_template_query(template, "target"), **fields)
    return _filler(template, target=tgt, **fields)


def _pick_demos(i: int, query: tuple[str, str], pool: Sequence[tuple[str, str]], n_demos: int,
                seed: int) -> list[tuple[str, str]]:
    cands = [p for p in pool if p[0] != query[0] and p[1] != query[1]]
    if len(cands) < n_demos:
        raise PivotuneError(f"Need at least {n_demos} other word pairs for the demonstrations of "
                            f"'{query[0]}', found {len(cands)}; add more pairs to the word-pair file.")
    return random.Random(seed * 1_000_003 + i).sample(cands, n_demos)


def translation_prompts(queries: Sequence[tuple[str, str]], pool: Sequence[tuple[str, str]],
                        source_name: str, target_name: str, *, n_demos: int = N_DEMOS,
                        seed: int = 0, template: str = TRANSLATION_TEMPLATE) -> list[str]:
    """Word-translation prompts: ``n_demos`` demonstrations and the query, one per line, each
    ``{Source}: "{src}" - {Target}: "{tgt}"`` (or ``template``); the query is cut just before the target.

    ``queries`` and ``pool`` are ``(source word, target word)`` pairs; each query's demonstrations are
    drawn (seeded, per query) from ``pool`` entries sharing neither word with it.
    """
    _template_query(template, "target")   # a bad template fails before any prompt is built
    out = []
    for i, q in enumerate(queries):
        lines = [_line(source_name, s, target_name, t, template)
                 for s, t in _pick_demos(i, q, pool, n_demos, seed)]
        out.append("\n".join(lines + [_line(source_name, q[0], target_name, None, template)]))
    return out


def repetition_prompts(queries: Sequence[str], pool: Sequence[str], name: str, *, n_demos: int = N_DEMOS,
                       seed: int = 0, template: str = TRANSLATION_TEMPLATE) -> list[str]:
    """Repetition prompts: the translation format with one language, ``{L}: "{w}" - {L}: "{w}"``."""
    pairs = [(w, w) for w in pool]
    return translation_prompts([(w, w) for w in queries], pairs, name, name, n_demos=n_demos, seed=seed,
                               template=template)


def cloze_prompts(queries: Sequence[tuple[str, str]], pool: Sequence[tuple[str, str]], label: str, *,
                  n_demos: int = N_CLOZE_DEMOS, seed: int = 0, template: str = CLOZE_TEMPLATE) -> list[str]:
    """Cloze prompts: ``n_demos`` full example sentences with their answers, then the query sentence, one
    per line, each ``{sentence} {label}: "{answer}"`` (or ``template``); the query is cut before the answer.

    ``queries`` and ``pool`` are ``(sentence with ___, answer)`` pairs, all in the target language;
    demonstrations share neither the sentence nor the answer with their query.
    """
    query_head = _template_query(template, "answer")
    out = []
    for i, (sentence, answer) in enumerate(queries):
        demos = _pick_demos(i, (sentence, answer), pool, n_demos, seed)
        lines = [_filler(template, sentence=s, label=label, answer=a) for s, a in demos]
        out.append("\n".join(lines + [_filler(query_head, sentence=sentence, label=label)]))
    return out


# ----------------------------------------------------------------------------------------------------
# Token sets and item filters
# ----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet (byte value -> printable character)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def detect_word_marker(tokenizer) -> str:
    """The tokenizer's word-start marker: ``"▁"`` (SentencePiece/Metaspace), ``"Ġ"`` (byte-level BPE),
    or ``""`` when the vocabulary shows none, found by tokenising ``"a b"``."""
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode("a b", add_special_tokens=False))
    if any(t.startswith(SP_MARKER) for t in tokens):
        return SP_MARKER
    if any(t.startswith(BYTE_LEVEL_MARKER) for t in tokens):
        return BYTE_LEVEL_MARKER
    return ""


def _vocab_form(text: str, marker: str) -> str:
    """``text`` written as the vocabulary writes it (byte-level alphabet, or spaces as ``▁``)."""
    if marker == BYTE_LEVEL_MARKER:
        table = _bytes_to_unicode()
        return "".join(table[b] for b in text.encode("utf-8"))
    if marker == SP_MARKER:
        return text.replace(" ", SP_MARKER)
    return text


@dataclass(frozen=True)
class TokenSet:
    ids: tuple[int, ...]
    single_token: bool


def word_token_ids(word: str, tokenizer, *, marker: str | None = None, vocab: dict[str, int] | None = None) -> TokenSet:
    """The token set of ``word`` (module docstring): ids of its character prefixes, with and without the
    word-start marker, that are vocabulary entries; no byte-fallback tokens, never a bare marker."""
    marker = detect_word_marker(tokenizer) if marker is None else marker
    vocab = tokenizer.get_vocab() if vocab is None else vocab
    mk = _vocab_form(" ", marker) if marker else ""
    ids: set[int] = set()
    for n in range(1, len(word) + 1):
        form = _vocab_form(word[:n], marker)
        for s in ((form, mk + form) if mk else (form,)):
            if s in vocab:
                ids.add(vocab[s])
    full = _vocab_form(word, marker)
    single = full in vocab or (bool(mk) and mk + full in vocab)
    return TokenSet(tuple(sorted(ids)), single)


@dataclass
class ProbeItem:
    english: str
    target: str
    en_ids: tuple[int, ...]
    tgt_ids: tuple[int, ...]
    single_token: bool
    source: str | None = None  # the word shown in a translation prompt (default: the English word)
    sentence: str | None = None  # cloze items: the target-language sentence with ``___``


@dataclass
class ItemReport:
    pairs: int = 0
    kept: int = 0
    single_token: int = 0
    multi_token: int = 0
    dropped_english_in_target: int = 0
    dropped_empty_token_set: int = 0
    dropped_overlapping_token_sets: int = 0
    dropped_no_source_word: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def build_items(pairs: Sequence[tuple[str, str]], tokenizer, *, source_words: dict[str, str] | None = None,
                sentences: Sequence[str] | None = None) -> tuple[list[ProbeItem], ItemReport]:
    """Token sets for each ``(english, target)`` pair, with the original's filters applied in order:
    English word inside the target word (case-insensitive), an empty token set on either side, and
    overlapping English/target token sets. With ``source_words`` (English word -> word in a source
    language, for translation from a language other than English) pairs without one are dropped too.
    ``sentences`` (cloze), aligned with ``pairs``, ride along on the kept items.
    """
    marker = detect_word_marker(tokenizer)
    vocab = tokenizer.get_vocab()
    rep = ItemReport(pairs=len(pairs))
    if sentences is not None and len(sentences) != len(pairs):
        raise PivotuneError(f"build_items: {len(sentences)} cloze sentences for {len(pairs)} pairs.")
    items = []
    for i, (en, tgt) in enumerate(pairs):
        if en.casefold() in tgt.casefold():
            rep.dropped_english_in_target += 1
            continue
        src = None
        if source_words is not None:
            src = source_words.get(en)
            if src is None:
                rep.dropped_no_source_word += 1
                continue
        e = word_token_ids(en, tokenizer, marker=marker, vocab=vocab)
        t = word_token_ids(tgt, tokenizer, marker=marker, vocab=vocab)
        if not e.ids or not t.ids:
            rep.dropped_empty_token_set += 1
            continue
        if set(e.ids) & set(t.ids):
            rep.dropped_overlapping_token_sets += 1
            continue
        items.append(ProbeItem(en, tgt, e.ids, t.ids, t.single_token, src,
                               None if sentences is None else sentences[i]))
    rep.kept = len(items)
    rep.single_token = sum(it.single_token for it in items)
    rep.multi_token = rep.kept - rep.single_token
    return items, rep


