"""Logit-lens language probabilities (Wendler et al., 2024) and PROM's regulation rule.

For each probe item (an English word ``w_e`` and its target-language counterpart ``w_t``) a few-shot
prompt is built whose correct next word is ``w_t``. At every layer ``k`` the last position's hidden state
is read through the logit lens, ``p_k = softmax(W_U · norm(h_k[last]))``, and summed over the token set
of each word: ``P_{k,en}`` and ``P_{k,tgt}``. PROM sets ``λ_t = 0`` for a language whose mean English
probability at the pivot layer ``n`` is below its mean target probability (METHODS.md, "PROM").

Layer convention
    Every per-layer array has ``N + 1`` columns: column ``k`` is Hugging Face's ``hidden_states[k]``,
    i.e. the output of decoder block ``k`` (1-based, as PROM's pivot layer), and column 0 is the
    embedding output (kept so that the columns line up with block numbers; it is rarely informative).

Word-pair files (``probe/{lang}.tsv``)
    UTF-8 text, one pair per line: ``english<TAB>target``. Blank lines and lines whose first non-blank
    character is ``#`` are ignored. Surrounding whitespace of each field is stripped; a line must have
    exactly two tab-separated fields and neither may be empty. Example::

        # English<TAB>French
        cat\tchat
        water\teau

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

import inspect
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError, PivotuneError, located
from ..models.arch import arch_info, lens_logits

SP_MARKER = "\u2581"  # ▁
BYTE_LEVEL_MARKER = "\u0120"  # Ġ (the byte-level alphabet's space)

#: Language names written in their own language, for the prompts. Pass ``names=`` for anything else.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "fr": "Français", "de": "Deutsch", "es": "Español", "it": "Italiano",
    "pt": "Português", "nl": "Nederlands", "pl": "Polski", "et": "Eesti", "tr": "Türkçe",
    "id": "Bahasa Indonesia", "vi": "Tiếng Việt", "sw": "Kiswahili", "yo": "Yorùbá",
    "zh": "中文", "ja": "日本語", "ko": "한국어", "ru": "Русский", "uk": "Українська", "el": "Ελληνικά",
    "th": "ไทย", "ar": "العربية", "fa": "فارسی", "he": "עברית", "ur": "اردو",
    "hi": "हिन्दी", "mr": "मराठी", "ne": "नेपाली", "bn": "বাংলা", "gu": "ગુજરાતી",
    "ta": "தமிழ்", "te": "తెలుగు", "kn": "ಕನ್ನಡ", "ml": "മലയാളം",
}

N_DEMOS = 4


# ----------------------------------------------------------------------------------------------------
# Word-pair files
# ----------------------------------------------------------------------------------------------------

def read_word_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read a word-pair file (format in the module docstring) into ``[(english, target), ...]``.

    Raises :class:`DataError` naming the file and line for a line without exactly two tab-separated
    fields or with an empty side, and for a file that is missing, not UTF-8 or holds no pairs.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: word-pair file not found.", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}).", path=str(path)) from None
    pairs = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = raw.rstrip("\r\n").split("\t")
        if len(fields) != 2:
            raise DataError(f"{located(str(path), lineno)}: expected 2 tab-separated fields "
                            f"(english<TAB>target), found {len(fields)}: {raw!r}", path=str(path), row=lineno)
        en, tgt = fields[0].strip(), fields[1].strip()
        for name, value in (("english", en), ("target", tgt)):
            if not value:
                raise DataError(f"{located(str(path), lineno, name)}: the {name} word is empty: {raw!r}",
                                path=str(path), row=lineno, field=name)
        pairs.append((en, tgt))
    if not pairs:
        raise DataError(f"{path}: no word pairs (expected lines 'english<TAB>target').", path=str(path))
    return pairs


# ----------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------

def language_display_name(lang: str, names: dict[str, str] | None = None) -> str:
    """The name of ``lang`` in its own language: ``names[lang]`` if given, else :data:`LANGUAGE_NAMES`."""
    if names and lang in names:
        return names[lang]
    if lang in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[lang]
    raise PivotuneError(f"No language name known for '{lang}'; known codes: {', '.join(sorted(LANGUAGE_NAMES))}. "
                        f"Pass the name explicitly (CLI: --names {lang}=NAME).")


def _line(src_name: str, src: str, tgt_name: str, tgt: str | None) -> str:
    head = f'{src_name}: "{src}" - {tgt_name}: "'
    return head if tgt is None else f'{head}{tgt}"'


def _pick_demos(i: int, query: tuple[str, str], pool: Sequence[tuple[str, str]], n_demos: int,
                seed: int) -> list[tuple[str, str]]:
    cands = [p for p in pool if p[0] != query[0] and p[1] != query[1]]
    if len(cands) < n_demos:
        raise PivotuneError(f"Need at least {n_demos} other word pairs for the demonstrations of "
                            f"'{query[0]}', found {len(cands)}; add more pairs to the word-pair file.")
    return random.Random(seed * 1_000_003 + i).sample(cands, n_demos)


def translation_prompts(queries: Sequence[tuple[str, str]], pool: Sequence[tuple[str, str]],
                        source_name: str, target_name: str, *, n_demos: int = N_DEMOS,
                        seed: int = 0) -> list[str]:
    """Word-translation prompts: ``n_demos`` demonstrations and the query, one per line, each
    ``{Source}: "{src}" - {Target}: "{tgt}"``; the query is cut just after the target's opening quote.

    ``queries`` and ``pool`` are ``(source word, target word)`` pairs; each query's demonstrations are
    drawn (seeded, per query) from ``pool`` entries sharing neither word with it.
    """
    out = []
    for i, q in enumerate(queries):
        lines = [_line(source_name, s, target_name, t) for s, t in _pick_demos(i, q, pool, n_demos, seed)]
        out.append("\n".join(lines + [_line(source_name, q[0], target_name, None)]))
    return out


def repetition_prompts(queries: Sequence[str], pool: Sequence[str], name: str, *, n_demos: int = N_DEMOS,
                       seed: int = 0) -> list[str]:
    """Repetition prompts: the translation format with one language, ``{L}: "{w}" - {L}: "{w}"``."""
    pairs = [(w, w) for w in pool]
    return translation_prompts([(w, w) for w in queries], pairs, name, name, n_demos=n_demos, seed=seed)


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


def build_items(pairs: Sequence[tuple[str, str]], tokenizer, *,
                source_words: dict[str, str] | None = None) -> tuple[list[ProbeItem], ItemReport]:
    """Token sets for each ``(english, target)`` pair, with the original's filters applied in order:
    English word inside the target word (case-insensitive), an empty token set on either side, and
    overlapping English/target token sets. With ``source_words`` (English word -> word in a source
    language, for translation from a language other than English) pairs without one are dropped too.
    """
    marker = detect_word_marker(tokenizer)
    vocab = tokenizer.get_vocab()
    rep = ItemReport(pairs=len(pairs))
    items = []
    for en, tgt in pairs:
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
        items.append(ProbeItem(en, tgt, e.ids, t.ids, t.single_token, src))
    rep.kept = len(items)
    rep.single_token = sum(it.single_token for it in items)
    rep.multi_token = rep.kept - rep.single_token
    return items, rep


# ----------------------------------------------------------------------------------------------------
# Language probabilities
# ----------------------------------------------------------------------------------------------------

@dataclass
class LensResult:
    """Per-item, per-layer probabilities. ``p_en``/``p_tgt`` are float64 arrays ``[n_items, N + 1]``;
    column ``k`` is the output of decoder block ``k`` (column 0: embeddings)."""

    p_en: np.ndarray
    p_tgt: np.ndarray
    num_layers: int
    single_token: np.ndarray | None = None  # bool [n_items], when known

    @property
    def n_items(self) -> int:
        return int(self.p_en.shape[0])

    @property
    def layers(self) -> list[int]:
        return list(range(self.num_layers + 1))

    def mean_en(self) -> np.ndarray:
        return self.p_en.mean(axis=0)

    def mean_tgt(self) -> np.ndarray:
        return self.p_tgt.mean(axis=0)

    def sd_en(self) -> np.ndarray:
        """Standard deviation over items (population, ddof = 0)."""
        return self.p_en.std(axis=0)

    def sd_tgt(self) -> np.ndarray:
        return self.p_tgt.std(axis=0)

    def subset(self, mask) -> LensResult:
        mask = np.asarray(mask, dtype=bool)
        st = None if self.single_token is None else self.single_token[mask]
        return LensResult(self.p_en[mask], self.p_tgt[mask], self.num_layers, st)


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _index_tensor(sets: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in sets))
    idx = torch.zeros(len(sets), width, dtype=torch.long)
    mask = torch.zeros(len(sets), width, dtype=torch.bool)
    for i, s in enumerate(sets):
        idx[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = True
    return idx.to(device), mask.to(device)


@torch.inference_mode()
def language_probabilities(model, tokenizer, prompts: Sequence[str], en_token_sets: Sequence[Sequence[int]],
                           tgt_token_sets: Sequence[Sequence[int]], batch_size: int = 8) -> LensResult:
    """Logit-lens probabilities of the English and target token sets at the last position of each prompt.

    Prompts are tokenised as the tokenizer does by default (special tokens included), left-padded into
    batches of ``batch_size`` (sorted by length, order restored), with position ids counted over real
    tokens so padding changes nothing. One forward per batch with ``output_hidden_states=True``; at
    every layer only the last position is decoded through :func:`~pivotune.models.arch.lens_logits`
    (final norm except at N, unembedding, scale/soft-cap), softmaxed in float32 and summed over each
    token set. Returns a :class:`LensResult` with ``[n_items, N + 1]`` arrays.
    """
    if not (len(prompts) == len(en_token_sets) == len(tgt_token_sets)):
        raise PivotuneError(f"language_probabilities: {len(prompts)} prompts but {len(en_token_sets)} English "
                            f"and {len(tgt_token_sets)} target token sets.")
    if batch_size < 1:
        raise PivotuneError(f"batch_size must be at least 1, got {batch_size}.")
    info = arch_info(model)
    n_layers = info.num_layers
    device = info.unembed.weight.device
    p_en = np.zeros((len(prompts), n_layers + 1))
    p_tgt = np.zeros((len(prompts), n_layers + 1))
    if not prompts:
        return LensResult(p_en, p_tgt, n_layers)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                seq = encoded[i]
                ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                mask[r, width - len(seq):] = 1
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                        output_hidden_states=True, use_cache=False, **extra)
            last = tuple(h[:, -1, :] for h in out.hidden_states)  # left padding: the last real token
            del out
            en_idx, en_mask = _index_tensor([en_token_sets[i] for i in batch], device)
            tg_idx, tg_mask = _index_tensor([tgt_token_sets[i] for i in batch], device)
            for k in range(n_layers + 1):
                probs = torch.softmax(lens_logits(info, last, k).float(), dim=-1)  # [B, V]
                pe = (probs.gather(1, en_idx) * en_mask).sum(-1)
                pt = (probs.gather(1, tg_idx) * tg_mask).sum(-1)
                p_en[batch, k] = pe.double().cpu().numpy()
                p_tgt[batch, k] = pt.double().cpu().numpy()
    finally:
        model.train(was_training)
    return LensResult(p_en, p_tgt, n_layers)


def probe_items(model, tokenizer, items: Sequence[ProbeItem], pool: Sequence[tuple[str, str]], *,
                task: str = "translation", source_name: str, target_name: str, batch_size: int = 8,
                seed: int = 0) -> LensResult:
    """Build the prompts for ``items`` (demonstrations from ``pool``, ``(source, target)`` pairs) and
    run :func:`language_probabilities`. ``task`` is ``"translation"`` or ``"repetition"``."""
    if task == "translation":
        prompts = translation_prompts([(it.source or it.english, it.target) for it in items], pool,
                                      source_name, target_name, seed=seed)
    elif task == "repetition":
        prompts = repetition_prompts([it.target for it in items], [t for _, t in pool], target_name, seed=seed)
    else:
        raise PivotuneError(f"Unknown probe task '{task}'; choose translation or repetition.")
    res = language_probabilities(model, tokenizer, prompts, [it.en_ids for it in items],
                                 [it.tgt_ids for it in items], batch_size=batch_size)
    res.single_token = np.array([it.single_token for it in items], dtype=bool)
    return res


# ----------------------------------------------------------------------------------------------------
# PROM regulation and pivot-layer suggestion
# ----------------------------------------------------------------------------------------------------

def _check_layer(result: LensResult, layer: int, what: str = "pivot layer") -> None:
    n = result.num_layers
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= n:
        raise PivotuneError(f"The {what} {layer!r} is out of range for this {n}-layer model: it is the output "
                            f"of decoder block n, 1 <= n <= {n}.")


@dataclass
class RegulationDecision:
    """PROM's rule for one language: ``λ_t = 0`` when ``P̄_{n,en} < P̄_{n,tgt}``, else the configured λ."""

    pivot_layer: int
    p_en: float
    p_tgt: float
    sd_en: float
    sd_tgt: float
    lambda_zero: bool

    def lambda_t(self, lam: float) -> float:
        return 0.0 if self.lambda_zero else lam

    @property
    def text(self) -> str:
        rel = "<" if self.p_en < self.p_tgt else ">="
        act = "λ_t = 0 (pivot term off)" if self.lambda_zero else "keep λ"
        return f"layer {self.pivot_layer}: P(en) {self.p_en:.4f} {rel} P(tgt) {self.p_tgt:.4f} -> {act}"

    def as_dict(self) -> dict:
        return {"pivot_layer": self.pivot_layer, "p_en_mean": self.p_en, "p_tgt_mean": self.p_tgt,
                "p_en_sd": self.sd_en, "p_tgt_sd": self.sd_tgt, "lambda_zero": self.lambda_zero,
                "text": self.text}


def regulation_decision(result: LensResult, pivot_layer: int) -> RegulationDecision:
    """Apply PROM's regulation rule at ``pivot_layer`` (1-based block output, 1..N)."""
    _check_layer(result, pivot_layer)
    if result.n_items == 0:
        raise PivotuneError("No probe items: cannot decide the regulation without probabilities.")
    k = int(pivot_layer)
    pe, pt = float(result.mean_en()[k]), float(result.mean_tgt()[k])
    return RegulationDecision(k, pe, pt, float(result.sd_en()[k]), float(result.sd_tgt()[k]), pe < pt)


@dataclass
class PivotSuggestion:
    layer: int
    candidates: list[int]
    curve: list[float] = field(default_factory=list)  # mean(P_en - P_tgt) at layers 0..N

    def as_dict(self) -> dict:
        return {"layer": self.layer, "candidates": self.candidates, "curve_en_minus_tgt": self.curve}


def suggest_pivot_layer(result: LensResult) -> PivotSuggestion:
    """Among the upper half of the blocks (``N//2 + 1 .. N``), the layer maximising the mean of
    ``P_en − P_tgt`` (ties: the lowest layer); the whole curve (layers 0..N) comes with it. A suggestion
    only: the user decides."""
    if result.n_items == 0:
        raise PivotuneError("No probe items: cannot suggest a pivot layer.")
    n = result.num_layers
    curve = (result.p_en - result.p_tgt).mean(axis=0)
    cands = list(range(n // 2 + 1, n + 1))
    best = max(cands, key=lambda k: (curve[k], -k))
    return PivotSuggestion(best, cands, [float(c) for c in curve])


# ----------------------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------------------

def plot_language_probabilities(result: LensResult, path: str | Path, *, lang: str, pivot_layer: int,
                                decision: RegulationDecision | None = None, title: str | None = None) -> None:
    """PNG: layer on x, mean P(en) and P(target) with ±sd bands, a vertical line at the pivot layer,
    the regulation decision in the title. Written atomically."""
    # the Agg canvas directly, not pyplot: no global backend switch, no figure registry
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io import atomic_path

    x = np.array(result.layers)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for mean, sd, label, color in ((result.mean_en(), result.sd_en(), "P(en)", "tab:blue"),
                                   (result.mean_tgt(), result.sd_tgt(), f"P({lang})", "tab:orange")):
        ax.plot(x, mean, label=label, color=color, marker="o", markersize=3)
        ax.fill_between(x, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=color, alpha=0.2)
    ax.axvline(pivot_layer, color="gray", linestyle="--", label=f"pivot n={pivot_layer}")
    ax.set_xlabel("layer (output of decoder block k; 0 = embeddings)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    if title is None:
        title = f"{lang} ({result.n_items} items)"
        if decision is not None:
            title += ": " + ("λ_t = 0" if decision.lambda_zero else "keep λ")
            title += f"\nP(en) {decision.p_en:.3f} vs P({lang}) {decision.p_tgt:.3f} at n={decision.pivot_layer}"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ----------------------------------------------------------------------------------------------------
# The `pivotune probe` command
# ----------------------------------------------------------------------------------------------------

def default_pivot_layer(num_layers: int) -> int:
    """``round(0.75·N)`` with halves rounded up (N = 32 -> 24, N = 2 -> 2), at least 1 (METHODS.md: PROM's
    default without a probe)."""
    return max(1, int(math.floor(0.75 * num_layers + 0.5)))


def _summary(res: LensResult) -> dict:
    return {"n_items": res.n_items,
            "p_en": {"mean": res.mean_en().tolist(), "sd": res.sd_en().tolist()},
            "p_tgt": {"mean": res.mean_tgt().tolist(), "sd": res.sd_tgt().tolist()}}


def run_probe(model_name: str, pairs_files: dict[str, str], out_dir: str | Path, *, pivot_layer: int | None = None,
              task: str = "translation", batch_size: int = 8, names: dict[str, str] | None = None,
              source_lang: str = "en", seed: int = 0, dtype: str = "float32") -> dict:
    """Probe every language in ``pairs_files`` (lang -> word-pair file) and write ``out_dir/probe.json``
    and ``out_dir/lens_{lang}.png``. Returns the JSON object."""
    from ..io import write_json_atomic
    from ..models.loading import load_model, load_tokenizer

    if task not in ("translation", "repetition"):
        raise PivotuneError(f"Unknown probe task '{task}'; choose translation or repetition.")
    if not pairs_files:
        raise PivotuneError("No languages to probe: pass --pairs LANG=FILE.")
    all_pairs = {lang: read_word_pairs(f) for lang, f in pairs_files.items()}
    names = dict(names or {})
    source_words = None
    if task == "translation" and source_lang != "en":
        if source_lang not in all_pairs:
            raise PivotuneError(f"--source-lang {source_lang}: needs that language's word pairs among --pairs "
                                f"(have {', '.join(all_pairs)}).")
        source_words = dict(all_pairs[source_lang])
    # every display name is resolved before the model loads, so a missing one fails fast
    shown = {lang: language_display_name(lang, names) for lang in all_pairs}
    src_name = language_display_name(source_lang, names)

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, dtype=dtype)
    info = arch_info(model)
    n = info.num_layers
    chosen = default_pivot_layer(n) if pivot_layer is None else pivot_layer
    if not 1 <= chosen <= n:
        raise PivotuneError(f"--pivot-layer {chosen} is out of range for this {n}-layer model: valid layers are "
                            f"1..{n} (the output of decoder block n; default round(0.75·N) = {default_pivot_layer(n)}).")
    out_dir = Path(out_dir)
    report = {"model": str(model_name), "model_type": info.model_type, "num_layers": n, "task": task,
              "source_lang": source_lang if task == "translation" else None, "seed": seed,
              "pivot_layer": chosen, "pivot_layer_is_default": pivot_layer is None,
              "layers": list(range(n + 1)),
              "layer_convention": "index k = output of decoder block k (HF hidden_states[k]); 0 = embeddings",
              "rule": "lambda_t = 0 when mean P(en) < mean P(target) at the pivot layer, else lambda",
              "sd": "population standard deviation over items", "languages": {}}
    for lang, pairs in all_pairs.items():
        if task == "translation" and lang == source_lang:
            continue
        src_map = source_words
        items, rep = build_items(pairs, tokenizer, source_words=src_map)
        if not items:
            raise PivotuneError(f"{lang} ({pairs_files[lang]}): no probe item survives the filters "
                                f"({rep.as_dict()}); the tokenizer's vocabulary may not cover these words.")
        if task == "translation":
            pool = [((src_map[e] if src_map else e), t) for e, t in pairs if not src_map or e in src_map]
        else:
            pool = list(pairs)
        res = probe_items(model, tokenizer, items, pool, task=task, source_name=src_name,
                          target_name=shown[lang], batch_size=batch_size, seed=seed)
        decision = regulation_decision(res, chosen)
        suggestion = suggest_pivot_layer(res)
        fig_name = f"lens_{lang}.png"
        plot_language_probabilities(res, out_dir / fig_name, lang=lang, pivot_layer=chosen, decision=decision)
        entry = {"pairs_file": str(pairs_files[lang]), "target_name": shown[lang], "items": rep.as_dict(),
                 **_summary(res), "decision": decision.as_dict(), "suggestion": suggestion.as_dict(),
                 "figure": fig_name}
        for key, mask in (("single_token_items", res.single_token), ("multi_token_items", ~res.single_token)):
            entry[key] = _summary(res.subset(mask)) if mask.any() else None
        report["languages"][lang] = entry
    write_json_atomic(out_dir / "probe.json", report)
    return report


def _key_values(items, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise PivotuneError(f"{option} expects LANG=VALUE, got '{item}'.")
        if key in out:
            raise PivotuneError(f"{option}: language '{key}' given twice.")
        out[key] = value
    return out


def cli_probe(args) -> int:
    """``pivotune probe`` (the parser lives in :mod:`pivotune.cli`)."""
    report = run_probe(args.model, _key_values(args.pairs, "--pairs"), args.out, pivot_layer=args.pivot_layer,
                       task=args.task, batch_size=args.batch_size, names=_key_values(args.names, "--names"),
                       source_lang=args.source_lang, seed=args.seed, dtype=args.dtype)
    for lang, entry in report["languages"].items():
        items = entry["items"]
        print(f"{lang}: {items['kept']} items ({items['single_token']} single-token, {items['multi_token']} "
              f"multi-token); {entry['decision']['text']}; suggested pivot layer {entry['suggestion']['layer']}")
    print(f"wrote {Path(args.out) / 'probe.json'} and lens_*.png")
    return 0
