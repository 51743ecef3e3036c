"""Gradient interference during training: a Trainer callback (config section ``interference``).

Every ``interference.every`` optimizer steps, and once before the first, it measures the gradient cosine
of each configured source pair on the same K batch pairs (:mod:`pivotune.analysis.interference`), writes
``RUN/interference.json`` (atomically, after every measurement, so an interrupted run keeps its curve)
and logs the mean and sd through the Trainer (log history, run.json, TensorBoard/W&B). The measurement
uses ``torch.autograd.grad``, eval mode and a forked RNG, so training is exactly unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from ..analysis.interference import (
    draw_batches,
    language_model,
    measure_interference,
    resolve_blocks,
    source_items,
)
from ..io import write_json_atomic
from ..models.arch import arch_info
from ..models.pivot_head import resolve_pivot_layer

log = logging.getLogger(__name__)
FILE = "interference.json"


def pair_label(a: str, b: str) -> str:
    return f"{a}~{b}"


class InterferenceCallback(TrainerCallback):
    """Measures gradient interference at step 0 and every ``every`` steps; see the module docstring.

    ``pairs``: ``{label: (batches_a, batches_b)}``; ``blocks``: the parameter set; ``profile_blocks``:
    blocks measured for the per-block profile (empty: none).
    """

    def __init__(self, trainer, objective, pairs: dict[str, tuple[list, list]], *, every: int, blocks: list[int],
                 out_path: Path, meta: dict, profile_blocks: list[int] | None = None):
        self.trainer = trainer
        self.objective = objective
        self.pairs = pairs
        self.every = every
        self.blocks = blocks
        self.profile_blocks = list(profile_blocks or [])
        self.out_path = Path(out_path)
        self.meta = meta
        self.records: list[dict] = []
        self._warned: set[str] = set()

    def measure(self, model, step: int) -> dict[str, dict]:
        measured = sorted(set(self.blocks) | set(self.profile_blocks))
        logs, out = {}, {}
        for label, (ba, bb) in self.pairs.items():
            t0 = time.perf_counter()
            res = measure_interference(model, self.objective, ba, bb, measured)
            rec = {"step": step, "pair": label, **res.summary(self.blocks),
                   "seconds": round(time.perf_counter() - t0, 3)}
            if self.profile_blocks:
                rec["profile"] = {str(b): res.summary([b]) for b in self.profile_blocks}
            self.records.append(rec)
            out[label] = rec
            if rec["undefined"] and label not in self._warned:
                self._warned.add(label)
                log.warning("interference %s: %d of %d gradient pairs are zero on blocks %s (PROM's English rows "
                            "never reach blocks above its pivot layer), so the cosine is undefined there; "
                            "interference.layers=pivot measures the block they do reach.",
                            label, rec["undefined"], rec["pairs"], self.blocks)
            if rec["mean"] is not None:
                logs[f"interference/{label}"] = rec["mean"]
                logs[f"interference/{label}/sd"] = rec["sd"]
        write_json_atomic(self.out_path, {**self.meta, "records": self.records})
        if logs:
            self.trainer.log(logs)
        return out

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if state.global_step and self.out_path.exists():   # resumed: keep the curve up to the checkpoint
            old = json.loads(self.out_path.read_text(encoding="utf-8")).get("records", [])
            self.records = [r for r in old if r["step"] < state.global_step]
        self.measure(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and state.global_step % self.every == 0:
            should_log = control.should_log   # logging resets it: the step's training loss is still to be logged
            self.measure(model, state.global_step)
            control.should_log = should_log


def attach_interference(trainer, cfg, encoded, lang_ids: dict[str, int], pad_token_id: int,
                        run_dir: Path) -> InterferenceCallback | None:
    """Add the callback to ``trainer`` when ``cfg.interference.every`` > 0 (a bad source fails here, before
    training)."""
    s = cfg.interference
    if not s.every:
        return None
    num_layers = arch_info(language_model(trainer.model)).num_layers
    pivot = resolve_pivot_layer(cfg.prom.pivot_layer, num_layers)   # PROM's pivot layer, for every method
    blocks = resolve_blocks(s.layers, num_layers, pivot)
    size = s.batch_size or cfg.train.per_device_batch_size
    pairs = {}
    for a, b in s.pairs:
        draws = [draw_batches(source_items(encoded, spec, lang_ids), s.batches, size, seed=s.seed,
                              pad_token_id=pad_token_id, tag=f"{side}:{spec}") for side, spec in (("a", a), ("b", b))]
        pairs[pair_label(a, b)] = tuple(draws)
    meta = {"method": cfg.method, "base_model": cfg.model, "lora": cfg.lora.enabled, "layers": s.layers,
            "blocks": blocks, "num_layers": num_layers, "pivot_layer": pivot, "batches": s.batches,
            "batch_size": size, "seed": s.seed, "pairs": [list(p) for p in s.pairs]}
    cb = InterferenceCallback(trainer, trainer.objective, pairs, every=s.every, blocks=blocks,
                              out_path=run_dir / FILE, meta=meta,
                              profile_blocks=list(range(1, num_layers + 1)) if s.profile else None)
    trainer.add_callback(cb)
    return cb

