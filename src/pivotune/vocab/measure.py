"""What an extension changes: tokens per word, which texts tokenize differently, which decode differently."""

from __future__ import annotations

from collections.abc import Iterable

#: Text that every extension must leave as it was, unless written in the target script: English prose,
#: code, numbers and markup, and a sentence in each of several scripts. A run adds its own check texts.
CHECK_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\nTranslate the following sentence into Thai.\n\n### Response:\n",
    "In 2023, the company's revenue grew by 12.5% to $4,300,000 (see Table 3, p. 17).",
    "def add(a, b):\n    return a + b  # adds two numbers\n",
    "Visit https://example.org/path?q=1&lang=en or e-mail info@example.org before 09:30!",
    "  Leading spaces, trailing spaces,   and    runs of spaces.  ",
    "Don't, won't, it's, they're, we'll, I'd, you've: contractions.",
    "Naïve café owners in São Paulo and Zürich façade rôle — “quotes” ‘too’ … déjà vu.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "দ্রুত বাদামী শিয়াল অলস কুকুরের উপর দিয়ে লাফিয়ে পড়ে।",
    "敏捷的棕色狐狸跳过了懒狗。素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "ፈጣኑ ቡናማ ቀበሮ ሰነፉን ውሻ ዘለለ።",
    "Emoji 😀🎉 and symbols ∑∫√ ≤ ≥ ≠ → ← © ® ™ ° ± ×",
)


def words_in(texts: Iterable[str]) -> int:
    """Whitespace-separated words: the unit of tokens per word (Thai, written without spaces, counts its
    space-separated phrases, which is fine for a before/after ratio)."""
    return sum(len(t.split()) for t in texts)


def tokens_per_word(tokenizer, texts: list[str]) -> float:
    """Tokens per word of ``texts`` (no special tokens); the fertility that an extension lowers."""
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return tokens / max(words_in(texts), 1)


def fertility_table(by_language: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a tokens-per-word table from ``{lang: {"before": x, "after": y}}``."""
    rows = [[lang, f"{v['before']:.2f}", f"{v['after']:.2f}", f"{v['after'] / v['before'] - 1:+.0%}"]
            for lang, v in by_language.items()]
    return ["language", "before", "after", "change"], rows


def tokenization_changes(old, new, texts: Iterable[str]) -> list[tuple[str, list[int], list[int]]]:
    """``(text, old ids, new ids)`` for every text the two tokenizers encode differently (special tokens on)."""
    texts = list(texts)
    if not texts:
        return []
    before, after = old(texts)["input_ids"], new(texts)["input_ids"]
    return [(t, a, b) for t, a, b in zip(texts, before, after) if a != b]


def round_trip_failures(old, new, texts: Iterable[str]) -> list[str]:
    """Texts that ``new`` decodes differently from ``old`` (each decoding its own encoding)."""
    texts = list(texts)
    if not texts:
        return []

    def round_trip(tok):
        return tok.batch_decode(tok(texts, add_special_tokens=False)["input_ids"], skip_special_tokens=True)

    return [t for t, a, b in zip(texts, round_trip(old), round_trip(new)) if a != b]
