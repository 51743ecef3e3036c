"""Samples → batches for the LinguaLIFT bridge: the prompt for the encoder, the response for the LM.

The prompt (the Alpaca template around instruction and input) is tokenised with the encoder's tokenizer; the
response with the LM's, followed by EOS, every token supervised. The LM's BOS is added by the bridge in front
of the soft prompt, not here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .records import IGNORE_INDEX, ROLE_IDS, Sample
from .templates import render_alpaca

log = logging.getLogger(__name__)


@dataclass
class BridgeEncoded:
    enc_ids: list[int]
    response_ids: list[int]
    role: int
    lang: int
    weight: float
    truncated: bool
    sample_index: int = -1   # position of its sample in the encoded list (error messages name the source)


def encode_bridge_sample(sample: Sample, encoder_tokenizer, lm_tokenizer, *, max_encoder_len: int,
                         max_response_len: int, lang_ids: dict[str, int] | None = None) -> BridgeEncoded:
    prompt, response = render_alpaca(sample)
    enc_ids = encoder_tokenizer(prompt, add_special_tokens=True)["input_ids"]
    resp = lm_tokenizer.encode(response, add_special_tokens=False)
    if lm_tokenizer.eos_token_id is not None:
        resp.append(lm_tokenizer.eos_token_id)
    truncated = len(enc_ids) > max_encoder_len or len(resp) > max_response_len
    return BridgeEncoded(enc_ids[:max_encoder_len], resp[:max_response_len], ROLE_IDS[sample.role],
                         (lang_ids or {}).get(sample.lang, -1), float(sample.weight), truncated)


def encode_bridge_all(samples: list[Sample], encoder_tokenizer, lm_tokenizer, *, max_encoder_len: int,
                      max_response_len: int, lang_ids: dict[str, int] | None = None) -> list[BridgeEncoded]:
    out = [encode_bridge_sample(s, encoder_tokenizer, lm_tokenizer, max_encoder_len=max_encoder_len,
                                max_response_len=max_response_len, lang_ids=lang_ids) for s in samples]
    for i, e in enumerate(out):
        e.sample_index = i
    n = sum(e.truncated for e in out)
    if n:
        log.warning("%d of %d samples were truncated (lingualift.max_encoder_len=%d, max_seq_len=%d)",
                    n, len(out), max_encoder_len, max_response_len)
    return [e for e in out if e.response_ids]


class BridgeCollator:
    """Right-pad encoder ids and response ids separately; labels are the response ids (-100 on padding)."""

    def __init__(self, encoder_pad_id: int, lm_pad_id: int):
        self.encoder_pad_id, self.lm_pad_id = encoder_pad_id, lm_pad_id

    @staticmethod
    def _pad(rows: list[list[int]], pad: int):
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        return ids, mask

    def __call__(self, items: list[BridgeEncoded]) -> dict[str, torch.Tensor]:
        enc_ids, enc_mask = self._pad([e.enc_ids for e in items], self.encoder_pad_id)
        ids, mask = self._pad([e.response_ids for e in items], self.lm_pad_id)
        return {
            "enc_input_ids": enc_ids, "enc_attention_mask": enc_mask,
            "input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE_INDEX),
            "roles": torch.tensor([e.role for e in items], dtype=torch.long),
            "langs": torch.tensor([e.lang for e in items], dtype=torch.long),
            "weights": torch.tensor([e.weight for e in items], dtype=torch.float32),
        }
