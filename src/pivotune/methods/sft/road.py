"""The supervised road: the method's mixture of samples, each encoded with its prompt masked, trained with one
loss over all its rows (english, bactrian, xllama; PROM and lens-local build on it)."""

from __future__ import annotations

from ...data.collate import Collator, encode_all, language_ids
from ...data.mixture import mixture_for_config, summarize
from ...data.packing import PackedCollator, pack
from ...data.records import Sample
from ...errors import PivotuneError
from ...train.guards import packed_describer, sample_describer
from ...train.resume import data_fingerprint, packed_fingerprint
from ..base import Road, Stage, Units
from .objective import SFTObjective


class SupervisedRoad(Road):
    """Samples of the method's roles, shuffled with the run's seed; cross-entropy at the final layer."""

    def __init__(self, cfg):
        self.cfg = cfg

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
            return Units(rows, PackedCollator(tokenizer.pad_token_id), packed_fingerprint(rows),
                         packed_describer(rows, samples), tokenizer=tokenizer, interference=encoded,
                         lang_ids=lang_ids, report={**report, "packed_rows": len(rows)})
        return Units(encoded, Collator(tokenizer.pad_token_id), data_fingerprint(encoded),
                     sample_describer(encoded, samples), tokenizer=tokenizer, interference=encoded, lang_ids=lang_ids,
                     report=report)

    def objective(self, stage: Stage) -> SFTObjective:
        return SFTObjective()
