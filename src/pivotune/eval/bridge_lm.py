"""lm-evaluation-harness model ``pivotune-bridge``: a LinguaLIFT bridge directory under the harness.

The harness's Hugging Face backend loads a plain causal LM; a bridge needs its encoder too, and the
prompt goes to the encoder while the LM scores or writes the continuation. So this class implements the
harness's three request types itself:

- ``loglikelihood(context, continuation)``: the context goes to the encoder; the LM's log-probability of the
  continuation's tokens after the soft prompt (summed), and whether greedy decoding would produce them.
- ``loglikelihood_rolling(text)``: the text scored as a continuation of an empty prompt.
- ``generate_until(context, gen_kwargs)``: the LM's ``generate`` after the soft prompt, cut at the first
  ``until`` string.

Use: ``lm_eval --model pivotune-bridge --model_args pretrained=RUN/model`` (after ``import
pivotune.eval.bridge_lm``), or ``simple_evaluate(model="pivotune-bridge", model_args=...)``.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ..models.bridge import LinguaLiftModel

DEFAULT_MAX_GEN_TOKS = 256


@register_model("pivotune-bridge")
class BridgeLM(LM):
    def __init__(self, pretrained: str | None = None, model: LinguaLiftModel | None = None, batch_size: int | str = 8,
                 max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, max_encoder_len: int = 512, device: str | None = None,
                 dtype: str = "float32", **_harness_kwargs):
        super().__init__()
        if model is None:
            if pretrained is None:
                raise ValueError("pivotune-bridge needs pretrained=DIR (a LinguaLIFT bridge directory)")
            model = LinguaLiftModel.from_pretrained(pretrained, dtype=dtype)
        self.device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.bridge = model.to(self.device_).eval()
        self.enc_tok, self.lm_tok = model.encoder_tokenizer, model.lm_tokenizer
        # "auto" batch sizing measures a plain HF model; a fixed size is used for the bridge.
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        self.max_gen_toks, self.max_encoder_len = int(max_gen_toks), int(max_encoder_len)

    def _encode_prompts(self, contexts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.enc_tok(contexts, return_tensors="pt", padding=True, truncation=True,
                           max_length=self.max_encoder_len)
        return enc["input_ids"].to(self.device_), enc["attention_mask"].to(self.device_)

    @torch.no_grad()
    def _score(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for s in range(0, len(pairs), self.batch_size):
            chunk = pairs[s:s + self.batch_size]
            enc_ids, enc_mask = self._encode_prompts([c for c, _ in chunk])
            conts = [self.lm_tok.encode(x, add_special_tokens=False) for _, x in chunk]
            width = max(1, max(len(c) for c in conts))
            ids = torch.full((len(chunk), width), self.lm_tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, c in enumerate(conts):
                ids[i, :len(c)] = torch.tensor(c, dtype=torch.long)
                mask[i, :len(c)] = 1
            ids, mask = ids.to(self.device_), mask.to(self.device_)
            logp = F.log_softmax(self.bridge(enc_ids, enc_mask, ids, mask).logits.float(), dim=-1)
            tok_logp = logp.gather(-1, ids[..., None])[..., 0]
            greedy = logp.argmax(-1).eq(ids)
            for i, c in enumerate(conts):
                n = len(c)
                out.append((float(tok_logp[i, :n].sum()), bool(greedy[i, :n].all())))
        return out

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        return self._score([tuple(r.args[:2]) for r in requests])

    def loglikelihood_rolling(self, requests) -> list[float]:
        return [ll for ll, _ in self._score([("", r.args[0]) for r in requests])]

    @torch.no_grad()
    def generate_until(self, requests) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}   # requests with the same generation settings run batched
        for i, r in enumerate(requests):
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        for key, idx in groups.items():
            kwargs = dict(json.loads(key))
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            do_sample = bool(kwargs.pop("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
            gen = {"max_new_tokens": max_new, "do_sample": do_sample, "pad_token_id": self.lm_tok.pad_token_id,
                   "eos_token_id": self.lm_tok.eos_token_id}
            if do_sample:
                gen.update({k: kwargs[k] for k in ("temperature", "top_p", "top_k") if k in kwargs})
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s:s + self.batch_size]
                enc_ids, enc_mask = self._encode_prompts([requests[i].args[0] for i in chunk])
                new = self.bridge.generate_new(enc_ids, enc_mask, **gen)
                for i, text in zip(chunk, self.lm_tok.batch_decode(new, skip_special_tokens=True)):
                    for stop in until:
                        text = text.split(stop)[0]
                    results[i] = text
        return [r if r is not None else "" for r in results]
