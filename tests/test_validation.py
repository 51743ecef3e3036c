"""Validation that validates: strict YAML, errors that name file/line/field and stay short, `train --check`."""

from __future__ import annotations

import json

import pytest
import yaml

from pivotune.cli import main
from pivotune.config import load_config
from pivotune.data.load import load_instructions, load_parallel
from pivotune.errors import MESSAGE_LIMIT, ConfigError, DataError, PivotuneError

BASE = {"model": "some/model", "method": "xllama", "languages": ["el"],
        "data": [{"path": "en.jsonl", "role": "en", "lang": "en"},
                 {"path": "el.jsonl", "role": "tgt", "lang": "el"}]}


def _write(tmp_path, text: str, name: str = "run.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _config_error(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    msg = str(info.value)
    assert len(msg) < MESSAGE_LIMIT and "Traceback" not in msg
    return msg


def _cli_error(capsys, argv, tmp_path=None) -> str:
    """Run the CLI, expecting exit 2 with a short, traceback-free message; nothing may be written."""
    before = sorted(p.name for p in tmp_path.iterdir()) if tmp_path is not None else None
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err and len(err.split("error: ", 1)[1]) < MESSAGE_LIMIT
    if tmp_path is not None:
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err


# ---------------------------------------------------------------- strict YAML


def test_duplicate_top_level_key_names_file_line_and_key(tmp_path, capsys):
    """A key given twice is an error naming the file, the second line and the key (not the last value)."""
    path = _write(tmp_path, "model: first\nmethod: xllama\nmodel: second\n")
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert path in err and "line 3" in err and "'model'" in err and "line 1" in err


def test_duplicate_nested_key_is_refused(tmp_path):
    """A duplicate inside a section (train.lr twice) is refused with its line."""
    path = _write(tmp_path, "model: m\ntrain:\n  lr: 1.0e-5\n  epochs: 1\n  lr: 2.0e-5\n")
    msg = _config_error(path)
    assert "line 5" in msg and "'lr'" in msg and "twice" in msg


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    """A merge key ('<<') with an explicit key beside it is not a duplicate."""
    text = "model: m\ntrain:\n  <<: &b {lr: 0.1, epochs: 2.0}\n  lr: 0.2\n"
    path = _write(tmp_path, text)
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.train.epochs) == (0.2, 2.0)


def test_alias_bomb_is_refused_with_a_short_message(tmp_path, capsys):
    """A ~1 KB 'billion laughs' file is refused by the loader, naming the file and line, in a short message."""
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    rows.append("model: *i")
    path = _write(tmp_path, "\n".join(rows) + "\n")
    assert len(open(path).read()) < 1100
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert path in err and "line " in err and "alias" in err


def test_values_quoted_in_config_errors_are_shortened(tmp_path):
    """An alias expansion under the budget, or a huge string, is quoted in a few characters, not in full."""
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abc", "bcd"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = _write(tmp_path, "\n".join(rows) + "\nmodel: *d\n")    # 9**4 values under model
    msg = _config_error(path)
    assert "line 5, field model" in msg
    path = _write(tmp_path, yaml.safe_dump({**BASE, "template": "x" * 1_000_000}))
    assert "field template" in _config_error(path)


def test_many_problems_stay_under_the_limit_and_are_counted(tmp_path):
    """Hundreds of bad data sources give one message under the limit that says how many were left out."""
    raw = {**BASE, "data": [{"path": f"f{i}.jsonl", "role": "zz", "lang": "el"} for i in range(300)]}
    msg = _config_error(_write(tmp_path, yaml.safe_dump(raw)))
    assert "data.0.role" in msg and "more" in msg


def test_deeply_nested_yaml_is_a_clear_error(tmp_path):
    """100k nested lists in a config are an error naming the file, not a RecursionError."""
    path = _write(tmp_path, "model: " + "[" * 100_000 + "]" * 100_000 + "\n")
    msg = _config_error(path)
    assert path in msg and "nested too deeply" in msg


def test_override_value_that_is_not_yaml_is_taken_as_text():
    """A --set value YAML refuses (here a duplicate key) is taken literally and validated as text."""
    with pytest.raises(ConfigError) as info:
        load_config(base=dict(BASE), overrides=["method={a: 1, a: 2}"])
    assert "--set method={a: 1, a: 2}" in str(info.value) and "unknown method" in str(info.value)


# ---------------------------------------------------------------- config errors name the line


def test_config_errors_name_file_line_and_field(tmp_path, capsys):
    """Each problem names its file, the line of the offending key, and the dotted field."""
    text = ("model: m\nmethod: xllama\nlanguages: [el]\ntrain:\n  lr: 0\n  epochs: 1\n  lrr: 2\n"
            "data:\n  - path: en.jsonl\n    role: en\n    lang: en\n  - path: el.jsonl\n    role: zz\n"
            "    lang: el\n")
    path = _write(tmp_path, text)
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert f"{path}, line 5, field train.lr: 0 is out of range" in err
    assert f"{path}, line 7, field train.lrr: unknown key" in err
    assert f"{path}, line 13, field data.1.role" in err


def test_missing_key_names_the_line_of_its_section(tmp_path):
    """A required key missing from a list item names the line where that item starts."""
    text = ("model: m\nlanguages: [el]\ndata:\n  - path: en.jsonl\n    role: en\n    lang: en\n"
            "  - role: tgt\n    lang: el\n")
    msg = _config_error(_write(tmp_path, text))
    assert "line 7, field data.1.path: required but missing" in msg


def test_override_errors_name_the_set_flag(tmp_path):
    """A bad value given with --set is located at that --set, not at the file's line."""
    path = _write(tmp_path, yaml.safe_dump({**BASE, "train": {"lr": 0.001}}))
    msg = _config_error(path, ["train.lr=0", "train.epochs=2"])
    assert "--set train.lr=0, field train.lr: 0 is out of range" in msg
    assert "line" not in msg.split("train.lr")[0]


# ---------------------------------------------------------------- data files

DEEP = "[" * 100_000 + "]" * 100_000
ROW = '{"instruction": "Say hi.", "input": "", "output": "hi"}'


def _data_error(fn, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    assert len(str(info.value)) < MESSAGE_LIMIT
    return info.value


@pytest.mark.parametrize("name, text, line", [
    ("deep.jsonl", f"{ROW}\n{DEEP}\n", 2),
    ("deep.json", f"[{ROW},\n{DEEP}]\n", 2),
])
def test_deeply_nested_json_row_names_file_and_line(tmp_path, name, text, line):
    """A 100k-deep JSON value in a data file is a DataError naming the file and line, not a RecursionError."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    err = _data_error(load_instructions, path, role="en", lang="en")
    assert f"{path}, line {line}" in str(err) and "nested too deeply" in str(err) and err.row == line


def test_deeply_nested_json_in_other_user_files_is_a_clear_error(tmp_path):
    """Results and report JSON files given by the user fail with their name, not a RecursionError."""
    from pivotune.eval.compare import load_results
    from pivotune.io import read_json_object

    path = tmp_path / "results.json"
    path.write_text(DEEP, encoding="utf-8")
    for read in (load_results, read_json_object):
        with pytest.raises(PivotuneError, match="nested too deeply") as info:
            read(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("empty_in", ["source", "target"])
def test_empty_line_of_a_line_aligned_pair_names_its_own_file(tmp_path, empty_in):
    """An empty line in either file of a line-aligned pair is reported in that file, at that line."""
    src, tgt = tmp_path / "pair.en", tmp_path / "pair.el"
    src.write_text("one\ntwo\nthree\n" if empty_in == "target" else "one\n\nthree\n", encoding="utf-8")
    tgt.write_text("ena\n\ntria\n" if empty_in == "target" else "ena\ndyo\ntria\n", encoding="utf-8")
    holder = tgt if empty_in == "target" else src
    err = _data_error(load_parallel, src, tgt, tgt_lang="el")
    assert str(err).startswith(f"{holder}, line 2: empty line") and (err.path, err.row) == (str(holder), 2)
    skipped = load_parallel(src, tgt, tgt_lang="el", skip_invalid=True).skipped
    assert skipped == [f"{holder}, line 2: empty line; every line of a line-aligned pair needs a sentence"]


# ---------------------------------------------------------------- one pivot-layer rule


def test_pivot_layer_lies_below_the_top_block_everywhere(tiny_model_dir, tmp_path, capsys):
    """n = N is refused by training's resolver, the lens decision, the sweep and `pivotune probe` alike."""
    import numpy as np

    from pivotune.analysis.logit_lens import LensResult, regulation_decision, suggest_pivot_layer
    from pivotune.models.pivot_head import default_pivot_layer, pivot_layers, resolve_pivot_layer
    from pivotune.toy.sweep import expand_grid

    assert list(pivot_layers(4)) == [1, 2, 3] and default_pivot_layer(2) == 1 and default_pivot_layer(32) == 24
    for refuse in (lambda: resolve_pivot_layer(4, 4), lambda: resolve_pivot_layer(None, 1),
                   lambda: regulation_decision(LensResult(np.full((1, 5), 0.1), np.full((1, 5), 0.2), 4), 4),
                   lambda: expand_grid(4, [4], [0.1], [0.5])):
        with pytest.raises(PivotuneError, match="below the top|at least 2"):
            refuse()
    assert suggest_pivot_layer(LensResult(np.full((1, 5), 0.2), np.zeros((1, 5)), 4)).candidates == [3]
    pairs = tmp_path / "el.tsv"
    pairs.write_text("".join(f"{e}\t{t}\n" for e, t in [("cat", "gata"), ("dog", "skylos"), ("tree", "dentro"),
                                                          ("house", "spiti"), ("water", "nero"), ("red", "kokkino")]))
    err = _cli_error(capsys, ["probe", str(tiny_model_dir), "--pairs", f"el={pairs}", "--pivot-layer", "2",
                              "--out", str(tmp_path / "out")])
    assert "--pivot-layer=2" in err and "1 <= n <= 1" in err and not (tmp_path / "out").exists()

# ---------------------------------------------------------------- train --check

GOOD_ROWS = [{"instruction": f"Name item {i}.", "input": "", "output": w}
             for i, w in enumerate(["the red cat", "a blue bird", "two green trees", "the big river"])]


def _jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _check_config(tmp_path, model, data, **extra) -> str:
    cfg = {"model": str(model), "method": "xllama", "languages": ["el"], "output_dir": str(tmp_path / "run"),
           "data": data, **extra}
    return _write(tmp_path, yaml.safe_dump(cfg, sort_keys=False), "check.yaml")


@pytest.fixture
def no_model_load(monkeypatch):
    """--check must never load model weights: loading one fails the test."""
    import pivotune.models.loading as loading

    def refuse(*_a, **_k):
        raise AssertionError("--check loaded a model")
    monkeypatch.setattr(loading, "load_model", refuse)
    monkeypatch.setattr(loading, "load_encoder", refuse)


def test_check_fails_on_a_missing_data_file(tmp_path, capsys, tiny_model_dir, no_model_load):
    """The reported bug: --check said 'valid' with a data file that does not exist; now exit 2 naming it."""
    en = _jsonl(tmp_path / "en.jsonl", GOOD_ROWS)
    path = _check_config(tmp_path, tiny_model_dir, [{"path": en, "role": "en", "lang": "en"},
                                                    {"path": str(tmp_path / "el.jsonl"), "role": "tgt", "lang": "el"}])
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert "1 problem found by --check" in err and f"file not found: {tmp_path / 'el.jsonl'}" in err


def test_check_lists_every_problem_at_once(tmp_path, capsys, no_model_load):
    """Bad rows in two files, an empty line in a pair's target file and a missing model: one line each."""
    en = _jsonl(tmp_path / "en.jsonl", [GOOD_ROWS[0], {"instruction": "x", "output": ""}, GOOD_ROWS[1], "{oops"])
    el = _jsonl(tmp_path / "el.jsonl", [GOOD_ROWS[0], {"instruction": "x", "output": 3}])
    src, tgt = tmp_path / "p.en", tmp_path / "p.el"
    src.write_text("one\ntwo\nthree\n", encoding="utf-8")
    tgt.write_text("ena\n\ntria\n", encoding="utf-8")
    path = _check_config(tmp_path, tmp_path / "no-such-model", [
        {"path": en, "role": "en", "lang": "en"}, {"path": el, "role": "tgt", "lang": "el"},
        {"path": str(src), "target_path": str(tgt), "role": "mt", "lang": "el"}])
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    lines = err.splitlines()
    assert "5 problems found by --check" in lines[0] and len(lines) == 6
    assert lines[1].startswith(f"  - {en}, line 2, field 'output': field is empty")
    assert lines[2].startswith(f"  - {en}, line 4: malformed JSON")
    assert lines[3].startswith(f"  - {el}, line 2, field 'output': expected a string")
    assert lines[4].startswith(f"  - {tgt}, line 2: empty line")
    assert lines[5].startswith("  - model: Could not load") and "no-such-model" in lines[5]


def test_check_passes_with_skip_invalid_and_notes_the_rows(tmp_path, capsys, tiny_model_dir, no_model_load):
    """With skip_invalid, invalid rows are noted (they will be dropped), and the check passes."""
    en = _jsonl(tmp_path / "en.jsonl", [*GOOD_ROWS, {"instruction": "x"}])
    el = _jsonl(tmp_path / "el.jsonl", GOOD_ROWS)
    path = _check_config(tmp_path, tiny_model_dir, [{"path": en, "role": "en", "lang": "en"},
                                                    {"path": el, "role": "tgt", "lang": "el"}], skip_invalid=True)
    assert main(["train", path, "--check"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "8 rows checked" in out and f"{en}: 1 invalid rows will be skipped" in out
    assert not (tmp_path / "run").exists()


def test_check_builds_the_methods_data(tmp_path, capsys, tiny_model_dir, no_model_load):
    """CLO's pairing is built: a translation file one row short is an error naming both files' row counts."""
    en = _jsonl(tmp_path / "en.jsonl", GOOD_ROWS)
    el = _jsonl(tmp_path / "el.jsonl", GOOD_ROWS[:3])
    path = _check_config(tmp_path, tiny_model_dir, [{"path": en, "role": "en", "lang": "en"},
                                                    {"path": el, "role": "tgt", "lang": "el"}], method="clo")
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert "CLO pairs row i" in err and "4 and 3 valid rows" in err


def test_check_prom_depth_and_probe_files(tmp_path, capsys, tiny_model_dir, no_model_load):
    """PROM: a pivot layer at the top of the local model and a missing word-pair file are both reported."""
    en = _jsonl(tmp_path / "en.jsonl", GOOD_ROWS)
    el = _jsonl(tmp_path / "el.jsonl", GOOD_ROWS)
    path = _check_config(tmp_path, tiny_model_dir, [{"path": en, "role": "en", "lang": "en"},
                                                    {"path": el, "role": "tgt", "lang": "el"}], method="prom",
                         prom={"pivot_layer": 2, "probe_pairs": {"el": str(tmp_path / "el.tsv")}})
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert "prom.pivot_layer=2 is out of range for this 2-block model" in err
    assert f"prom.probe_pairs.el: {tmp_path / 'el.tsv'}: word-pair file not found" in err


def test_check_lingualift_paths(tmp_path, capsys, tiny_model_dir, no_model_load):
    """LinguaLIFT: a missing lexicon and a missing local encoder are reported; nothing loads or is written."""
    en = _jsonl(tmp_path / "en.jsonl", GOOD_ROWS)
    path = _check_config(tmp_path, tiny_model_dir, [{"path": en, "role": "en", "lang": "en"}],
                         method="lingualift", lingualift={"encoder": str(tmp_path / "enc"),
                                                          "lexicons": {"el": str(tmp_path / "el.lex")}})
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert f"lingualift.lexicons.el: file not found: {tmp_path / 'el.lex'}" in err and err.count("el.lex") == 2
    assert f"lingualift.encoder: Could not load '{tmp_path / 'enc'}'" in err


def test_check_broken_local_tokenizer(tmp_path, capsys, tiny_model_dir, no_model_load):
    """A local tokenizer directory that does not hold a tokenizer fails the check, naming the key."""
    en = _jsonl(tmp_path / "en.jsonl", GOOD_ROWS)
    (tmp_path / "tok").mkdir()
    path = _check_config(tmp_path, tiny_model_dir, [{"path": en, "role": "en", "lang": "en"}], method="english",
                         tokenizer=str(tmp_path / "tok"))
    err = _cli_error(capsys, ["train", path, "--check"], tmp_path)
    assert f"tokenizer: Could not load the tokenizer '{tmp_path / 'tok'}'" in err


def test_check_notes_what_it_does_not_fetch(tmp_path, capsys, no_model_load):
    """Hub names (model, dataset) are noted, not downloaded; unused roles are noted, not read."""
    en = _jsonl(tmp_path / "en.jsonl", GOOD_ROWS)
    path = _check_config(tmp_path, "some-org/some-model", [
        {"path": en, "role": "en", "lang": "en"}, {"path": "some-org/some-dataset", "role": "en", "lang": "en"},
        {"path": str(tmp_path / "absent.jsonl"), "role": "cs", "lang": "el"}], method="english")
    assert main(["train", path, "--check"]) == 0
    out = capsys.readouterr().out
    assert "model 'some-org/some-model': a hub name" in out and "some-org/some-dataset): a hub dataset" in out
    assert "does not train on role cs" in out
