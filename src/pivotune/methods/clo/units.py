"""CLO's data: English instructions and their translations as cross-lingual preference pairs.

A *unit* is one English item (x_e, y_e) with its translation (x_t, y_t) into one target language. It
gives two pairs, kept together so both pair types are in every batch, as the paper trains them:
(x_e; chosen y_e, rejected y_t) and (x_t; chosen y_t, rejected y_e). Translations come from a
pre-translated file, line-aligned with the English one (row i translates row i), or from a translate
function (:func:`translated_samples`; the toy world's exact translator, a machine-translation model).

Each unit is encoded as four sequences, prompt and response tokenised separately so the response
mask is exact (:func:`pivotune.data.collate.encode_sample`), in the row order of :data:`BLOCKS`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...data.collate import Encoded, encode_sample
from ...data.mixture import load_source
from ...data.packing import best_fit_decreasing, packed_tensors
from ...data.records import IGNORE_INDEX, Sample
from ...errors import DataError, PivotuneError

log = logging.getLogger(__name__)

#: Row blocks of a CLO batch: (prompt language, response language). Pairs: (0 chosen, 1 rejected) on
#: English prompts, (2 chosen, 3 rejected) on target prompts; block 2 is also the NLL term's data.
BLOCKS = (("en", "en"), ("en", "tgt"), ("tgt", "tgt"), ("tgt", "en"))


@dataclass(frozen=True)
class CrossLingualUnit:
    english: Sample
    target: Sample        # the translation of ``english``; its ``lang`` is the target language
    weight: float = 1.0


def _prompt_and_response(s: Sample) -> tuple[dict | None, str]:
    """(prompt fields, response) of a single-turn sample; ``None`` fields for a multi-turn chat."""
    if s.messages is None:
        return {"instruction": s.instruction, "input": s.input}, s.output
    turns = [m for m in s.messages if m["role"] != "system"]
    if [m["role"] for m in turns] != ["user", "assistant"]:
        return None, ""
    return {"messages": s.messages[:-1]}, s.messages[-1]["content"]


def _with_response(s: Sample, prompt: dict, response: str) -> Sample:
    if "messages" in prompt:
        return dataclasses.replace(s, messages=(*prompt["messages"], {"role": "assistant", "content": response}))
    return dataclasses.replace(s, instruction=prompt["instruction"], input=prompt["input"], output=response)


def pair_translations(english: list[Sample], target: list[Sample], *, english_file: str = "",
                      target_file: str = "") -> list[CrossLingualUnit]:
    """Units from line-aligned English and translated samples (row i of one translates row i of the
    other). Raises :class:`DataError` naming the files and row when they cannot be aligned; drops
    (with a warning) units whose two responses are identical, which carry no preference."""
    english_file = english_file or (english[0].source if english else "the English data")
    target_file = target_file or (target[0].source if target else "the translated data")
    if len(english) != len(target):
        raise DataError(
            f"CLO pairs row i of {english_file} with row i of its translation {target_file}, but they have "
            f"{len(english)} and {len(target)} valid rows. Each translated file must have exactly one row per "
            "English row, in the same order (with --skip-invalid, a row skipped on one side breaks the "
            "alignment: fix the row instead).", path=target_file)
    units, identical = [], 0
    for e, t in zip(english, target):
        (pe, ye), (pt, yt) = _prompt_and_response(e), _prompt_and_response(t)
        for s, p in ((e, pe), (t, pt)):
            if p is None:
                raise DataError(f"{s.origin}: CLO needs single-turn rows (one user turn, one assistant turn, "
                                "an optional system turn); this row is a longer conversation. Keep its first "
                                "exchange or leave it out.", path=s.source, field="messages")
        if (pe.keys() != pt.keys()):
            raise DataError(f"{t.origin}: this translation is in a different form (Alpaca or chat) from its "
                            f"English row ({e.origin}); an English file and its translation must use one form.",
                            path=t.source)
        if ye.strip() == yt.strip():
            identical += 1
            continue
        units.append(CrossLingualUnit(e, t, weight=e.weight * t.weight))
    if identical:
        log.warning("CLO: %d of %d units of %s have identical English and translated responses "
                    "(no preference between them) and were left out", identical, len(english), target_file)
    return units


def clo_units(cfg, samples: list[Sample] | None = None) -> list[CrossLingualUnit]:
    """Units of the run: the English rows (every role-``en`` source, in config order) paired row by row
    with each target language's translated rows (its role-``tgt`` sources, in config order).

    ``samples`` replaces loading ``cfg.data`` (grouped the same way, order kept)."""
    english: list[Sample] = []
    target: dict[str, list[Sample]] = {}
    files: dict[str, list[str]] = {"en": []}
    if samples is None:
        for src in cfg.data:
            if src.role not in ("en", "tgt"):
                log.info("method %s does not train on role %s: source %s left out", cfg.method, src.role, src.name)
                continue
            rows = load_source(src, skip_invalid=cfg.skip_invalid)
            key = "en" if src.role == "en" else src.lang
            (english if src.role == "en" else target.setdefault(src.lang, [])).extend(rows)
            files.setdefault(key, []).append(src.path)
    else:
        for s in samples:
            if s.role == "en":
                english.append(s)
            elif s.role == "tgt":
                target.setdefault(s.lang, []).append(s)
    if not english or not target:
        raise PivotuneError(
            f"method '{cfg.method}' builds cross-lingual pairs from English instructions (a data source with role "
            "'en') and their translations (one source with role 'tgt' per target language, row i translating "
            f"English row i); got {len(english)} English and "
            f"{sum(map(len, target.values()))} translated rows.")
    limit = cfg.clo.max_items
    units = []
    for lang, rows in target.items():
        got = pair_translations(english, rows, english_file=" + ".join(files["en"]) or "",
                                target_file=" + ".join(files.get(lang, [])) or "")
        units += got[:limit] if limit is not None else got
    return units


def translated_samples(english: list[Sample], lang: str, translate: Callable[[str], str], *,
                       source: str | None = None) -> list[Sample]:
    """``english`` translated field by field with ``translate`` into role-``tgt`` samples of ``lang``."""
    out = []
    for s in english:
        fields = {"instruction": translate(s.instruction) if s.instruction else "",
                  "input": translate(s.input) if s.input else "",
                  "output": translate(s.output) if s.output else ""}
        if s.messages is not None:
            fields["messages"] = tuple({**m, "content": translate(m["content"])} for m in s.messages)
        out.append(dataclasses.replace(s, **fields, role="tgt", lang=lang, source=source or f"{s.source}>{lang}",
                                       origin=f"{s.origin} (translated to {lang})"))
    return out


def unit_sequences(unit: CrossLingualUnit) -> list[Sample]:
    """The four (prompt, response) samples of a unit, in :data:`BLOCKS` order."""
    (pe, ye), (pt, yt) = _prompt_and_response(unit.english), _prompt_and_response(unit.target)
    prompts = {"en": (unit.english, pe), "tgt": (unit.target, pt)}
    responses = {"en": ye, "tgt": yt}
    return [_with_response(*prompts[p], responses[r]) for p, r in BLOCKS]


@dataclass
class EncodedUnit:
    sequences: list[Encoded]                 # four, in BLOCKS order
    weight: float
    lang: str
    ref_logps: list[float] | None = None     # the reference model's sequence log-probs, filled before training
    unit: CrossLingualUnit | None = None     # the rows it was encoded from, for error messages

    @property
    def truncated(self) -> bool:
        return any(e.truncated for e in self.sequences)


def encode_units(units: list[CrossLingualUnit], tokenizer, *, template: str, max_seq_len: int) -> list[EncodedUnit]:
    """Encode every unit; drop (with a warning) a unit any of whose responses truncation emptied."""
    out, dropped = [], 0
    for u in units:
        seqs = [encode_sample(s, tokenizer, template=template, max_seq_len=max_seq_len) for s in unit_sequences(u)]
        if all(any(x != IGNORE_INDEX for x in e.labels[1:]) for e in seqs):
            out.append(EncodedUnit(seqs, u.weight, u.target.lang, unit=u))
        else:
            dropped += 1
    if dropped:
        log.warning("CLO: %d of %d units lost a whole response to max_seq_len=%d and were dropped",
                    dropped, len(units), max_seq_len)
    return out


class UnitCollator:
    """Right-pad B units into one batch of 4B rows (block-major: all B rows of block 0 first); with ``pack_into``
    (``train.packing``: max_seq_len) the 4B sequences are packed best-fit-decreasing into rows of that many tokens
    (:mod:`pivotune.data.packing`), and ``sequence_ids`` names each token's sequence by its row in the padded
    layout."""

    def __init__(self, pad_token_id: int, pack_into: int | None = None):
        self.pad_token_id = pad_token_id
        self.pack_into = pack_into

    def __call__(self, units: list[EncodedUnit]) -> dict[str, torch.Tensor]:
        rows = [u.sequences[k] for k in range(len(BLOCKS)) for u in units]
        batch = self._packed(rows) if self.pack_into else self._padded(rows)
        batch["unit_weights"] = torch.tensor([u.weight for u in units], dtype=torch.float32)
        if all(u.ref_logps is not None for u in units):
            batch["ref_logps"] = torch.tensor([u.ref_logps[k] for k in range(len(BLOCKS)) for u in units],
                                              dtype=torch.float64)
        return batch

    def _padded(self, rows: list[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, e in enumerate(rows):
            ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[i, :len(e.labels)] = torch.tensor(e.labels)
            mask[i, :len(e.input_ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _packed(self, rows: list[Encoded]) -> dict[str, torch.Tensor]:
        bins = best_fit_decreasing([len(e.input_ids) for e in rows], self.pack_into)
        return packed_tensors([[rows[i] for i in b] for b in bins], self.pad_token_id, sequence_ids=bins)


def unit_describer(encoded: list[EncodedUnit]):
    """``describe(i)`` for the loss guard: CLO unit ``i`` → its language and the two rows it pairs."""
    def describe(i: int) -> str:
        u = encoded[i].unit if 0 <= i < len(encoded) else None
        if u is None:
            return f"CLO unit {i}"
        return (f"{u.target.lang} unit of English row {u.english.origin or '?'} (source '{u.english.source or '?'}') "
                f"and its translation {u.target.origin or '?'} (source '{u.target.source or '?'}')")
    return describe
