"""FLORES translation tasks: the three file layouts, clear errors for bad files and codes, chrF++/BLEU
against sacrebleu's own command line on the same files, and an offline end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pivotune.cli import main
from pivotune.errors import DataError, PivotuneError
from pivotune.eval import flores
from pivotune.languages import LanguageCodeError

EN = ["The cat sleeps on the warm mat.", "Rivers carry water to the sea.", "She reads a book every night."]
TH = ["แมวนอนบนเสื่ออุ่น", "แม่น้ำพาน้ำไปสู่ทะเล", "เธออ่านหนังสือทุกคืน"]


def _flores200(root, split="devtest", en=EN, th=TH):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / split / f"eng_Latn.{split}").write_text("".join(s + "\n" for s in en), encoding="utf-8")
    (root / split / f"tha_Thai.{split}").write_text("".join(s + "\n" for s in th), encoding="utf-8")
    return root


def _parquet(path, ids, texts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "iso_639_3": ["x"] * len(ids), "text": texts}), path)


def test_reads_flores200_and_flores_plus_layouts(tmp_path):
    """FLORES-200 (.devtest), FLORES+ text (no extension) and FLORES+ parquet (aligned by id) give the
    same pairs."""
    pairs = list(zip(EN, TH))
    assert flores.read_pairs(_flores200(tmp_path / "a"), "en", "th") == pairs
    plus = tmp_path / "b" / "dev"
    plus.mkdir(parents=True)
    (plus / "eng_Latn").write_text("\n".join(EN) + "\n", encoding="utf-8")
    (plus / "tha_Thai").write_text("\n".join(TH) + "\n", encoding="utf-8")
    assert flores.read_pairs(tmp_path / "b", "tha", "en", split="dev") == [(t, e) for e, t in pairs]
    _parquet(tmp_path / "c" / "devtest" / "eng_Latn.parquet", [1, 2, 3], EN)
    _parquet(tmp_path / "c" / "devtest" / "tha_Thai.parquet", [3, 1, 2], [TH[2], TH[0], TH[1]])
    assert flores.read_pairs(tmp_path / "c", "en", "tha_Thai", limit=2) == pairs[:2]


def test_bad_files_and_codes_are_named(tmp_path):
    """Unequal lengths, a missing file, an empty sentence, misaligned parquet ids, an unknown code."""
    root = _flores200(tmp_path / "r", th=TH[:2])
    with pytest.raises(DataError, match=r"eng_Latn\.devtest has 3 lines but .*tha_Thai\.devtest has 2"):
        flores.read_pairs(root, "en", "th")
    with pytest.raises(DataError, match=r"ell_Grek\.devtest does not exist.*eng_Latn\.devtest"):
        flores.read_pairs(root, "en", "el")
    _flores200(tmp_path / "e", th=[TH[0], " ", TH[2]])
    with pytest.raises(DataError, match=r"tha_Thai\.devtest, line 2: empty line"):   # the file that holds it
        flores.read_pairs(tmp_path / "e", "en", "th")
    _parquet(tmp_path / "p" / "devtest" / "eng_Latn.parquet", [1, 2], EN[:2])
    _parquet(tmp_path / "p" / "devtest" / "tha_Thai.parquet", [1, 5], TH[:2])
    with pytest.raises(DataError, match=r"eng_Latn\.parquet has 2 rows but .*tha_Thai\.parquet has 2.*'id's differ"):
        flores.read_pairs(tmp_path / "p", "en", "th")
    with pytest.raises(LanguageCodeError, match="'thai' is not a language code.*Did you mean 'th'"):
        flores.read_pairs(root, "en", "thai")
    with pytest.raises(PivotuneError, match="FLORES split must be one of dev, devtest"):
        flores.read_pairs(root, "en", "th", split="test")
    with pytest.raises(PivotuneError, match="nowhere does not exist.*--flores-dir"):
        flores.read_pairs(tmp_path / "nowhere", "en", "th")
    with pytest.raises(PivotuneError, match="pass --flores-dir"):
        flores.write_tasks(["pivotune_flores_en-th"], tmp_path / "w")
    assert flores.direction("pivotune_toy_flores_el-en") == flores.Direction("el", "en", True)
    assert flores.direction("pivotune_xquad_th") is None


def _cli_scores(ref, hyp, tokenize):
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu", "chrf",
                          "--chrf-word-order", "2", "-tok", tokenize, "-w", "4"],
                         capture_output=True, text=True, check=True).stdout
    bleu, chrf = json.loads(out)
    assert chrf["name"] == "chrF2++" and f"tok:{tokenize}" in bleu["signature"]
    return bleu["score"], chrf["score"]


@pytest.mark.parametrize("lang,refs,hyps", [
    ("en", EN, ["The cat sleeps on a warm mat.", "Rivers carry the water to sea.", "She read books each night."]),
    ("th", TH, ["แมวนอนบนเสื่อ", "แม่น้ำพาน้ำไปทะเล", "เธออ่านหนังสือ"]),
])
def test_scores_equal_sacrebleu_command_line(tmp_path, lang, refs, hyps):
    """chrF++ and BLEU (with the target's tokeniser) equal `python -m sacrebleu` on the same files."""
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    tok = flores.bleu_tokenize(lang)
    assert tok == {"en": "13a", "th": "char"}[lang]
    items = [flores.process_results({"target": r, "bleu_tokenize": tok}, [f" {h}\n"]) for r, h in zip(refs, hyps)]
    bleu, chrf = _cli_scores(tmp_path / "ref.txt", tmp_path / "hyp.txt", tok)
    assert flores.chrf_pp([i["chrf++"] for i in items]) == pytest.approx(chrf, abs=1e-3)
    assert flores.bleu([i["bleu"] for i in items]) == pytest.approx(bleu, abs=1e-3)


def test_task_files_and_prompt(tmp_path):
    """Each direction becomes a task file and its data; the prompt is the training format."""
    root = _flores200(tmp_path / "f")
    names = flores.write_tasks(["pivotune_flores_en-th", "mgsm_native_cot_th", "pivotune_flores_th-en"],
                               tmp_path / "w", flores_dir=root, limit=2)
    assert names == ["pivotune_flores_en-th", "pivotune_flores_th-en"]
    rows = [json.loads(l) for l in (tmp_path / "w" / "pivotune_flores_th-en.jsonl").read_text().splitlines()]
    assert [(r["source"], r["target"], r["bleu_tokenize"]) for r in rows] == [(TH[0], EN[0], "13a"), (TH[1], EN[1], "13a")]
    prompt = flores.doc_to_text(rows[0])
    assert "Translate the following sentences from Thai to English." in prompt
    assert prompt.endswith(f"### Input:\n{TH[0]}\n\n### Response:\n")


def test_comet_files_from_logged_samples(tmp_path):
    """The logged samples become COMET's source, hypothesis and reference files, one line per document."""
    rows = [{"doc_id": i, "doc": {"source": s, "target": t}, "resps": [[f" hyp {i}\n"]], "filter": f}
            for f in ("none", "again") for i, (s, t) in enumerate(zip(EN, TH))]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    src, mt, ref = flores.comet_files(path, tmp_path / "comet")
    assert src.read_text(encoding="utf-8").splitlines() == EN and ref.read_text(encoding="utf-8").splitlines() == TH
    assert mt.read_text().splitlines() == ["hyp 0", "hyp 1", "hyp 2"]
    path.write_text('{"doc_id": 0}\n')
    with pytest.raises(DataError, match=r"s\.jsonl, line 1: not a logged sample"):
        flores.comet_files(path, tmp_path / "comet")


def test_eval_end_to_end_with_sacrebleu_check(tmp_path, tiny_model_dir, one_thread):
    """`pivotune eval` on FLORES tasks writes chrF++, BLEU and the confusion rates; the stored scores equal
    sacrebleu's command line on the logged generations."""
    root = _flores200(tmp_path / "flores")
    out = tmp_path / "eval"
    tasks = ["pivotune_flores_en-th", "pivotune_flores_th-en"]
    assert main(["eval", str(tiny_model_dir), "--tasks", *tasks, "--flores-dir", str(root), "--out", str(out),
                 "--batch-size", "3", "--log-samples", "--limit", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    for task in tasks:
        metrics = res["results"][task]
        samples = [json.loads(l) for l in (out / "samples" / f"{task}.jsonl").read_text().splitlines()]
        refs = [s["doc"]["target"] for s in samples]
        hyps = [" ".join(s["resps"][0][0].split()) for s in samples]   # one line each, as the task scores them
        (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
        (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        bleu, chrf = _cli_scores(tmp_path / "ref.txt", tmp_path / "hyp.txt", samples[0]["doc"]["bleu_tokenize"])
        assert metrics["chrf++,none"] == pytest.approx(chrf, abs=1e-3)
        assert metrics["bleu,none"] == pytest.approx(bleu, abs=1e-3)
        assert "confusion_judged,none" in metrics
    assert res["pivotune"]["backend"] == "hf"
