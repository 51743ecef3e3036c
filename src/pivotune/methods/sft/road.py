"""The supervised road: the method's mixture of samples, each encoded with its prompt masked, trained with one
loss over all its rows (english, bactrian, xllama; PROM and lens-local build on it)."""

from __future__ import annotations

import torch

from ...data.collate import Collator, encode_all, language_ids
from ...data.mixture import mixture_for_config, summarize
from ...data.packing import PackedCollator, pack
from ...data.records import Sample
from ...errors import PivotuneError
from ...objectives.base import count_supervised
from ...objectives.head_loss import micro_batch_positions
from ...train.guards import packed_describer, sample_describer
from ...train.resume import data_fingerprint, packed_fingerprint
from ..base import Road, Stage, Units
from .objective import SFTObjective


def _targets(e) -> int:
    """An encoded sample's supervised targets, counted by the rule the losses use (:func:`count_supervised`)."""
    return int(count_supervised(torch.tensor([e.labels])))


class SupervisedRoad(Road):
    """Samples of the method's roles, shuffled with the run's seed; cross-entropy at the final layer."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.supervised: dict[str, list[int]] = {}   # stage -> each encoded row's supervised targets

    def training_data(self, samples: list[Sample] | None) -> list[Sample]:
        from .. import METHODS

        cfg = self.cfg
        roles = METHODS[cfg.method].roles
        samples = mixture_for_config(cfg, roles) if samples is None else [s for s in samples if s.role in roles]
        if not samples:
            raise PivotuneError(f"method '{cfg.method}' has no training samples: check `data` roles and paths.")
        return samples

    def units(self, stage: Stage, samples: list[Sample], tokenizer) -> Units:
        cfg = self.cfg
        lang_ids = language_ids(cfg.languages)
        encoded = encode_all(samples, tokenizer, template=cfg.template, max_seq_len=cfg.max_seq_len,
                             lang_ids=lang_ids)
        if not encoded:
            raise PivotuneError("no sample kept a response token after truncation: raise max_seq_len.")
        report = {"mixture": summarize(samples), "encoded": len(encoded),
                  "truncated": sum(e.truncated for e in encoded)}
        if cfg.train.packing:   # the rows train in place of the samples; interference still draws samples
            rows = pack(encoded, cfg.max_seq_len)
            self.supervised[stage.name] = [sum(map(_targets, row.samples)) for row in rows]
            return Units(rows, PackedCollator(tokenizer.pad_token_id), packed_fingerprint(rows),
                         packed_describer(rows, samples), tokenizer=tokenizer, interference=encoded,
                         lang_ids=lang_ids, report={**report, "packed_rows": len(rows)})
        self.supervised[stage.name] = [_targets(e) for e in encoded]
        return Units(encoded, Collator(tokenizer.pad_token_id), data_fingerprint(encoded),
                     sample_describer(encoded, samples), tokenizer=tokenizer, interference=encoded, lang_ids=lang_ids,
                     report=report)

    def positions_bound(self, stage: Stage) -> int:
        """The most supervised positions one of the stage's micro-batches can hold (``prom.recompute_logits:
        auto`` weighs the logits kept at them): from the encoded rows once :meth:`units` ran, else
        per_device_batch_size × max_seq_len."""
        rows = (stage.train or self.cfg.train).per_device_batch_size
        if stage.name in self.supervised:
            return micro_batch_positions(self.supervised[stage.name], rows)
        return rows * self.cfg.max_seq_len

    def objective(self, stage: Stage) -> SFTObjective:
        s = self.cfg.prom
        return SFTObjective(s.chunk_size, s.recompute_logits, positions=self.positions_bound(stage))
