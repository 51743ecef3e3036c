"""CLO in the toy world: its pairs are the world's exact translations; its demo config and retention table."""

from __future__ import annotations

from pivotune.config import load_config
from pivotune.methods.clo.units import translated_samples
from pivotune.data.load import load_instructions
from pivotune.toy.demo import DemoPlan, retention_table, run_config
from pivotune.toy.language import translate
from pivotune.methods.clo.units import clo_units


def test_translated_files_are_the_exact_translator(quick_world, quick_cfg):
    english = load_instructions(quick_world / "instructions" / "en.jsonl", role="en", lang="en").records
    thai = load_instructions(quick_world / "instructions" / "th.jsonl", role="tgt", lang="th").records
    ours = translated_samples(english, "th", lambda s: translate(s, "en", "th", quick_cfg.seed))
    assert [(s.instruction, s.input, s.output) for s in ours] == [(s.instruction, s.input, s.output) for s in thai]


def test_demo_clo_config_builds_units(quick_paths, tmp_path):
    plan = DemoPlan.for_world(quick=True)
    cfg = load_config(base=run_config(quick_paths, "clo", ["el", "th"], 0, tmp_path / "r", plan))
    assert cfg.train.per_device_batch_size == plan.batch_size // 4
    units = clo_units(cfg)
    assert len(units) == 2 * cfg.clo.max_items
    assert {u.target.lang for u in units} == {"el", "th"} and all(u.english.lang == "en" for u in units)
    assert units[0].english.output != units[0].target.output


def test_retention_table_means():
    one = {"en": {"mgsm": 30.0, "xquad_em": 60.0, "xquad_f1": 90.0},
           "el": {"mgsm": 0.0, "xquad_em": 3.0, "xquad_f1": 6.0}, "th": {"mgsm": 3.0, "xquad_em": 3.0, "xquad_f1": 3.0}}
    header, rows = retention_table({"clo": [one]}, ["el", "th"], "th")
    assert header == ["method", "targets", "th (under-represented)", "English (retention)"]
    assert rows == [["clo", "3.0", "3.0", "60.0"]]
    header, rows = retention_table({"clo": [one]}, ["el"], "th")
    assert header == ["method", "targets", "English (retention)"] and rows == [["clo", "3.0", "60.0"]]
