"""Generation backends for ``pivotune eval --backend``: ``hf`` (the default: the harness's Hugging Face
model, built in :mod:`.harness`) or ``vllm`` (the harness's vLLM model: continuous batching and
paged attention, several times faster on a GPU for the generative tasks).

vLLM is not a pivotune dependency (it pins its own torch and needs a CUDA GPU); install it with
``pip install vllm`` (or ``pip install "lm-eval[vllm]"``). It loads the model directory itself, so it
takes a model directory, a run directory (a LoRA run is merged first, as for ``hf``) or a hub name,
not a LinguaLIFT bridge or an in-memory model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ..errors import PivotuneError

DEFAULT = "hf"
VLLM_INSTALL = ("--backend vllm needs vLLM, which is not installed here: `pip install vllm` (a CUDA GPU; "
                "see docs.vllm.ai for the build matching your torch), or use --backend hf.")


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_available(backend: str) -> None:
    """Fail at once (before any task data is loaded) when ``backend`` cannot run here."""
    if backend not in NAMES:
        raise PivotuneError(f"unknown backend {backend!r}; available: {', '.join(NAMES)}.")
    if backend == "vllm" and not vllm_installed():
        raise PivotuneError(VLLM_INSTALL)


def vllm_model_args(model_dir: str | Path, *, dtype: str = "auto", max_length: int | None = None) -> dict:
    """The harness's ``VLLM(**args)`` for a model directory: greedy generation is batched by vLLM
    itself (``batch_size="auto"``), so ``--batch-size`` does not apply."""
    args = {"pretrained": str(model_dir), "dtype": dtype, "batch_size": "auto"}
    if max_length is not None:
        args["max_model_len"] = max_length
    return args


def vllm_lm(model, *, dtype: str = "auto", max_length: int | None = None, **_unused):
    """The harness's vLLM model on ``model`` (a model directory or hub name); clear errors for what it
    cannot run."""
    if not isinstance(model, (str, Path)):
        raise PivotuneError("--backend vllm loads a model directory or hub name itself; an in-memory model "
                            "runs on --backend hf.")
    if (Path(model) / "bridge.json").is_file():
        raise PivotuneError(f"{model} is a LinguaLIFT bridge (encoder + LM), which vLLM cannot run; use --backend hf.")
    check_available("vllm")
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM(**vllm_model_args(model, dtype=dtype, max_length=max_length))


#: The backends other than the default, by name: each builds the harness model from the model.
BUILDERS: dict[str, Callable] = {"vllm": vllm_lm}
NAMES = (DEFAULT, *BUILDERS)
