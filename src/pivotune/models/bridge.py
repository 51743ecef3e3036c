"""The LinguaLIFT bridge: a multilingual encoder, a language alignment layer, and a causal LM.

The user's prompt goes only to the encoder. Its last hidden states pass through the alignment layer into the
LM's input-embedding space; the LM reads, left to right::

    [BOS embedding] [start vector] proj(h_1) … proj(h_L) [end vector] [response token embeddings]

(``linear`` projector: no start vector). The attention mask covers exactly the real soft-prompt length of
each row. A batch is laid out as a *prefix block* (left-padded) followed by a *response block*
(right-padded), so every row's response starts at the same column and the logits predicting the
response are one slice; position ids count real positions only (``cumsum(mask) - 1``), which is what
``generate`` computes from a left-padded mask, so training and generation see the same positions.

Saved as a directory that is **not** a plain causal-LM directory (``AutoModelForCausalLM`` cannot load it;
serving needs the encoder too)::

    DIR/bridge.json              format, projector, widths, where the encoder and the LM are
    DIR/alignment.safetensors    the alignment layer
    DIR/encoder/  DIR/lm/        the encoder and LM (model + tokenizer), or references to their sources
    DIR/README.md                the same statement in words
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import PivotuneError
from ..io import atomic_path
from .arch import accepts_logits_to_keep, embedding_width, encoder_width, input_embeddings, unwrap
from .parts import ModelWithParts, load_lm_files

BRIDGE_FORMAT = 1
BRIDGE_KIND = "pivotune-lingualift-bridge"
PARTS = ("encoder", "alignment", "lm")
NOT_A_CAUSAL_LM = (
    "This directory is a pivotune LinguaLIFT bridge (a multilingual encoder, a language alignment layer and a "
    "causal LM), not a plain causal-LM directory: AutoModelForCausalLM cannot load it, and serving it needs the "
    "encoder as well as the LM. Load it with pivotune.models.bridge.LinguaLiftModel.from_pretrained(DIR), or "
    "evaluate it with lm-evaluation-harness as `--model pivotune-bridge --model_args pretrained=DIR`.")
Projector = Literal["ffn", "linear"]


class AlignmentLayer(nn.Module):
    """Maps encoder states (d_enc) into the LM's input-embedding space (d_llm).

    ``ffn`` (LinguaLIFT): Linear(d_enc→d_llm) → GELU → Linear(d_llm→d_llm), with a learned start and end vector
    around the projected sequence. ``linear`` (LangBridge): one Linear and a learned end vector.
    """

    def __init__(self, d_enc: int, d_llm: int, projector: Projector = "ffn", init_std: float = 0.02):
        super().__init__()
        if projector not in ("ffn", "linear"):
            raise PivotuneError(f"lingualift.projector must be 'ffn' or 'linear', got {projector!r}")
        self.d_enc, self.d_llm, self.projector = d_enc, d_llm, projector
        if projector == "ffn":
            self.proj = nn.Sequential(nn.Linear(d_enc, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))
            self.start = nn.Parameter(torch.randn(d_llm) * init_std)
        else:
            self.proj = nn.Linear(d_enc, d_llm)
            self.register_parameter("start", None)
        self.end = nn.Parameter(torch.randn(d_llm) * init_std)   # in the scale of the LM's token embeddings

    def describe(self) -> dict:
        return {"projector": self.projector, "d_enc": self.d_enc, "d_llm": self.d_llm}

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """One ``[len_i, d_llm]`` soft prompt per row: start?, the projected real positions, end."""
        projected = self.proj(states)
        out = []
        for row, row_mask in zip(projected, mask.bool()):
            pieces = ([self.start[None]] if self.start is not None else []) + [row[row_mask], self.end[None]]
            out.append(torch.cat(pieces, dim=0))
        return out


@dataclass
class BridgeOutput:
    """``logits[:, t]`` is the LM's distribution for response token ``t`` (already aligned, no shift)."""

    logits: torch.Tensor


class LinguaLiftModel(ModelWithParts):
    """Encoder → alignment layer → causal LM. ``sources`` records where the encoder and LM came from, so a
    checkpoint that did not change them can refer to them instead of copying them: a checkpoint holds the parts
    that train (:meth:`set_trainable`) in the bridge directory's format, and ``save_pretrained`` the whole bridge."""

    parts_beside_lm = False

    def __init__(self, encoder: nn.Module, alignment: AlignmentLayer, lm: nn.Module, *, bos_token_id: int | None,
                 encoder_tokenizer=None, lm_tokenizer=None, sources: dict[str, str] | None = None):
        super().__init__()
        self.encoder, self.alignment, self.lm = encoder, alignment, lm
        self.bos_token_id = bos_token_id
        self.encoder_tokenizer, self.lm_tokenizer = encoder_tokenizer, lm_tokenizer
        self.sources = dict(sources or {})
        self.checkpoint_parts: tuple[str, ...] = ("alignment",)

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def build(cls, encoder: nn.Module, lm: nn.Module, *, projector: Projector = "ffn",
              encoder_hidden_size: int | None = None, bos_token_id: int | None = None, seed: int = 0,
              **kwargs) -> "LinguaLiftModel":
        """A fresh alignment layer between ``encoder`` and ``lm`` (sizes checked, clear errors)."""
        d_enc = check_encoder_width(encoder, encoder_hidden_size)
        d_llm = embedding_width(lm)
        std = float(input_embeddings(lm).weight.detach().float().std())
        torch.manual_seed(seed)
        alignment = AlignmentLayer(d_enc, d_llm, projector, init_std=std).to(input_embeddings(lm).weight.dtype)
        if bos_token_id is None:
            bos_token_id = getattr(getattr(unwrap(lm), "config", None), "bos_token_id", None)
        return cls(encoder, alignment, lm, bos_token_id=bos_token_id, **kwargs)

    def set_trainable(self, part: str) -> None:
        """Freeze every part but ``part`` (``alignment``: LinguaLIFT's stage 1; ``lm``: stage 2). A checkpoint then
        holds the alignment layer and, when it trains, the LM (full weights, or its LoRA adapter)."""
        self.requires_grad_(False)
        {"alignment": self.alignment, "lm": self.lm}[part].requires_grad_(True)
        self.checkpoint_parts = ("alignment", "lm") if part == "lm" else ("alignment",)

    def train(self, mode: bool = True):
        super().train(mode)
        if not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()   # a frozen encoder reads without dropout in both stages
        return self

    # -- forward ------------------------------------------------------------------------------------------

    def encode(self, enc_input_ids: torch.Tensor, enc_attention_mask: torch.Tensor):
        """The encoder's last hidden states and the mask they go with (rows right-aligned)."""
        # Right-align every row first: with absolute positions (BERT, XLM-R) left padding would shift them.
        order = torch.argsort((enc_attention_mask == 0).to(torch.int8), dim=1, stable=True)
        enc_input_ids, enc_attention_mask = enc_input_ids.gather(1, order), enc_attention_mask.gather(1, order)
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            out = self.encoder(input_ids=enc_input_ids, attention_mask=enc_attention_mask)
        states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if states.shape[-1] != self.alignment.d_enc:
            raise PivotuneError(
                f"The encoder's hidden states are {states.shape[-1]} wide but the alignment layer expects "
                f"d_enc={self.alignment.d_enc}; the alignment layer was built for a different encoder (set "
                "lingualift.encoder to the one it was trained with).")
        return states.to(self.alignment.end.dtype), enc_attention_mask

    def prefix(self, enc_input_ids: torch.Tensor, enc_attention_mask: torch.Tensor | None = None):
        """The left-padded prefix block: ``(embeds [B, P, d_llm], mask [B, P])``."""
        if enc_attention_mask is None:
            enc_attention_mask = torch.ones_like(enc_input_ids)
        states, enc_attention_mask = self.encode(enc_input_ids, enc_attention_mask)
        soft = self.alignment(states, enc_attention_mask)
        emb = input_embeddings(self.lm)
        if self.bos_token_id is not None:
            bos = emb(torch.tensor([self.bos_token_id], device=enc_input_ids.device)).to(soft[0].dtype)
            soft = [torch.cat([bos, s], dim=0) for s in soft]
        width = max(len(s) for s in soft)
        embeds = soft[0].new_zeros(len(soft), width, soft[0].shape[-1])
        mask = torch.zeros(len(soft), width, dtype=torch.long, device=enc_input_ids.device)
        for i, s in enumerate(soft):
            embeds[i, width - len(s):] = s
            mask[i, width - len(s):] = 1
        return embeds, mask

    def forward(self, enc_input_ids: torch.Tensor, enc_attention_mask: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                **_ignored) -> BridgeOutput:
        """Logits for each response token given the prompt (``input_ids``: right-padded response tokens)."""
        pre, pre_mask = self.prefix(enc_input_ids, enc_attention_mask)
        if input_ids is None:
            input_ids = enc_input_ids.new_zeros(len(enc_input_ids), 0)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = torch.cat([pre, input_embeddings(self.lm)(input_ids).to(pre.dtype)], dim=1)
        mask = torch.cat([pre_mask, attention_mask.to(pre_mask.dtype)], dim=1)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)   # as generate() derives them
        n_resp = input_ids.shape[1]
        kwargs = {"logits_to_keep": n_resp + 1} if accepts_logits_to_keep(self.lm) else {}
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False, **kwargs)
        # position P-1 (the end vector) predicts response token 0, …, P+R-2 predicts token R-1
        return BridgeOutput(logits=out.logits[:, -(n_resp + 1):-1] if n_resp else out.logits[:, :0])

    @torch.no_grad()
    def generate_new(self, enc_input_ids: torch.Tensor, enc_attention_mask: torch.Tensor | None = None,
                     **generate_kwargs) -> torch.Tensor:
        """Only the generated LM token ids (``[B, new]``), through the LM's own ``generate``."""
        pre, pre_mask = self.prefix(enc_input_ids, enc_attention_mask)
        return self.lm.generate(inputs_embeds=pre, attention_mask=pre_mask, **generate_kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None, **generate_kwargs) -> torch.Tensor:
        """Like a decoder-only ``generate``: the prompt's (encoder) ids followed by the new LM ids, so callers
        that cut the prompt off by its length get the continuation (use :class:`BridgeTokenizer` to encode
        prompts with the encoder's tokenizer and decode replies with the LM's). ``token_type_ids`` from an encoder
        tokenizer are ignored (one segment)."""
        new = self.generate_new(input_ids, attention_mask, **generate_kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)

    # -- saving and loading -------------------------------------------------------------------------------

    def save_pretrained(self, out_dir: str | Path, parts: tuple[str, ...] = PARTS, *, atomic: bool = True,
                        **_ignored) -> Path:
        """Write the bridge directory (atomically unless ``atomic=False``, for a Trainer checkpoint folder that
        already holds files). Parts not in ``parts`` (unchanged by training) are written as references to where
        they were loaded from. An LM wrapped by peft saves its adapter (``lm/adapter_config.json``)."""
        unknown = set(parts) - set(PARTS)
        if unknown or "alignment" not in parts:
            raise ValueError(f"parts must include 'alignment' and be among {PARTS}, got {parts}")
        if not atomic:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            self._write(Path(out_dir), parts)
            return Path(out_dir)
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            self._write(tmp, parts)
        return Path(out_dir)

    def save_parts(self, directory: str | Path, state: dict | None = None) -> None:
        """The parts that train, in the bridge format, into a checkpoint directory that already holds files (the
        encoder and any frozen part by reference)."""
        self.save_pretrained(directory, parts=self.checkpoint_parts, atomic=False)

    def load_parts(self, directory: str | Path) -> None:
        """Copy what :meth:`save_parts` wrote into this bridge, in place (the optimizer keeps its tensors)."""
        load_alignment(self.alignment, Path(directory) / "alignment.safetensors")
        if "lm" in self.checkpoint_parts:
            load_lm_files(self.lm, Path(directory) / "lm")

    def _write(self, out: Path, parts: tuple[str, ...]) -> None:
        from safetensors.torch import save_file

        meta = {"format": BRIDGE_FORMAT, "kind": BRIDGE_KIND, "note": NOT_A_CAUSAL_LM,
                **self.alignment.describe(), "bos_token_id": self.bos_token_id}
        for part, module, tok in (("encoder", self.encoder, self.encoder_tokenizer),
                                  ("lm", self.lm, self.lm_tokenizer)):
            if part in parts:
                module.save_pretrained(out / part, safe_serialization=True)
                if tok is not None:
                    tok.save_pretrained(out / part)
                meta[part] = meta[f"{part}_tokenizer"] = part
            elif part in self.sources:
                meta[part] = self.sources[part]
                meta[f"{part}_tokenizer"] = self.sources.get(f"{part}_tokenizer", self.sources[part])
            else:
                raise PivotuneError(f"Cannot save the bridge without its {part}: it was not loaded from a "
                                    f"path or hub name to refer to; save it with parts including '{part}'.")
        state = {k: v.detach().contiguous().cpu() for k, v in self.alignment.state_dict().items()}
        save_file(state, str(out / "alignment.safetensors"))
        (out / "bridge.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (out / "README.md").write_text(f"# LinguaLIFT bridge\n\n{NOT_A_CAUSAL_LM}\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32", encoder: nn.Module | None = None,
                        lm: nn.Module | None = None) -> "LinguaLiftModel":
        """Load a bridge directory (``encoder``/``lm`` replace the saved or referenced ones when given)."""
        from .loading import load_encoder, load_lora_model, load_model, load_tokenizer

        path = Path(path)
        meta = read_bridge_meta(path)
        keys = ("encoder", "lm", "encoder_tokenizer", "lm_tokenizer")
        where = {k: str(path / meta[k]) if meta.get(k) in ("encoder", "lm") else meta.get(k, meta[k.split("_")[0]])
                 for k in keys}
        encoder = encoder if encoder is not None else load_encoder(where["encoder"], dtype)
        if lm is None and (Path(where["lm"]) / "adapter_config.json").is_file():   # a LoRA stage-2 checkpoint
            lm = load_lora_model(where["lm"], dtype=dtype)
        lm = lm if lm is not None else load_model(where["lm"], dtype)
        alignment = AlignmentLayer(meta["d_enc"], meta["d_llm"], meta["projector"])
        load_alignment(alignment, path / "alignment.safetensors")
        check_encoder_width(encoder, meta["d_enc"])
        if embedding_width(lm) != meta["d_llm"]:
            raise PivotuneError(f"{path}/alignment.safetensors maps into a {meta['d_llm']}-wide LM, but the LM "
                                f"has {embedding_width(lm)}-wide embeddings.")
        alignment.to(input_embeddings(lm).weight.dtype)
        return cls(encoder, alignment, lm, bos_token_id=meta.get("bos_token_id"),
                   encoder_tokenizer=load_tokenizer(where["encoder_tokenizer"]),
                   lm_tokenizer=load_tokenizer(where["lm_tokenizer"]), sources=where)


def read_bridge_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / "bridge.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PivotuneError(f"{path} is not a LinguaLIFT bridge directory: it has no bridge.json.") from None
    except ValueError as e:
        raise PivotuneError(f"{path}/bridge.json is not valid JSON ({e}).") from None
    missing = [k for k in ("kind", "projector", "d_enc", "d_llm", "encoder", "lm") if k not in meta]
    if meta.get("kind") != BRIDGE_KIND or missing:
        raise PivotuneError(f"{path}/bridge.json does not describe a LinguaLIFT bridge (missing {missing}).")
    return meta


def load_alignment(alignment: AlignmentLayer, file: Path) -> None:
    from safetensors.torch import load_file

    if not file.is_file():
        raise PivotuneError(f"No alignment layer at {file}.")
    state = load_file(str(file))
    try:
        alignment.load_state_dict(state)
    except RuntimeError as e:
        raise PivotuneError(f"{file} does not fit a {alignment.projector} alignment layer "
                            f"{alignment.d_enc}→{alignment.d_llm}: {str(e).splitlines()[0]}") from None


def check_encoder_width(encoder: nn.Module, declared: int | None) -> int:
    """d_enc: the encoder's output width, which the alignment layer's first Linear must take."""
    found = encoder_width(encoder)
    if found is None and declared is None:
        raise PivotuneError(
            f"Cannot tell the hidden size of the encoder {type(encoder).__name__}: its config has none of "
            "hidden_size, d_model, dim, n_embd, so the alignment layer cannot be sized to bridge it. Set "
            "lingualift.encoder_hidden_size to the width of its last hidden states.")
    if found is not None and declared is not None and found != declared:
        raise PivotuneError(
            f"The encoder {type(encoder).__name__} has hidden size {found}, but the alignment layer is configured "
            f"for d_enc={declared} (lingualift.encoder_hidden_size or a saved alignment layer): its first Linear "
            "cannot take these states. Use the matching encoder, or drop encoder_hidden_size to size it anew.")
    return found if found is not None else int(declared)


class BridgeTokenizer:
    """The bridge's text interface: prompts are encoded with the encoder's tokenizer, replies decoded with the
    LM's. Enough of a tokenizer for pivotune's toy scoring (``__call__``, ``batch_decode``, pad/eos ids,
    ``padding_side``)."""

    def __init__(self, encoder_tokenizer, lm_tokenizer, max_length: int | None = None):
        self.encoder_tokenizer, self.lm_tokenizer, self.max_length = encoder_tokenizer, lm_tokenizer, max_length

    def __call__(self, texts, **kwargs):
        kwargs.setdefault("truncation", self.max_length is not None)
        if self.max_length is not None:
            kwargs.setdefault("max_length", self.max_length)
        return self.encoder_tokenizer(texts, **kwargs)

    @property
    def padding_side(self):
        return self.encoder_tokenizer.padding_side

    @padding_side.setter
    def padding_side(self, side):
        self.encoder_tokenizer.padding_side = side

    @property
    def pad_token_id(self):   # generate() pads finished rows of the LM's output with it
        return self.lm_tokenizer.pad_token_id

    @property
    def eos_token_id(self):
        return self.lm_tokenizer.eos_token_id

    def decode(self, ids, **kwargs):
        return self.lm_tokenizer.decode(ids, **kwargs)

    def batch_decode(self, ids, **kwargs):
        return self.lm_tokenizer.batch_decode(ids, **kwargs)
