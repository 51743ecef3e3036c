"""No output name built from a language code or other input is written outside its directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pivotune.config import load_config
from pivotune.errors import PivotuneError
from pivotune.io import child_path

PAIRS = "cat\tdog\nhouse\ttree\nred\tblue\nwater\tfood\nbig\tsmall\ngood\tday\nriver\tbird\none\ttwo\n"


def tree(root: Path, skip: Path | None = None) -> set[str]:
    """Every path under ``root`` (relative), leaving out the subtree ``skip``."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath).resolve().is_relative_to(skip.resolve()):
            continue
        out |= {os.path.relpath(os.path.join(dirpath, n), root) for n in dirnames + filenames}
    return out


@pytest.mark.parametrize("parts", [("..",), ("../x",), ("a/b",), ("/etc/passwd",), ("",), (".",), ("a\0b",),
                                   ("ok", "..")])
def test_child_path_refuses_escapes(parts, tmp_path):
    """A part that is not one plain name is refused."""
    with pytest.raises(PivotuneError, match="Refusing to write"):
        child_path(tmp_path, *parts)


def test_child_path_joins_names_and_refuses_a_link_out(tmp_path):
    """Plain names join under the base; a symbolic link inside that leads out is refused."""
    assert child_path(tmp_path, "samples", "x.jsonl") == tmp_path / "samples" / "x.jsonl"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "link").symlink_to(tmp_path)
    with pytest.raises(PivotuneError, match="outside"):
        child_path(tmp_path / "base", "link", "x.png")


def test_prom_probe_refuses_a_traversing_code_from_an_unvalidated_config(tiny_model_dir, tmp_path):
    """A config built without validation naming 'th/../../../../X': the probe refuses, nothing changes above RUN."""
    from pivotune.models.loading import load_model, load_tokenizer
    from pivotune.methods.prom.regulation import regulate

    evil = "th/../../../../X"
    pairs = tmp_path / "th.tsv"
    pairs.write_text(PAIRS)
    run_dir = tmp_path / "a" / "b" / "run"
    good = load_config(base={"model": str(tiny_model_dir), "method": "prom", "languages": ["th"],
                             "output_dir": str(run_dir), "prom": {"pivot_layer": 1, "probe_pairs": {"th": str(pairs)}}})
    bypassed = good.model_copy(update={"languages": [evil], "prom": good.prom.model_copy(
        update={"probe_pairs": {evil: str(pairs)}, "probe_names": {evil: "X"}})})
    before = tree(tmp_path)
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    with pytest.raises(PivotuneError, match="Refusing to write"):
        regulate(bypassed, model, tok, run_dir)
    assert tree(tmp_path, skip=run_dir) == before


def test_translate_file_refuses_a_traversing_code(tmp_path):
    """translate_file called from Python with 'el/../../x' writes nothing anywhere."""
    from pivotune.translate.backends import ToyLexiconTranslator
    from pivotune.translate.pipeline import translate_file

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "1", "instruction": "the cat", "output": "a dog"}\n')
    before = tree(tmp_path)
    with pytest.raises(PivotuneError, match="Refusing to write"):
        translate_file(src, tmp_path / "a" / "o", ["el/../../x"], ToyLexiconTranslator(0))
    assert tree(tmp_path) == before
