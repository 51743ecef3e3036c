"""PROM's pivot head and the module that carries it through training.

``head_n`` reads the output of decoder block ``n`` (1-based, HF ``hidden_states[n]``) and turns it into
next-token logits. It is initialised from the model's own final head, so at step 0 it is exactly the
logit lens at layer ``n`` (:func:`pivotune.models.arch.lens_logits`), and it applies the same logit
transforms (``logit_scale``, soft-cap) as the model's forward. Three kinds (``prom.head``):

* ``copy`` (default): the model's **shared** final norm module, then a private trainable ``Linear``
  copied from ``W_U`` (bias included if the unembedding has one). The norm is the one the final
  layer uses, so the pivot term shapes layer ``n`` towards the space the logit lens (and the
  regulation rule) reads; the private ``W_U`` keeps label-smoothed English gradients away from the
  final head, which only the target/translation term trains.
* ``copy_norm``: a private trainable copy of the final norm as well.
* ``tied``: the final norm and ``W_U`` themselves (no parameters of its own).

Where the head lives: :class:`PivotedModel` is a small ``nn.Module`` holding the causal LM (plain or
peft-wrapped) as ``lm`` and the head as ``pivot_head``; the Trainer trains, moves and wraps it like
any model, so the optimizer sees the head's parameters (trained fully, also under LoRA) and DDP wraps
the module whose ``forward`` computes the whole loss (the truncated forward then runs on the
unwrapped LM inside DDP's forward, as :func:`~pivotune.models.arch.truncated_forward` requires).
``save_pretrained`` writes **only** the LM, so ``RUN/model`` stays a plain model (or adapter)
directory; :meth:`PivotedModel.save_parts` writes ``pivot_head.safetensors`` and
``pivot_head.json`` beside it (run directory and Trainer checkpoints), and export never reads them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import PivotuneError
from ..io import atomic_path, write_text_atomic
from .arch import ArchInfo, apply_logit_transforms, arch_info, unwrap
from .parts import ModelWithParts

HEAD_KINDS = ("copy", "copy_norm", "tied")
HEAD_WEIGHTS = "pivot_head.safetensors"
HEAD_CONFIG = "pivot_head.json"


def pivot_layers(num_layers: int) -> range:
    """The pivot layers of an N-block model: 1 <= n <= N - 1, the output of a block **below the top**.

    PROM's pivot is an intermediate layer where the model still thinks in English; n = N would read the
    final block's output with a copy of the final head (a second final head on h_N, the one place ``head_n``
    and ``head_N`` see the same input), so English rows would run the whole model and the pivot term would
    be nothing but English cross-entropy on a duplicate head. The one rule, used by training, the regulation,
    ``pivotune probe`` and the sweep."""
    return range(1, num_layers)


def default_pivot_layer(num_layers: int) -> int:
    """round(0.75·N), halves rounded up (24 for N = 32), kept inside :func:`pivot_layers` (1 for N = 2)."""
    return min(max(int(0.75 * num_layers + 0.5), 1), num_layers - 1)


def resolve_pivot_layer(pivot_layer: int | None, num_layers: int, option: str = "prom.pivot_layer") -> int:
    """The configured pivot layer (``option`` names where it was given), or the default; a clear error when
    it is not in :func:`pivot_layers`."""
    valid = pivot_layers(num_layers)
    if not valid:
        raise PivotuneError(f"{option}: this model has {num_layers} decoder block(s); PROM's pivot layer lies below "
                            "the top block, so it needs a model with at least 2.")
    n = default_pivot_layer(num_layers) if pivot_layer is None else pivot_layer
    if isinstance(n, bool) or not isinstance(n, int) or n not in valid:
        raise PivotuneError(f"{option}={pivot_layer!r} is out of range for this {num_layers}-block model: the pivot "
                            f"layer n is the output of decoder block n (Hugging Face hidden_states[n]) below the top, "
                            f"1 <= n <= {num_layers - 1} (n = {num_layers} would put a second final head on the final "
                            f"block, not a pivot; default round(0.75·N) = {default_pivot_layer(num_layers)}).")
    return n


class PivotHead(nn.Module):
    """``head_n(x) = transforms(proj(norm(x)))`` on *raw* (un-normed) block outputs.

    ``norm`` / ``proj`` are ``None`` when the head uses the model's own final norm / unembedding
    (looked up in ``info`` at call time, so they are not registered twice).
    """

    def __init__(self, kind: Literal["copy", "copy_norm", "tied"], norm: nn.Module | None,
                 proj: nn.Linear | None):
        super().__init__()
        self.kind = kind
        self.norm = norm
        self.proj = proj

    @classmethod
    def from_model(cls, model: nn.Module, kind: str = "copy", info: ArchInfo | None = None) -> PivotHead:
        """A head initialised from ``model``'s final norm and unembedding (copies are trainable)."""
        if kind not in HEAD_KINDS:
            raise PivotuneError(f"Unknown pivot head '{kind}'; choose one of {', '.join(HEAD_KINDS)}.")
        info = info if info is not None else arch_info(model)
        norm = proj = None
        if kind == "copy_norm":
            norm = copy.deepcopy(info.final_norm)
        if kind in ("copy", "copy_norm"):
            w = info.unembed.weight
            bias = getattr(info.unembed, "bias", None)
            proj = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                proj.weight.copy_(w)
                if bias is not None:
                    proj.bias.copy_(bias)
        head = cls(kind, norm, proj)
        for p in head.parameters():
            p.requires_grad_(True)   # also under LoRA, where the copied originals are frozen
        return head

    def forward(self, raw: torch.Tensor, info: ArchInfo) -> torch.Tensor:
        x = self.norm(raw) if self.norm is not None else info.final_norm(raw)
        logits = self.proj(x) if self.proj is not None else info.unembed(x)
        return apply_logit_transforms(info, logits)


class PivotedModel(ModelWithParts):
    """A causal LM plus PROM's pivot head; ``forward(batch, norms, compute)`` returns ``compute(self, batch, norms)``
    (:meth:`pivotune.objectives.prom.PromObjective.compute`): computing the loss inside ``forward`` is what lets
    DDP wrap the whole computation. The head is its one part, beside the LM's files."""

    def __init__(self, lm: nn.Module, pivot_head: PivotHead, pivot_layer: int, meta: dict | None = None):
        super().__init__()
        self.lm = lm
        self.pivot_head = pivot_head
        self.info = arch_info(lm)   # plain attribute (not a module): references into lm
        self.pivot_layer = resolve_pivot_layer(pivot_layer, self.info.num_layers)
        self.meta = dict(meta or {})

    # -- what the Trainer asks of a model
    @property
    def config(self):
        return self.lm.config

    @property
    def _no_split_modules(self):
        """The LM's block classes: FSDP's transformer auto-wrap policy makes each block one unit."""
        return getattr(unwrap(self.lm), "_no_split_modules", None)

    @property
    def generation_config(self):
        return getattr(self.lm, "generation_config", None)

    def activation_checkpointing_enable(self, *args, **kwargs):
        return self.lm.activation_checkpointing_enable(*args, **kwargs)

    def forward(self, batch: dict, norms: dict, compute: Callable):
        return compute(self, batch, norms)

    # -- saving
    def save_pretrained(self, save_directory, **kwargs):
        """The LM only (plain model or LoRA adapter): the head is not part of the model directory."""
        return self.lm.save_pretrained(save_directory, **kwargs)

    def save_parts(self, directory: str | Path, state: dict | None = None) -> None:
        """``pivot_head.safetensors`` (the head's own tensors; none for ``tied``) and ``pivot_head.json``.

        ``state``: the parts' tensors when they were gathered elsewhere (FSDP's full state dict)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = (self.pivot_head.state_dict() if state is None else
                 {k.removeprefix("pivot_head."): v for k, v in state.items() if k.startswith("pivot_head.")})
        state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        with atomic_path(directory / HEAD_WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        info = self.info
        desc = {
            "pivot_layer": self.pivot_layer, "num_layers": info.num_layers, "head": self.pivot_head.kind,
            "norm": "private copy of the final norm (norm.*)" if self.pivot_head.norm is not None
            else f"the model's own final norm ({info.norm_path})",
            "unembedding": "private Linear (proj.*) initialised from W_U" if self.pivot_head.proj is not None
            else "the model's own output embedding (W_U)",
            "logit_scale": info.logit_scale, "logit_softcap": info.logit_softcap,
            "input": "raw output of decoder block pivot_layer (hidden_states[pivot_layer])",
            "tensors": sorted(state), **self.meta,
        }
        write_text_atomic(directory / HEAD_CONFIG, json.dumps(desc, indent=2, default=str) + "\n")

    def load_parts(self, directory: str | Path) -> None:
        """Load the head's tensors saved by :meth:`save_parts` (resuming from a checkpoint)."""
        from safetensors.torch import load_file

        path = Path(directory) / HEAD_WEIGHTS
        if not path.is_file():
            raise PivotuneError(f"{directory} has no {HEAD_WEIGHTS}: it is not a checkpoint of a PROM run.")
        self.pivot_head.load_state_dict(load_file(str(path)))   # in place: the optimizer keeps its tensors


def load_pivot_head(directory: str | Path, model: nn.Module) -> tuple[PivotHead, dict]:
    """Rebuild a saved pivot head for ``model`` (the trained LM); returns ``(head, description)``.

    Call it as ``head(hidden_states[n], arch_info(model))`` with ``n = description["pivot_layer"]``.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / HEAD_CONFIG).exists():
        raise PivotuneError(f"{directory} has no {HEAD_CONFIG}: it is not a PROM run directory or checkpoint.")
    desc = json.loads((directory / HEAD_CONFIG).read_text(encoding="utf-8"))
    head = PivotHead.from_model(unwrap(model), desc["head"])
    head.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))
    return head, desc
