"""Parallel-corpus readers (FLORES-200, NTREX-128, WMT plain/SGML/XML) and their translation-task samples."""

from __future__ import annotations

import pytest

from pivotune.data.mixture import MT_INSTRUCTIONS
from pivotune.data.parallel import mt_samples, read_flores, read_ntrex, read_wmt
from pivotune.errors import DataError

EN = ["The cat sleeps.", "It rains today.", "We go home."]
TH = ["แมวนอน", "วันนี้ฝนตก", "เรากลับบ้าน"]


def _lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_flores_reads_split_files_by_iso_code_and_makes_mt_samples(tmp_path):
    _lines(tmp_path / "dev" / "eng_Latn.dev", EN)
    _lines(tmp_path / "dev" / "tha_Thai.dev", TH)
    res = read_flores(tmp_path, "th", split="dev")
    assert [(p.source, p.target) for p in res] == list(zip(EN, TH))
    samples = mt_samples(res, "th", source="flores")
    assert [s.role for s in samples] == ["mt"] * 3 and [s.output for s in samples] == TH
    assert [s.instruction for s in samples] == [MT_INSTRUCTIONS[i].format(src="English", tgt="Thai")
                                                for i in range(3)]
    _lines(tmp_path / "devtest" / "eng_Latn.devtest", EN)
    _lines(tmp_path / "devtest" / "tha_Thai_typo.devtest", TH)
    with pytest.raises(DataError, match=r"tha_Thai.devtest does not exist. Files there that look close: "
                                        r".*tha_Thai_typo.devtest"):
        read_flores(tmp_path, "th", split="devtest")


def test_mismatched_line_counts_and_empty_lines_are_errors(tmp_path):
    _lines(tmp_path / "dev" / "eng_Latn.dev", EN)
    _lines(tmp_path / "dev" / "ell_Grek.dev", ["α", "β"])
    with pytest.raises(DataError, match="not line-aligned: .*has 3 lines but .*has 2"):
        read_flores(tmp_path, "el")
    _lines(tmp_path / "dev" / "ell_Grek.dev", ["α", "", "γ"])
    with pytest.raises(DataError, match=r"ell_Grek\.dev, line 2: empty line"):   # the file with the empty line
        read_flores(tmp_path, "el")


def test_ntrex_finds_reference_by_iso3_and_asks_among_variants(tmp_path):
    _lines(tmp_path / "newstest2019-src.eng.txt", EN)
    _lines(tmp_path / "newstest2019-ref.tha.txt", TH)
    assert [p.target for p in read_ntrex(tmp_path, "th")] == TH
    _lines(tmp_path / "newstest2019-ref.zho-CN.txt", ["a", "b", "c"])
    _lines(tmp_path / "newstest2019-ref.zho-TW.txt", ["a", "b", "c"])
    with pytest.raises(DataError, match="several variants of 'zh'.*zho-CN, zho-TW"):
        read_ntrex(tmp_path, "zh")
    assert [p.target for p in read_ntrex(tmp_path, "zho-TW")] == ["a", "b", "c"]


def test_wmt_sgml_pair_and_xml_file(tmp_path):
    def sgm(lines):
        segs = "\n".join(f'<seg id="{i}">{t}</seg>' for i, t in enumerate(lines, 1))
        return f'<srcset setid="x">\n<doc docid="d1">\n{segs}\n</doc>\n</srcset>\n'
    (tmp_path / "s.sgm").write_text(sgm(["A &amp; B.", *EN[1:]]), encoding="utf-8")
    (tmp_path / "r.sgm").write_text(sgm(TH), encoding="utf-8")
    res = read_wmt(tmp_path / "s.sgm", tmp_path / "r.sgm", tgt_lang="th")
    assert [(p.source, p.target) for p in res][0] == ("A & B.", TH[0]) and len(res) == 3
    (tmp_path / "r2.sgm").write_text(sgm(TH[:2]), encoding="utf-8")
    with pytest.raises(DataError, match="not aligned: 3 vs 2 segments; document 'd1' segment 3"):
        read_wmt(tmp_path / "s.sgm", tmp_path / "r2.sgm", tgt_lang="th")
    segs = lambda xs: "".join(f'<seg id="{i}">{t}</seg>' for i, t in enumerate(xs, 1))  # noqa: E731
    xml = (f'<dataset><collection><doc id="d1"><src lang="en"><p>{segs(EN)}</p></src>'
           f'<ref lang="th" translator="A"><p>{segs(TH)}</p></ref></doc></collection></dataset>')
    (tmp_path / "wmt.xml").write_text(xml, encoding="utf-8")
    assert [p.target for p in read_wmt(tmp_path / "wmt.xml", tgt_lang="th")] == TH
    with pytest.raises(DataError, match='no <ref lang="el">'):
        read_wmt(tmp_path / "wmt.xml", tgt_lang="el")
    (tmp_path / "e.sgm").write_text(sgm(["", *EN[1:]]), encoding="utf-8")
    with pytest.raises(DataError, match=r"e.sgm, line 3 \(document 'd1', segment 1\): empty segment"):
        read_wmt(tmp_path / "e.sgm", tmp_path / "r.sgm", tgt_lang="th")
