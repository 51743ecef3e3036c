"""Pure scoring functions: SQuAD-style EM/F1 and MGSM's last-number accuracy.

Normalisation (SQuAD's, made language-aware in one place): lower-case, drop
ASCII punctuation, drop the English articles a/an/the **only when the
language is English** (removing them elsewhere could delete real words of
another language), collapse whitespace, split on whitespace. For a language
written without spaces (real Thai) whitespace tokens make F1 collapse towards
EM, as in lm-eval's XQuAD; the toy languages keep spaces between words, so F1
stays meaningful there.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_answer(text: str, lang: str = "en") -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    if lang == "en":
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str, lang: str = "en") -> float:
    return float(normalize_answer(prediction, lang) == normalize_answer(gold, lang))


def f1(prediction: str, gold: str, lang: str = "en") -> float:
    pred = normalize_answer(prediction, lang).split()
    ref = normalize_answer(gold, lang).split()
    if not pred or not ref:
        # SQuAD's convention: both empty counts as a match, one empty as a miss.
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric, prediction: str, golds: Sequence[str], lang: str = "en") -> float:
    """Max of ``metric`` over the gold answers (SQuAD); 0 with no gold (unanswerable items count as misses)."""
    return max((metric(prediction, g, lang) for g in golds), default=0.0)


def squad_scores(prediction: str, golds: Sequence[str], lang: str = "en") -> dict[str, float]:
    return {"exact_match": best_over_golds(exact_match, prediction, golds, lang),
            "f1": best_over_golds(f1, prediction, golds, lang)}


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (digits, optional sign, thousands commas, decimals)."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def mgsm_correct(prediction: str, answer_number: float) -> float:
    """1.0 when the last number of the generation equals the gold answer."""
    got = last_number(prediction)
    return float(got is not None and abs(got - float(answer_number)) < 1e-6)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
