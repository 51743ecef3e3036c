"""PROM's regulation step: λ per language from a probe, before training."""

from __future__ import annotations

import json

import pytest

from pivotune.config import load_config
from pivotune.errors import PivotuneError
from pivotune.models.loading import load_model, load_tokenizer
from pivotune.methods.prom.regulation import regulate

PAIRS = "cat\tdog\nhouse\ttree\nred\tblue\nwater\tfood\nbig\tsmall\ngood\tday\nriver\tbird\none\ttwo\n"


def _cfg(model_dir, **prom):
    return load_config(base={"model": str(model_dir), "method": "prom", "languages": ["el", "th"],
                             "prom": {"pivot_layer": 1, "lambda_en": 0.3, **prom}})


def _fake_probe(path, layers, p_en, p_tgt):
    langs = {lang: {"p_en": {"mean": [p_en[lang]] * (layers + 1)}, "p_tgt": {"mean": [p_tgt[lang]] * (layers + 1)}}
             for lang in p_en}
    path.write_text(json.dumps({"num_layers": layers, "languages": langs}))
    return str(path)


def test_prom_without_evidence_is_a_clear_error(tiny_model_dir, tmp_path):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    with pytest.raises(PivotuneError, match="prom.probe_pairs") as e:
        regulate(_cfg(tiny_model_dir), model, tok, tmp_path)
    assert "prom-noreg" in str(e.value)


def test_decision_from_a_probe_report(tiny_model_dir, tmp_path):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    probe = _fake_probe(tmp_path / "probe.json", 2, {"el": 0.4, "th": 0.1}, {"el": 0.2, "th": 0.3})
    cfg = regulate(_cfg(tiny_model_dir, probe=probe), model, tok, tmp_path)
    # el pivots through English at layer 1 (0.4 >= 0.2): keeps λ; th does not (0.1 < 0.3): λ = 0
    assert cfg.prom.lambda_per_language == {"el": 0.3, "th": 0.0}
    saved = json.loads((tmp_path / "regulation.json").read_text())
    assert saved["decisions"]["th"]["lambda_zero"] and not saved["decisions"]["el"]["lambda_zero"]


def test_probe_report_missing_a_language(tiny_model_dir, tmp_path):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    probe = _fake_probe(tmp_path / "probe.json", 2, {"el": 0.4}, {"el": 0.2})
    with pytest.raises(PivotuneError, match=r"no probe for \['th'\]"):
        regulate(_cfg(tiny_model_dir, probe=probe), model, tok, tmp_path)


def test_decision_from_word_pairs_matches_the_probe(tiny_model_dir, tmp_path):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    files = {}
    for lang in ("el", "th"):
        files[lang] = str(tmp_path / f"{lang}.tsv")
        (tmp_path / f"{lang}.tsv").write_text(PAIRS)
    cfg = regulate(_cfg(tiny_model_dir, probe_pairs=files), model, tok, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "probe" / "probe.json").read_text())
    for lang in ("el", "th"):
        d = report["languages"][lang]["decision"]
        assert d["pivot_layer"] == 1
        assert cfg.prom.lambda_per_language[lang] == (0.0 if d["p_en_mean"] < d["p_tgt_mean"] else 0.3)
    assert (tmp_path / "run" / "regulation.json").exists()


def test_noreg_and_explicit_lambdas_skip_the_probe(tiny_model_dir, tmp_path):
    explicit = _cfg(tiny_model_dir, lambda_per_language={"el": 0.0, "th": 0.3})
    assert regulate(explicit, None, None, tmp_path) is explicit
    noreg = explicit.model_copy(update={"method": "prom-noreg", "prom": explicit.prom.model_copy(
        update={"lambda_per_language": None})})
    assert regulate(noreg, None, None, tmp_path) is noreg
    assert not (tmp_path / "regulation.json").exists()


def test_decision_from_cloze_files_shows_no_english(tiny_model_dir, tmp_path):
    """With probe_task cloze the regulation probes gap sentences (no English in any prompt) and decides from them."""
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    rows = [("cat", "chat", "le ___ dort ."), ("dog", "chien", "le ___ aboie ."), ("bread", "pain", "du ___ frais ."),
            ("water", "eau", "de l' ___ ."), ("house", "maison", "la ___ rouge .")]
    files = {}
    for lang in ("el", "th"):
        files[lang] = str(tmp_path / f"{lang}.cloze.tsv")
        (tmp_path / f"{lang}.cloze.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    cfg = regulate(_cfg(tiny_model_dir, probe_pairs=files, probe_task="cloze", probe_labels={"el": "apo", "th": "kam"}),
                   model, tok, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "probe" / "probe.json").read_text())
    assert report["task"] == "cloze"
    for lang in ("el", "th"):
        d = report["languages"][lang]["decision"]
        assert cfg.prom.lambda_per_language[lang] == (0.0 if d["p_en_mean"] < d["p_tgt_mean"] else 0.3)
    with pytest.raises(PivotuneError, match="3 tab-separated fields"):   # a word-pair file is no cloze file
        (tmp_path / "pairs.tsv").write_text(PAIRS)
        regulate(_cfg(tiny_model_dir, probe_pairs={"el": str(tmp_path / "pairs.tsv"), "th": files["th"]},
                      probe_task="cloze"), model, tok, tmp_path / "run2")
