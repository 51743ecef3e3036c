"""Models that train with parts beyond a causal LM (PROM's pivot head, LinguaLIFT's bridge), and the one way
the trainer writes and reads them.

A :class:`ModelWithParts` holds its causal LM as ``lm`` and implements one pair, :meth:`~ModelWithParts.save_parts`
and :meth:`~ModelWithParts.load_parts`; :class:`pivotune.train.trainer.PivotuneTrainer` uses that pair for every
checkpoint and :func:`pivotune.train.run.save_run` for the run's outputs, whatever the method. Where the parts lie
is the one thing that differs (:attr:`~ModelWithParts.parts_beside_lm`).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import PivotuneError


class ModelWithParts(nn.Module):
    """A causal LM (``lm``, plain or peft-wrapped) with parts of its own."""

    #: True (PROM): the model directory is the LM's own files (``save_pretrained`` writes the LM only) and the
    #: parts lie beside it, in the run directory and in each checkpoint. False (the LinguaLIFT bridge):
    #: ``save_pretrained`` writes the whole model in a format of its own, and a checkpoint holds only its parts.
    parts_beside_lm: bool = True
    lm: nn.Module

    def save_parts(self, directory: str | Path, state: dict | None = None) -> None:
        """Write the parts into ``directory`` (a run directory or a checkpoint); ``state``: their tensors when
        they were gathered elsewhere (a sharded model's full state dict, as :meth:`split_state` returns it)."""
        raise NotImplementedError

    def load_parts(self, directory: str | Path) -> None:
        """Put what :meth:`save_parts` wrote into this model, in place (the optimizer keeps its tensors)."""
        raise NotImplementedError

    def split_state(self, state_dict: dict | None) -> tuple[dict | None, dict | None]:
        """A full state dict (gathered by FSDP or DeepSpeed) as (the LM's, names relative to ``lm``; the rest)."""
        if not state_dict:
            return None, None
        lm = {k.removeprefix("lm."): v for k, v in state_dict.items() if k.startswith("lm.")}
        return lm, {k: v for k, v in state_dict.items() if not k.startswith("lm.")}


def load_lm_files(lm: nn.Module, d: Path) -> None:
    """Load an LM's saved files (full weights, sharded or not, or a LoRA adapter) from ``d`` into ``lm`` in place,
    refusing files that do not fit it exactly."""
    from peft import PeftModel
    from safetensors.torch import load_file

    is_peft = isinstance(lm, PeftModel)
    if (d / "adapter_model.safetensors").is_file():
        if not is_peft:
            raise PivotuneError(f"{d} holds a LoRA adapter but this run trains the full LM: resume with lora.enabled "
                                "as the checkpoint's run had it.")
        from peft import set_peft_model_state_dict

        state = load_file(str(d / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(lm, state)
        lost = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or lost:
            raise PivotuneError(f"{d}/adapter_model.safetensors does not fit this run's LoRA adapter (unexpected "
                                f"{result.unexpected_keys[:3]}, missing {lost[:3]}): resume with the lora settings "
                                "of the checkpoint's run.")
        return
    if is_peft:
        raise PivotuneError(f"{d} holds full LM weights but this run trains a LoRA adapter: resume with lora.enabled "
                            "as the checkpoint's run had it.")
    index = d / "model.safetensors.index.json"
    files = ([d / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
             if index.is_file() else [d / "model.safetensors"])
    own = lm.state_dict(keep_vars=True)
    loaded: set[str] = set()
    for f in files:
        state = load_file(str(f))
        unexpected = sorted(set(state) - set(own))
        if unexpected:
            raise PivotuneError(f"{f} does not fit the LM being trained (unexpected weights {unexpected[:3]}): resume "
                                "with the model the checkpoint's run trained.")
        lm.load_state_dict(state, strict=False)
        loaded |= set(state)
    # a weight missing from the file is fine only when it is tied to one that was loaded (lm_head ↔ embeddings)
    ptrs = {own[k].data_ptr() for k in loaded}
    missing = [k for k in own if k not in loaded and own[k].data_ptr() not in ptrs]
    if missing:
        raise PivotuneError(f"{d} lacks LM weights {missing[:3]}, so the resumed run would not continue exactly; "
                            "resume from a complete checkpoint.")
