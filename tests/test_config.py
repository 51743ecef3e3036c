"""Run-config validation: every mistake is reported in words a user can act on, before anything loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pivotune.config import RunConfig, apply_overrides, load_config
from pivotune.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "model": "some/model",
    "method": "xllama",
    "languages": ["el"],
    "data": [
        {"path": "en.jsonl", "role": "en", "lang": "en"},
        {"path": "el.jsonl", "role": "tgt", "lang": "el"},
        {"path": "en-el.jsonl", "role": "mt", "lang": "el"},
    ],
}


def _base() -> dict:
    return yaml.safe_load(yaml.safe_dump(BASE))  # deep copy


def _error(raw: dict | None = None, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(base=raw if raw is not None else _base(), overrides=overrides)
    return str(info.value)


def _write(tmp_path, raw: dict | str, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return p


def test_valid_config_and_defaults():
    cfg = load_config(base=_base())
    assert isinstance(cfg, RunConfig)
    assert cfg.train.lr == 2e-5 and cfg.lora.enabled is False
    kinds = [d.kind for d in cfg.data]
    assert kinds == ["instructions", "instructions", "parallel"]
    assert [d.name for d in cfg.data] == ["en", "el", "en-el"]


# ------------------------------------------------------------------ unknown keys


def test_unknown_nested_key_suggests_nearest():
    raw = _base()
    raw["train"] = {"lrr": 1e-5}
    msg = _error(raw)
    assert "train.lrr" in msg and "unknown key" in msg
    assert "Did you mean 'train.lr'" in msg


def test_unknown_top_level_key_suggests_nearest():
    raw = _base()
    raw["metod"] = "xllama"
    msg = _error(raw)
    assert "metod" in msg and "Did you mean 'method'" in msg


def test_unknown_key_inside_data_item_suggests_nearest():
    raw = _base()
    raw["data"][0]["wieght"] = 0.5
    msg = _error(raw)
    assert "data.0.wieght" in msg
    assert "Did you mean 'data.0.weight'" in msg


def test_unknown_key_in_file_names_the_file(tmp_path):
    raw = _base()
    raw["lora"] = {"enabeld": True}
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "Did you mean 'lora.enabled'" in msg


# ------------------------------------------------------------------ ranges and choices


def test_lr_zero_states_range():
    msg = _error(overrides=["train.lr=0"])
    assert "train.lr" in msg and "must be > 0" in msg


def test_warmup_ratio_out_of_range_states_range():
    msg = _error(overrides=["train.warmup_ratio=1.5"])
    assert "train.warmup_ratio" in msg and "1.5" in msg and "must be < 1" in msg


def test_negative_weight_states_range():
    msg = _error(overrides=["data.0.weight=-1"])
    assert "data.0.weight" in msg and "must be >= 0" in msg


def test_unknown_method_suggests_nearest():
    msg = _error(overrides=["method=xlama"])
    assert "unknown method 'xlama'" in msg and "Did you mean 'xllama'" in msg
    assert "bactrian" in msg and "english" in msg  # lists the choices


def test_several_problems_reported_together():
    raw = _base()
    raw["train"] = {"lr": 0, "warmup_ratio": 2}
    msg = _error(raw)
    assert "train.lr" in msg and "train.warmup_ratio" in msg


# ------------------------------------------------------------------ --set overrides


def test_overrides_nested_list_index_and_yaml_types():
    cfg = load_config(base=_base(), overrides=[
        "train.lr=1e-5", "data.0.weight=0.5", "lora.enabled=true", "train.max_steps=7",
        "lora.target_modules=[q_proj, v_proj]", "output_dir=runs/x", "train.report_to=[tensorboard]"])
    assert cfg.train.lr == pytest.approx(1e-5)
    assert cfg.data[0].weight == 0.5 and cfg.data[1].weight == 1.0
    assert cfg.lora.enabled is True
    assert cfg.train.max_steps == 7
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.output_dir == "runs/x"
    assert cfg.train.report_to == ["tensorboard"]


def test_overrides_apply_on_top_of_file(tmp_path):
    path = _write(tmp_path, _base())
    cfg = load_config(path, ["method=bactrian", "languages=[el, sw]", "seed=7"])
    assert cfg.method == "bactrian" and cfg.languages == ["el", "sw"] and cfg.seed == 7


def test_override_value_with_equals_sign_keeps_the_rest():
    raw = apply_overrides({}, ["output_dir=runs/a=b"])
    assert raw == {"output_dir": "runs/a=b"}


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(base=_base(), overrides=["train.lr"])


def test_override_bad_list_index_is_rejected():
    with pytest.raises(ConfigError, match="not an index"):
        load_config(base=_base(), overrides=["data.5.weight=0.5"])
    with pytest.raises(ConfigError, match="not an index"):
        load_config(base=_base(), overrides=["data.first.weight=0.5"])


def test_override_into_a_scalar_is_rejected():
    with pytest.raises(ConfigError, match="holds a value"):
        load_config(base={**_base(), "seed": 3}, overrides=["seed.x=1"])
    # not set in the file: the mapping reaches validation, which names the key
    with pytest.raises(ConfigError, match="seed"):
        load_config(base=_base(), overrides=["seed.x=1"])


def test_override_into_null_section_starts_one():
    raw = _base()
    raw["data"][0]["fields"] = None  # `fields:` left empty in the file
    cfg = load_config(base=raw, overrides=["data.0.fields.output=completion"])
    assert cfg.data[0].fields == {"output": "completion"}


def test_overrides_do_not_mutate_callers_base():
    raw = _base()
    raw["train"] = {"lr": 1e-3}
    load_config(base=raw, overrides=["train.lr=0.5", "data.0.weight=0.5"])
    assert raw["train"] == {"lr": 1e-3} and "weight" not in raw["data"][0]
    assert load_config(base=raw).train.lr == 1e-3


def test_override_unknown_key_gets_suggestion():
    msg = _error(overrides=["train.epoch=2"])
    assert "Did you mean 'train.epochs'" in msg


# ------------------------------------------------------------------ files


def test_invalid_yaml_reports_line(tmp_path):
    path = _write(tmp_path, "model: m\nmethod: xllama\ntrain:\n  lr: [1e-5\n  epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "line " in msg and "not valid YAML" in msg


def test_invalid_yaml_line_number_is_right(tmp_path):
    path = _write(tmp_path, "model: m\nmethod: xllama\nseed: 1\nbad: : :\n")
    with pytest.raises(ConfigError, match=r"line 4"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_missing_model_is_reported():
    raw = _base()
    del raw["model"]
    assert "model: required but missing" in _error(raw)


# ------------------------------------------------------------------ cross-field checks


def test_role_mt_with_kind_instructions_rejected():
    msg = _error(overrides=["data.2.kind=instructions"])
    assert "role 'mt' needs kind 'parallel'" in msg and "data.2" in msg


def test_data_lang_not_in_languages_rejected():
    msg = _error(overrides=["data.1.lang=sw"])
    assert "lang 'sw'" in msg and "not in languages" in msg and "'el'" in msg


def test_method_whose_roles_match_no_source_rejected():
    raw = _base()
    raw["method"] = "english"
    raw["data"] = raw["data"][1:]  # tgt + mt only
    msg = _error(raw)
    assert "method 'english'" in msg and "no data source" in msg and "en" in msg


def test_bactrian_without_target_data_rejected():
    raw = _base()
    raw["method"] = "bactrian"
    raw["data"] = raw["data"][:1]
    assert "method 'bactrian'" in _error(raw)


# ------------------------------------------------------------------ examples


def test_every_example_config_validates():
    examples = sorted((REPO / "examples").glob("*.yaml")) + sorted((REPO / "examples").glob("*.yml"))
    assert examples, "no example configs under examples/"
    for path in examples:
        cfg = load_config(path)
        assert cfg.data, f"{path.name} has no data sources"
