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

from .errors import PivotuneError
from .io import atomic_path
from .yamlio import load_yaml


def _run_model_dir(run_dir: Path) -> Path:
    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise PivotuneError(f"{run_dir} is not a finished pivotune run: {model_dir} is missing "
                            "(did training complete?).")
    return model_dir


def export(run_dir: str | Path, out_dir: str | Path, dtype: str | None = None, force: bool = False) -> Path:
    """Write ``run_dir``'s final model as a plain model directory at ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_dir = _run_model_dir(run_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise PivotuneError(f"{out_dir} exists and is not empty; choose another directory or pass --force "
                            "to replace it.")
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        base_name = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        cfg_path = run_dir / "config.yaml"
        if cfg_path.exists():
            base_name = load_yaml(cfg_path, "Run config").get("model", base_name)
        base = AutoModelForCausalLM.from_pretrained(base_name)
        model = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    if dtype:
        model = model.to(getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir
