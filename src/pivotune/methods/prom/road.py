"""PROM's road: the supervised road's mixture and encoding, the base model's lens read before training (the
regulation sets λ per language), and the LM wrapped with its pivot head by the objective."""

from __future__ import annotations

from pathlib import Path

from ..base import Stage
from ..sft.road import SupervisedRoad
from .objective import PromObjective, english_lambda


class PromRoad(SupervisedRoad):
    """Methods prom and prom-noreg."""

    def inputs(self) -> list[str]:
        from ...analysis.probe import probe_inputs

        return probe_inputs(self.cfg.prom)

    def checks(self, num_layers: int | None) -> list[str]:
        from ...errors import PivotuneError
        from ...models.pivot_head import resolve_pivot_layer
        from .regulation import evidence_problems

        problems = evidence_problems(self.cfg)
        if num_layers is not None:
            try:
                resolve_pivot_layer(self.cfg.prom.pivot_layer, num_layers)
            except PivotuneError as e:
                problems.append(str(e))
        return problems

    def prepare_base(self, model, tokenizer, run_dir: Path, save_checkpoints: bool):
        """The regulation (method prom): λ per language from the base model's lens, recorded in the config."""
        from .regulation import regulate

        self.cfg = regulate(self.cfg, model, tokenizer, run_dir)
        return model

    def objective(self, stage: Stage) -> PromObjective:
        cfg, s = self.cfg, self.cfg.prom
        lam = s.lambda_en if cfg.method == "prom-noreg" else english_lambda(s.lambda_en, cfg.languages,
                                                                            s.lambda_per_language)
        return PromObjective(s, lam, meta={"base_model": cfg.model, "method": cfg.method},
                             positions=self.positions_bound(stage))
