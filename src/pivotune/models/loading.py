"""Loading base models and tokenizers (hub names or local paths), and LoRA wrapping.

Safe by default: weights load from safetensors only (a pickled ``.bin`` can run code when loaded),
``trust_remote_code`` stays off unless the caller (the run config) turns it on, and a local path is
loaded with ``local_files_only`` so nothing is fetched from the network unless a hub name is given.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PivotuneError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _explain(what: str, name: str, err: Exception) -> PivotuneError:
    local = Path(name).exists()
    if (Path(name) / "bridge.json").is_file():
        return PivotuneError(f"Could not load the {what} '{name}': it is a LinguaLIFT bridge directory (multilingual "
                             "encoder + alignment layer + causal LM), not a plain causal-LM directory; load it with "
                             "pivotune.models.bridge.LinguaLiftModel.from_pretrained (or evaluate it with the "
                             "harness model 'pivotune-bridge').")
    hint = ("the directory exists but does not hold a loadable model (config.json, weights, tokenizer files)"
            if local else "it is neither an existing local directory nor reachable on the hub "
            "(offline? set HF_HUB_OFFLINE=1 and point to a local copy)")
    return PivotuneError(f"Could not load the {what} '{name}': {hint}. Underlying error: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def source_kwargs(name: str, trust_remote_code: bool = False) -> dict:
    """``from_pretrained`` keywords for ``name``: local directories never touch the network; a name that
    is clearly a path but does not exist is an error here, not a hub request."""
    path = Path(name).expanduser()
    if path.exists():
        return {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name:
        raise PivotuneError(f"Could not load '{name}': the path does not exist (it is a file-system path, not a hub "
                            "name such as 'meta-llama/Llama-2-7b-hf'; nothing was downloaded).")
    return {"trust_remote_code": trust_remote_code}


def refuse_pickled_weights(name: str) -> None:
    """A local model directory must hold safetensors weights; say so instead of loading pickles."""
    path = Path(name).expanduser()
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    if pickled:
        raise PivotuneError(f"Model directory '{name}' holds only pickled weights ({', '.join(pickled[:3])}); "
                            "pivotune loads safetensors only, since unpickling can run arbitrary code. Convert "
                            "them once where you trust the file (load it with transformers and call "
                            "save_pretrained(..., safe_serialization=True)).")


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    kwargs = source_kwargs(name, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as e:  # noqa: BLE001 - turned into a user-facing message
        raise _explain("tokenizer", name, e) from e
    if tok.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id works; EOS is conventional.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def load_pretrained(auto_class, name: str, *, what: str = "model", dtype: str | None = "float32",
                    trust_remote_code: bool = False):
    """Every model weight load in pivotune: ``auto_class.from_pretrained(name)`` from safetensors only (a local
    directory of pickled weights is refused before transformers sees it), local paths offline, and a failure as
    one paragraph naming ``what`` and ``name``. ``dtype`` None keeps the dtype the weights were saved in."""
    kwargs = source_kwargs(name, trust_remote_code)
    refuse_pickled_weights(name)
    try:
        return auto_class.from_pretrained(name, dtype=DTYPES[dtype] if dtype else "auto", use_safetensors=True,
                                          **kwargs)
    except Exception as e:  # noqa: BLE001 - turned into a user-facing message
        raise _explain(what, name, e) from e


def load_model(name: str, dtype: str | None = "float32", trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    return load_pretrained(AutoModelForCausalLM, name, dtype=dtype, trust_remote_code=trust_remote_code)


def load_adapter(base, adapter_dir: str | Path, *, is_trainable: bool = False):
    """A LoRA adapter directory (safetensors only, as :func:`load_pretrained`) on the loaded ``base`` model."""
    from peft import PeftModel

    refuse_pickled_weights(str(adapter_dir))
    _fit_rows_to_adapter(base, Path(adapter_dir))
    try:
        # peft prefers adapter_model.safetensors; the check above refused a directory with only a pickled one
        return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=is_trainable)
    except Exception as e:  # noqa: BLE001
        raise _explain("LoRA adapter", str(adapter_dir), e) from e


def _fit_rows_to_adapter(base, adapter_dir: Path) -> None:
    """Resize ``base``'s embeddings to hold the rows an adapter trains as tokens beyond them (a run that extended
    the vocabulary: peft's trainable tokens hold those rows' values, so their initial values do not matter)."""
    from ..io import read_json_object

    config = adapter_dir / "adapter_config.json"
    indices = read_json_object(config).get("trainable_token_indices") if config.is_file() else None
    if not indices:
        return
    ids = [i for v in indices.values() for i in v] if isinstance(indices, dict) else list(indices)
    if max(ids) + 1 > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(max(ids) + 1, mean_resizing=False)


def load_lora_model(adapter_dir: str | Path, base: str | None = None, dtype: str | None = "float32"):
    """A LoRA adapter directory merged into its base model (``base``, else the one its adapter_config.json names)
    as a plain causal LM."""
    from ..io import read_json_object

    if base is None:
        base = read_json_object(Path(adapter_dir) / "adapter_config.json").get("base_model_name_or_path")
        if not base:
            raise PivotuneError(f"{adapter_dir}/adapter_config.json does not name the adapter's base model "
                                "(base_model_name_or_path).")
    return load_adapter(load_model(base, dtype), adapter_dir).merge_and_unload()


def load_encoder(name: str, dtype: str = "float32", trust_remote_code: bool = False):
    """A multilingual encoder (BERT/XLM-R style via ``AutoModel``; the encoder half of an encoder-decoder such
    as mT5 via ``AutoModelForTextEncoding``)."""
    from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding

    kwargs = source_kwargs(name, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(name, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise _explain("encoder", name, e) from e
    auto = AutoModelForTextEncoding if getattr(config, "is_encoder_decoder", False) else AutoModel
    return load_pretrained(auto, name, what="encoder", dtype=dtype, trust_remote_code=trust_remote_code)


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
