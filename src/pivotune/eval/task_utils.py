"""Functions our harness task YAMLs call (``!function pivotune.eval.task_utils.NAME``).

Scoring reuses reference functions wherever one exists:

- MLQA: the harness's own port of the official MLQA script
  (``lm_eval.tasks.mlqa.utils``), re-exported unchanged.
- XQuAD: the harness scores it with ``transformers``' SQuAD v2 functions
  (``compute_exact``/``compute_f1`` on the first gold answer), but that module
  is gone from transformers 5, so the built-in ``xquad_*`` tasks fail to load.
  Our ``pivotune_xquad_*`` variants call :func:`pivotune.eval.metrics.exact_match`
  / :func:`~pivotune.eval.metrics.f1` with ``lang="en"``, which *is* the SQuAD
  normalisation (lower-case, ASCII punctuation, English articles, whitespace),
  applied to every language exactly as the harness does.
- IndicQA: MLQA's normalisation with its Hindi rules (Unicode punctuation, so
  the danda "।" goes; no article removal; whitespace tokens), which fit every
  IndicQA language; the reference rejects language codes it does not list, so
  we call it with ``"hi"``. Unanswerable items (no non-empty gold answer) score
  1 only for an empty prediction, SQuAD v2's convention, where MLQA's script
  would give 0 (or fail on an empty list).
- MGSM: the harness's own task files and number-extracting filters.
- Toy tasks: :mod:`pivotune.eval.metrics`, the same functions the toy world's
  own scorer uses, so both paths give the same numbers.
"""

from __future__ import annotations

from lm_eval.tasks.mlqa import utils as _mlqa

from ..data.templates import alpaca_prompt
from .metrics import exact_match, f1, mgsm_correct, squad_scores

# -- MLQA (reference functions, unchanged) ---------------------------------------------------------
mlqa_process_docs = _mlqa.process_docs
mlqa_results_ar = _mlqa.process_results_ar


# -- XQuAD (SQuAD v2 scoring on the first gold answer, as the harness's xquad task) ----------------

def xquad_results(doc: dict, results: list[str]) -> dict[str, float]:
    gold, pred = doc["answers"]["text"][0], results[0]
    return {"exact_match": exact_match(pred, gold, "en"), "f1": f1(pred, gold, "en")}


# -- IndicQA -----------------------------------------------------------------------------------------

INDIC_NORMALISATION = "hi"   # MLQA rules without articles; see the module docstring


def indicqa_scores(prediction: str, golds: list[str]) -> dict[str, float]:
    """SQuAD-style EM/F1 (max over golds) with MLQA's Indic-safe normalisation; empty golds = unanswerable."""
    prediction = prediction.strip()

    def norm(text: str) -> str:
        return _mlqa.normalize_answer(text, INDIC_NORMALISATION)

    golds = [g for g in golds if norm(g)]
    if not golds:
        hit = float(norm(prediction) == "")
        return {"exact_match": hit, "f1": hit}
    em = _mlqa.metric_max_over_ground_truths(_mlqa.exact_match_score, prediction, golds, INDIC_NORMALISATION)
    f = _mlqa.metric_max_over_ground_truths(_mlqa.f1_score, prediction, golds, INDIC_NORMALISATION)
    return {"exact_match": float(em), "f1": float(f)}


def indicqa_results(doc: dict, results: list[str]) -> dict[str, float]:
    return indicqa_scores(results[0], list(doc["answers"]["text"]))


# -- toy world ---------------------------------------------------------------------------------------

def toy_doc_to_text(doc: dict) -> str:
    """The Alpaca prompt the toy world's own scorer uses (instruction in the item's language)."""
    return alpaca_prompt(doc["instruction"], doc["input"])


def toy_mgsm_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"accuracy": mgsm_correct(results[0].strip(), doc["answer_number"])}


def toy_xquad_results(doc: dict, results: list[str]) -> dict[str, float]:
    return squad_scores(results[0].strip(), doc["answers"]["text"], doc["lang"])
