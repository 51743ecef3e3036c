"""Extend a BPE tokenizer with target-language tokens, leaving the tokens of every other text as they were.

How. A BPE tokenizer (SentencePiece-style as Llama-2's, byte-level as Llama-3's, Qwen's or GPT-2's)
splits text into words, and in each word applies its merges, always the one of lowest rank first. The
extension continues that training on the target corpus: it tokenizes the corpus's target-script words
with the base tokenizer, counts adjacent token pairs, and merges the most frequent pair, again and again,
until it has ``n_new`` tokens. The merges are appended after all the old ones, so they fire only once no
old merge applies (and no old merge involves a new token): a word's new tokens are its old tokens with
the new merges applied on top. Each new merge must produce a token whose bytes bind it to the target
script (:meth:`~pivotune.vocab.scripts.TargetScripts.binds`: a whole target character, or the start of
one that can only be a target character), so it can never fire in text without that script: English and
every language in another script tokenize exactly as before. A SentencePiece-style tokenizer spells a
character outside its alphabet as byte-fallback tokens (``<0xE0><0xB8><0xAA>``), which no merge can
join into a decodable token; its extension first adds the corpus's frequent missing target characters
as tokens of their own (counted in ``n_new``), then learns merges over them.

Why not added tokens (``tokenizer.add_tokens``), the usual shortcut: they are cut out of the raw text
before normalisation and pre-tokenisation, by longest match anywhere. They ignore word boundaries and
the merge order, so they change the text around them (the space before a word becomes a token of its
own, a word is cut where the merges would not cut it), one that holds a character another language
uses changes that language's text, and with thousands of them every encode scans the raw text for
them. Merges keep the tokenizer the algorithm it was, and serialise as a plain ``tokenizer.json``.

What is refused, with nothing written: a slow (Python) tokenizer, a model other than BPE (WordPiece,
Unigram and WordLevel pick tokens by greedy match or global scores, so a new token can change the
segmentation of any word), BPE with dropout or sub-word prefixes/suffixes, a script shared with English
(Latin), a corpus too small for ``n_new`` tokens, and any result that changes a check text outside the
target script or breaks decoding (:mod:`pivotune.vocab.measure`).
"""

from __future__ import annotations

import functools
import heapq
import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PivotuneError
from .measure import CHECK_TEXTS, round_trip_failures, tokenization_changes
from .pretokenizer import keep_words_whole
from .scripts import CLI_NAMES, OptionNames, TargetScripts, detect_scripts

#: Files a tokenizer directory may hold besides tokenizer.json; they would still describe the old vocabulary.
STALE_FILES = ("tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "spiece.model")
_ROUND_TRIP_SAMPLE = 2000   # corpus texts whose round trip is checked


class CorpusTooSmall(PivotuneError):
    """The corpus yields fewer new tokens than asked; ``learnable`` is how many it does yield."""

    def __init__(self, message: str, learnable: int):
        super().__init__(message)
        self.learnable = learnable


@dataclass(frozen=True)
class Extension:
    """An extended tokenizer and what was added to it.

    ``new_tokens``/``new_ids`` list the added tokens in id order (ids follow every old id, added special
    tokens included); ``characters`` of them are single target characters a SentencePiece-style tokenizer
    spelled in byte-fallback tokens before. ``words_kept_whole``: the split pattern now counts the target's
    combining marks as letters (:mod:`pivotune.vocab.pretokenizer`). ``checked`` check texts outside the
    target script were confirmed to tokenize as before.
    """

    tokenizer: object
    new_tokens: tuple[str, ...]
    new_ids: tuple[int, ...]
    characters: int
    words_kept_whole: bool
    scripts: tuple[str, ...]
    kind: str
    target_words: int
    checked: int


@dataclass(frozen=True)
class _Alphabet:
    """How a BPE model's token strings spell bytes."""

    byte_level: bool     # GPT-2's byte-to-character table
    marker: str | None   # the character standing for a space (SentencePiece-style ``▁``), if any
    byte_fallback: bool

    @property
    def kind(self) -> str:
        if self.byte_level:
            return "byte-level BPE"
        return "SentencePiece-style BPE" + (" with byte fallback" if self.byte_fallback else "")

    def is_byte_token(self, token: str) -> bool:
        """A SentencePiece byte-fallback token (``<0xE0>``): no merge may join it, its result would not decode."""
        return self.byte_fallback and len(token) == 6 and token.startswith("<0x") and token.endswith(">")

    def token_bytes(self, token: str) -> bytes | None:
        if self.byte_level:
            table = _byte_decoder()
            return bytes(table[c] for c in token) if all(c in table for c in token) else None
        if self.is_byte_token(token):
            return bytes([int(token[3:5], 16)])
        return (token.replace(self.marker, " ") if self.marker else token).encode("utf-8")

    def words(self, tokens: list[str]) -> list[tuple[str, ...]]:
        """The tokens of one pre-tokenized piece, grouped into words (a SentencePiece piece may be a whole
        line: its words begin at the space marker)."""
        if self.byte_level or not self.marker:
            return [tuple(tokens)] if tokens else []
        groups: list[list[str]] = []
        for tok in tokens:
            if not groups or tok.startswith(self.marker):
                groups.append([])
            groups[-1].append(tok)
        return [tuple(g) for g in groups]


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's ``bytes_to_unicode`` table, inverted (character → byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _components(node) -> Iterable[dict]:
    """Every component of a tokenizer.json normalizer/pre-tokenizer, nested sequences flattened."""
    if isinstance(node, dict):
        yield node
        for key in ("normalizers", "pretokenizers"):
            for child in node.get(key) or ():
                yield from _components(child)


def _alphabet(data: dict, name: str) -> _Alphabet:
    model = data.get("model") or {}
    kind = model.get("type")
    if kind != "BPE":
        raise PivotuneError(
            f"Cannot extend the tokenizer of {name}: its model is {kind or 'of an unknown type'}, not BPE. "
            "WordPiece matches the longest vocabulary entry and Unigram picks the segmentation with the best global "
            "score, so a new token there can change how any word splits, English included. Vocabulary extension "
            "supports BPE tokenizers: SentencePiece-style (Llama-2, Mistral) and byte-level (Llama-3, Qwen, GPT-2).")
    for field, what in (("dropout", "BPE dropout"), ("continuing_subword_prefix", "a continuing-subword prefix"),
                        ("end_of_word_suffix", "an end-of-word suffix")):
        if model.get(field):
            raise PivotuneError(f"Cannot extend the tokenizer of {name}: its BPE model uses {what} "
                                f"({field}={model[field]!r}), which the extension cannot keep exact.")
    parts = [*_components(data.get("normalizer")), *_components(data.get("pre_tokenizer"))]
    byte_level = any(p.get("type") == "ByteLevel" for p in parts)
    marker = next((p.get("replacement") for p in parts if p.get("type") == "Metaspace"), None) or next(
        (p.get("content") for p in parts if p.get("type") == "Replace" and p.get("pattern") == {"String": " "}), None)
    return _Alphabet(byte_level=byte_level, marker=marker, byte_fallback=bool(model.get("byte_fallback")))


def _pieces(backend, texts: Iterable[str]) -> Counter:
    """Pre-tokenized pieces of ``texts`` (normalised first, as the tokenizer does), with their counts."""
    counts: Counter[str] = Counter()
    for text in texts:
        norm = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        if backend.pre_tokenizer is None:
            counts[norm] += 1
        else:
            counts.update(p for p, _ in backend.pre_tokenizer.pre_tokenize_str(norm))
    return counts


def _new_characters(pieces: Counter, vocab: dict, target: TargetScripts, min_frequency: int) -> list[str]:
    """Target characters outside the alphabet, most frequent first (SentencePiece-style tokenizers)."""
    counts: Counter[str] = Counter()
    for piece, n in pieces.items():
        for ch in piece:
            if ch not in vocab and target.is_target(ch):   # not combining marks: other scripts use them
                counts[ch] += n
    return [ch for ch, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_frequency]


def _target_words(model, pieces: Counter, alphabet: _Alphabet, target: TargetScripts) -> Counter:
    """The corpus's target-script words as token tuples of ``model``, with their counts."""
    words: Counter[tuple[str, ...]] = Counter()
    kept: dict[tuple[str, ...], bool] = {}   # a SentencePiece piece is a whole line: its words repeat
    for piece, n in pieces.items():
        for word in alphabet.words([t.value for t in model.tokenize(piece)]):
            if word not in kept:
                kept[word] = target.is_word(_spelled(word, alphabet).lstrip())
            if kept[word]:
                words[word] += n
    return words


def _spelled(word: tuple[str, ...], alphabet: _Alphabet) -> str:
    """The text a word's tokens spell ("" when a token spells no bytes, such as an unknown token)."""
    spelled = [alphabet.token_bytes(t) for t in word]
    try:
        return b"".join(spelled).decode("utf-8") if all(b is not None for b in spelled) else ""
    except UnicodeDecodeError:
        return ""


def _learn_merges(words: Counter, budget: int, vocab: set[str], alphabet: _Alphabet, target: TargetScripts,
                  min_frequency: int) -> list[tuple[str, str]]:
    """Continue BPE training on ``words``: up to ``budget`` merges, each the most frequent eligible pair."""
    seqs = [list(w) for w in words]
    freqs = list(words.values())
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pairs[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-n, a, b) for (a, b), n in pairs.items()]
    heapq.heapify(heap)
    taken, merges = set(vocab), []
    while len(merges) < budget and heap:
        neg, a, b = heapq.heappop(heap)
        if pairs.get((a, b), 0) != -neg:
            continue                               # a stale entry; the current count has its own
        if -neg < min_frequency:
            break
        spelled = [alphabet.token_bytes(a), alphabet.token_bytes(b)]
        if (a + b in taken or None in spelled or alphabet.is_byte_token(a) or alphabet.is_byte_token(b)
                or not target.binds(spelled[0] + spelled[1])):
            continue                               # never eligible: its entry is not pushed again
        merges.append((a, b))
        taken.add(a + b)
        for i in list(where[(a, b)]):
            old = seqs[i]
            new, j = [], 0
            while j < len(old):
                if j + 1 < len(old) and old[j] == a and old[j + 1] == b:
                    new.append(a + b)
                    j += 2
                else:
                    new.append(old[j])
                    j += 1
            for pair in zip(old, old[1:]):
                pairs[pair] -= freqs[i]
                where[pair].discard(i)
            for pair in zip(new, new[1:]):
                pairs[pair] += freqs[i]
                where[pair].add(i)
            seqs[i] = new
            for pair in set(zip(old, old[1:])) | set(zip(new, new[1:])):
                heapq.heappush(heap, (-pairs[pair], *pair))
    return merges


def _with_tokens(data: dict, tokens: Sequence[str], merges: Sequence[tuple[str, str]]) -> dict:
    """``data`` (a tokenizer.json) with ``tokens`` and the results of ``merges`` appended to the vocabulary
    after every old id, and ``merges`` after every old merge."""
    data = json.loads(json.dumps(data))
    model = data["model"]
    # tokenizers gives an added token (special tokens above the model's vocabulary, as in Llama-3) the next
    # free id when it loads tokenizer.json, whatever id the file says; so the vocabulary holds them at their ids.
    for added in data.get("added_tokens") or ():
        model["vocab"].setdefault(added["content"], added["id"])
    next_id = max(model["vocab"].values(), default=-1) + 1
    for tok in [*tokens, *(a + b for a, b in merges)]:
        model["vocab"][tok] = next_id
        next_id += 1
    as_strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
    model["merges"] += [f"{a} {b}" if as_strings else [a, b] for a, b in merges]
    return data


def _reloaded(tokenizer, data: dict, expected: dict[str, int], name: str):
    """The tokenizer saved with ``data`` as its tokenizer.json and loaded back as ``AutoTokenizer`` would load it."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for stale in STALE_FILES:
            Path(tmp, stale).unlink(missing_ok=True)
        Path(tmp, "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        new = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
    ids = new.get_vocab()
    moved = [t for t, i in [*tokenizer.get_vocab().items(), *expected.items()] if ids.get(t) != i]
    if moved:
        raise PivotuneError(f"Cannot extend the tokenizer of {name}: loaded back as {type(new).__name__}, token "
                            f"{moved[0]!r} does not keep its id ({len(moved)} tokens differ), so the model's embedding "
                            "rows would no longer match the tokens.")
    return new


def _keeps_splitting(tokenizer, data: dict, name: str) -> bool:
    """Whether the tokenizer's class loads ``data``'s normalizer and pre-tokenizer back as written (some
    transformers classes rebuild their own when loaded, and a widened split pattern would then be lost)."""
    from tokenizers import Tokenizer

    written = json.loads(Tokenizer.from_str(json.dumps(data)).to_str())
    loaded = json.loads(_reloaded(tokenizer, data, {}, name).backend_tokenizer.to_str())
    return all(written.get(k) == loaded.get(k) for k in ("normalizer", "pre_tokenizer"))


def _verify(old, new, target: TargetScripts, check_texts: Iterable[str], texts: list[str]) -> int:
    """Refuse ``new`` if it tokenizes a check text outside the target script differently from ``old``, or
    decodes any text differently; returns how many check texts were compared."""
    script_names = "+".join(target.codes)
    checks = [t for t in (*CHECK_TEXTS, *check_texts) if not any(target.is_target(c) for c in t)]
    changed = tokenization_changes(old, new, checks)
    if changed:
        text, before, after = changed[0]
        raise PivotuneError(
            f"Refusing the extension: it would change how text outside {script_names} script tokenizes "
            f"({len(changed)} of {len(checks)} check texts), e.g. {text[:80]!r}: {before[:12]} became {after[:12]}. "
            f"Nothing was written. Check the target script ({target.names.script}) and the tokenizer's pre-tokenizer.")
    broken = round_trip_failures(old, new, [*checks, *texts[:_ROUND_TRIP_SAMPLE]])
    if broken:
        raise PivotuneError(f"Refusing the extension: the extended tokenizer decodes {len(broken)} texts differently "
                            f"from the base tokenizer, e.g. {broken[0][:80]!r}. Nothing was written.")
    return len(checks)


def extend_tokenizer(tokenizer, texts: Iterable[str], n_new: int, *, scripts: Sequence[str] | None = None,
                     check_texts: Iterable[str] = (), min_frequency: int = 2,
                     name: str = "the base model", names: OptionNames = CLI_NAMES) -> Extension:
    """``tokenizer`` extended with ``n_new`` tokens learned from the target-language ``texts``.

    ``scripts`` are the target's Unicode scripts (ISO 15924: ``("Thai",)``), by default the corpus's most
    frequent one. ``check_texts`` (with pivotune's built-in multilingual sample) must tokenize exactly as
    before where they hold no target-script character, and every text must decode as before. Raises a
    :class:`PivotuneError` naming what to change when the tokenizer cannot be extended safely, the corpus
    is too small, or a check fails (``names``: how those errors name the settings); the input tokenizer is never
    modified.
    """
    texts = list(texts)
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 1:
        raise PivotuneError(f"The number of new tokens must be a positive integer, got {n_new!r}.")
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise PivotuneError(f"Cannot extend the tokenizer of {name}: it is a slow (Python) tokenizer "
                            f"({type(tokenizer).__name__}); vocabulary extension needs a fast one (tokenizer.json).")
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    alphabet = _alphabet(data, name)
    target = TargetScripts(tuple(scripts) if scripts else detect_scripts(texts), names)
    widened = keep_words_whole(data, target.marks())
    if widened is not None and not _keeps_splitting(tokenizer, widened, name):
        widened = None
    base = widened or data
    pieces = _pieces(Tokenizer.from_str(json.dumps(base)), texts)
    characters = [] if alphabet.byte_level else _new_characters(pieces, base["model"]["vocab"], target,
                                                                  min_frequency)[:n_new]
    start = _with_tokens(base, characters, []) if characters else base
    words = _target_words(Tokenizer.from_str(json.dumps(start)).model, pieces, alphabet, target)
    script_names = "+".join(target.codes)
    if not words:
        raise PivotuneError(f"The corpus ({len(texts)} texts) has no word written in {script_names} script, so there "
                            "is nothing to learn target tokens from. Check the corpus files and the target language "
                            f"({target.names.language}) or script ({target.names.script}).")
    merges = _learn_merges(words, n_new - len(characters), set(start["model"]["vocab"]), alphabet, target,
                           min_frequency)
    learned = len(characters) + len(merges)
    if learned < n_new:
        raise CorpusTooSmall(
            f"The corpus is too small to learn {n_new} new tokens: its {sum(words.values())} {script_names}-script "
            f"words ({len(words)} distinct) yield only {learned}"
            + (f" ({len(characters)} characters, {len(merges)} merges)" if characters else "")
            + f" before no pair of adjacent tokens occurs at least {min_frequency} times. Give more target-language "
              f"text, or ask for at most {learned} new tokens ({names.n_new} {learned}).", learned)
    final = _with_tokens(start, [], merges)
    new_tokens = (*characters, *(a + b for a, b in merges))
    expected = {t: final["model"]["vocab"][t] for t in new_tokens}
    extended = _reloaded(tokenizer, final, expected, name)

    checked = _verify(tokenizer, extended, target, check_texts, texts)
    return Extension(tokenizer=extended, new_tokens=new_tokens, new_ids=tuple(expected.values()),
                     characters=len(characters), words_kept_whole=widened is not None, scripts=target.codes,
                     kind=alphabet.kind, target_words=sum(words.values()), checked=checked)
