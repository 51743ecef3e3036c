"""The bad-input suite: every case exits non-zero with one short paragraph that names the file, the line or row
and the field where there is one, prints no traceback, and leaves nothing on disk that was not there before.

Each case is a function ``(Ctx) -> Case``: it writes what it needs under ``ctx.d`` (the working directory of
the command) and returns the command line and the words the message must hold. The checks are the same for
every case (:func:`test_bad_input`); a case's setup files are taken as "there before".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pivotune.cli import main

MAX_MESSAGE = 2000


@dataclass
class Case:
    argv: list[str]
    names: list[str] = field(default_factory=list)   # words the message must hold (file, line, field)


@dataclass
class Ctx:
    d: Path
    model: Path

    def write(self, name: str, text: str | bytes) -> str:
        p = self.d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return name

    def jsonl(self, name: str, rows: list) -> str:
        return self.write(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def data(self) -> list[dict]:
        en = self.jsonl("en.jsonl", [{"instruction": f"Say {w}.", "input": "", "output": w}
                                     for w in ("the cat", "a dog", "big tree", "red house")])
        el = self.jsonl("el.jsonl", [{"instruction": "Say it.", "input": w, "output": w}
                                     for w in ("cat the", "dog a", "tree big")])
        par = self.jsonl("en-el.jsonl", [{"source": "the cat", "target": "cat the"},
                                         {"source": "a dog", "target": "dog a"}])
        return [{"path": en, "role": "en", "lang": "en"}, {"path": el, "role": "tgt", "lang": "el"},
                {"path": par, "role": "mt", "lang": "el"}]

    def config(self, name: str = "run.yaml", text: str | None = None, **changes) -> str:
        """A valid xllama config on the tiny model, with ``changes`` applied (dotted keys allowed)."""
        if text is not None:
            return self.write(name, text)
        cfg = {"model": str(self.model), "method": "xllama", "languages": ["el"], "max_seq_len": 256,
               "output_dir": "run", "seed": 0, "data": self.data(),
               "train": {"lr": 1e-3, "max_steps": 2, "per_device_batch_size": 2, "grad_accum": 1,
                         "progress_bar": False}}
        for key, value in changes.items():
            cur = cfg
            *parents, last = key.split("__")
            for p in parents:
                cur = cur[int(p)] if isinstance(cur, list) else cur.setdefault(p, {})
            if isinstance(cur, list):
                cur[int(last)] = value
            else:
                cur[last] = value
        return self.write(name, yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# ------------------------------------------------------------------ run configs


@case
def config_missing(c):
    return Case(["train", "nope.yaml", "--check"], ["nope.yaml"])


@case
def config_not_utf8(c):
    return Case(["train", c.write("run.yaml", b"model: \xff\xfe\n"), "--check"], ["run.yaml", "UTF-8"])


@case
def config_bad_yaml(c):
    return Case(["train", c.config(text="model: m\nmethod: [xllama\n"), "--check"], ["run.yaml", "line"])


@case
def config_top_level_list(c):
    return Case(["train", c.config(text="- model: m\n"), "--check"], ["run.yaml", "mapping"])


@case
def config_unknown_key(c):
    return Case(["train", c.config(trian={"lr": 1e-3}), "--check"], ["run.yaml", "trian", "train"])


@case
def config_lr_out_of_range(c):
    return Case(["train", c.config(train__lr=5.0), "--check"], ["run.yaml", "train.lr", "line"])


@case
def config_unknown_method(c):
    return Case(["train", c.config(method="prmo"), "--check"], ["run.yaml", "method", "prom"])


@case
def config_duplicate_key(c):
    text = f"model: {c.model}\nmethod: xllama\nmethod: prom\nlanguages: [el]\n"
    return Case(["train", c.config(text=text), "--check"], ["run.yaml", "line 3", "method"])


@case
def config_alias_bomb(c):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghi"):
        prev = "a" if i == 0 else "bcdefghi"[i - 1]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("model: *i")
    return Case(["train", c.config(text="\n".join(lines) + "\n"), "--check"], ["run.yaml"])


@case
def config_language_word(c):
    return Case(["train", c.config(languages=["thai"]), "--check"], ["run.yaml", "languages", "thai"])


@case
def config_language_unknown_code(c):
    return Case(["train", c.config(languages=["xx"]), "--check"], ["run.yaml", "languages", "xx"])


@case
def config_language_path_traversal(c):
    return Case(["train", c.config(languages=["th/../../../X"]), "--check"], ["run.yaml", "languages"])


@case
def config_data_language_unknown(c):
    return Case(["train", c.config(data__1__lang="greek"), "--check"], ["run.yaml", "data.1.lang", "greek"])


@case
def config_data_lang_not_in_languages(c):
    return Case(["train", c.config(languages=["th"]), "--check"], ["run.yaml", "line", "data.1.lang", "el"])


@case
def config_method_without_its_roles(c):
    cfg = c.config(method="bactrian", data=[c.data()[0]])
    return Case(["train", cfg, "--check"], ["run.yaml", "line", "field data", "bactrian", "roles"])


@case
def config_pivot_layer_zero(c):
    return Case(["train", c.config(method="prom", prom={"pivot_layer": 0}), "--check"],
                ["run.yaml", "prom.pivot_layer"])


@case
def config_lingualift_without_encoder(c):
    return Case(["train", c.config(method="lingualift"), "--check"], ["run.yaml", "field lingualift.encoder"])


@case
def override_without_equals(c):
    return Case(["train", c.config(), "--check", "--set", "train.lr"], ["train.lr", "KEY=VALUE"])


@case
def override_bad_index(c):
    return Case(["train", c.config(), "--check", "--set", "data.7.path=x"], ["data.7.path", "index"])


@case
def override_out_of_range(c):
    return Case(["train", c.config(), "--check", "--set", "train.per_device_batch_size=0"],
                ["train.per_device_batch_size"])


# ------------------------------------------------------------------ data files


@case
def data_file_missing(c):
    return Case(["train", c.config(data__0__path="missing.jsonl"), "--check"], ["missing.jsonl"])


@case
def data_bad_json_line(c):
    c.write("en.jsonl", '{"instruction": "a", "input": "", "output": "b"}\n{"instruction": oops}\n')
    cfg = c.config()
    c.write("en.jsonl", '{"instruction": "a", "input": "", "output": "b"}\n{"instruction": oops}\n')
    return Case(["train", cfg], ["en.jsonl", "line 2"])


@case
def data_deeply_nested_json(c):
    cfg = c.config()
    c.write("el.jsonl", '{"instruction": "a", "input": "", "output": "b"}\n' + "[" * 200_000 + "]" * 200_000 + "\n")
    return Case(["train", cfg], ["el.jsonl", "line 2"])


@case
def data_row_missing_output(c):
    cfg = c.config()
    c.jsonl("el.jsonl", [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "input": ""}])
    return Case(["train", cfg], ["el.jsonl", "line 2", "output"])


@case
def data_field_wrong_type(c):
    cfg = c.config()
    c.jsonl("el.jsonl", [{"instruction": "a", "input": "", "output": ["b"]}])
    return Case(["train", cfg], ["el.jsonl", "line 1", "output"])


@case
def data_empty_file(c):
    cfg = c.config()
    c.write("el.jsonl", "")
    return Case(["train", cfg], ["el.jsonl"])


@case
def data_not_utf8(c):
    cfg = c.config()
    c.write("el.jsonl", b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "\xff"}\n')
    return Case(["train", cfg], ["el.jsonl", "line 2"])


@case
def data_json_object_not_rows(c):
    cfg = c.config(data__1__path="el.json")
    c.write("el.json", '{\n  "instruction": "a",\n  "input": "",\n  "output": "b"\n}\n')
    return Case(["train", cfg], ["el.json"])


@case
def data_missing_in_check(c):
    """--check reports a missing file (it used to say "valid")."""
    return Case(["train", c.config(data__2__path="gone.jsonl"), "--check"], ["gone.jsonl"])


# ------------------------------------------------------------------ parallel files


def _plain_pair(c, src: str, tgt: str) -> str:
    c.write("src.en", src)
    c.write("tgt.el", tgt)
    return c.config(data__2={"path": "src.en", "target_path": "tgt.el", "role": "mt", "lang": "el"})


@case
def parallel_unequal_length(c):
    return Case(["train", _plain_pair(c, "the cat\na dog\nbig tree\n", "cat the\ndog a\n")],
                ["src.en", "tgt.el"])


@case
def parallel_empty_target_line(c):
    return Case(["train", _plain_pair(c, "the cat\na dog\nbig tree\n", "cat the\n\ntree big\n")],
                ["tgt.el", "line 2"])


@case
def parallel_empty_source_line(c):
    return Case(["train", _plain_pair(c, "the cat\n\nbig tree\n", "cat the\ndog a\ntree big\n")],
                ["src.en", "line 2"])


@case
def parallel_jsonl_missing_target(c):
    cfg = c.config()
    c.jsonl("en-el.jsonl", [{"source": "the cat", "target": "cat the"}, {"source": "a dog"}])
    return Case(["train", cfg], ["en-el.jsonl", "line 2", "target"])


# ------------------------------------------------------------------ probe files and arguments


def _probe(c, *pairs: str, extra=()) -> list[str]:
    return ["probe", str(c.model), "--pairs", *pairs, "--out", "probe-out", "--pivot-layer", "1", *extra]


@case
def probe_pairs_missing_file(c):
    return Case(_probe(c, "el=nope.tsv"), ["nope.tsv"])


@case
def probe_pairs_no_tab(c):
    c.write("el.tsv", "cat\tcat\ndog dog\n")
    return Case(_probe(c, "el=el.tsv"), ["el.tsv", "line 2"])


@case
def probe_pairs_empty_target(c):
    c.write("el.tsv", "cat\tcat\ndog\t\n")
    return Case(_probe(c, "el=el.tsv"), ["el.tsv", "line 2"])


@case
def probe_pairs_empty_file(c):
    c.write("el.tsv", "# nothing\n")
    return Case(_probe(c, "el=el.tsv"), ["el.tsv"])


@case
def probe_pairs_without_language(c):
    c.write("el.tsv", "cat\tcat\n")
    return Case(_probe(c, "el.tsv"), ["--pairs", "el.tsv"])


@case
def probe_pairs_language_twice(c):
    c.write("el.tsv", "cat\tcat\n")
    return Case(_probe(c, "el=el.tsv", "el=el.tsv"), ["--pairs", "el"])


@case
def probe_language_path_traversal(c):
    c.write("el.tsv", "cat\tcat\n")
    return Case(_probe(c, "x/../../../X=el.tsv"), ["--pairs"])


@case
def probe_language_unknown(c):
    c.write("el.tsv", "cat\tcat\n")
    return Case(_probe(c, "thai=el.tsv"), ["--pairs", "thai"])


@case
def probe_cloze_without_gap(c):
    c.write("el.tsv", "cat\tcat\tthe cat sleeps\n")
    return Case(_probe(c, "el=el.tsv", extra=("--task", "cloze")), ["el.tsv", "line 1", "sentence"])


@case
def probe_pivot_layer_out_of_range(c):
    c.write("el.tsv", "cat\tcat\n")
    argv = _probe(c, "el=el.tsv")
    argv[argv.index("--pivot-layer") + 1] = "9"
    return Case(argv, ["--pivot-layer", "9"])


# ------------------------------------------------------------------ model directories


@case
def model_dir_missing(c):
    c.write("el.tsv", "cat\tcat\n")
    argv = _probe(c, "el=el.tsv")
    argv[1] = "no-model-here"
    return Case(argv, ["no-model-here"])


@case
def model_dir_without_config(c):
    c.write("empty-model/README", "nothing\n")
    c.write("el.tsv", "cat\tcat\n")
    argv = _probe(c, "el=el.tsv")
    argv[1] = "empty-model"
    return Case(argv, ["empty-model"])


@case
def model_dir_pickle_only(c):
    import shutil

    shutil.copytree(c.model, c.d / "pickled")
    for f in (c.d / "pickled").glob("*.safetensors"):
        f.unlink()
    c.write("pickled/pytorch_model.bin", b"not really a pickle")
    c.write("el.tsv", "cat\tcat\n")
    argv = _probe(c, "el=el.tsv")
    argv[1] = "pickled"
    return Case(argv, ["pickled", "safetensors"])


@case
def export_unfinished_run(c):
    c.write("run/config.yaml", "model: m\n")
    return Case(["export", "run", "exported"], ["run"])


@case
def export_into_foreign_directory(c):
    import shutil

    shutil.copytree(c.model, c.d / "run" / "model")
    c.write("mine/notes.txt", "keep me\n")
    return Case(["export", "run", "mine"], ["mine", "--force"])


@case
def report_over_its_input(c):
    import shutil

    shutil.copytree(c.model, c.d / "run" / "model")
    c.write("run/config.yaml", "model: m\nmethod: xllama\n")
    return Case(["report", "run", "--out", "run"], ["run"])


@case
def report_over_a_parent(c):
    import shutil

    shutil.copytree(c.model, c.d / "runs" / "a" / "model")
    c.write("runs/a/config.yaml", "model: m\nmethod: xllama\n")
    c.write("runs/unrelated.txt", "keep me\n")
    return Case(["report", "runs/a", "--out", "runs"], ["runs"])


# ------------------------------------------------------------------ command-line arguments


@case
def resume_without_checkpoint(c):
    return Case(["train", c.config(), "--resume"], ["--resume", "checkpoint"])


@case
def demo_unknown_language(c):
    return Case(["demo", "--quick", "--languages", "xx", "--out", "demo"], ["xx"])


@case
def demo_zero_seeds(c):
    return Case(["demo", "--quick", "--seeds", "0", "--out", "demo"], ["--seeds"])


@case
def demo_unknown_method(c):
    return Case(["demo", "--quick", "--methods", "prmo", "--out", "demo"], ["prmo"])


@case
def sweep_alpha_out_of_range(c):
    return Case(["sweep", "--quick", "--alphas", "1.5", "--out", "sweep"], ["1.5"])


@case
def compare_missing_results(c):
    return Case(["compare", "nothing-here"], ["nothing-here"])


@case
def translate_missing_input(c):
    return Case(["translate", "nope.jsonl", "--to", "el", "--out-dir", "tr", "--engine", "toy"], ["nope.jsonl"])


@case
def translate_unknown_language(c):
    c.jsonl("in.jsonl", [{"instruction": "say", "input": "", "output": "the cat"}])
    return Case(["translate", "in.jsonl", "--to", "thai", "--out-dir", "tr", "--engine", "toy"], ["thai"])


@case
def unknown_command(c):
    return Case(["trian", "x.yaml"], ["trian"])


# ------------------------------------------------------------------ the checks


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root``, with a file's size and mtime (what "left on disk" compares; a directory's own
    mtime moves when a command creates and then removes something in it, which leaves nothing behind)."""
    out = {}
    for p in root.rglob("*"):
        if "__pycache__" in p.parts:
            continue
        st = p.lstat()
        out[str(p.relative_to(root))] = ("dir",) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def ctx(tmp_path, tiny_model_dir, monkeypatch, one_thread):
    d = tmp_path / "work" / "in" / "here"   # room above it, to see writes that escape it
    d.mkdir(parents=True)
    monkeypatch.chdir(d)
    return Ctx(d, Path(tiny_model_dir))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, ctx, capsys):
    """The case exits non-zero with a short message naming file/line/field, no traceback, nothing left behind."""
    c = CASES[name](ctx)
    capsys.readouterr()
    before, above = _tree(ctx.d), _tree(ctx.d.parents[1])
    try:
        code = main(c.argv)
    except SystemExit as e:   # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"{name}: exited {code}"
    assert "Traceback" not in err, err
    message = err.strip()
    assert message, f"{name}: no message"
    assert len(message) < MAX_MESSAGE, f"{name}: {len(message)} characters"
    for word in c.names:
        assert word in message, f"{name}: {word!r} not in {message!r}"
    assert _tree(ctx.d) == before, f"{name}: left on disk: {set(_tree(ctx.d)) ^ set(before)}"
    assert _tree(ctx.d.parents[1]) == above, f"{name}: wrote outside its directory"


def test_suite_is_large_enough():
    """The suite holds at least 40 cases across configs, data, parallel and probe files, models and arguments."""
    assert len(CASES) >= 40
