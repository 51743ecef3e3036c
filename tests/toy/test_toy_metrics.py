"""Toy scoring checked against lm-eval's own SQuAD-style reference functions and worked examples."""

from __future__ import annotations

import pytest

from pivotune.eval.metrics import exact_match, f1, last_number, mgsm_correct, normalize_answer, squad_scores
from pivotune.eval.toy_scoring import score

CASES = [
    ("The cat sat.", "a cat sat down"),
    ("Rome", "rome"),
    ("in rome , italy", "rome"),
    ("an apple an apple", "apple"),
    ("", "rome"),
    ("baker!", "the baker"),
    ("red blue red", "red red green"),
    ("x y z", "a b c"),
]


def test_matches_lm_eval_reference_for_english():
    mlqa = pytest.importorskip("lm_eval.tasks.mlqa.utils")
    for pred, gold in CASES:
        assert f1(pred, gold, "en") == pytest.approx(mlqa.f1_score(pred, gold, "en")), (pred, gold)
        assert exact_match(pred, gold, "en") == float(mlqa.exact_match_score(pred, gold, "en")), (pred, gold)


def test_hand_worked_f1():
    # "cat sat" vs "cat sat down" after dropping "the"/"a": precision 2/2, recall 2/3 -> F1 0.8
    assert f1("The cat sat.", "a cat sat down", "en") == pytest.approx(0.8)
    # shared multiset {red, red}: precision 2/3, recall 2/3
    assert f1("red blue red", "red red green", "en") == pytest.approx(2 / 3)
    assert f1("", "", "en") == 1.0 and f1("", "x", "en") == 0.0


def test_articles_are_removed_only_for_english():
    assert normalize_answer("The Baker", "en") == "baker"
    assert normalize_answer("The Baker", "el") == "the baker"
    assert normalize_answer("Μοζαι , κιμου!", "el") == "μοζαι κιμου"
    assert exact_match("Μοζαι.", "μοζαι", "el") == 1.0


def test_last_number_and_mgsm():
    assert last_number("3 plus 4 is 7 .") == 7
    assert last_number("she has 1,250 coins and -3.5 more") == -3.5
    assert last_number("no digits") is None
    assert mgsm_correct("3 plus 4 is 7 .", 7) == 1.0
    assert mgsm_correct("7 then 8", 7) == 0.0
    assert mgsm_correct("", 7) == 0.0


def test_score_aggregates_per_task():
    rows = [{"answers": {"text": ["rome"], "answer_start": [0]}}, {"answers": {"text": ["baker"], "answer_start": [0]}}]
    got = score("xquad", "en", rows, ["Rome", "a good baker"])
    assert got["exact_match"] == 0.5 and got["f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert squad_scores("x", ["y", "x"], "en") == {"exact_match": 1.0, "f1": 1.0}
    got = score("mgsm", "th", [{"answer_number": 12}, {"answer_number": 5}], ["6 times 2 is 12 .", "4"])
    assert got["accuracy"] == 0.5
