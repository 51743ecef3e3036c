"""The toy world's sets through lm-evaluation-harness give the toy scorer's generations and numbers."""

from __future__ import annotations

import pytest

from pivotune.eval.toy_scoring import evaluate_toy, headline
from pivotune.eval.toy_tasks import evaluate_toy_with_harness, toy_headline


def test_harness_path_matches_toy_scorer(quick_paths, one_thread, tmp_path):
    langs, limit = ["en", "th"], 6
    res = evaluate_toy_with_harness(str(quick_paths.base), quick_paths.world, langs, limit=limit,
                                    log_samples=True, out_dir=tmp_path)
    own = evaluate_toy(str(quick_paths.base), None, quick_paths.world, langs=langs, limit=limit,
                       return_predictions=True)
    for lang in langs:
        for task in ("mgsm", "xquad"):
            samples = sorted(res["samples"][f"pivotune_toy_{task}_{lang}"], key=lambda s: s["doc_id"])
            assert [s["filtered_resps"][0].strip() for s in samples] == own[lang][task]["predictions"]
    ours, theirs = toy_headline(res), headline(own)
    assert ours.keys() == theirs.keys()
    for lang in langs:
        assert ours[lang] == pytest.approx(theirs[lang])
    assert (tmp_path / "results.json").is_file()
