"""LinguaLIFT in the toy world: the world's exact lexicons as MUSE files, the locally trained multilingual
encoder, and the demo's run config changed for them (:data:`pivotune.methods.base.DemoEntry.adjust`).

Stage 1 code-switches the world's English instructions with the lexicons of every target language; stage 2
trains the LM on the English instructions alone, so every target-language score measures transfer. Both stages
together take the demo's steps, so the comparison stays compute-matched.
"""

from __future__ import annotations

from pathlib import Path

from ...io import child_path
from ..base import ToyRun
from .codeswitch import write_lexicon


def write_toy_lexicons(paths, languages: list[str], out_dir: Path) -> dict[str, str]:
    """``out_dir/en-LANG.txt`` per language in the MUSE format; the world's lexicon is exact (a bijection)."""
    from ...toy.language import lexicon

    files = {}
    for lang in languages:
        f = child_path(out_dir, f"en-{lang}.txt")
        write_lexicon(f, sorted(lexicon(lang, paths.config.seed).items()))
        files[lang] = str(f)
    return files


def toy_settings(paths, languages: list[str], encoder_dir: Path, out: Path, *, stage1_steps: int,
                 max_seq_len: int) -> dict:
    """The ``lingualift`` section for the toy world: its encoder and lexicons (written into ``out``)."""
    return {"encoder": str(encoder_dir), "lexicons": write_toy_lexicons(paths, languages, out / "lexicons"),
            "switch_ratio": 0.5, "stage1_lr": 2e-3, "stage1_max_steps": stage1_steps, "max_encoder_len": max_seq_len}


def demo_config(raw: dict, toy: ToyRun) -> dict:
    """The demo's run config for LinguaLIFT: English data only, the toy encoder (trained once, then cached), and
    the demo's steps split between the stages."""
    from ...toy.encoder import get_or_build_encoder

    stage1 = toy.steps // 2
    stage2 = toy.steps - stage1
    english = [d for d in raw["data"] if d["role"] == "en"]
    return {**raw, "data": english,
            "train": {**raw["train"], "max_steps": stage2, "logging_steps": max(1, stage2 // 10)},
            "lingualift": toy_settings(toy.paths, toy.languages, get_or_build_encoder(toy.paths),
                                       Path(raw["output_dir"]), stage1_steps=stage1, max_seq_len=raw["max_seq_len"])}
