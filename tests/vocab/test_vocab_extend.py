"""Tokenizer extension: other text unchanged, every language round-trips, fewer target tokens, bad input refused."""

from __future__ import annotations

import json

import pytest
from pivotune.errors import PivotuneError
from pivotune.vocab.extend import CorpusTooSmall, extend_tokenizer
from pivotune.vocab.measure import CHECK_TEXTS, tokens_per_word
from pivotune.vocab.scripts import TargetScripts
from vocab_helpers import KINDS, NEW_TOKENS

THAI = TargetScripts(("Thai",))


def _ids(tok, texts):
    return tok(texts)["input_ids"]


@pytest.mark.parametrize("kind", KINDS)
def test_text_outside_the_target_script_tokenizes_exactly_as_before(kind, base_tokenizers, extended, held_out,
                                                                    corpus):
    """Held-out English, Greek and Arabic (and the training corpus's English) keep their token sequences."""
    old, new = base_tokenizers[kind], extended[kind].tokenizer
    for lang in ("en", "el", "ar"):
        texts = held_out[lang] + corpus[lang][:200]
        assert _ids(new, texts) == _ids(old, texts), lang
    others = [t for t in CHECK_TEXTS if not any(THAI.is_target(c) for c in t)]
    assert _ids(new, others) == _ids(old, others)


@pytest.mark.parametrize("kind", KINDS)
def test_every_language_round_trips(kind, base_tokenizers, extended, held_out):
    """decode(encode(x)) == x on held-out text of every language (the toy tokenizer adds a prefix space when
    encoding, so there: the text the base tokenizer gives back), and the check sample decodes as before."""
    old, new = base_tokenizers[kind], extended[kind].tokenizer

    def round_trip(tok, texts):
        return tok.batch_decode(tok(texts, add_special_tokens=False)["input_ids"])

    texts = [t for texts in held_out.values() for t in texts]
    assert round_trip(new, texts) == (round_trip(old, texts) if kind == "toy" else texts)
    assert round_trip(new, list(CHECK_TEXTS)) == round_trip(old, list(CHECK_TEXTS))


@pytest.mark.parametrize("kind", KINDS)
def test_under_represented_language_needs_at_least_40_percent_fewer_tokens(kind, base_tokenizers, extended,
                                                                           held_out):
    """Thai, 3% of the toy pretraining text: tokens per word on held-out text drop by at least 40%."""
    before = tokens_per_word(base_tokenizers[kind], held_out["th"])
    after = tokens_per_word(extended[kind].tokenizer, held_out["th"])
    assert after <= 0.6 * before, (before, after)


@pytest.mark.parametrize("kind", KINDS)
def test_new_tokens_and_merges_come_after_every_old_one(kind, base_tokenizers, extended):
    """Old ids (added special tokens included) are kept, new ids follow them, the old merges stay first and
    every new token binds to the Thai script."""
    old, ext = base_tokenizers[kind], extended[kind]
    old_vocab, new_vocab = old.get_vocab(), ext.tokenizer.get_vocab()
    assert {t: new_vocab[t] for t in old_vocab} == old_vocab
    assert len(ext.new_tokens) == NEW_TOKENS and min(ext.new_ids) == max(old_vocab.values()) + 1
    assert list(ext.new_ids) == list(range(ext.new_ids[0], ext.new_ids[0] + NEW_TOKENS))
    old_merges = json.loads(old.backend_tokenizer.to_str())["model"]["merges"]
    new_merges = json.loads(ext.tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert new_merges[:len(old_merges)] == old_merges
    assert len(new_merges) == len(old_merges) + NEW_TOKENS - ext.characters
    assert all(any(THAI.is_target(c) for c in ext.tokenizer.convert_tokens_to_string([t])) for t in ext.new_tokens)


def test_sentencepiece_style_adds_missing_characters_before_merges(base_tokenizers, extended):
    """Thai characters the Llama-2-style alphabet lacks (byte fallback) become tokens; no byte token is merged."""
    ext = extended["sentencepiece"]
    chars = ext.new_tokens[:ext.characters]
    assert ext.characters > 0 and all(len(c) == 1 and THAI.is_target(c) for c in chars)
    assert all(c not in base_tokenizers["sentencepiece"].get_vocab() for c in chars)
    assert not any("<0x" in t for t in ext.new_tokens)
    assert not ext.words_kept_whole and extended["byte_level"].words_kept_whole


def test_saved_tokenizer_loads_with_autotokenizer(tmp_path, extended, held_out):
    """The extended tokenizers save and load back with AutoTokenizer, class and tokens unchanged."""
    from transformers import AutoTokenizer

    texts = held_out["th"][:20] + held_out["en"][:20]
    for kind, ext in extended.items():
        ext.tokenizer.save_pretrained(tmp_path / kind)
        loaded = AutoTokenizer.from_pretrained(tmp_path / kind)
        assert type(loaded) is type(ext.tokenizer)
        assert _ids(loaded, texts) == _ids(ext.tokenizer, texts)


def test_a_corpus_too_small_is_refused_naming_the_most_it_yields(base_tokenizers, corpus):
    """Asking more tokens than the corpus has pairs to merge: an error naming the count to ask for instead."""
    with pytest.raises(CorpusTooSmall, match=r"too small to learn 5000 new tokens.*--n-new \d+") as err:
        extend_tokenizer(base_tokenizers["byte_level"], corpus["th"][:50], 5000)
    assert extend_tokenizer(base_tokenizers["byte_level"], corpus["th"][:50], err.value.learnable).new_tokens


def test_a_corpus_without_target_script_words_is_refused(base_tokenizers, corpus):
    """English text and a Thai target: nothing to learn, said so."""
    with pytest.raises(PivotuneError, match="no word written in Thai script"):
        extend_tokenizer(base_tokenizers["byte_level"], corpus["en"], 10, scripts=("Thai",))


@pytest.mark.parametrize("script", ["Latn", "Zyyy", "Thaii"])
def test_a_script_shared_with_english_or_unknown_is_refused(base_tokenizers, corpus, script):
    """Latin (English's script), Common, or no script at all: refused before anything is learned."""
    with pytest.raises(PivotuneError, match="English is written in Latin|belong to every language|not a Unicode"):
        extend_tokenizer(base_tokenizers["byte_level"], corpus["th"], 10, scripts=(script,))


@pytest.mark.parametrize("model", ["WordPiece", "Unigram"])
def test_tokenizers_that_are_not_bpe_are_refused(model, corpus):
    """WordPiece and Unigram: a new token could change any word's segmentation; the error says which model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]") if model == "WordPiece"
                        else models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(PivotuneError, match=f"its model is {model}, not BPE"):
        extend_tokenizer(tok, corpus["th"], 10)


def test_an_extension_that_would_change_english_is_refused(base_tokenizers, corpus, monkeypatch):
    """A learner that slipped in a merge firing in English (two adjacent tokens of an English check text) is
    caught by the check sample: the extension is refused."""
    from pivotune.vocab import extend

    tok = base_tokenizers["byte_level"]
    tokens = tok.tokenize(CHECK_TEXTS[0])
    unsafe = next((a, b) for a, b in zip(tokens, tokens[1:]) if a + b not in tok.get_vocab())
    learn = extend._learn_merges
    monkeypatch.setattr(extend, "_learn_merges", lambda *args: [unsafe, *learn(*args)][:-1])
    with pytest.raises(PivotuneError, match="would change how text outside Thai script tokenizes"):
        extend_tokenizer(tok, corpus["th"], 20)


def test_the_input_tokenizer_is_left_as_it_was(base_tokenizers, extended):
    """Extending returns a new tokenizer; the base keeps its vocabulary."""
    for kind, ext in extended.items():
        assert len(base_tokenizers[kind]) < len(ext.tokenizer)
        assert ext.new_tokens[-1] not in base_tokenizers[kind].get_vocab()
