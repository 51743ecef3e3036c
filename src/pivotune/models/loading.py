"""Loading base models and tokenizers (hub names or local paths), and LoRA wrapping."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PivotuneError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _explain(what: str, name: str, err: Exception) -> PivotuneError:
    local = Path(name).exists()
    hint = ("the directory exists but does not hold a loadable model (config.json, weights, tokenizer files)"
            if local else "it is neither an existing local directory nor reachable on the hub "
            "(offline? set HF_HUB_OFFLINE=1 and point to a local copy)")
    return PivotuneError(f"Could not load the {what} '{name}': {hint}. Underlying error: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 - turned into a user-facing message
        raise _explain("tokenizer", name, e) from e
    if tok.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id works; EOS is conventional.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def load_model(name: str, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(name, dtype=DTYPES[dtype])
    except Exception as e:  # noqa: BLE001
        raise _explain("model", name, e) from e


def apply_lora(model, lora_cfg):
    """Wrap ``model`` with peft LoRA adapters on ``lora_cfg.target_modules``."""
    from peft import LoraConfig, get_peft_model

    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in lora_cfg.target_modules if m not in present]
    if missing:
        raise PivotuneError(f"lora.target_modules {missing} are not module names of this model; "
                            f"linear layers it has include: {sorted(p for p in present if p.endswith('proj'))}")
    cfg = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                     target_modules=list(lora_cfg.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)
