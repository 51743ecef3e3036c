"""pivotune.analysis.logit_lens: lens probabilities against a naive computation, token sets, filters,
PROM's regulation rule, word-pair files and `pivotune probe` end to end (tiny random models, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pivotune.analysis import logit_lens as L
from pivotune.analysis import plots
from pivotune.analysis import probe_items as I
from pivotune.cli import main
from pivotune.errors import DataError, PivotuneError


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------

PAIRS = [("cat", "mia"), ("dog", "skylos"), ("bird", "pouli"), ("tree", "dentro"), ("water", "nero"),
         ("house", "spiti"), ("river", "potami"), ("food", "fagito")]


def _model(kind: str, vocab: int, layers: int = 4, seed: int = 0):
    import transformers as T

    torch.manual_seed(seed)
    if kind == "llama":
        cfg = T.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                            initializer_range=0.3, pad_token_id=0, tie_word_embeddings=False)
        model = T.LlamaForCausalLM(cfg)
    else:
        cfg = T.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=layers, n_head=4, n_positions=256,
                           initializer_range=0.3, pad_token_id=0)
        model = T.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # non-trivial norm weights: a norm applied twice is then no longer a no-op
        for name, p in model.named_parameters():
            if "norm" in name or ".ln_" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.2, 0.2)
    return model.eval()


def _final_norm(model):
    return model.model.norm if hasattr(model, "model") else model.transformer.ln_f


@torch.no_grad()
def _naive(model, tokenizer, prompt, en_ids, tgt_ids):
    """One unpadded prompt, full forward, full vocabulary at every position of every layer, explicit
    final norm (not at N, which HF returns normed) + lm_head + softmax; then the last position."""
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    n = len(hs) - 1
    pe, pt = [], []
    for k, h in enumerate(hs):
        normed = h if k == n else _final_norm(model)(h)
        probs = torch.softmax(model.lm_head(normed), dim=-1)[0, -1]  # [T, V] computed, last kept
        pe.append(probs[list(en_ids)].sum().item())
        pt.append(probs[list(tgt_ids)].sum().item())
    return np.array(pe), np.array(pt)


def _prompts_and_sets(tokenizer):
    items, _ = I.build_items(PAIRS, tokenizer)
    assert len(items) >= 5
    prompts = I.translation_prompts([(it.english, it.target) for it in items], PAIRS, "English", "Ελληνικά")
    # vary lengths so the batches really pad
    prompts[1] = prompts[1] + " a"
    prompts[2] = "the " * 7 + prompts[2]
    return items, prompts


# ---------------------------------------------------------------------------------------------------
# probabilities
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_batched_lens_equals_naive(tokenizer, kind):
    model = _model(kind, len(tokenizer))
    items, prompts = _prompts_and_sets(tokenizer)
    res = L.language_probabilities(model, tokenizer, prompts, [it.en_ids for it in items],
                                   [it.tgt_ids for it in items], batch_size=3)
    assert res.p_en.shape == res.p_tgt.shape == (len(items), 5) and res.num_layers == 4
    for i, it in enumerate(items):
        pe, pt = _naive(model, tokenizer, prompts[i], it.en_ids, it.tgt_ids)
        np.testing.assert_allclose(res.p_en[i], pe, rtol=0, atol=1e-6)
        np.testing.assert_allclose(res.p_tgt[i], pt, rtol=0, atol=1e-6)
    assert res.p_tgt.max() > 1e-3  # not a vacuous comparison of near-zero numbers
    np.testing.assert_allclose(res.mean_en(), res.p_en.mean(0))
    np.testing.assert_allclose(res.sd_tgt(), res.p_tgt.std(0))


def test_lens_at_last_layer_is_the_models_softmax(tokenizer):
    model = _model("llama", len(tokenizer))
    items, prompts = _prompts_and_sets(tokenizer)
    everything = list(range(len(tokenizer)))
    res = L.language_probabilities(model, tokenizer, prompts, [it.en_ids for it in items],
                                   [everything] * len(items), batch_size=4)
    np.testing.assert_allclose(res.p_tgt, 1.0, atol=1e-5)  # a distribution at every layer
    res = L.language_probabilities(model, tokenizer, prompts, [it.en_ids for it in items],
                                   [it.tgt_ids for it in items], batch_size=4)
    with torch.no_grad():
        for i, it in enumerate(items):
            logits = model(input_ids=torch.tensor([tokenizer(prompts[i])["input_ids"]])).logits[0, -1]
            p = torch.softmax(logits, -1)
            assert res.p_tgt[i, -1] == pytest.approx(p[list(it.tgt_ids)].sum().item(), abs=1e-6)
            assert res.p_en[i, -1] == pytest.approx(p[list(it.en_ids)].sum().item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------------
# token sets
# ---------------------------------------------------------------------------------------------------

def _byte_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    thai_mae = "".join(I._bytes_to_unicode()[b] for b in "แ".encode())  # 3 byte-level chars, first 'à'
    merges = [("c", "h"), ("ch", "a"), ("Ġ", "c"), ("Ġc", "a"), ("Ġca", "t"), ("à", "¹"), ("à¹", thai_mae[2])]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok), vocab, thai_mae


def test_token_sets_byte_level_hand_worked():
    tok, v, thai_mae = _byte_level_tokenizer()
    assert I.detect_word_marker(tok) == "Ġ"
    # "chat": prefixes c, ch, cha, chat (+ Ġ forms); in the vocabulary: c, ch, cha, Ġc
    ts = I.word_token_ids("chat", tok)
    assert set(ts.ids) == {v["c"], v["ch"], v["cha"], v["Ġc"]} and not ts.single_token
    ts = I.word_token_ids("cat", tok)
    assert set(ts.ids) == {v["c"], v["Ġc"], v["Ġca"], v["Ġcat"]} and ts.single_token  # via Ġcat
    assert v["Ġ"] not in ts.ids  # never the bare marker
    # Thai "แมว": the first character is a token; its first byte 0xE0 ('à') must not be in the set
    ts = I.word_token_ids("แมว", tok)
    assert set(ts.ids) == {v[thai_mae]} and v["à"] not in ts.ids and v["à¹"] not in ts.ids
    assert I.word_token_ids("ม", tok).ids == ()  # no whole-character token: empty (and the item would drop)


def _sentencepiece_style_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "<0xE0>", "<0xB8>", "▁", "a", "c", "h", "t", "s", "ch", "▁c", "▁ch", "▁cha", "▁chat",
              "at", "แ", "▁แ", "ม", "ว"]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [("c", "h"), ("▁", "c"), ("▁c", "h"), ("▁ch", "a"), ("▁cha", "t"), ("a", "t"), ("▁", "แ")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>"), vocab


def test_token_sets_sentencepiece_style():
    tok, v = _sentencepiece_style_tokenizer()
    assert I.detect_word_marker(tok) == "▁"
    ts = I.word_token_ids("chat", tok)
    assert set(ts.ids) == {v["c"], v["▁c"], v["ch"], v["▁ch"], v["▁cha"], v["▁chat"]} and ts.single_token
    assert v["▁"] not in ts.ids
    ts = I.word_token_ids("แมว", tok)
    assert set(ts.ids) == {v["แ"], v["▁แ"]} and v["<0xE0>"] not in ts.ids and not ts.single_token


def test_no_marker_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "a": 1, "b": 2, "ab": 3}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    assert I.detect_word_marker(tok) == ""
    assert I.word_token_ids("abc", tok).ids == (1, 3)


def test_item_filters_and_counts():
    tok, v, _ = _byte_level_tokenizer()
    pairs = [("cat", "xcatx"),      # English inside the target word
             ("cat", "dog"),        # kept: {c, Ġc, Ġca, Ġcat} vs {d}; "dog" is not one token
             ("cat", "chat"),       # overlap on 'c'
             ("at", "ม"),           # target token set empty
             ("Cat", "CATS"),       # English inside target, case-insensitive
             ("s", "แมว"),          # kept, multi-token
             ("t", "cha")]          # kept, single-token ("cha" is a vocabulary entry)
    items, rep = I.build_items(pairs, tok)
    assert [(it.english, it.target) for it in items] == [("cat", "dog"), ("s", "แมว"), ("t", "cha")]
    assert [it.single_token for it in items] == [False, False, True]
    assert items[0].en_ids == tuple(sorted({v["c"], v["Ġc"], v["Ġca"], v["Ġcat"]})) and items[0].tgt_ids == (v["d"],)
    assert rep.as_dict() == {"pairs": 7, "kept": 3, "single_token": 1, "multi_token": 2,
                             "dropped_english_in_target": 2, "dropped_empty_token_set": 1,
                             "dropped_overlapping_token_sets": 1, "dropped_no_source_word": 0}
    items, rep = I.build_items(pairs, tok, source_words={"cat": "gato"})
    assert [it.source for it in items] == ["gato"] and rep.dropped_no_source_word == 3


# ---------------------------------------------------------------------------------------------------
# prompts
# ---------------------------------------------------------------------------------------------------

def test_translation_and_repetition_prompts():
    prompts = I.translation_prompts([("cat", "chat")], [("cat", "chat"), ("dog", "chien"), ("sun", "soleil"),
                                                         ("sea", "mer"), ("tree", "arbre")],
                                    "English", I.language_display_name("fr"))
    lines = prompts[0].split("\n")
    assert len(lines) == 5 and lines[-1] == 'English: "cat" - Français: "'
    assert all(line.startswith('English: "') and line.endswith('"') and ' - Français: "' in line
               for line in lines[:4])
    assert not any('"cat"' in line for line in lines[:4])  # the query is never its own demonstration
    rep = I.repetition_prompts(["eau"], ["eau", "feu", "air", "terre", "mer"], "Français")[0].split("\n")
    assert rep[-1] == 'Français: "eau" - Français: "' and rep[0].count("Français") == 2
    a, b = rep[0].split(" - ")
    assert a.split(": ")[1] == b.split(": ")[1]
    with pytest.raises(PivotuneError, match="at least 4 other word pairs"):
        I.translation_prompts([("cat", "chat")], [("cat", "chat"), ("dog", "chien")], "English", "Français")


def test_language_names():
    assert I.language_display_name("th") == "ไทย" and I.language_display_name("zz", {"zz": "Zed"}) == "Zed"
    with pytest.raises(PivotuneError, match=r"'xx'.*known codes: .*ar, .*th") as e:
        I.language_display_name("xx")
    assert "--names xx=NAME" in str(e.value)


# ---------------------------------------------------------------------------------------------------
# decision and suggestion
# ---------------------------------------------------------------------------------------------------

def _synthetic():
    # 2 items, N = 4: English peaks at layer 3, target takes over at layer 4
    p_en = np.array([[0.0, 0.1, 0.3, 0.6, 0.1], [0.0, 0.1, 0.1, 0.4, 0.1]])
    p_tgt = np.array([[0.0, 0.0, 0.1, 0.2, 0.8], [0.0, 0.0, 0.1, 0.2, 0.6]])
    return L.LensResult(p_en, p_tgt, 4)


def test_regulation_decision_and_suggestion():
    res = _synthetic()
    d = L.regulation_decision(res, 3)
    assert (d.p_en, d.p_tgt, d.lambda_zero) == (pytest.approx(0.5), pytest.approx(0.2), False)
    assert d.sd_en == pytest.approx(0.1) and d.lambda_t(0.1) == 0.1 and "keep λ" in d.text
    d = L.regulation_decision(res, 2)
    assert d.lambda_zero is False and d.lambda_t(0.1) == 0.1
    tgt_first = L.LensResult(res.p_tgt, res.p_en, 4)
    d = L.regulation_decision(tgt_first, 3)
    assert d.lambda_zero and d.lambda_t(0.1) == 0.0 and "0.2000 < P(tgt) 0.5000" in d.text
    eq = L.LensResult(np.full((1, 3), 0.2), np.full((1, 3), 0.2), 2)
    assert not L.regulation_decision(eq, 1).lambda_zero  # strict: equal keeps λ
    s = L.suggest_pivot_layer(res)
    assert s.layer == 3 and s.candidates == [3]                   # pivot layers only: below the top block
    assert s.curve == pytest.approx([0.0, 0.1, 0.1, 0.3, -0.6])
    for layer in (0, 4, 5):                                       # n = N = 4 is the final head, not a pivot
        with pytest.raises(PivotuneError, match=r"1 <= n <= 3"):
            L.regulation_decision(res, layer)


def test_figure(tmp_path):
    res = _synthetic()
    path = tmp_path / "lens_xx.png"
    plots.plot_language_probabilities(res, path, lang="xx", pivot_layer=3, decision=L.regulation_decision(res, 3))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------
# word-pair files
# ---------------------------------------------------------------------------------------------------

def test_read_word_pairs(tmp_path):
    f = tmp_path / "fr.tsv"
    f.write_text("# English\tFrench\n\ncat\tchat\n  \n dog \t chien\n", encoding="utf-8")
    assert I.read_word_pairs(f) == [("cat", "chat"), ("dog", "chien")]


@pytest.mark.parametrize("line,what", [("cat\tchat\textra", "expected 2 tab-separated fields"),
                                       ("cat chat", "found 1"),
                                       ("cat\t  ", "target word is empty"),
                                       ("\tchat", "english word is empty")])
def test_read_word_pairs_errors(tmp_path, line, what):
    f = tmp_path / "bad.tsv"
    f.write_text(f"# header\ndog\tchien\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=what) as e:
        I.read_word_pairs(f)
    assert str(f) in str(e.value) and "line 3" in str(e.value) and e.value.row == 3


def test_read_word_pairs_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="not found"):
        I.read_word_pairs(tmp_path / "nope.tsv")
    (tmp_path / "empty.tsv").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(DataError, match="no word pairs"):
        I.read_word_pairs(tmp_path / "empty.tsv")


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

def _pairs_file(tmp_path, name="el.tsv"):
    f = tmp_path / name
    f.write_text("# english\tgreek\n" + "".join(f"{e}\t{t}\n" for e, t in PAIRS), encoding="utf-8")
    return f


def test_cli_probe_end_to_end(tmp_path, tiny_model_dir, capsys):
    f = _pairs_file(tmp_path)
    out = tmp_path / "probe"
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"el={f}", f"xx={f}", "--names", "xx=Xish",
               "--extra-languages", "xx", "--out", str(out), "--batch-size", "3"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert rep["num_layers"] == 2 and rep["pivot_layer"] == 1 and rep["pivot_layer_is_default"]  # below the top
    assert set(rep["languages"]) == {"el", "xx"}
    el = rep["languages"]["el"]
    assert el["items"]["kept"] == el["items"]["single_token"] + el["items"]["multi_token"] > 0
    assert len(el["p_en"]["mean"]) == len(el["p_tgt"]["sd"]) == 3
    assert el["decision"]["pivot_layer"] == 1 and isinstance(el["decision"]["lambda_zero"], bool)
    assert el["suggestion"]["candidates"] == [1] and len(el["suggestion"]["curve_en_minus_tgt"]) == 3
    assert (out / "lens_el.png").read_bytes()[:4] == b"\x89PNG" and (out / "lens_xx.png").exists()
    assert "el: " in capsys.readouterr().out


def test_cli_probe_errors(tmp_path, tiny_model_dir, capsys):
    f = _pairs_file(tmp_path)
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"el={f}", "--pivot-layer", "5", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--pivot-layer=5 is out of range" in err and "1 <= n <= 1" in err
    assert not (tmp_path / "o" / "probe.json").exists()
    bad = tmp_path / "bad.tsv"
    bad.write_text("cat\tchat\ndog\n", encoding="utf-8")
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"el={bad}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and "line 2" in err
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"qq={f}", "--extra-languages", "qq", "--out",
               str(tmp_path / "o")])
    assert rc == 2 and "--names qq=NAME" in capsys.readouterr().err
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"el{f}", "--out", str(tmp_path / "o")])
    assert rc == 2 and "LANG=VALUE" in capsys.readouterr().err


def test_cli_probe_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["probe", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "example:" in out and "--pivot-layer" in out and "english<TAB>target" in out
