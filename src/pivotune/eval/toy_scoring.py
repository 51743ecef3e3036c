"""Evaluate a causal LM on the toy world's MGSM and XQuAD sets, per language.

Prompts are Alpaca prompts (``alpaca_prompt(instruction, input)``) whose
instruction is the toy eval wording translated exactly into the item's language
(stored in each eval row). Generation is greedy, batched with left padding, and
stops at EOS, a newline, or ``max_new_tokens``. Scoring is in
:mod:`pivotune.eval.metrics` (pure, reusable by an lm-eval task).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from ..data.templates import alpaca_prompt
from .metrics import mean, mgsm_correct, squad_scores

TASKS = ("mgsm", "xquad")
MAX_NEW_TOKENS = {"mgsm": 24, "xquad": 12}


def load_eval(world_dir: str | Path, task: str, lang: str, limit: int | None = None) -> list[dict]:
    path = Path(world_dir) / "eval" / f"{task}_{lang}.jsonl"
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit] if limit else rows


def prompt_of(row: dict) -> str:
    return alpaca_prompt(row["instruction"], row["input"])


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 32) -> list[str]:
    """Greedy continuations of ``prompts`` (text after the prompt, cut at the first newline)."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    # Longest first so each batch pads little; results go back in input order.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = text.split("\n")[0].strip()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def score(task: str, lang: str, rows: Sequence[dict], predictions: Sequence[str]) -> dict[str, float]:
    """Aggregate metrics of one task in one language (percentages are left to the caller)."""
    if task == "mgsm":
        return {"accuracy": mean(mgsm_correct(p, r["answer_number"]) for p, r in zip(predictions, rows)),
                "n": len(rows)}
    if task == "xquad":
        per = [squad_scores(p, r["answers"]["text"], lang) for p, r in zip(predictions, rows)]
        return {"exact_match": mean(s["exact_match"] for s in per), "f1": mean(s["f1"] for s in per),
                "n": len(rows)}
    raise ValueError(f"unknown toy task {task!r}; known: {TASKS}")


def load_model(model_dir: str | Path):
    """(model, tokenizer) from a model directory, through pivotune's one loader (clear errors)."""
    if (Path(model_dir) / "bridge.json").is_file():   # a LinguaLIFT bridge: encoder + alignment layer + LM
        from ..models.bridge import BridgeTokenizer, LinguaLiftModel

        bridge = LinguaLiftModel.from_pretrained(model_dir)
        return bridge, BridgeTokenizer(bridge.encoder_tokenizer, bridge.lm_tokenizer)
    from ..models.loading import load_model as load_lm, load_tokenizer

    return load_lm(str(model_dir)), load_tokenizer(str(model_dir))


def evaluate_toy(model, tokenizer, world_dir: str | Path, langs: Sequence[str] | None = None,
                 tasks: Sequence[str] = TASKS, limit: int | None = None, batch_size: int = 32,
                 return_predictions: bool = False) -> dict:
    """``{lang: {task: metrics}}`` for every language of the world (or ``langs``).

    ``model`` may be a loaded model (then ``tokenizer`` is required) or a model
    directory (``tokenizer`` ignored). With ``return_predictions`` each metrics
    dict also carries ``predictions`` (list of strings, in file order).
    """
    if isinstance(model, (str, Path)):
        model, tokenizer = load_model(model)
    if langs is None:
        langs = json.loads((Path(world_dir) / "world.json").read_text(encoding="utf-8"))["languages"]
    results: dict = {}
    for lang in langs:
        results[lang] = {}
        for task in tasks:
            t0 = time.perf_counter()
            rows = load_eval(world_dir, task, lang, limit)
            preds = generate(model, tokenizer, [prompt_of(r) for r in rows], MAX_NEW_TOKENS[task], batch_size)
            metrics = score(task, lang, rows, preds)
            metrics["seconds"] = time.perf_counter() - t0
            if return_predictions:
                metrics["predictions"] = preds
            results[lang][task] = metrics
    return results


def headline(results: dict) -> dict[str, dict[str, float]]:
    """``{lang: {"mgsm": acc, "xquad_em": em, "xquad_f1": f1}}`` in percent, for tables."""
    out = {}
    for lang, tasks in results.items():
        row = {}
        if "mgsm" in tasks:
            row["mgsm"] = 100 * tasks["mgsm"]["accuracy"]
        if "xquad" in tasks:
            row["xquad_em"] = 100 * tasks["xquad"]["exact_match"]
            row["xquad_f1"] = 100 * tasks["xquad"]["f1"]
        out[lang] = row
    return out
