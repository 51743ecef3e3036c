"""The target-script rules: which bytes bind a token to the script, and the widened split pattern."""

from __future__ import annotations

import json

import pytest

from pivotune.vocab.measure import CHECK_TEXTS
from pivotune.vocab.pretokenizer import keep_words_whole, widen_letters
from pivotune.vocab.scripts import TargetScripts, detect_scripts, language_scripts

THAI = TargetScripts(("Thai",))


@pytest.mark.parametrize("data, bound", [
    ("ส".encode(), True),                         # a whole Thai character
    (" ส".encode(), True),
    (b"\xe0\xb9", True),                          # opens U+0E40-U+0E7F: Thai or unassigned
    (b"\xe0\xb8", False),                         # opens U+0E00-U+0E3F, which holds U+0E3F (Common)
    (b"\xe0", False),                             # opens Devanagari, Bengali, Thai, ... alike
    (b" \xe0", False),
    (b"\xb8\xaa", False),                         # continuation bytes: any script
    (b"\xb8\xaa" + "ก".encode(), True),
    ("ab".encode(), False),
    ("अ".encode(), False),                        # Devanagari
    ("\u0e3f".encode(), False),                   # THAI CURRENCY SYMBOL BAHT: Script=Common
])
def test_binds_only_bytes_no_other_script_can_contain(data, bound):
    """A token binds to Thai when every text containing its bytes contains a Thai character."""
    assert THAI.binds(data) is bound


def test_language_codes_name_their_scripts():
    """th -> Thai via FLORES-200, an explicit script subtag wins, composite writing systems expand."""
    assert language_scripts("th") == ("Thai",)
    assert language_scripts("el") == ("Grek",)
    assert language_scripts("sr-Latn") == ("Latn",)
    assert language_scripts("ja") == ("Hira", "Kana", "Hani")
    assert language_scripts("xyz") is None


def test_the_corpus_script_is_detected(corpus):
    """Thai instructions with digits and punctuation: Thai; Greek ones: Greek."""
    assert detect_scripts(corpus["th"]) == ("Thai",)
    assert detect_scripts(corpus["el"]) == ("Grek",)


def test_widen_letters_adds_marks_inside_and_outside_classes():
    r"""``\p{L}`` in a bracket class gains the marks; a bare one becomes a class; other escapes stay."""
    assert widen_letters(r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{Lu}", r"\x{0E34}") == \
        r"[^\r\n\p{L}\x{0E34}\p{N}]?[\p{L}\x{0E34}]+|\p{Lu}"


@pytest.mark.parametrize("kind", ["byte_level", "toy"])
def test_widened_pattern_splits_text_without_the_marks_as_before(kind, base_tokenizers, held_out):
    """Check texts and held-out text outside Thai: the same pieces, hence the same tokens; Thai words whose
    vowel signs split them before are one piece now."""
    from tokenizers import Tokenizer

    old = base_tokenizers[kind].backend_tokenizer
    new = Tokenizer.from_str(json.dumps(keep_words_whole(json.loads(old.to_str()), THAI.marks())))
    others = [t for t in (*CHECK_TEXTS, *held_out["en"], *held_out["el"], *held_out["ar"], "", " ", "  x", "x\n y")
              if not any(THAI.is_target(c) for c in t)]
    assert [new.encode(t).ids for t in others] == [old.encode(t).ids for t in others]
    word = " กิขา"   # consonant, vowel sign (Mn), consonant, vowel
    assert len(new.pre_tokenizer.pre_tokenize_str(new.normalizer.normalize_str(word) if new.normalizer else word)) \
        < len(old.pre_tokenizer.pre_tokenize_str(word))


def test_sentencepiece_style_has_no_pattern_to_widen(base_tokenizers):
    """Metaspace splits at spaces only: nothing to widen."""
    data = json.loads(base_tokenizers["sentencepiece"].backend_tokenizer.to_str())
    assert keep_words_whole(data, THAI.marks()) is None
