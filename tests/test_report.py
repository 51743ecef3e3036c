"""`pivotune report`: numbers recomputed from the JSON, findings that follow the numbers, a valid page."""

from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.report import write_report

# a 1x1 PNG, enough for the page to reference and copy
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5d1cc5a0000000049454e44ae426082")


def _headline(base: float) -> dict:
    return {lang: {"mgsm": base + i, "xquad_em": base / 2 + i, "xquad_f1": base / 2 + i + 1.0}
            for i, lang in enumerate(["en", "el", "th"])}


def _lens_entry(p_en: float, p_tgt: float, spreads: bool = True) -> dict:
    """A probe.json language entry: the means at layers 0..3 (the pivot layer is 2), spreads over 50 items."""
    entry = {"suggestion": {"layer": 2}, "p_en": {"mean": [0.0, 0.0, p_en, 0.0]},
             "p_tgt": {"mean": [0.0, 0.0, p_tgt, 0.0]}}
    if spreads:
        entry["n_items"] = 50
        entry["p_en"]["sd"] = entry["p_tgt"]["sd"] = [0.0, 0.0, 0.1, 0.0]
    return entry


def make_demo(root: Path, prom_base: float = 40.0, xllama_base: float = 20.0, lambda_zero_th: bool = True,
              spreads: bool = True) -> Path:
    scores = {"xllama": [_headline(xllama_base), _headline(xllama_base + 2)],
              "prom": [_headline(prom_base), _headline(prom_base + 3)]}
    root.mkdir(parents=True)
    (root / "results.json").write_text(json.dumps({
        "world": {"well_represented": "el", "under_represented": "th"}, "languages": ["el", "th"],
        "methods": list(scores), "seeds": 2, "scores": scores}))
    for m in scores:
        for seed in range(2):
            run = root / f"{m}-seed{seed}"
            run.mkdir()
            (run / "config.yaml").write_text(f"method: {m}\nseed: {seed}\n")
            (run / "eval.json").write_text("{}")
            if m == "prom":
                decisions = {lang: {"pivot_layer": 2, "p_en_mean": 0.3, "p_tgt_mean": 0.1, "lambda_zero": lz}
                             for lang, lz in (("el", False), ("th", lambda_zero_th))}
                (run / "regulation.json").write_text(json.dumps({
                    "pivot_layer": 2, "lambda_en": 0.1, "decisions": decisions,
                    "lambda_per_language": {k: 0.0 if d["lambda_zero"] else 0.1 for k, d in decisions.items()}}))
                (run / "probe").mkdir()
                th = (0.1, 0.3) if lambda_zero_th else (0.3, 0.1)
                (run / "probe" / "probe.json").write_text(json.dumps({"pivot_layer": 2, "languages": {
                    "el": {**_lens_entry(0.3, 0.1, spreads), "suggestion": {"layer": 3}},
                    "th": _lens_entry(*th, spreads)}}))
                (run / "probe" / "lens_el.png").write_bytes(PNG)
    return root


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.cells, self.items, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        self._in = tag if tag in ("td", "li") else None

    def handle_data(self, data):
        if self._in == "td":
            self.cells.append(data)
        elif self._in == "li":
            self.items.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_report_numbers_match_json(tmp_path):
    demo = make_demo(tmp_path / "demo")
    html_path = write_report([demo], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    scores = json.loads((demo / "results.json").read_text())["scores"]
    for method in ("prom", "xllama"):
        for lang, key, label in (("el", "mgsm", "toy-MGSM acc"), ("th", "xquad_f1", "toy-XQuAD F1")):
            vals = [s[lang][key] for s in scores[method]]
            cell = f"{statistics.fmean(vals):.1f} ± {statistics.stdev(vals):.1f}"
            row = next(line for line in md.splitlines() if line.startswith(f"| {lang} | {label} |"))
            header = next(line for line in md.splitlines() if line.startswith("| language | metric |"))
            column = [c.strip() for c in header.strip("|").split("|")].index(method)
            assert [c.strip() for c in row.strip("|").split("|")][column] == cell
            assert cell in parse(html_path).cells
    # prom beats xllama by ~20 points with sd ~2 on every one of the 6 target-language cases (English is not counted)
    assert "| prom | 6 | 0 | 0 | 6 |" in md


def test_report_figures_and_html_are_complete(tmp_path):
    out = tmp_path / "report"
    html_path = write_report([make_demo(tmp_path / "demo")], out)
    page = parse(html_path)
    assert page.srcs, "the lens figures should be on the page"
    for src in page.srcs:
        assert (out / src).is_file() and (out / src).read_bytes() == PNG
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "](figures/prom-seed0-lens_el.png)" in md
    assert "method: xllama" in md                 # each run's config
    assert "| prom-seed0 | th | 2 | 0.3000 | 0.1000 | 0 | λ = 0 (no English pivot) | 2 |" in md


def _claim(page: _Page, n: int) -> str:
    return next(x for x in page.items if x.startswith(f"Claim {n}"))


def test_findings_follow_the_numbers(tmp_path):
    """Each claim is reproduced, refuted or not decided by its interval, and says so with the interval."""
    good = parse(write_report([make_demo(tmp_path / "a")], tmp_path / "ra"))
    assert "prom against xllama over 2 seed(s): 6 wins, 0 losses, 0 undecided of 6" in " ".join(good.items)
    # claim 1: P(en) - P(target) = +0.2 for el, -0.2 for th; half width 1.96 * 0.2 * sqrt(50/49) / sqrt(50)
    assert (": reproduced — mean P(en) − P(target) at the pivot layer of the base model +0.200 [+0.144, +0.256] "
            "for el and -0.200 [-0.256, -0.144] for th") in _claim(good, 1)
    assert ": reproduced — difference on the target-language mean +" in _claim(good, 3)
    assert "over seeds (2), no per-item scores" in _claim(good, 3)
    assert "not measured" in _claim(good, 2)      # no interference logs
    flipped = parse(write_report([make_demo(tmp_path / "b", prom_base=10.0, xllama_base=30.0,
                                            lambda_zero_th=False)], tmp_path / "rb"))
    assert "prom against xllama over 2 seed(s): 0 wins, 6 losses" in " ".join(flipped.items)
    assert ": refuted (the interval excludes zero the other way)" in _claim(flipped, 1)
    assert ": refuted (the interval excludes zero the other way)" in _claim(flipped, 3)


def test_lens_claim_without_spreads_states_the_rule(tmp_path):
    """A probe that logged no spreads decides nothing; the claim says what the regulation's rule gave."""
    page = parse(write_report([make_demo(tmp_path / "a", spreads=False)], tmp_path / "r"))
    assert ": not decided — the probe logged no spreads" in _claim(page, 1)
    assert "kept λ > 0 for el in 2 and set λ = 0 for th in 2 of 2 PROM run(s)" in _claim(page, 1)


def test_win_needs_an_interval_that_excludes_zero(tmp_path):
    """+1 point with seeds 2 points apart, no per-item scores: the seed bootstrap's intervals contain zero."""
    demo = make_demo(tmp_path / "demo", prom_base=21.0, xllama_base=20.0)
    md = write_report([demo], tmp_path / "r").with_suffix(".md").read_text(encoding="utf-8")
    assert "| prom | 0 | 0 | 6 | 6 |" in md
    assert ": not decided — difference on the target-language mean" in md


def _interference_demo(root: Path, prom: list[float], xllama: list[float]) -> Path:
    demo = make_demo(root)
    for method, cos in (("prom", prom), ("xllama", xllama)):
        recs = [{"step": 10 * i, "pair": "en~tgt", "mean": c, "sd": 0.01} for i, c in enumerate(cos)]
        (demo / f"{method}-seed0" / "interference.json").write_text(
            json.dumps({"method": method, "blocks": [2], "records": recs}))
    return demo


def test_interference_claim_and_figure(tmp_path):
    out = tmp_path / "r"
    page = parse(write_report([_interference_demo(tmp_path / "demo", [0.2, 0.4], [0.1, 0.1])], out))
    # prom's resampled means are 0.2, 0.3 or 0.4 (a quarter of the replicates at each end), xllama's 0.1
    assert ("reproduced — mean gradient cosine prom minus xllama +0.2000 [+0.1000, +0.3000] (prom, 2 points; "
            "xllama, 2 points;") in _claim(page, 2)
    assert "figures/interference.png" in page.srcs and (out / "figures" / "interference.png").stat().st_size > 0


@pytest.mark.parametrize(("prom", "xllama", "verdict"), [
    ([0.1, 0.1], [0.2, 0.4], ": refuted (the interval excludes zero the other way)"),   # lower under PROM
    ([0.2, 0.5], [0.1, 0.3], ": not decided — mean gradient cosine prom minus xllama +0.1500 [-0.1000, +0.4000]"),
])
def test_interference_claim_follows_the_spread(tmp_path, prom, xllama, verdict):
    page = parse(write_report([_interference_demo(tmp_path / "demo", prom, xllama)], tmp_path / "r"))
    assert verdict in _claim(page, 2)


def test_clear_errors_and_cli(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PivotuneError, match="no results found"):
        write_report([empty], tmp_path / "r")
    assert not (tmp_path / "r").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text(json.dumps({"scores": {"prom": [{"el": {"mgsm": "x"}}]}}))
    assert main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "scores.prom[0].el" in capsys.readouterr().err
    assert main(["report", str(make_demo(tmp_path / "demo")), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").is_file() and "Claim 3" in capsys.readouterr().out
