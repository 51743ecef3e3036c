"""The loss per role and per language: the logged means equal a naive per-row cross-entropy over the same rows,
they reach the log history and run.json as a series, and cost no forward of their own."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from pivotune.config import load_config
from pivotune.data.records import ROLE_IDS, Sample
from pivotune.models.pivot_head import PivotedModel
from pivotune.objectives.base import RowLosses
from pivotune.train.losses import LossBreakdown, loss_series
from pivotune.train.run import train
from pivotune.train.trainer import PivotuneTrainer

pytestmark = pytest.mark.usefixtures("one_thread")

LANGS = ["el", "th"]
ROWS = [(role, lang) for role, lang in [("en", "en"), ("tgt", "el"), ("mt", "el"), ("tgt", "th"), ("en", "en"),
                                        ("mt", "th"), ("tgt", "el"), ("en", "en"), ("tgt", "th"), ("mt", "el")]]
SAMPLES = [Sample(instruction=f"Say {i}.", output=" ".join(["the cat", "a dog", "red tree"][i % 3:] * (i % 4 + 1)),
                  role=role, lang=lang, weight=1.0 + 0.5 * (i % 3)) for i, (role, lang) in enumerate(ROWS)]
LOGGING_STEPS = 2


def _cfg(model_dir, out, method, **extra):
    return load_config(base={
        "model": str(model_dir), "method": method, "languages": LANGS, "output_dir": str(out), "max_seq_len": 128,
        "train": {"lr": 1e-2, "max_steps": 4, "per_device_batch_size": 3, "grad_accum": 2, "warmup_ratio": 0.0,
                  "scheduler": "constant", "logging_steps": LOGGING_STEPS, "progress_bar": False}, **extra})


def _naive_rows(model, batch) -> list[tuple[int, int, float, int]]:
    """(role, language id, Σ CE, tokens) of every row: the row alone through the LM, ``F.cross_entropy`` on its
    next-token targets; PROM's English rows through hidden_states[n], the norm and the pivot head's Linear, with
    its label smoothing."""
    pivoted = isinstance(model, PivotedModel)
    lm = model.lm if pivoted else model
    out = []
    with torch.no_grad():
        for i in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][i].sum())
            ids, labels = batch["input_ids"][i:i + 1, :n], batch["labels"][i, 1:n]
            res = lm(input_ids=ids, output_hidden_states=True, use_cache=False)
            logits, alpha = res.logits[0], 0.0
            if pivoted and int(batch["roles"][i]) == ROLE_IDS["en"]:
                head, h = model.pivot_head, res.hidden_states[model.pivot_layer][0]
                normed = head.norm(h) if head.kind == "copy_norm" else lm.model.norm(h)
                logits = lm.lm_head(normed) if head.kind == "tied" else head.proj(normed)
                alpha = model.meta["label_smoothing"]
            ce = F.cross_entropy(logits[:-1].float(), labels, ignore_index=-100, reduction="sum",
                                 label_smoothing=alpha)
            out.append((int(batch["roles"][i]), int(batch["langs"][i]), float(ce), int(labels.ne(-100).sum())))
    return out


def _recording(monkeypatch):
    """Records, for every training micro-batch, the optimizer steps done before it and its naive row losses."""
    seen: list[tuple[int, list]] = []
    original = PivotuneTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        if self.model.training:
            seen.append((self.state.global_step, _naive_rows(self.accelerator.unwrap_model(model), inputs)))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(PivotuneTrainer, "compute_loss", compute_loss)
    return seen


def _expected(seen, step: int) -> dict[str, float]:
    """Σ CE / tokens of each role and language over the micro-batches logged at ``step``."""
    role_names, lang_names = {i: r for r, i in ROLE_IDS.items()}, ["en", *LANGS]
    sums: dict[str, list] = {}
    for done, rows in seen:
        for role, lang, ce, tokens in rows if step - LOGGING_STEPS <= done < step else []:
            for key in (f"loss/role/{role_names[role]}", f"loss/lang/{lang_names[lang]}"):
                sums.setdefault(key, [0.0, 0])
                sums[key][0] += ce
                sums[key][1] += tokens
    return {key: ce / tokens for key, (ce, tokens) in sums.items()}


@pytest.mark.parametrize("method,extra", [
    ("xllama", {}),
    ("prom", {"prom": {"pivot_layer": 1, "lambda_per_language": {"el": 0.5, "th": 0.5}, "label_smoothing": 0.1,
                       "chunk_size": 5}})])
def test_logged_losses_per_role_and_language_equal_a_naive_loop(method, extra, tiny_model_dir, tmp_path,
                                                                 monkeypatch):
    """Every logging step's loss/role/* and loss/lang/* equal Σ CE / tokens of a per-row F.cross_entropy loop over
    the rows trained since the last log (PROM's English rows: the pivot head's label-smoothed CE)."""
    seen = _recording(monkeypatch)
    trainer = train(_cfg(tiny_model_dir, tmp_path / "run", method, **extra), SAMPLES, save_checkpoints=False)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [2, 4]
    for h in logged:
        expected = _expected(seen, h["step"])
        got = {k: v for k, v in h.items() if k.startswith("loss/")}
        assert got.keys() == expected.keys() and "loss/role/en" in got and "loss/lang/th" in got
        torch.testing.assert_close(torch.tensor([got[k] for k in expected], dtype=torch.float64),
                                   torch.tensor(list(expected.values()), dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_run_json_holds_the_series_and_no_extra_forward_runs(tiny_model_dir, tmp_path, monkeypatch):
    """run.json's ``losses`` are the log history's per-role and per-language values by step, and the model runs
    one forward per micro-batch, as without them."""
    from transformers import LlamaForCausalLM

    calls = []
    forward = LlamaForCausalLM.forward
    monkeypatch.setattr(LlamaForCausalLM, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    trainer = train(_cfg(tiny_model_dir, tmp_path / "run", "xllama"), SAMPLES, save_checkpoints=False)
    assert len(calls) == 4 * 2   # 4 optimizer steps of 2 micro-batches
    series = json.loads((tmp_path / "run" / "run.json").read_text())["losses"]
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert series["steps"] == [2, 4] and series["loss"] == [h["loss"] for h in logged]
    assert list(series["role"]) == ["en", "tgt", "mt"] and list(series["lang"]) == ["en", *LANGS]
    assert series["lang"]["el"] == [h["loss/lang/el"] for h in logged]


def test_breakdown_counts_unknown_languages_by_role_only_and_starts_again():
    """A row of no listed language counts for its role only; take() gives per-token means once, then nothing."""
    b = LossBreakdown({"en": 0, "el": 1})
    b.add(RowLosses(torch.tensor([6.0, 2.0, 0.0]), torch.tensor([3, 1, 0])), torch.tensor([0, 1, 1]),
          torch.tensor([0, -1, 1]))
    b.add(RowLosses(torch.tensor([4.0]), torch.tensor([2])), torch.tensor([1]), torch.tensor([1]))
    assert b.take() == {"loss/role/en": 2.0, "loss/role/tgt": 2.0, "loss/lang/en": 2.0, "loss/lang/el": 2.0}
    assert b.take() == {}


def test_series_is_none_without_a_breakdown_and_marks_missing_values():
    """A history without per-role keys has no series; a role absent at a step reads None there."""
    assert loss_series([{"loss": 1.0, "step": 1}, {"train_loss": 1.0, "step": 1}]) is None
    got = loss_series([{"loss": 2.0, "step": 1, "loss/role/en": 2.0}, {"loss": 1.0, "step": 2, "loss/role/tgt": 1.5},
                       {"interference/en~tgt": 0.1, "step": 2}])
    assert got == {"steps": [1, 2], "loss": [2.0, 1.0], "role": {"en": [2.0, None], "tgt": [None, 1.5]}, "lang": {}}
