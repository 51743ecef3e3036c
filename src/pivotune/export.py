"""Export a run, or one of its complete checkpoints, as a plain Hugging Face model directory.

LoRA adapters are merged, training-only parts (pivot heads, bridges) are not
written, and the result loads with ``AutoModelForCausalLM.from_pretrained``
with nothing from pivotune installed. PROM's pivot head lives beside the model
(``RUN/pivot_head.safetensors`` + ``.json``, and beside the LM's files in each
checkpoint), never inside ``RUN/model``, and export reads the LM's weights
only, so the head is never written.

A checkpoint (``RUN/checkpoint-N``) exports like a finished run: its LM weights
(full, or the LoRA adapter merged into the run's base model) and the tokenizer
saved with it (else the run's). So a run killed while it wrote its final model
can be exported from its last checkpoint without resuming it.
"""

from __future__ import annotations

from pathlib import Path

from .errors import PivotuneError
from .outputs import claim_output_dir, replaced_output_dir
from .yamlio import load_yaml

#: LM weights a checkpoint must hold to be exported (full model, sharded full model, or LoRA adapter)
CHECKPOINT_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def _model_source(path: Path) -> tuple[Path, Path]:
    """(directory holding the weights, run directory) for ``path``: a finished run or a complete checkpoint."""
    from .train.resume import complete_checkpoints, is_complete_checkpoint

    if is_complete_checkpoint(path):
        if (path / "alignment.safetensors").is_file():
            raise PivotuneError(f"{path} is a LinguaLIFT stage checkpoint (bridge parts, not a causal LM): resume "
                                "the run (pivotune train CONFIG --resume) to write its bridge.")
        if not any((path / f).is_file() for f in CHECKPOINT_WEIGHTS):
            raise PivotuneError(f"{path} holds none of {', '.join(CHECKPOINT_WEIGHTS)} (a sharded FSDP or "
                                "DeepSpeed checkpoint?), so it cannot be exported; resume the run "
                                "(pivotune train CONFIG --resume) to write its final model.")
        return path, path.parent
    model_dir = path / "model"
    if not model_dir.is_dir():
        done = [p.name for p in complete_checkpoints(path)]
        hint = (f" A run stopped after its last checkpoint is finished by `pivotune train CONFIG --resume`, and a "
                f"complete checkpoint exports directly (pivotune export {path / done[-1]} OUT; complete ones: "
                f"{', '.join(done)})." if done else "")
        raise PivotuneError(f"{path} is not a finished pivotune run: {model_dir} is missing (did training "
                            f"complete?), and it is not a complete checkpoint (checkpoint-N).{hint}")
    return model_dir, path


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _run_settings(run_dir: Path) -> dict:
    """The run's config.yaml as written at the end of training ({} when it is not there)."""
    path = run_dir / "config.yaml"
    return (load_yaml(path, "Run config") or {}) if path.is_file() else {}


def export(run_dir: str | Path, out_dir: str | Path, dtype: str | None = None, force: bool = False) -> Path:
    """Write the model of ``run_dir`` (a finished run, or a complete checkpoint of one) as a plain model
    directory at ``out_dir``: a new or empty directory, an earlier export, or with ``force`` any other, but never
    ``run_dir``, its model, the LoRA base model or a directory holding them."""
    import torch

    from .models.loading import load_lora_model, load_model, load_tokenizer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_dir, owner = _model_source(run_dir)
    settings = _run_settings(owner)
    is_lora = (model_dir / "adapter_config.json").exists()
    inputs = [run_dir, model_dir]
    if is_lora:   # the base model is an input too: never replaced by the export
        inputs += [settings.get("model"), _read_json(model_dir / "adapter_config.json").get("base_model_name_or_path")]
    claim_output_dir(out_dir, "export", force=force, inputs=inputs, replaces=True)   # before the model loads
    if is_lora:   # the base the run trained on, else the adapter's record
        model = load_lora_model(model_dir, base=settings.get("model"), dtype=None)
    else:
        model = load_model(str(model_dir), dtype=None)
    if dtype:
        model = model.to(getattr(torch, dtype))
    tokenizer_from = str(model_dir)
    if not (model_dir / "tokenizer_config.json").is_file():   # a checkpoint saved without one: the run's
        tokenizer_from = settings.get("tokenizer") or settings.get("model") or tokenizer_from
    tokenizer = load_tokenizer(tokenizer_from)
    with replaced_output_dir(out_dir, "export", force=force, inputs=inputs) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir
