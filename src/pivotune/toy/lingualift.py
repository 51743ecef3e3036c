"""LinguaLIFT in the toy world: the world's exact lexicons as MUSE files, the locally trained multilingual
encoder, the same run road a real run takes (a config, ``pivotune.train``), and toy scoring of the bridge.

Stage 1 code-switches the world's English instructions with the lexicons of every target language; stage 2
trains the LM on the English instructions alone, so every target-language score measures transfer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data.codeswitch import write_lexicon
from ..io import child_path, write_json_atomic
from .encoder import EncoderConfig, get_or_build_encoder
from .language import lexicon
from .model import ToyPaths

log = logging.getLogger(__name__)


def write_toy_lexicons(paths: ToyPaths, languages: list[str], out_dir: Path) -> dict[str, str]:
    """``out_dir/en-LANG.txt`` per language in the MUSE format; the world's lexicon is exact (a bijection)."""
    files = {}
    for lang in languages:
        f = child_path(out_dir, f"en-{lang}.txt")
        write_lexicon(f, sorted(lexicon(lang, paths.config.seed).items()))
        files[lang] = str(f)
    return files


def lingualift_run_config(paths: ToyPaths, encoder_dir: Path, languages: list[str], seed: int, out: Path,
                          steps: int, *, stage1_steps: int | None = None, batch_size: int = 16, lr: float = 1e-3,
                          stage1_lr: float = 2e-3, max_seq_len: int = 320, switch_ratio: float = 0.5) -> dict:
    """The run config a user would write for LinguaLIFT in the toy world (English data, lexicons, encoder)."""
    return {
        "model": str(paths.base), "method": "lingualift", "languages": list(languages), "seed": seed,
        "data": [{"path": str(paths.world / "instructions" / "en.jsonl"), "role": "en", "lang": "en"}],
        "max_seq_len": max_seq_len, "output_dir": str(out),
        "lingualift": {"encoder": str(encoder_dir), "lexicons": write_toy_lexicons(paths, languages, out / "lexicons"),
                       "switch_ratio": switch_ratio, "stage1_lr": stage1_lr, "stage1_max_steps": stage1_steps or steps,
                       "max_encoder_len": max_seq_len},
        "train": {"lr": lr, "max_steps": steps, "per_device_batch_size": batch_size, "grad_accum": 1,
                  "warmup_ratio": 0.05, "scheduler": "cosine", "weight_decay": 0.0,
                  "logging_steps": max(1, steps // 10), "progress_bar": False},
    }


def train_lingualift_toy(paths: ToyPaths, out_dir: str | Path, steps: int, *, languages: list[str] | None = None,
                         seed: int = 0, stage1_steps: int | None = None, eval_limit: int | None = None,
                         encoder_config: EncoderConfig | None = None, save_checkpoints: bool = False,
                         overwrite: bool = False, **run_options) -> dict:
    """Train LinguaLIFT on the toy world and score it like the other methods.

    ``steps``: stage-2 optimizer steps (stage 1 takes ``stage1_steps``, default the same); ``run_options`` go
    to :func:`lingualift_run_config` (batch_size, lr, stage1_lr, max_seq_len, switch_ratio). Returns
    ``{"results": the harness results, "headline": per-language percentages, "model_dir", "timings"}``;
    writes ``out_dir/eval.json`` and the run directory (``out_dir/model`` is the bridge; ``overwrite``: an earlier
    run there is replaced, see :func:`pivotune.train.run.train`).
    """
    from ..config import load_config
    from ..eval.toy_tasks import evaluate_toy_with_harness, toy_headline
    from ..train.run import train

    out = Path(out_dir)
    languages = list(languages or paths.config.languages)
    t0 = time.perf_counter()
    encoder_dir = get_or_build_encoder(paths, encoder_config)
    t1 = time.perf_counter()
    raw = lingualift_run_config(paths, encoder_dir, languages, seed, out, steps, stage1_steps=stage1_steps,
                                **run_options)
    train(load_config(base=raw), save_checkpoints=save_checkpoints, overwrite=overwrite)
    t2 = time.perf_counter()
    # the same harness path as every method (the bridge goes through its own harness LM class)
    results = evaluate_toy_with_harness(out / "model", paths.world, ["en", *languages], limit=eval_limit,
                                        out_dir=out)
    write_json_atomic(out / "eval.json", results)
    timings = {"encoder_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1),
               "eval_s": round(time.perf_counter() - t2, 1)}
    log.info("lingualift: encoder %.0fs, trained in %.0fs, evaluated in %.0fs", *timings.values())
    return {"results": results, "headline": toy_headline(results), "model_dir": str(out / "model"), "timings": timings}
