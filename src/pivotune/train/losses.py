"""The training loss per role and per language, logged with the Trainer's mixed ``loss``.

The objective hands the trainer each micro-batch's :class:`~pivotune.objectives.base.RowLosses` (every row's loss
summed over its supervised tokens, from the forward it ran for the step: no extra forward); :class:`LossBreakdown`
adds them up by the batch's row roles and languages on the device, and at each logging step gives the mean per
supervised token since the last one, under ``loss/role/ROLE`` and ``loss/lang/LANG``. A row's loss is its
objective's own (PROM's English rows: the pivot head's label-smoothed CE; the others: CE at the final layer) and
is not scaled by its source weight, λ or the step's normaliser, so the numbers of different roles, languages and
methods are comparable per token. A language is every row in it, whatever its role (``mt`` rows count for their
target language). :func:`loss_series` reads them back from a log history as the series ``run.json`` keeps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.records import ROLES
from ..objectives.base import RowLosses

ROLE_KEY, LANG_KEY = "loss/role/", "loss/lang/"


class LossBreakdown:
    """Loss sums and token counts per role and per language since the last :meth:`take`; ``languages`` maps the
    language codes to the ids batches carry (:func:`pivotune.data.collate.language_ids`)."""

    def __init__(self, languages: dict[str, int]):
        self.keys = [ROLE_KEY + r for r in ROLES] + [LANG_KEY + code
                                                    for code, _ in sorted(languages.items(), key=lambda kv: kv[1])]
        self._totals: torch.Tensor | None = None   # [2, keys]: loss sums, token counts

    def add(self, rows: RowLosses, roles: torch.Tensor, langs: torch.Tensor) -> None:
        """Count one micro-batch's rows (no device sync)."""
        n_roles = len(ROLES)
        langs = langs.to(roles.device)
        known = langs.ge(0) & langs.lt(len(self.keys) - n_roles)   # a row of no listed language counts by role only
        sums, tokens = rows.sums.float(), rows.tokens.float()
        cols = torch.cat([roles, n_roles + langs.clamp(min=0)])
        values = torch.stack([torch.cat([sums, sums * known]), torch.cat([tokens, tokens * known])])
        if self._totals is None:
            self._totals = values.new_zeros(2, len(self.keys))
        self._totals.index_add_(1, cols, values)

    def take(self, device: torch.device | str = "cpu",
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """The mean loss per token of each role and language with rows since the last call, and start again.

        ``reduce``: sums a tensor over the ranks (every rank must call then, with or without rows of its own)."""
        totals = self._totals if self._totals is not None else torch.zeros(2, len(self.keys), device=device)
        self._totals = None
        if reduce is not None:
            totals = reduce(totals)
        sums, tokens = totals.tolist()
        return {key: s / n for key, s, n in zip(self.keys, sums, tokens) if n > 0}


def loss_series(log_history: list[dict]) -> dict | None:
    """``{"steps": [...], "loss": [...], "role": {ROLE: [...]}, "lang": {LANG: [...]}}`` over the logging steps
    of a Trainer log history (None where a role or language had no rows), or None when it logged no breakdown."""
    logged = [h for h in log_history if "loss" in h and "step" in h]
    keys = list(dict.fromkeys(k for h in logged for k in h if k.startswith((ROLE_KEY, LANG_KEY))))
    if not keys:
        return None
    series: dict = {"steps": [h["step"] for h in logged], "loss": [h["loss"] for h in logged], "role": {}, "lang": {}}
    for key in keys:
        group, name = ("role", key[len(ROLE_KEY):]) if key.startswith(ROLE_KEY) else ("lang", key[len(LANG_KEY):])
        series[group][name] = [h.get(key) for h in logged]
    return series


def joined_series(stages: list[tuple[str, dict | None, int]]) -> dict | None:
    """The series of a run's stages, ``(name, series, optimizer steps)`` in training order, one after the other on
    the step axis (a stage's steps counted after the earlier stages'), each point with its stage's name; None when
    no stage logged a breakdown."""
    parts = [(name, s, offset) for (name, s, _), offset in zip(stages, _offsets([n for *_, n in stages])) if s]
    if not parts:
        return None
    roles = list(dict.fromkeys(k for _, s, _ in parts for k in s["role"]))
    langs = list(dict.fromkeys(k for _, s, _ in parts for k in s["lang"]))
    joined: dict = {"steps": [], "loss": [], "stage": [], "role": {k: [] for k in roles},
                    "lang": {k: [] for k in langs}}
    for name, s, offset in parts:
        size = len(s["steps"])
        joined["steps"] += [offset + step for step in s["steps"]]
        joined["loss"] += s["loss"]
        joined["stage"] += [name] * size
        for group in ("role", "lang"):
            for k, values in joined[group].items():
                values += s[group].get(k) or [None] * size
    return joined


def _offsets(steps: list[int]) -> list[int]:
    done, out = 0, []
    for n in steps:
        out.append(done)
        done += n
    return out
