"""The command line end to end on a tiny model: help, --check, train, export, and bad input as exit 2."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from pivotune.cli import main


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _write_data(d):
    """Alpaca JSONL for en and el plus a parallel en-el JSONL file, in the tiny tokenizer's words."""
    en = _jsonl(d / "alpaca_en.jsonl", [{"instruction": f"Name item {i}.", "input": "", "output": o}
                                        for i, o in enumerate(["the red cat", "a blue bird", "two green trees",
                                                               "the big river", "one small dog", "good food"])])
    el = _jsonl(d / "alpaca_el.jsonl", [{"instruction": "Say it.", "input": w, "output": f"{w} yes"}
                                        for w in ["the cat", "a dog", "big house", "blue water", "red tree"]])
    par = _jsonl(d / "en-el.jsonl", [{"source": s, "target": t}
                                     for s, t in [("the cat", "cat the"), ("a big dog", "dog big a"),
                                                  ("two trees", "trees two"), ("hello world", "world hello")]])
    return en, el, par


def _write_config(d, model_dir, **extra) -> str:
    en, el, par = _write_data(d)
    cfg = {"model": str(model_dir), "method": "xllama", "languages": ["el"], "max_seq_len": 128,
           "output_dir": str(d / "run"), "seed": 0,
           "data": [{"path": en, "role": "en", "lang": "en"},
                    {"path": el, "role": "tgt", "lang": "el"},
                    {"path": par, "role": "mt", "lang": "el"}],
           "train": {"lr": 1e-3, "max_steps": 3, "per_device_batch_size": 2, "grad_accum": 1,
                     "warmup_ratio": 0.0, "logging_steps": 1, "progress_bar": False}}
    for key, value in extra.items():
        cfg[key] = value
    path = d / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ help and --check


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["train", "--help"], ["export", "--help"]])
def test_help_exits_zero_with_example(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pivotune" in out and "example" in out


def test_check_validates_without_loading(tmp_path, capsys, tiny_model_dir):
    cfg = _write_config(tmp_path, tiny_model_dir)
    assert main(["train", cfg, "--check"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "xllama" in out and "3 data sources" in out and "15 rows checked" in out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["2024", "on", "null", "runs/x: y"])
def test_output_dir_flag_is_taken_literally(tmp_path, capsys, monkeypatch, name, tiny_model_dir):
    import pivotune.config as config

    seen = []
    real = config.load_config
    monkeypatch.setattr(config, "load_config", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    cfg = _write_config(tmp_path, tiny_model_dir)
    assert main(["train", cfg, "--check", "--output-dir", name]) == 0, capsys.readouterr().err
    assert seen[-1].output_dir == name


def test_check_reports_bad_override(tmp_path, capsys):
    cfg = _write_config(tmp_path, tmp_path / "no-such-model")
    assert main(["train", cfg, "--check", "--set", "train.lr=0"]) == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "must be > 0" in err and "Traceback" not in err


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir):
    d = tmp_path_factory.mktemp("cli-full")
    cfg = _write_config(d, tiny_model_dir)
    code = main(["train", cfg])
    return d, code


def test_train_end_to_end(full_run):
    d, code = full_run
    run = d / "run"
    assert code == 0
    assert (run / "model" / "config.json").exists() and (run / "config.yaml").exists()
    meta = json.loads((run / "run.json").read_text())
    assert meta["steps"] == 3 and meta["method"] == "xllama"
    assert meta["mixture"] == {"en:en": 6, "mt:el": 4, "tgt:el": 5}


def test_export_loads_with_plain_transformers(full_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, code = full_run
    assert code == 0
    out = tmp_path / "exported"
    assert main(["export", str(d / "run"), str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("the cat", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tok.decode(gen[0]), str)


def test_export_refuses_non_empty_out_without_force(full_run, tmp_path, capsys):
    d, _ = full_run
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(d / "run"), str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert (out / "keep.txt").read_text() == "mine" and not (out / "config.json").exists()
    assert main(["export", str(d / "run"), str(out), "--force"]) == 0
    assert (out / "config.json").exists() and not (out / "keep.txt").exists()


def test_export_of_unfinished_run_is_clear(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a finished pivotune run" in err and "Traceback" not in err


def test_export_of_lora_run_is_a_merged_plain_model(tmp_path, tiny_wide_init_model_dir, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = _write_config(tmp_path, tiny_wide_init_model_dir)
    assert main(["train", cfg, "--set", "lora.enabled=true", "--set", "lora.r=4", "--set", "train.lr=5e-2",
                 "--set", "lora.dropout=0.0"]) == 0
    run = tmp_path / "run"
    assert (run / "model" / "adapter_config.json").exists()
    out = tmp_path / "exported"
    assert main(["export", str(run), str(out)]) == 0
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_wide_init_model_dir),
                                       str(run / "model")).merge_and_unload().eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_wide_init_model_dir).eval()
    ids = torch.tensor([[1, 5, 17, 42, 99, 3, 250]])
    with torch.no_grad():
        lp, lm, lb = plain(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(lp, lm, atol=1e-4), (lp - lm).abs().max()
    assert not torch.allclose(lp, lb, atol=1e-4)  # the adapter was merged in, not dropped


# ------------------------------------------------------------------ bad input through the CLI


def test_bad_row_exits_2_and_writes_no_model(tmp_path, tiny_model_dir, capsys):
    cfg = _write_config(tmp_path, tiny_model_dir)
    el = tmp_path / "alpaca_el.jsonl"
    lines = el.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({"instruction": "Say it.", "input": "a cat", "output": ""})
    el.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["train", cfg]) == 2
    err = capsys.readouterr().err
    assert str(el) in err and "line 3" in err and "output" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()

    assert main(["train", cfg, "--skip-invalid"]) == 0
    run = tmp_path / "run"
    assert (run / "model" / "config.json").exists()
    assert json.loads((run / "run.json").read_text())["mixture"]["tgt:el"] == 4


def test_unknown_key_exits_2_before_model_loads(tmp_path, capsys):
    cfg = _write_config(tmp_path, tmp_path / "no-such-model", tarin={"lr": 1e-5})
    assert main(["train", cfg]) == 2
    err = capsys.readouterr().err
    assert "tarin" in err and "Did you mean 'train'" in err
    assert "Could not load" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unknown_key_from_set_exits_2(tmp_path, capsys):
    cfg = _write_config(tmp_path, tmp_path / "no-such-model")
    assert main(["train", cfg, "--set", "train.lrr=1e-5"]) == 2
    assert "Did you mean 'train.lr'" in capsys.readouterr().err


def test_missing_model_path_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    cfg = _write_config(tmp_path, missing)
    assert main(["train", cfg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Could not load" in err and str(missing) in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
