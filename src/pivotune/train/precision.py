"""Training precision: the dtype the weights load and train in, the autocast the steps compute under, and the
dtype the final model is saved in (docs/methods.md, "Training precision and the heads' kernels").

``train.dtype: float32``: everything float32. ``bfloat16`` / ``float16``: mixed precision. Every weight that
trains is float32 ("master weights") and the forward and backward compute in half precision under the Trainer's
autocast (TrainingArguments ``bf16=`` / ``fp16=``), so an update far below half precision's spacing (2e-5 on a
weight of 1, against bf16's 2^-7) is kept. Full fine-tuning loads the model in float32 (:func:`weights_dtype`); a
LoRA run's frozen base stays in the half dtype, and what trains beside it (PROM's pivot head, LinguaLIFT's
alignment layer, new vocabulary rows) is made float32 (:func:`keep_master_weights`). ``train.pure_half``
(bfloat16 only): the weights themselves in bfloat16, half the memory, with a warning.

RUN/model is written in ``train.dtype`` either way (:func:`save_lm`), so a bf16 run still writes and exports a
bf16 model; the checkpoints keep the float32 master weights, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import PivotuneError
from ..models.loading import DTYPES
from ..models.parts import ModelWithParts

if TYPE_CHECKING:
    from ..config import RunConfig, TrainConfig

log = logging.getLogger(__name__)

PURE_HALF_WARNING = (
    "train.pure_half: the weights train in %s, so an optimizer update below half precision's spacing is lost "
    "(at lr 2e-5 AdamW moves a weight of magnitude 1 by ~2e-5 a step, bf16's spacing there is 2^-7 ~ 0.0078): "
    "training can stall without an error. Drop train.pure_half for float32 master weights under %s autocast.")


def weights_dtype(cfg: RunConfig) -> str:
    """The dtype a run loads its models in: float32, the master weights of full fine-tuning; ``train.dtype`` under
    ``pure_half``, and for a LoRA run's base, which stays frozen (what trains becomes float32:
    :func:`keep_master_weights`)."""
    if cfg.train.pure_half or cfg.lora.enabled:
        return cfg.train.dtype
    return "float32"


def keep_master_weights(model: torch.nn.Module, train: TrainConfig) -> None:
    """Under mixed precision, every weight that trains in float32 (in place, before the optimizer sees it): the
    parts a method built from a half-precision frozen base (PROM's pivot head, LinguaLIFT's alignment layer,
    new vocabulary rows under LoRA); peft's adapters already are."""
    if train.dtype == "float32" or train.pure_half:
        return
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def autocast_flags(train: TrainConfig) -> dict[str, bool]:
    """TrainingArguments' precision keywords: the Trainer's autocast in ``train.dtype`` (``bf16=`` / ``fp16=``)
    and, without a GPU, ``use_cpu`` where bf16 autocast needs it (transformers refuses bf16 on a CPU otherwise)."""
    from transformers.utils import is_torch_bf16_gpu_available

    bf16 = train.dtype == "bfloat16"
    distributed_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # Without a GPU, accelerate sets up multi-process (torchrun) training only when told to use the CPU;
    # otherwise every rank would train alone on all the data.
    use_cpu = not torch.cuda.is_available() and (distributed_cpu or (bf16 and not is_torch_bf16_gpu_available()))
    return {"bf16": bf16, "fp16": train.dtype == "float16", "use_cpu": use_cpu}


def check_precision(train: TrainConfig) -> None:
    """Refuse, before any model loads, a precision this machine would not train in as configured; warn that
    ``pure_half`` loses small updates."""
    if train.dtype == "float16" and not (torch.cuda.is_available() or torch.xpu.is_available()
                                         or torch.backends.mps.is_available()):
        raise PivotuneError("train.dtype float16 trains under float16 autocast with loss scaling, which needs a GPU: "
                            "on a CPU the Trainer would silently compute in float32. Use train.dtype bfloat16 "
                            "(CPU autocast supports it) or float32.")
    if train.dtype == "bfloat16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise PivotuneError(f"train.dtype bfloat16 needs a GPU with bfloat16 support (Ampere or newer); "
                            f"{torch.cuda.get_device_name()} has none. Use train.dtype float16 or float32.")
    if train.pure_half:
        log.warning(PURE_HALF_WARNING, train.dtype, train.dtype)


def compute_autocast(train: TrainConfig, device: torch.device | str):
    """The autocast the Trainer's steps run under, for computing with the model outside them (CLO's reference
    log-probabilities), so both see the same numbers; a no-op for float32."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=DTYPES[train.dtype], enabled=train.dtype != "float32")


def save_lm(model, directory: Path, state: dict | None, train: TrainConfig) -> None:
    """``model.save_pretrained(directory)`` (``state``: a gathered state dict, else the model's own), a full
    causal LM's weights in ``train.dtype``: master weights are cast on the way out (on the CPU, ties kept) and
    config.json names the saved dtype, so the model loads (``dtype="auto"``) and exports as the run asked. A LoRA
    adapter and LinguaLIFT's bridge are written as they trained."""
    from transformers import PreTrainedModel

    lm = model.lm if isinstance(model, ModelWithParts) and model.parts_beside_lm else model
    saved = DTYPES[train.dtype]
    if not isinstance(lm, PreTrainedModel) or lm.dtype == saved:
        model.save_pretrained(directory, state_dict=state, safe_serialization=True)
        return
    cast: dict[tuple, torch.Tensor] = {}   # by storage, so tied weights stay one tensor

    def to_saved(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point():
            return t
        key = (t.data_ptr(), t.shape, t.stride())
        if key not in cast:
            cast[key] = t.detach().to("cpu", saved)
        return cast[key]

    lm.save_pretrained(directory, state_dict={k: to_saved(v) for k, v in (state or lm.state_dict()).items()},
                       safe_serialization=True)
    config = copy.deepcopy(lm.config)   # save_pretrained recorded the training dtype
    config.dtype = train.dtype
    config.save_pretrained(directory)
