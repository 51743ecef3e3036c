"""Cloze probes and prompt templates: files, prompts, the lens on cloze prompts against the model's own
output, `pivotune probe --task cloze`, and the toy world's probes in its own formats."""

from __future__ import annotations

import json

import pytest
import torch

from pivotune.analysis import logit_lens as L
from pivotune.analysis import probe_items as I
from pivotune.cli import main
from pivotune.errors import DataError, PivotuneError
from pivotune.toy import language as toy_lang
from pivotune.toy import probe as toy_probe

pytestmark = pytest.mark.usefixtures("one_thread")

ROWS = [("cat", "chat", "Le ___ dort et miaule."), ("dog", "chien", "Le ___ aboie dans le jardin."),
        ("bread", "pain", "On achète du ___ chez le boulanger."), ("water", "eau", "Je bois de l' ___ ."),
        ("house", "maison", "La ___ a un toit rouge.")]


def _cloze_file(tmp_path, rows=ROWS, name="fr.cloze.tsv"):
    f = tmp_path / name
    f.write_text("# english\ttarget\tsentence\n\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return f


def test_read_cloze_file(tmp_path):
    assert I.read_cloze_file(_cloze_file(tmp_path)) == ROWS


@pytest.mark.parametrize("line,what,field", [("cat\tchat", "expected 3 tab-separated fields", None),
                                             ("cat\t\tLe ___ dort.", "target field is empty", "target"),
                                             ("cat\tchat\tLe chat dort.", "exactly once, found 0", "sentence"),
                                             ("cat\tchat\t___ et ___", "exactly once, found 2", "sentence")])
def test_read_cloze_file_errors(tmp_path, line, what, field):
    f = tmp_path / "bad.tsv"
    f.write_text(f"dog\tchien\tLe ___ aboie.\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=what) as e:
        I.read_cloze_file(f)
    assert str(f) in str(e.value) and "line 2" in str(e.value) and e.value.row == 2 and e.value.field == field


def test_cloze_prompts_shape():
    queries = [(s, t) for _, t, s in ROWS]
    prompts = I.cloze_prompts(queries, queries, I.answer_label("fr"), seed=3)
    for (sentence, answer), prompt in zip(queries, prompts):
        lines = prompt.split("\n")
        assert len(lines) == 3 and lines[-1] == f'{sentence} Réponse: "'
        assert all(line.endswith('"') and ' Réponse: "' in line and "___" in line for line in lines[:2])
        assert not any(f'"{answer}"' in line for line in lines[:2])   # never its own demonstration
    assert prompts == I.cloze_prompts(queries, queries, "Réponse", seed=3)   # seeded
    with pytest.raises(PivotuneError, match="--labels xx=WORD"):
        I.answer_label("xx")
    assert I.answer_label("xx", {"xx": "Ans"}) == "Ans"


def test_templates():
    pool = [("cat", "chat"), ("dog", "chien"), ("sun", "soleil"), ("sea", "mer"), ("tree", "arbre")]
    prompt = I.translation_prompts([("cat", "chat")], pool, "english", "french",
                                   template="{source_name} : {source} {target_name} : {target}")[0]
    lines = prompt.split("\n")
    assert lines[-1] == "english : cat french :"   # cut before the word, trailing space dropped
    assert all(line.startswith("english : ") and " french : " in line for line in lines[:4])
    for bad in ("{source_name}: {source}", "{target} {target}", "{target_name}: {tgt} {target}"):
        with pytest.raises(PivotuneError, match="Prompt template"):
            I.translation_prompts([("cat", "chat")], pool, "english", "french", template=bad)


@torch.no_grad()
def test_cloze_lens_matches_the_models_own_distribution(tokenizer, tiny_model_dir):
    """At the last layer the lens of a cloze prompt is the model's next-token distribution, summed over
    the token sets: checked against a plain forward of each prompt alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = [(e, t, s) for e, t, s in ROWS]
    items, _ = I.build_items([(e, t) for e, t, _ in rows], tokenizer, sentences=[s for *_, s in rows])
    assert items and all(it.sentence for it in items)
    pool = [(s, t) for _, t, s in rows]
    res = L.probe_items(model, tokenizer, items, pool, task="cloze", label="Réponse", batch_size=2, seed=1)
    prompts = I.cloze_prompts([(it.sentence, it.target) for it in items], pool, "Réponse", seed=1)
    n = res.num_layers
    for i, (it, prompt) in enumerate(zip(items, prompts)):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
        assert res.p_tgt[i, n] == pytest.approx(probs[list(it.tgt_ids)].sum().item(), abs=1e-6)
        assert res.p_en[i, n] == pytest.approx(probs[list(it.en_ids)].sum().item(), abs=1e-6)


def test_cli_probe_cloze(tmp_path, tiny_model_dir, capsys):
    f = _cloze_file(tmp_path)
    out = tmp_path / "probe"
    rc = main(["probe", str(tiny_model_dir), "--task", "cloze", "--pairs", f"fr={f}", f"zz={f}",
               "--labels", "zz=Ans", "--extra-languages", "zz", "--out", str(out), "--batch-size", "2"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert rep["task"] == "cloze" and set(rep["languages"]) == {"fr", "zz"}
    fr = rep["languages"]["fr"]
    assert fr["items"]["kept"] > 0 and len(fr["p_tgt"]["mean"]) == rep["num_layers"] + 1
    assert (out / "lens_fr.png").exists()
    # a word-pair file is not a cloze file: the error names the file and line
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("cat\tchat\n", encoding="utf-8")
    rc = main(["probe", str(tiny_model_dir), "--task", "cloze", "--pairs", f"fr={pairs}", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and str(pairs) in err and "line 1" in err and "3 tab-separated fields" in err
    rc = main(["probe", str(tiny_model_dir), "--task", "cloze", "--pairs", f"qq={f}", "--extra-languages", "qq",
               "--out", str(out)])
    assert rc == 2 and "--labels qq=WORD" in capsys.readouterr().err


@pytest.mark.parametrize("lang", ["el", "ar"])
def test_toy_cloze_rows(tmp_path, lang):
    """The toy cloze gaps every known fact in the target language; no prompt word is English."""
    from pivotune.toy.grammar import NAMES, Grammar, vocabulary

    g = Grammar(0)
    rows = toy_probe.cloze_rows(g, lang, seed=0)
    assert len(rows) == 4 * len(NAMES) and rows == toy_probe.cloze_rows(Grammar(0), lang, seed=0)
    path = toy_probe.write_cloze_file(rows, tmp_path / f"{lang}.cloze.tsv")
    assert I.read_cloze_file(path) == rows
    english = set(vocabulary())
    for word, target, sentence in rows:
        assert toy_lang.lexicon(lang, 0)[word] == target
        assert not english & set(sentence.split(" "))
        # filling the gap gives a known fact of the world's knowledge base, in the target language
        back = toy_lang.translate(sentence.replace("___", target), lang, "en", seed=0).split(" ")
        name = next(w for w in back if w in NAMES)
        assert word in back and word in g.kb[name].values()
    prompt = I.cloze_prompts([(s, t) for _, t, s in rows[:3]], [(s, t) for _, t, s in rows],
                             toy_probe.answer_label(lang, 0), template=toy_probe.CLOZE_TEMPLATE)[0]
    assert not english & set(prompt.split())
    assert toy_probe.TRANSLATION_TEMPLATE == "{source_name} : {source} {target_name} : {target}"
