"""The one module that knows model architectures.

Everything in pivotune that reads an intermediate layer (PROM's pivot head, the logit lens) goes through
this module, so the per-architecture facts live in one place:

* :func:`arch_info` finds the decoder blocks, the final norm and the unembedding of a causal LM (plain
  or wrapped by peft), and the logit transforms its forward applies after the unembedding.
* :func:`unembed_logits` turns a *final-normed* hidden state into logits exactly as the model's forward
  does: ``W_U h (+ b)``, then ``logit_scale`` (Cohere), then the soft-cap ``c·tanh(z/c)`` (Gemma 2/3).
* :func:`lens_logits` is the logit lens on ``hidden_states[k]`` from ``output_hidden_states=True``.
* :func:`truncated_forward` runs decoder blocks ``1..n`` only and returns the final-normed output of
  block ``n`` (1-based: HF ``hidden_states[n]``), with gradients.
* :func:`final_hidden_states` runs the whole forward but no vocabulary projection and returns the states the
  unembedding would have read.
* :func:`attention_projection_names` lists every block's attention projections (CLO trains only these).

Layer indexing is 1-based "output of decoder block n" everywhere, matching Hugging Face's
``hidden_states[n]`` (``hidden_states[0]`` is the embedding output).

Hidden-state convention (transformers 5.x, checked for every architecture in
``TESTED_MODEL_TYPES`` by ``tests/test_arch.py``): ``output_hidden_states=True`` returns N+1 tensors and
``hidden_states[N]`` is the *final-normed* state (``capture_outputs`` replaces the last block's output
with ``last_hidden_state``), unless the config sets ``tie_last_hidden_states=False``. Every other index
is a raw residual-stream state that needs the final norm.

On an architecture outside ``TESTED_MODEL_TYPES`` whose attribute paths are nevertheless found,
:func:`verify_arch` checks the lens and the truncated forward against the model's own forward on a few
tokens; call it once before relying on the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PivotuneError

# Where the decoder stack lives (relative to the causal-LM module), and what its parts are called.
DECODER_PATHS = ("model", "gpt_neox", "transformer")
LAYERS_NAMES = ("layers", "h")
NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f")

ATTENTION_NAMES = ("self_attn", "attention", "attn")   # the attention sub-module of a decoder block

#: ``config.model_type`` values whose conventions are checked by tests/test_arch.py.
TESTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                                "phi3", "gpt_neox", "gpt2", "phi", "cohere", "olmo2"})


@dataclass
class ArchInfo:
    """The parts of a causal LM that the logit lens and intermediate-layer heads need.

    Attributes:
        layers: the ``nn.ModuleList`` of decoder blocks (block ``n`` is ``layers[n - 1]``).
        final_norm: the final norm module; call it, never fold its weights (Gemma's RMSNorm is
            ``rms(x)·(1 + w)``).
        unembed: the output embedding (``model.get_output_embeddings()``), a Linear; its bias is used.
        logit_scale: multiplier applied to the logits after ``unembed`` (Cohere), or ``None``.
        logit_softcap: ``c`` in ``c·tanh(logits / c)`` applied last (Gemma 2/3
            ``final_logit_softcapping``), or ``None``.
        tied: whether ``unembed.weight`` is the input embedding's weight (same tensor).
        num_layers: N, the number of decoder blocks the forward runs.
        model_type: ``config.model_type`` (``"unknown"`` without a config).
        last_hidden_normed: whether ``hidden_states[N]`` from ``output_hidden_states=True`` is already
            final-normed (True for every tested architecture).
        layers_path, norm_path: dotted attribute paths, relative to the unwrapped causal LM.
    """

    layers: nn.ModuleList
    final_norm: nn.Module
    unembed: nn.Module
    logit_softcap: float | None
    logit_scale: float | None
    tied: bool
    num_layers: int
    model_type: str
    last_hidden_normed: bool = True
    layers_path: str = ""
    norm_path: str = ""


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face causal LM inside ``model`` (``DistributedDataParallel`` and peft's ``PeftModel``
    / bare tuner such as ``LoraModel`` are unwrapped; anything else is returned as is)."""
    for _ in range(8):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif callable(getattr(model, "get_base_model", None)):  # peft.PeftModel
            model = model.get_base_model()
        elif _is_peft_tuner(model):
            model = model.model
        else:
            break
    return model


def _is_peft_tuner(model) -> bool:
    try:
        from peft.tuners.tuners_utils import BaseTuner
    except ImportError:  # peft is optional for plain models
        return False
    return isinstance(model, BaseTuner)


def _get_path(root: nn.Module, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def arch_info(model: nn.Module) -> ArchInfo:
    """Locate the decoder blocks, final norm and unembedding of ``model`` (plain or peft-wrapped).

    Raises :class:`PivotuneError` naming the model class, the part that could not be found and the
    attribute paths that were tried.
    """
    lm = unwrap(model)
    cls = type(lm).__name__
    config = getattr(lm, "config", None)
    model_type = getattr(config, "model_type", None) or "unknown"

    tried_layers = [f"{p}.{n}" for p in DECODER_PATHS for n in LAYERS_NAMES]
    layers_path = next((p for p in tried_layers if isinstance(_get_path(lm, p), nn.ModuleList)), None)
    if layers_path is None:
        raise PivotuneError(
            f"Unsupported architecture {cls} (model_type '{model_type}'): could not find its decoder layers "
            f"(an nn.ModuleList); tried the attribute paths {', '.join(tried_layers)}. pivotune supports "
            f"Llama, Mistral, Qwen2/3, Gemma 1-3 (text), Phi, Phi-3, GPT-NeoX, GPT-2, Cohere and OLMo2 "
            f"causal LMs.")
    prefix = layers_path.rsplit(".", 1)[0]
    tried_norms = [f"{prefix}.{n}" for n in NORM_NAMES]
    norm_path = next((p for p in tried_norms if isinstance(_get_path(lm, p), nn.Module)), None)
    if norm_path is None:
        raise PivotuneError(
            f"Unsupported architecture {cls} (model_type '{model_type}'): found its decoder layers at "
            f"'{layers_path}' but not its final norm; tried the attribute paths {', '.join(tried_norms)}.")

    get_out = getattr(lm, "get_output_embeddings", None)
    unembed = get_out() if callable(get_out) else None
    if unembed is None or not isinstance(getattr(unembed, "weight", None), torch.Tensor):
        raise PivotuneError(
            f"Unsupported architecture {cls} (model_type '{model_type}'): could not find its unembedding; "
            f"tried model.get_output_embeddings(), which returned "
            f"{'nothing' if unembed is None else type(unembed).__name__ + ' without a weight'}.")

    get_in = getattr(lm, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    tied = emb is not None and (emb.weight is unembed.weight or (
        not emb.weight.is_meta and emb.weight.data_ptr() == unembed.weight.data_ptr()
        and emb.weight.shape == unembed.weight.shape))

    text_cfg = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    softcap = getattr(text_cfg, "final_logit_softcapping", None)
    scale = getattr(lm, "logit_scale", None)  # Cohere: the forward multiplies by self.logit_scale
    if not isinstance(scale, (int, float)):
        scale = None

    layers = _get_path(lm, layers_path)
    num_layers = len(layers)
    cfg_n = getattr(text_cfg, "num_hidden_layers", None)
    if isinstance(cfg_n, int) and 0 < cfg_n < num_layers:
        num_layers = cfg_n  # the decoder loops run layers[: config.num_hidden_layers]
    last_normed = getattr(config, "tie_last_hidden_states", None) is not False

    return ArchInfo(layers=layers, final_norm=_get_path(lm, norm_path), unembed=unembed,
                    logit_softcap=float(softcap) if softcap is not None else None,
                    logit_scale=float(scale) if scale is not None else None, tied=bool(tied),
                    num_layers=num_layers, model_type=model_type, last_hidden_normed=last_normed,
                    layers_path=layers_path, norm_path=norm_path)


def attention_projection_names(model: nn.Module) -> list[str]:
    """Dotted names (relative to the unwrapped causal LM) of every decoder block's attention projections.

    The projections are the linear maps inside each block's attention sub-module (``self_attn``,
    ``attention`` or ``attn``): q/k/v/o on Llama-like models, fused ``qkv_proj`` + ``o_proj`` on Phi-3,
    ``query_key_value`` + ``dense`` on GPT-NeoX, ``c_attn`` + ``c_proj`` on GPT-2 (whose MLP also has a
    ``c_proj``, so the full names matter). Norms inside attention (Qwen3's ``q_norm``) are not projections.
    Full names are also valid peft ``target_modules``.
    """
    from transformers.pytorch_utils import Conv1D

    # GPT-2's projections are Conv1D, not nn.Linear
    info = arch_info(model)
    names = []
    for i, block in enumerate(info.layers[: info.num_layers]):
        attn_name = next((a for a in ATTENTION_NAMES if isinstance(getattr(block, a, None), nn.Module)), None)
        if attn_name is None:
            raise PivotuneError(
                f"Unsupported architecture {type(unwrap(model)).__name__} (model_type '{info.model_type}'): decoder "
                f"block {i + 1} ({type(block).__name__}) has no attention sub-module; tried the attributes "
                f"{', '.join(ATTENTION_NAMES)}.")
        projections = [n for n, m in getattr(block, attn_name).named_modules() if isinstance(m, (nn.Linear, Conv1D))]
        if not projections:
            raise PivotuneError(
                f"Unsupported architecture {type(unwrap(model)).__name__} (model_type '{info.model_type}'): the "
                f"attention module '{attn_name}' of decoder block {i + 1} has no linear projections.")
        names += [f"{info.layers_path}.{i}.{attn_name}.{n}" for n in projections]
    return names


def apply_logit_transforms(info: ArchInfo, logits: torch.Tensor) -> torch.Tensor:
    """``logit_scale`` then soft-cap, as the model's forward applies them after the unembedding."""
    if info.logit_scale is not None:
        logits = logits * info.logit_scale
    if info.logit_softcap is not None:
        cap = info.logit_softcap
        logits = torch.tanh(logits / cap) * cap
    return logits


def unembed_logits(info: ArchInfo, normed_hidden: torch.Tensor) -> torch.Tensor:
    """Logits of a *final-normed* hidden state, exactly as the model's forward computes them."""
    return apply_logit_transforms(info, info.unembed(normed_hidden))


def lens_logits(info: ArchInfo, hidden_states, k: int) -> torch.Tensor:
    """Logit-lens logits of ``hidden_states[k]`` (the tuple from ``output_hidden_states=True``).

    ``k`` is 0 (embedding output) to N (output of the last block). The final norm is applied to every
    index except N, which Hugging Face already returns normed (see the module docstring).
    """
    n = info.num_layers
    if len(hidden_states) != n + 1:
        raise PivotuneError(f"Expected {n + 1} hidden states (embeddings + {n} blocks) from "
                            f"output_hidden_states=True, got {len(hidden_states)}; pass output_hidden_states=True, "
                            "not a list of indices.")
    if not 0 <= k <= n:
        raise PivotuneError(f"Logit-lens layer {k} is out of range: valid layers are 0 (embeddings) to {n}.")
    h = hidden_states[k]
    if k < n or not info.last_hidden_normed:
        h = info.final_norm(h)
    return unembed_logits(info, h)


class _StopForward(Exception):
    """Raised by the hook on block n to stop the forward; never escapes :func:`truncated_forward`."""


def _block_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def truncated_forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, n: int,
                      *, info: ArchInfo | None = None, return_raw: bool = False, **kwargs):
    """Run decoder blocks 1..n of ``model`` only; return the final-normed output of block ``n``.

    ``n`` is 1-based: the result equals ``final_norm(hidden_states[n])`` of a full forward for n < N, and
    ``hidden_states[N]`` for n == N (the norm is applied exactly once). Blocks n+1..N never run. The
    forward is the model's own (masks, sliding windows, rotary, Gemma's embedding scale all as usual):
    a forward hook on block n captures its output and aborts the rest of the forward. Gradients flow to
    the result and to every parameter below block n. ``use_cache`` is forced off; extra ``kwargs``
    (e.g. ``position_ids``) go to the model's forward.

    Returns the normed state ``(batch, seq, hidden)``, or ``(normed, raw)`` with ``return_raw=True``.

    Do not pass a ``DistributedDataParallel`` wrapper: aborting its forward skips the reducer's
    preparation for backward and gradients would silently not be synchronised. Wrap the module that
    calls this function in DDP instead.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise PivotuneError("truncated_forward cannot run through a DistributedDataParallel wrapper (aborting its "
                            "forward would leave gradients unsynchronised); call it on model.module inside a "
                            "module that DDP wraps as a whole.")
    info = info if info is not None else arch_info(model)
    total = info.num_layers
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise PivotuneError(f"Layer n={n!r} is out of range for this {total}-layer model: the output of decoder "
                            f"block n must satisfy 1 <= n <= {total}.")
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(_block_output(output))
        raise _StopForward

    handle = info.layers[n - 1].register_forward_hook(hook)
    try:
        kwargs.pop("use_cache", None)
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise PivotuneError(f"Decoder block {n} of {type(unwrap(model)).__name__} was never called during the "
                            "forward; this architecture's forward does not run info.layers in order.")
    raw = captured[0]
    normed = info.final_norm(raw)
    return (normed, raw) if return_raw else normed


def final_hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *,
                        info: ArchInfo | None = None, **kwargs):
    """The final-normed states ``(batch, seq, hidden)`` that the model's forward hands its unembedding, with
    gradients, from a forward that computes no logits: a pre-hook on the unembedding takes its input and
    gives it an empty sequence instead. The forward otherwise runs to its end, so ``model`` may be wrapped
    (DDP, FSDP, peft) and their hooks run as usual. ``use_cache`` is forced off; extra ``kwargs`` go to the
    model's forward.

    Returns ``(states, output)``: ``output`` is the forward's own, its logits empty ``(batch, 0, vocab)``. A
    loss computed from the states alone passes no gradient through the forward's outputs, where FSDP's root
    unit (FSDP1) hooks its backward: add ``output.logits.sum() * 0`` to such a loss."""
    info = info if info is not None else arch_info(model)
    captured: list[torch.Tensor] = []

    def take(_module, args):
        if not args:
            return None
        captured.append(args[0])
        return (args[0][..., :0, :], *args[1:])

    handle = info.unembed.register_forward_pre_hook(take)
    try:
        kwargs.pop("use_cache", None)
        output = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise PivotuneError(f"The unembedding of {type(unwrap(model)).__name__} was called {len(captured)} times "
                            "with positional hidden states during one forward, not once; pivotune cannot read the "
                            "final states of this architecture.")
    return captured[0], output


@torch.no_grad()
def verify_arch(model: nn.Module, info: ArchInfo | None = None, *, tol: float = 1e-4,
                vocab_limit: int | None = None) -> ArchInfo:
    """Check :func:`lens_logits` and :func:`truncated_forward` against the model's own forward.

    Runs the model on one short random sequence; raises :class:`PivotuneError` if the logit lens at the
    last layer does not reproduce ``model(...).logits`` or the truncated forward at N does not reproduce
    ``hidden_states[N]`` (relative tolerance ``tol``). Meant for architectures outside
    ``TESTED_MODEL_TYPES``.
    """
    info = info if info is not None else arch_info(model)
    lm = unwrap(model)
    vocab = vocab_limit or int(info.unembed.weight.shape[0])
    device = info.unembed.weight.device
    ids = torch.randint(0, vocab, (1, 6), generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones_like(ids)
    was_training = lm.training
    lm.eval()
    try:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        n = info.num_layers
        lens = lens_logits(info, out.hidden_states, n)
        trunc = truncated_forward(model, ids, mask, n, info=info)
    finally:
        lm.train(was_training)

    def rel(a, b):
        return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)).item()

    problems = []
    if (e := rel(lens, out.logits)) > tol or math.isnan(e):
        problems.append(f"the logit lens at layer {n} differs from the model's logits (relative error {e:.2e})")
    if (e := rel(trunc, out.hidden_states[n])) > tol or math.isnan(e):
        problems.append(f"the truncated forward at layer {n} differs from hidden_states[{n}] "
                        f"(relative error {e:.2e})")
    if problems:
        raise PivotuneError(f"Architecture {type(lm).__name__} (model_type '{info.model_type}') is not handled "
                            f"exactly: {'; '.join(problems)}. Its forward applies something pivotune does not "
                            "know about; add it to pivotune.models.arch.")
    return info


# -- LinguaLIFT bridge: the parts of an LM and an encoder that the alignment layer connects -------------------

#: config attributes that hold an encoder's output width, in the order tried (BERT/XLM-R/most: hidden_size;
#: T5/mT5: d_model; DistilBERT: dim; GPT-2-style: n_embd).
ENCODER_WIDTH_NAMES = ("hidden_size", "d_model", "dim", "n_embd")


def input_embeddings(model: nn.Module) -> nn.Module:
    """The token-embedding module of a causal LM (plain or peft-wrapped); the bridge writes its soft prompt
    into this space and embeds the response tokens with it."""
    lm = unwrap(model)
    get_in = getattr(lm, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    if emb is None or not isinstance(getattr(emb, "weight", None), torch.Tensor):
        raise PivotuneError(f"Unsupported architecture {type(lm).__name__}: model.get_input_embeddings() returned "
                            f"{'nothing' if emb is None else type(emb).__name__ + ' without a weight'}, so "
                            "pivotune cannot feed it input embeddings.")
    return emb


def embedding_width(model: nn.Module) -> int:
    """d_llm: the width of the causal LM's input embeddings."""
    return int(input_embeddings(model).weight.shape[-1])


def encoder_width(encoder: nn.Module) -> int | None:
    """d_enc: the width of an encoder's last hidden states, read from its config (``None`` when the config
    names none of ``ENCODER_WIDTH_NAMES``)."""
    config = getattr(encoder, "config", None)
    for name in ENCODER_WIDTH_NAMES:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def accepts_logits_to_keep(model: nn.Module) -> bool:
    """Whether the causal LM's forward takes ``logits_to_keep`` (compute logits for the last k positions
    only); the bridge then skips the vocabulary projection over its soft prompt."""
    import inspect

    return "logits_to_keep" in inspect.signature(unwrap(model).forward).parameters
