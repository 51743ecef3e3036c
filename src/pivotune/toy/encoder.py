"""The toy world's multilingual encoder for LinguaLIFT: a tiny BERT-style encoder, masked-LM pretrained on a
*balanced* mix of the world's languages (unlike the English-heavy base model), as mBERT/XLM-R are meant to be.

It reads with the base model's tokenizer (trained on every language of the world) plus a ``<mask>`` token.
Cached inside the world's cache entry as ``encoder-<hash>/`` (built in a temporary sibling, renamed into
place when complete, marked by ``READY.json``), so it is trained once per world and encoder config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..io import atomic_path
from .grammar import Grammar
from .model import READY, ToyPaths, pack, train_steps
from .shipped import install_shipped
from .world import pretrain_docs

log = logging.getLogger(__name__)
ENCODER_FORMAT = 2   # bump when the encoder's training changes for the same config
MASK = "<mask>"


@dataclass(frozen=True)
class EncoderConfig:
    """Size and masked-LM training of the toy encoder (the world supplies the data and the base's widths)."""

    hidden_size: int | None = None     # default: the base model's
    num_layers: int | None = None      # default: half the base model's (an encoder only has to read)
    num_heads: int | None = None
    epochs: float = 1.0
    # a post-LN BERT this small stalls at the unigram loss (5.3) with 2e-3 and 20 warmup steps; 5e-4 and 100 learn
    lr: float = 5e-4
    mask_probability: float = 0.15
    batch_size: int = 16
    warmup_steps: int = 100

    def key(self, paths: ToyPaths) -> str:
        blob = json.dumps({"format": ENCODER_FORMAT, "world": paths.config.config_hash(),
                           **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def balanced_docs(paths: ToyPaths) -> list[str]:
    """The world's pretraining generator with every language given the same share (bilingual pairs included)."""
    cfg = paths.config
    langs = cfg.all_languages
    balanced = dataclasses.replace(cfg, pretrain_shares={lang: 1.0 / len(langs) for lang in langs})
    return pretrain_docs(balanced, Grammar(cfg.seed, cfg.reserve_every))


def encoder_tokenizer(base_dir: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    tok.add_special_tokens({"mask_token": MASK})
    # transformers records the loading environment (HF_HUB_OFFLINE) in the saved config: not part of the recipe
    tok.init_kwargs.pop("local_files_only", None)
    return tok


def get_or_build_encoder(paths: ToyPaths, ecfg: EncoderConfig | None = None,
                         progress: Callable[[str], None] | None = None) -> Path:
    """Directory of the cached toy encoder (``AutoModel`` + ``AutoTokenizer`` loadable), trained if missing."""
    ecfg = ecfg or EncoderConfig()
    out = paths.root / f"encoder-{ecfg.key(paths)}"
    if (out / READY).is_file() and (out / "model.safetensors").is_file():
        return out
    say = progress or log.info
    with atomic_path(out) as tmp:
        if install_shipped("encoder", ecfg.key(paths), tmp):   # the default world's, sha256-checked
            say("toy encoder: the one shipped with pivotune (sha256 checked)")
            (tmp / READY).write_text(json.dumps({"key": ecfg.key(paths), "config": dataclasses.asdict(ecfg),
                                                 "pretrain": {"shipped": True}}, indent=2) + "\n")
            return out
        tmp.mkdir(parents=True)
        tok = encoder_tokenizer(paths.base)
        model, stats = pretrain_mlm(paths, ecfg, tok, balanced_docs(paths), say)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / READY).write_text(json.dumps({"key": ecfg.key(paths), "config": dataclasses.asdict(ecfg),
                                             "pretrain": stats}, indent=2) + "\n")
    return out


def pretrain_mlm(paths: ToyPaths, ecfg: EncoderConfig, tok, docs: list[str], say: Callable[[str], None],
                 stop_after: int | None = None):
    """Masked-LM pretraining (BERT's 80/10/10 masking via transformers' collator); a plain AdamW loop like the
    base model's, deterministic on one machine. ``stop_after``: only the first steps, their losses in the stats."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    cfg = paths.config
    torch.set_flush_denormal(True)   # see toy.model.pretrain
    torch.manual_seed(cfg.seed)
    blocks = pack(tok, docs, cfg.seq_len)
    hidden = ecfg.hidden_size or cfg.hidden_size
    heads = ecfg.num_heads or cfg.num_heads
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=ecfg.num_layers or max(1, cfg.num_layers // 2),
        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max(512, cfg.seq_len),
        pad_token_id=tok.pad_token_id))
    collate = DataCollatorForLanguageModeling(tok, mlm_probability=ecfg.mask_probability, seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=ecfg.lr, betas=(0.9, 0.98), weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, len(blocks) // ecfg.batch_size)
    total = max(1, int(round(steps_per_epoch * ecfg.epochs)))
    order = torch.cat([torch.randperm(len(blocks), generator=gen) for _ in range(math.ceil(ecfg.epochs))])
    def batch_at(step: int) -> dict:
        rows = blocks[order[step * ecfg.batch_size:(step + 1) * ecfg.batch_size]]
        return collate([{"input_ids": row} for row in rows])

    t0, losses = time.perf_counter(), []
    ema = train_steps(model, opt, batch_at, total, ecfg.lr, ecfg.warmup_steps, say, label="encoder MLM",
                      report_every=50, stop_after=stop_after, losses=losses)
    stats = {"blocks": len(blocks), "steps": total, "final_loss": ema, "seconds": time.perf_counter() - t0}
    if stop_after is not None:
        stats["first_losses"] = losses
    return model, stats
