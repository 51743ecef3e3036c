"""Tokenise samples, mask the prompt, and batch them with their roles.

Prompt and response are tokenised separately and concatenated, so the mask
boundary is exact whatever the tokenizer merges across it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .records import IGNORE_INDEX, ROLE_IDS, Sample
from .templates import render_alpaca

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    role: int
    lang: int
    weight: float
    truncated: bool
    sample_index: int = -1   # position of its sample in the encoded list (error messages name the source)


def _chat_spans(sample: Sample, tokenizer) -> list[tuple[list[int], bool]]:
    """(token ids, supervised?) pieces of a conversation via the chat template."""
    msgs = list(sample.messages) if sample.messages is not None else [
        {"role": "user", "content": f"{sample.instruction}\n\n{sample.input}".strip()},
        {"role": "assistant", "content": sample.output}]
    done = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(msgs[:i], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
        prev = "".join(t for t, _ in done)
        if not prompt.startswith(prev) or not full.startswith(prompt):
            raise ValueError("the tokenizer's chat template does not render conversations prefix-stably")
        done += [(prompt[len(prev):], False), (full[len(prompt):], True)]
    return [(tokenizer.encode(t, add_special_tokens=False), sup) for t, sup in done if t]


def encode_sample(sample: Sample, tokenizer, *, template: str = "alpaca", max_seq_len: int = 1024,
                  lang_ids: dict[str, int] | None = None) -> Encoded:
    """input_ids and labels (prompt masked with -100), BOS first, EOS after the response."""
    if template == "alpaca":
        prompt, response = render_alpaca(sample)
        pieces = [(tokenizer.encode(prompt, add_special_tokens=False), False),
                  (tokenizer.encode(response, add_special_tokens=False), True)]
    elif template == "chat":
        pieces = _chat_spans(sample, tokenizer)
    else:
        raise ValueError(f"unknown template {template!r}")
    ids: list[int] = []
    labels: list[int] = []
    if tokenizer.bos_token_id is not None and template == "alpaca":
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE_INDEX)
    for toks, supervised in pieces:
        ids += toks
        labels += toks if supervised else [IGNORE_INDEX] * len(toks)
    if template == "alpaca" and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    truncated = len(ids) > max_seq_len
    ids, labels = ids[:max_seq_len], labels[:max_seq_len]
    return Encoded(ids, labels, ROLE_IDS[sample.role], (lang_ids or {}).get(sample.lang, -1),
                   float(sample.weight), truncated)


def encode_all(samples: list[Sample], tokenizer, *, template: str = "alpaca", max_seq_len: int = 1024,
               lang_ids: dict[str, int] | None = None) -> list[Encoded]:
    """Encode a mixture; log truncations and drop rows left with no supervised token."""
    enc = [encode_sample(s, tokenizer, template=template, max_seq_len=max_seq_len, lang_ids=lang_ids)
           for s in samples]
    for i, e in enumerate(enc):
        e.sample_index = i
    n_trunc = sum(e.truncated for e in enc)
    if n_trunc:
        log.warning("%d of %d samples were truncated to max_seq_len=%d", n_trunc, len(enc), max_seq_len)
    kept = [e for e in enc if any(x != IGNORE_INDEX for x in e.labels[1:])]
    if len(kept) < len(enc):
        log.warning("%d samples had no response token left after truncation and were dropped",
                    len(enc) - len(kept))
    return kept


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Encoded]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Collator:
    """Right-pad a list of :class:`Encoded` into tensors; roles, languages and weights ride along."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: list[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in items)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, e in enumerate(items):
            n = len(e.input_ids)
            ids[i, :n] = torch.tensor(e.input_ids)
            labels[i, :n] = torch.tensor(e.labels)
            mask[i, :n] = 1
        return {
            "input_ids": ids, "attention_mask": mask, "labels": labels,
            "roles": torch.tensor([e.role for e in items], dtype=torch.long),
            "langs": torch.tensor([e.lang for e in items], dtype=torch.long),
            "weights": torch.tensor([e.weight for e in items], dtype=torch.float32),
        }
