"""The report's logit lens before and after training: table numbers recomputed from the probe.json files,
figures on the page, a findings line that follows the numbers, malformed files named by field."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from test_report import make_demo, parse

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.report import write_report

SECTION = "Logit lens before and after training (Figures 1, 3, 4)"
LAYERS, PIVOT = 5, 2   # a 4-block model: index 0 = embeddings .. 4


def _curve(peak: float, at: int) -> list[float]:
    return [round(peak * (1 - abs(k - at) / LAYERS), 6) for k in range(LAYERS)]


def probe_json(en: dict[str, float], tgt: dict[str, float]) -> dict:
    """A probe.json as `pivotune probe` writes it (the fields the report reads, plus some it ignores)."""
    return {"num_layers": LAYERS - 1, "pivot_layer": PIVOT, "layers": list(range(LAYERS)), "languages": {
        lang: {"p_en": {"mean": _curve(en[lang], PIVOT), "sd": [0.0] * LAYERS},
               "p_tgt": {"mean": _curve(tgt[lang], LAYERS - 1), "sd": [0.0] * LAYERS}} for lang in en}}


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_lens_demo(root: Path, prom_en: float = 0.5, xllama_en: float = 0.2, base: bool = True) -> Path:
    """make_demo's two methods × two seeds, each probed after training; the base model probed once."""
    make_demo(root)
    if base:
        _write(root / "probe-base" / "probe.json", probe_json({"el": 0.3, "th": 0.1}, {"el": 0.05, "th": 0.02}))
    for method, en in (("prom", prom_en), ("xllama", xllama_en)):
        for seed in range(2):
            _write(root / f"{method}-seed{seed}" / "probe-after" / "probe.json",
                   probe_json({"el": en + 0.01 * seed, "th": en / 2 + 0.03 * seed},
                              {"el": 0.2 + 0.02 * seed, "th": 0.1 + 0.01 * seed}))
    return root


def _at_pivot(path: Path, lang: str, key: str) -> float:
    obj = json.loads(path.read_text())
    return obj["languages"][lang][key]["mean"][obj["pivot_layer"]]


def expected_row(demo: Path, method: str, lang: str, base: Path) -> str:
    cells = [method, "2", str(PIVOT)]
    for key in ("p_en", "p_tgt"):
        after = statistics.fmean(_at_pivot(demo / f"{method}-seed{s}" / "probe-after" / "probe.json", lang, key)
                                 for s in range(2))
        before = _at_pivot(base, lang, key)
        cells += [f"{before:.4f} → {after:.4f}", f"{after - before:+.4f}"]
    return "| " + " | ".join(cells) + " |"


def _section(md: str) -> str:
    start = md.index(f"## {SECTION}")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def test_lens_table_numbers_match_json(tmp_path):
    demo = make_lens_demo(tmp_path / "demo")
    html_path = write_report([demo], tmp_path / "report")
    section = _section((tmp_path / "report" / "report.md").read_text(encoding="utf-8"))
    cells = parse(html_path).cells
    for lang in ("el", "th"):
        assert f"### {lang}" in section
        assert f"| method | seeds | layer | P(en) before → after | ΔP(en) | P({lang}) before → after |" in section
        for method in ("prom", "xllama"):
            row = expected_row(demo, method, lang, demo / "probe-base" / "probe.json")
            assert row in section.split(f"### {lang}")[1].split("###")[0]
            assert row.split(" | ")[3] in cells


def test_lens_figures_are_on_the_page(tmp_path):
    out = tmp_path / "report"
    html_path = write_report([make_lens_demo(tmp_path / "demo")], out)
    page = parse(html_path)
    assert f"<h2>{SECTION}</h2>" in html_path.read_text(encoding="utf-8")
    for lang in ("el", "th"):
        src = f"figures/lens_before_after_{lang}.png"
        assert src in page.srcs
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / src).stat().st_size > 5000


def _finding(items: list[str], lang: str) -> str:
    return next(x for x in items if x.startswith("After training,") and f" on {lang}:" in x)


@pytest.mark.parametrize("prom_en,xllama_en", [(0.5, 0.2), (0.1, 0.6)])
def test_lens_findings_follow_the_numbers(tmp_path, capsys, prom_en, xllama_en):
    demo = make_lens_demo(tmp_path / "demo", prom_en=prom_en, xllama_en=xllama_en)
    items = parse(write_report([demo], tmp_path / "report")).items
    base = demo / "probe-base" / "probe.json"
    after = {m: statistics.fmean(_at_pivot(demo / f"{m}-seed{s}" / "probe-after" / "probe.json", "el", "p_en")
                                 for s in range(2)) for m in ("prom", "xllama")}
    assert (after["prom"] > after["xllama"]) == (prom_en > xllama_en)   # the flip really flips the numbers
    line = _finding(items, "el")
    assert line.startswith(f"After training, P(en) at layer {PIVOT} on el: prom {after['prom']:.4f} "
                           f"(base {_at_pivot(base, 'el', 'p_en'):.4f}), xllama {after['xllama']:.4f}; P(el): ")
    assert main(["report", str(demo), "--out", str(tmp_path / "r2")]) == 0
    assert line in capsys.readouterr().out


def test_missing_method_or_base_says_not_measured(tmp_path):
    demo = make_lens_demo(tmp_path / "demo", base=False)
    for seed in range(2):
        shutil.rmtree(demo / f"xllama-seed{seed}" / "probe-after")
    # no probe-base, and make_demo's PROM probe has no curves: before is not measured, PROM's after still is
    for seed in range(2):
        (demo / f"prom-seed{seed}" / "probe" / "probe.json").unlink()
    md = (write_report([demo], tmp_path / "report").with_suffix(".md")).read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("- After training") and " on el:" in x)
    assert "(base not measured)" in line and "xllama not measured" in line
    assert "| prom | 2 | 2 | not measured → " in _section(md)


def test_base_falls_back_to_a_prom_runs_regulation_probe(tmp_path):
    demo = make_lens_demo(tmp_path / "demo", base=False)
    reg = demo / "prom-seed0" / "probe" / "probe.json"
    _write(reg, probe_json({"el": 0.4, "th": 0.15}, {"el": 0.01, "th": 0.03}))
    write_report([demo], tmp_path / "report")
    section = _section((tmp_path / "report" / "report.md").read_text(encoding="utf-8"))
    assert str(reg) in section
    assert expected_row(demo, "xllama", "th", reg) in section


def test_no_section_without_after_training_probes(tmp_path):
    # make_demo's PROM regulation probe carries suggestions only; it is not read as a lens without an "after"
    write_report([make_demo(tmp_path / "demo")], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert SECTION not in md and "After training," not in md


@pytest.mark.parametrize("breakage,field", [
    (lambda o: o.pop("pivot_layer"), "'pivot_layer'"),
    (lambda o: o.update(pivot_layer=LAYERS), "'pivot_layer'"),
    (lambda o: o.update(languages=[]), "'languages'"),
    (lambda o: o["languages"]["el"]["p_tgt"].update(mean=[0.1, "x"]), "'languages.el.p_tgt.mean'"),
    (lambda o: o["languages"]["th"].pop("p_en"), "'languages.th.p_en.mean'"),
    (lambda o: o["languages"]["el"]["p_en"]["mean"].pop(), "'languages.el.p_en.mean'"),
])
def test_malformed_probe_json_names_file_and_field(tmp_path, breakage, field):
    demo = make_lens_demo(tmp_path / "demo")
    path = demo / "xllama-seed1" / "probe-after" / "probe.json"
    obj = json.loads(path.read_text())
    breakage(obj)
    path.write_text(json.dumps(obj))
    with pytest.raises(PivotuneError) as e:
        write_report([demo], tmp_path / "report")
    assert str(path) in str(e.value) and field in str(e.value)
    assert not (tmp_path / "report").exists()   # nothing half-written
