"""The toy world's base model: a local byte-level BPE tokenizer and a tiny pretrained Llama.

Cached at ``<cache>/toy/<config_hash>/`` with ``world/`` (the data) and
``base/`` (``save_pretrained`` model + tokenizer). The entry is built in a
temporary sibling and renamed into place only when complete, so an
interrupted build never leaves an entry that :func:`load_cached` accepts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.templates import alpaca_prompt
from ..io import atomic_path
from .shipped import install_shipped
from .world import WorldConfig, build_world, read_pretrain_docs

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
READY = "READY.json"   # written last inside the entry; its presence (after the rename) marks completeness


def cache_root() -> Path:
    """``$PIVOTUNE_CACHE``, else ``$XDG_CACHE_HOME/pivotune``, else ``~/.cache/pivotune``."""
    if os.environ.get("PIVOTUNE_CACHE"):
        return Path(os.environ["PIVOTUNE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pivotune"


@dataclass(frozen=True)
class ToyPaths:
    root: Path        # the cache entry
    world: Path       # data products (world.json, pretrain.jsonl, instructions/, eval/, ...)
    base: Path        # base model + tokenizer, loadable with AutoModelForCausalLM / AutoTokenizer
    config: WorldConfig


def entry_dir(cfg: WorldConfig, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or cache_root()) / "toy" / cfg.config_hash()


def load_cached(cfg: WorldConfig, cache_dir: str | Path | None = None) -> ToyPaths | None:
    """The cached entry for ``cfg`` if it is complete, else ``None``."""
    root = entry_dir(cfg, cache_dir)
    try:
        ready = json.loads((root / READY).read_text())
    except (OSError, ValueError):
        return None
    needed = [root / "world" / "world.json", root / "base" / "config.json", root / "base" / "tokenizer.json",
              root / "base" / "model.safetensors"]
    if ready.get("config_hash") != cfg.config_hash() or not all(p.is_file() for p in needed):
        return None
    return ToyPaths(root, root / "world", root / "base", cfg)


def get_or_build(cfg: WorldConfig | None = None, cache_dir: str | Path | None = None,
                 progress: Callable[[str], None] | None = None) -> ToyPaths:
    """Cached world + base model for ``cfg`` (default config), building them when missing; the default world's
    base model is the one shipped in the package (:mod:`pivotune.toy.shipped`)."""
    cfg = cfg or WorldConfig()
    hit = load_cached(cfg, cache_dir)
    if hit is not None:
        return hit
    say = progress or log.info
    root = entry_dir(cfg, cache_dir)
    timings = {}
    with atomic_path(root) as tmp:
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        build_world(cfg, tmp / "world")
        timings["world_s"] = time.perf_counter() - t0
        say(f"toy world built in {timings['world_s']:.1f}s")
        if install_shipped("base", cfg.config_hash(), tmp / "base"):   # the default world's, sha256-checked
            say("base model: the one shipped with pivotune (sha256 checked; `pivotune toy build-base` rebuilds it)")
            stats = {"shipped": True}
        else:
            t0 = time.perf_counter()
            docs = read_pretrain_docs(tmp / "world")
            tok = train_tokenizer(docs, cfg.vocab_size)
            timings["tokenizer_s"] = time.perf_counter() - t0
            say(f"tokenizer trained in {timings['tokenizer_s']:.1f}s ({len(tok)} tokens)")
            t0 = time.perf_counter()
            model, stats = pretrain(cfg, tok, docs, progress=say)
            timings["pretrain_s"] = time.perf_counter() - t0
            model.save_pretrained(tmp / "base")
            tok.save_pretrained(tmp / "base")
        (tmp / READY).write_text(json.dumps({"config_hash": cfg.config_hash(), "timings": timings,
                                             "pretrain": stats}, indent=2) + "\n")
    hit = load_cached(cfg, cache_dir)
    assert hit is not None, f"cache entry {root} incomplete right after building it"
    return hit


# -- tokenizer -----------------------------------------------------------------------------------------

def train_tokenizer(docs: list[str], vocab_size: int):
    """Byte-level BPE trained on the documents ``docs``, wrapped for ``AutoTokenizer``.

    The Alpaca template is added to the training text so its words get their own
    tokens; otherwise every prompt would cost ~150 byte tokens in a model this small.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # A prefix space makes a separately encoded response (``rome``) start with the same token
    # (``Ġrome``) the word has inside pretraining text, so copying a word needs no remapping.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    template = [alpaca_prompt("x", "y"), alpaca_prompt("x")] * 200

    tok.train_from_iterator([*docs, *template], trainer=trainer)
    bos = tok.token_to_id(BOS)
    # Like Llama's tokenizer: a plain encode() starts with BOS.
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False)


# -- pretraining ------------------------------------------------------------------------------------------

def make_model(cfg: WorldConfig, tok):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    mcfg = LlamaConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                       num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                       num_key_value_heads=cfg.num_heads, max_position_embeddings=max(512, 2 * cfg.seq_len),
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id, tie_word_embeddings=False)  # untied, as Llama-2
    return LlamaForCausalLM(mcfg)


def pack(tok, docs: list[str], seq_len: int):
    """All documents as ``BOS doc EOS``, concatenated and cut into ``seq_len`` blocks."""
    import torch

    ids: list[int] = []
    for enc in tok(docs, add_special_tokens=False)["input_ids"]:
        ids += [tok.bos_token_id, *enc, tok.eos_token_id]
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def train_steps(model, opt, batch_at: Callable[[int], dict], total: int, lr: float, warmup: int,
                say: Callable[[str], None], *, label: str, report_every: int, stop_after: int | None = None,
                losses: list[float] | None = None) -> float | None:
    """The toy models' plain AdamW loop (warmup + cosine, grad-norm clip 1.0); ``batch_at(step)`` gives the
    model's inputs (``labels`` defaults to ``input_ids``). ``stop_after``: run only that many of the ``total``
    steps (same schedule: the first steps of the full run, bitwise); ``losses``: each step's loss is appended.
    Returns the loss's moving average."""
    import torch

    model.train()
    t0, ema = time.perf_counter(), None
    for step in range(total if stop_after is None else min(total, stop_after)):
        batch = batch_at(step)   # first: a masking collator draws its randomness before the forward's dropout
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, lr, warmup)
        loss = model(input_ids=batch["input_ids"], labels=batch.get("labels", batch["input_ids"])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if losses is not None:
            losses.append(loss.item())
        if (step + 1) % report_every == 0 or step + 1 == total:
            say(f"{label} step {step + 1}/{total} loss {ema:.3f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    return ema


def pretrain(cfg: WorldConfig, tok, docs: list[str], progress: Callable[[str], None] | None = None,
             stop_after: int | None = None):
    """Next-token pretraining of a fresh tiny Llama; a plain AdamW loop (deterministic on one machine).
    ``stop_after``: only the first steps (:func:`train_steps`); the stats then hold their losses."""
    import torch

    say = progress or log.info
    # Tiny models drift into denormal floats (Adam's second moments, small weights) and x86
    # then runs many times slower; flushing them to zero changes nothing measurable.
    torch.set_flush_denormal(True)
    blocks = pack(tok, docs, cfg.seq_len)
    model = make_model(cfg, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, len(blocks) // cfg.batch_size)
    total = max(1, int(round(steps_per_epoch * cfg.pretrain_epochs)))
    order = torch.cat([torch.randperm(len(blocks), generator=gen)
                       for _ in range(math.ceil(cfg.pretrain_epochs) or 1)])
    def batch_at(step: int) -> dict:
        return {"input_ids": blocks[order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]}

    t0, losses = time.perf_counter(), []
    loss_ema = train_steps(model, opt, batch_at, total, cfg.lr, cfg.warmup_steps, say, label="pretrain",
                           report_every=100, stop_after=stop_after, losses=losses)
    stats = {"blocks": len(blocks), "tokens": int(blocks.numel()), "steps": total, "final_loss": loss_ema,
             "seconds": time.perf_counter() - t0}
    if stop_after is not None:
        stats["first_losses"] = losses
    return model, stats
