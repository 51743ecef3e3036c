"""Golden toy losses: the first training losses of every registered method on the quick toy world, pinned.

Each method trains 5 optimizer steps (batch 8, one thread, fixed seeds) from the quick world's cached base model
with the demo's run config for it, and every logged loss (one per step; one list per training stage) must equal
the value in ``golden_losses.json`` to a relative 1e-5. A refactor that changes a number fails here; a library
release that reorders a float32 reduction moves them by about 5e-7 (transformers 5.24 to 5.25 did, on LinguaLIFT's
later steps), which the tolerance absorbs.

The values belong to the toy world's content and to the methods' definitions. When either changes on purpose
(a new world, a corrected loss, a new method), rewrite them deliberately and review the diff::

    PIVOTUNE_REGEN_GOLDEN=1 pytest tests/toy/test_golden_losses.py

(regeneration rewrites the entries of the methods it runs and passes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from transformers import TrainerCallback

from pivotune.config import load_config
from pivotune.methods import METHODS
from pivotune.toy.demo import DemoPlan, run_config
from pivotune.train.run import train
from pivotune.train.trainer import reporting_to

GOLDEN = Path(__file__).with_name("golden_losses.json")
REGEN = os.environ.get("PIVOTUNE_REGEN_GOLDEN") == "1"
STEPS = 5
PLAN = DemoPlan(steps=STEPS, batch_size=8, lr=1e-3, max_seq_len=160)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Losses(TrainerCallback):
    """Every trainer's logged losses, one list per trainer (a two-stage method gives two)."""

    def __init__(self):
        self.runs: list[list[float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.runs.append([])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.runs[-1].append(float(logs["loss"]))


@pytest.fixture(scope="module")
def random_encoder(quick_paths, tmp_path_factory):
    """A random-init BERT encoder reading with the toy tokenizer: LinguaLIFT's bridge without minutes of MLM."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    d = tmp_path_factory.mktemp("toy-encoder")
    tok = AutoTokenizer.from_pretrained(str(quick_paths.base))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=96, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
              ).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def golden_config(method: str, paths, encoder_dir: Path, out: Path, monkeypatch) -> dict:
    """The demo's run config for ``method``, cut to :data:`STEPS` steps logged one by one."""
    languages = list(paths.config.languages)
    monkeypatch.setattr("pivotune.toy.encoder.get_or_build_encoder", lambda *a, **k: encoder_dir)
    raw = run_config(paths, method, languages, 0, out, PLAN)
    raw.pop("interference", None)   # measured without changing training; not needed for the losses
    if method == "lingualift":   # a random encoder, and both stages STEPS long
        from pivotune.methods.lingualift.demo import toy_settings

        raw["train"]["max_steps"] = STEPS
        raw["lingualift"] = toy_settings(paths, languages, encoder_dir, out, stage1_steps=STEPS,
                                         max_seq_len=PLAN.max_seq_len)
    raw["train"]["logging_steps"] = 1
    return raw


@pytest.mark.parametrize("method", list(METHODS))
def test_first_losses_are_pinned(method, quick_paths, random_encoder, tmp_path, monkeypatch):
    """The method's first 5 losses on the quick toy world equal the pinned ones to a relative 1e-5."""
    raw = golden_config(method, quick_paths, random_encoder, tmp_path / method, monkeypatch)
    seen = _Losses()
    with reporting_to(seen):
        train(load_config(base=raw), save_checkpoints=False)
    assert seen.runs and all(len(run) == STEPS for run in seen.runs), seen.runs
    pinned = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}
    if REGEN:
        pinned[method] = seen.runs
        lines = [f" {json.dumps(m)}: {json.dumps(runs)}" for m, runs in sorted(pinned.items())]
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
        return
    assert method in pinned, f"no golden losses for {method}: regenerate them (see this module's docstring)"
    assert len(seen.runs) == len(pinned[method])
    for got, want in zip(seen.runs, pinned[method]):
        assert got == pytest.approx(want, rel=1e-5, abs=0)
