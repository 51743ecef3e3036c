"""Export a run as a plain Hugging Face model directory.

LoRA adapters are merged, training-only parts (pivot heads, bridges) are not
written, and the result loads with ``AutoModelForCausalLM.from_pretrained``
with nothing from pivotune installed. PROM's pivot head lives beside the model
(``RUN/pivot_head.safetensors`` + ``.json``), never inside ``RUN/model``, and
export reads ``RUN/model`` only, so the head is never written.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import PivotuneError
from .outputs import claim_output_dir, replaced_output_dir


def _run_model_dir(run_dir: Path) -> Path:
    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise PivotuneError(f"{run_dir} is not a finished pivotune run: {model_dir} is missing "
                            "(did training complete?).")
    return model_dir


def _lora_base(run_dir: Path, model_dir: Path) -> str | None:
    """The base model a LoRA run's adapter goes on (the run config's ``model``), or ``None`` for full weights."""
    if not (model_dir / "adapter_config.json").exists():
        return None
    base_name = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        base_name = yaml.safe_load(cfg_path.read_text()).get("model", base_name)
    return base_name


def export(run_dir: str | Path, out_dir: str | Path, dtype: str | None = None, force: bool = False) -> Path:
    """Write ``run_dir``'s final model as a plain model directory at ``out_dir``: a new or empty directory, an earlier
    export, or with ``force`` any other, but never ``run_dir``, its model or a directory holding them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_dir = _run_model_dir(run_dir)
    base_name = _lora_base(run_dir, model_dir)
    inputs = [run_dir, model_dir, base_name]
    claim_output_dir(out_dir, "export", force=force, inputs=inputs, replaces=True)   # before the model loads
    if base_name is not None:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_name)
        model = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    if dtype:
        model = model.to(getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with replaced_output_dir(out_dir, "export", force=force, inputs=inputs) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir
