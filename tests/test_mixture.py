"""Method mixtures: which roles each method keeps, seeded order, translation-task samples, real files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pivotune.config import load_config
from pivotune.data.mixture import (MT_INSTRUCTIONS, build_mixture, load_source, mixture_for_config, summarize,
                                   translation_samples)
from pivotune.data.records import ParallelPair, Sample
from pivotune.errors import DataError
from pivotune.languages import english_name as language_name
from pivotune.methods import METHODS


def _samples(n: int = 4) -> list[Sample]:
    out = []
    for role, lang in (("en", "en"), ("tgt", "el"), ("mt", "el"), ("cs", "el")):
        out += [Sample(instruction=f"{role} {i}", output=f"out {i}", role=role, lang=lang) for i in range(n)]
    return out


@pytest.mark.parametrize("method, roles", [
    ("english", {"en"}),
    ("bactrian", {"tgt", "mt"}),
    ("xllama", {"en", "tgt", "mt"}),
])
def test_roles_kept_per_method(method, roles):
    mix = build_mixture(METHODS[method].roles, _samples(), seed=0)
    assert {s.role for s in mix} == roles
    assert Counter(s.role for s in mix) == {r: 4 for r in roles}


def test_shuffle_is_seeded():
    data = _samples(10)
    a, b = build_mixture(METHODS["xllama"].roles, data, seed=1), build_mixture(METHODS["xllama"].roles, data, seed=1)
    c = build_mixture(METHODS["xllama"].roles, data, seed=2)
    assert a == b
    assert a != c and sorted(a, key=repr) == sorted(c, key=repr)
    kept = [s for s in data if s.role != "cs"]
    assert a != kept  # actually shuffled
    assert data == _samples(10)  # input untouched


def test_translation_samples():
    pairs = [ParallelPair(source=f"english {i}", target=f"greek {i}", tgt_lang="el", origin=f"f, line {i + 1}")
             for i in range(len(MT_INSTRUCTIONS) + 3)]
    out = translation_samples(pairs, "el", source="flores", weight=0.25)
    assert len(out) == len(pairs)
    n = len(MT_INSTRUCTIONS)
    # the pool is cycled in order
    assert [s.instruction for s in out[:n]] == [t.format(src="English", tgt="Greek") for t in MT_INSTRUCTIONS]
    assert out[n].instruction == out[0].instruction and out[n + 2].instruction == out[2].instruction
    assert len({s.instruction for s in out}) == n
    for p, s in zip(pairs, out):
        assert "Greek" in s.instruction and "{" not in s.instruction
        assert s.input == p.source and s.output == p.target
        assert s.role == "mt" and s.lang == "el" and s.source == "flores" and s.weight == 0.25
        assert s.origin == p.origin


def test_language_names():
    assert language_name("el") == "Greek" and language_name("th") == "Thai" and language_name("sw") == "Swahili"
    assert language_name("xx") == "xx"  # unknown code falls back to the code itself


# ------------------------------------------------------------------ from files


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _files(tmp_path, n_en=6, n_el=5, n_par=7):
    en = _jsonl(tmp_path / "alpaca_en.jsonl",
                [{"instruction": f"Say {i}.", "input": "", "output": f"number {i}"} for i in range(n_en)])
    el = _jsonl(tmp_path / "alpaca_el.jsonl",
                [{"instruction": f"Πες {i}.", "input": "", "output": f"αριθμός {i}"} for i in range(n_el)])
    par = _jsonl(tmp_path / "en-el.jsonl",
                 [{"source": f"the cat {i}", "target": f"η γάτα {i}"} for i in range(n_par)])
    return en, el, par


def _mixture(cfg):
    """The mixture of ``cfg``'s method."""
    return mixture_for_config(cfg, METHODS[cfg.method].roles)


def _config(tmp_path, method="xllama", **over):
    en, el, par = _files(tmp_path)
    base = {"model": "unused", "method": method, "languages": ["el"], "seed": 3,
            "data": [{"path": en, "role": "en", "lang": "en", "weight": 0.5},
                     {"path": el, "role": "tgt", "lang": "el", "max_samples": 3},
                     {"path": par, "role": "mt", "lang": "el", "weight": 2.0, "name": "ntrex"}]}
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def test_mixture_for_config_from_files(tmp_path):
    cfg = _config(tmp_path)
    mix = _mixture(cfg)
    assert summarize(mix) == {"en:en": 6, "mt:el": 7, "tgt:el": 3}
    weights = {s.role: s.weight for s in mix}
    assert weights == {"en": 0.5, "tgt": 1.0, "mt": 2.0}
    sources = {s.role: s.source for s in mix}
    assert sources == {"en": "alpaca_en", "tgt": "alpaca_el", "mt": "ntrex"}
    tgt = [s for s in mix if s.role == "tgt"]
    assert sorted(s.output for s in tgt) == ["αριθμός 0", "αριθμός 1", "αριθμός 2"]  # first rows kept
    mt = [s for s in mix if s.role == "mt"]
    assert all("Greek" in s.instruction for s in mt)
    assert {(s.input, s.output) for s in mt} == {(f"the cat {i}", f"η γάτα {i}") for i in range(7)}
    assert all(s.origin.endswith(f"line {int(s.input.split()[-1]) + 1}") for s in mt)
    # same config, same order; another seed, another order
    assert _mixture(cfg) == mix
    other = _mixture(_config(tmp_path, seed=4))
    assert other != mix and sorted(other, key=repr) == sorted(mix, key=repr)


def test_mixture_for_config_leaves_out_unused_roles_without_reading_them(tmp_path):
    cfg = _config(tmp_path, method="bactrian")
    (tmp_path / "alpaca_en.jsonl").write_text("{not json\n")  # never read by bactrian
    mix = _mixture(cfg)
    assert summarize(mix) == {"mt:el": 7, "tgt:el": 3}


def test_english_method_uses_only_english(tmp_path):
    mix = _mixture(_config(tmp_path, method="english"))
    assert summarize(mix) == {"en:en": 6}


def test_load_source_max_samples_on_parallel(tmp_path):
    cfg = _config(tmp_path, **{"data.2.max_samples": 2})
    samples = load_source(cfg.data[2])
    assert [s.input for s in samples] == ["the cat 0", "the cat 1"]
    assert samples[1].instruction == MT_INSTRUCTIONS[1].format(src="English", tgt="Greek")


def test_bad_row_stops_or_is_skipped(tmp_path):
    cfg = _config(tmp_path)
    path = tmp_path / "alpaca_el.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({"instruction": "Πες.", "input": "", "output": ""})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        _mixture(cfg)
    assert "line 2" in str(info.value) and "output" in str(info.value)
    skipping = _config(tmp_path, skip_invalid="true")
    assert summarize(_mixture(skipping))["tgt:el"] == 3  # max_samples still reached from 4 valid rows
