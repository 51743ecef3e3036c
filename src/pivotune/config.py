"""The typed run configuration: YAML file + ``--set key=value`` overrides.

Validation happens here, before any model or data loads, and every problem is
reported in words a user can act on: an unknown key names the nearest valid
one, an out-of-range value states the range.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSource(_Strict):
    """One data file (or hub dataset) and the role its samples play."""

    path: str = Field(description="Local file or hub dataset name.")
    role: Literal["en", "tgt", "mt", "cs"] = Field(
        description="en: English instructions; tgt: target-language instructions; "
        "mt: parallel pairs turned into an English→target translation task; cs: code-switched.")
    lang: str = Field(description="Language code of the text: 'en' for role en, the target for tgt/mt.")
    kind: Literal["instructions", "parallel"] | None = Field(
        None, description="instructions (Alpaca or chat rows) or parallel (sentence pairs). "
        "Default: parallel for role mt, instructions otherwise.")
    target_path: str | None = Field(None, description="Second file of a line-aligned parallel pair.")
    name: str | None = Field(None, description="Name used in logs; default: the file name.")
    weight: float = Field(1.0, ge=0.0, le=100.0, description="Per-source loss weight.")
    max_samples: int | None = Field(None, ge=1, description="Keep at most this many rows.")
    fields: dict[str, str] | None = Field(None, description="Column renames, e.g. {output: completion}.")
    split: str = Field("train", description="Split, for hub datasets.")
    mt_instructions: list[str] | None = Field(
        None, min_length=1, description="Instruction phrasings for role mt, cycled in order "
        "(default: pivotune's English pool naming the target language).")

    @model_validator(mode="after")
    def _defaults(self):
        if self.kind is None:
            object.__setattr__(self, "kind", "parallel" if self.role == "mt" else "instructions")
        if self.role == "mt" and self.kind != "parallel":
            raise ValueError("role 'mt' needs kind 'parallel' (sentence pairs become translation-task samples)")
        if self.name is None:
            object.__setattr__(self, "name", Path(self.path).stem or self.path)
        return self


class TrainConfig(_Strict):
    """Optimisation settings (the PROM paper's are the defaults)."""

    lr: float = Field(2e-5, gt=0.0, le=1.0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0.0, le=1000.0, description="Passes over the mixture.")
    max_steps: int = Field(-1, ge=-1, description="Optimizer steps; overrides epochs when > 0.")
    per_device_batch_size: int = Field(4, ge=1, le=4096, description="Micro-batch size per device.")
    grad_accum: int = Field(8, ge=1, le=4096, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps spent warming up.")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    logging_steps: int = Field(10, ge=1)
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps; default: each epoch.")
    save_total_limit: int | None = Field(2, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Training precision (mixed precision for bf16/fp16).")
    gradient_checkpointing: bool = False
    report_to: list[Literal["tensorboard", "wandb", "none"]] = Field(default_factory=list)
    progress_bar: bool = True


class LoraSettings(_Strict):
    """LoRA via peft; off means full fine-tuning."""

    enabled: bool = False
    r: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0.0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class PromSettings(_Strict):
    """PROM's objective (METHODS.md, "PROM"): ``L = λ·CE_α(head_n(h_n); s_e) + CE(head_N(h_N); s_t ∪ s_mt)``.

    Used by methods ``prom`` and ``prom-noreg``; ignored by the others. English rows reach only the
    pivot term and run through decoder blocks 1..n only.
    """

    pivot_layer: int | None = Field(
        None, ge=1, description="Pivot layer n, 1-based: the output of decoder block n (Hugging Face "
        "hidden_states[n]; 0 would be the embeddings). Default: round(0.75·N) (half up) for an N-block "
        "model, i.e. 24 for Llama-2-7B. Checked against the model's depth when training starts.")
    label_smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="α of the pivot term's cross-entropy (0 = plain cross-entropy).")
    lambda_en: float = Field(
        0.1, ge=0.0, le=100.0, description="λ, the weight of the pivot term. 0 turns it off (English rows "
        "then contribute nothing and are not run).")
    head: Literal["copy", "copy_norm", "tied"] = Field(
        "copy", description="head_n. copy (default): the model's own final norm module applied to h_n, "
        "then a separate trainable Linear initialised as a copy of the unembedding W_U — the logit-lens "
        "reading of layer n at initialisation, with the final head left to the final term. copy_norm: the "
        "same with a private trainable copy of the final norm. tied: the final norm and W_U themselves "
        "(no parameters of its own; W_U then receives both terms' gradients).")
    lambda_per_language: dict[str, float] | None = Field(
        None, description="λ_t per target language, overriding lambda_en (PROM's regulation writes 0 for "
        "a language whose logit lens shows no English pivot). Keys must be in `languages`. English rows "
        "are weighted by the mean of λ_t over the run's target languages (languages missing here count "
        "as lambda_en); method prom only.")
    probe: str | None = Field(
        None, description="Regulation evidence for method prom: a probe.json written by `pivotune probe` "
        "for this base model; λ_t is decided from its per-layer means at pivot_layer.")
    probe_pairs: dict[str, str] | None = Field(
        None, description="Regulation evidence for method prom: word-pair files per target language "
        "(lang: path, `english<TAB>target` lines); the logit-lens probe runs on the base model before "
        "training and writes RUN/probe/.")
    probe_names: dict[str, str] | None = Field(
        None, description="Language names (in their own language) for the probe prompts, for codes "
        "pivotune's table lacks.")
    probe_template: str | None = Field(
        None, description="The probe's prompt line, replacing Wendler et al.'s "
        "'{source_name}: \"{source}\" - {target_name}: \"{target}\"' (fields: source_name, source, "
        "target_name, target, the last one last); for a model trained on another bilingual format. For "
        "probe_task cloze it replaces '{sentence} {label}: \"{answer}\"' (fields: sentence, label, answer).")
    probe_task: Literal["translation", "cloze"] = Field(
        "translation", description="The prompts of the probe run on prom.probe_pairs. translation (Wendler et al.): "
        "English word -> target word, so the prompt shows the English word. cloze (what PROM's paper ran): a "
        "target-language sentence with a gap `___`, no English in the prompt; prom.probe_pairs then name cloze "
        "files (`english<TAB>target<TAB>sentence` lines).")
    probe_labels: dict[str, str] | None = Field(
        None, description="The word for 'Answer' per language in cloze prompts, for codes pivotune's table lacks.")
    chunk_size: int = Field(
        2048, ge=1, le=1_048_576, description="Supervised positions per chunk when computing logits and "
        "cross-entropy for either head (no [batch, seq, vocab] tensor is ever held).")
    recompute_logits: bool = Field(
        True, description="Recompute each chunk's logits in the backward pass (activation checkpointing "
        "per chunk) instead of keeping them: memory for one chunk of logits instead of all of them, "
        "for one more head matmul. Gradients are identical.")

    @field_validator("lambda_per_language")
    @classmethod
    def _lambdas(cls, v):
        if v is None:
            return v
        for lang, lam in v.items():
            if lang == "en":
                raise ValueError("'en' is not a target language; English rows get the mean of the target "
                                 "languages' λ_t (set lambda_en to change λ itself)")
            if not 0.0 <= lam <= 100.0:
                raise ValueError(f"λ for '{lang}' is {lam}; it must satisfy 0 <= λ <= 100")
        return v


class LinguaLiftSettings(_Strict):
    """LinguaLIFT (METHODS.md, "LinguaLIFT"): a multilingual encoder bridged into the LM by a language alignment
    layer, trained in two stages. Used by method ``lingualift`` only.

    Stage 1 trains only the alignment layer on code-switched prompts (English data of role ``en`` with words
    replaced from ``lexicons``, plus any role ``cs`` data) with English responses; stage 2 trains the LM (full, or
    LoRA with ``lora.enabled``) on the English data with the encoder and alignment layer frozen, using ``train``.
    Run layout: RUN/stage1/ (its checkpoints and model/: the alignment layer, referring to the encoder and LM),
    RUN/stage2/ (checkpoints) and RUN/model/ (the whole bridge; not a plain causal-LM directory).
    """

    encoder: str | None = Field(
        None, description="Hub name or local path of the multilingual encoder (XLM-R, mT5, any AutoModel encoder; "
        "for encoder-decoder models the encoder half is used). Required for method lingualift.")
    encoder_tokenizer: str | None = Field(None, description="Default: same as encoder.")
    encoder_hidden_size: int | None = Field(
        None, ge=1, description="Width of the encoder's last hidden states; read from its config by default. "
        "Needed only for an encoder whose config does not state it; checked against the config otherwise.")
    projector: Literal["ffn", "linear"] = Field(
        "ffn", description="ffn (LinguaLIFT): Linear(d_enc→d_llm) → GELU → Linear(d_llm→d_llm) with learned start "
        "and end vectors; linear (LangBridge): one Linear and a learned end vector.")
    max_encoder_len: int = Field(512, ge=8, le=1_048_576, description="Encoder tokens kept per prompt.")
    stages: list[Literal[1, 2]] = Field(
        default_factory=lambda: [1, 2], min_length=1, description="Stages to run: [1, 2] (default), [1] alone, "
        "or [2] alone from a saved stage 1 (stage1_from).")
    stage1_from: str | None = Field(
        None, description="Stage-1 output directory that stage 2 starts from when stage 1 does not run here "
        "(default: RUN/stage1/model).")
    lexicons: dict[str, str] = Field(
        default_factory=dict, description="Bilingual lexicon per target language (lang: path), MUSE's two-column "
        "format: 'english translation' per line. Keys must be in `languages`.")
    switch_ratio: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of content words replaced by a translation in stage 1 (the paper "
        "leaves it open; round(ratio·n) of a sample's n content words).")
    stage1_lr: float = Field(6e-4, gt=0.0, le=1.0, description="Stage-1 learning rate (the paper's 6e-4).")
    stage1_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "constant", description="Stage-1 schedule (the paper: constant).")
    stage1_epochs: float = Field(1.0, gt=0.0, le=1000.0, description="Stage-1 passes over its data.")
    stage1_max_steps: int = Field(-1, ge=-1, description="Stage-1 optimizer steps; overrides stage1_epochs when > 0.")


class InterferenceSettings(_Strict):
    """Gradient interference logged during training (METHODS.md, "Gradient interference"): every ``every``
    optimizer steps (and once before the first), the cosine between the gradients of ``batches`` pairs of
    batches from two sources, through the method's own objective. Written to RUN/interference.json and the
    log history (run.json); ``pivotune interference RUN...`` plots it. Never changes training.
    """

    every: int = Field(0, ge=0, description="Measure every N optimizer steps (and at step 0); 0 = off.")
    pairs: list[tuple[str, str]] = Field(
        default_factory=lambda: [("en", "tgt")], min_length=1, description="Source pairs to compare, each "
        "[A, B] with a source ROLE or ROLE:LANG (roles en, tgt, mt, cs), e.g. [[en, tgt], [tgt:el, mt:el]].")
    batches: int = Field(4, ge=1, le=10_000, description="K, the batch pairs per measurement (mean and sd "
                         "over them); the same batches every time, so the curve follows the model.")
    batch_size: int | None = Field(None, ge=1, le=4096, description="Rows per batch; default: "
                                   "train.per_device_batch_size.")
    layers: int | str = Field(
        "last", description="Parameters the gradients are taken on: last (the last decoder block, the "
        "paper's choice), pivot (block prom.pivot_layer, default round(0.75·N), for any method), all, or block "
        "numbers (1-based) such as 3 or '2,4'. Under LoRA: the adapters in those blocks.")
    profile: bool = Field(False, description="Also record the cosine of every decoder block on its own "
                          "(gradients on all blocks).")
    seed: int = Field(0, ge=0, description="Seed of the batch draw.")

    @field_validator("pairs")
    @classmethod
    def _sources(cls, v):
        from .data.records import ROLES

        for pair in v:
            for spec in pair:
                role, sep, lang = spec.partition(":")
                if role not in ROLES or (sep and not lang):
                    raise ValueError(f"source {spec!r}: expected ROLE or ROLE:LANG with ROLE one of "
                                     f"{', '.join(ROLES)}")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v):
        spec = str(v).strip()
        if spec not in ("last", "pivot", "all") and not all(x.strip().isdigit() for x in spec.split(",")):
            raise ValueError("expected last, pivot, all or block numbers such as 3 or '2,4'")
        return spec


class CloSettings(_Strict):
    """CLO (METHODS.md, "CLO"): ``L = λ·L_NLL + (1 − λ)·L_CL`` on cross-lingual preference pairs.

    Used by method ``clo``; ignored by the others. Each English row (role ``en`` sources, in config order)
    is paired with row i of each target language's translation (role ``tgt`` sources, line-aligned).
    Log-probabilities are sums over response tokens (the DPO convention); the reference is the starting
    model, its log-probabilities computed once before training.
    """

    beta: float = Field(0.1, gt=0.0, le=100.0, description="β of the preference term (the paper does not "
                        "state it; DPO's common default).")
    nll_weight: float = Field(0.5, ge=0.0, le=1.0, description="λ: weight of the NLL term on target-language "
                              "responses; the preference term gets 1 − λ (the paper does not state it). 1 = SFT on "
                              "the translated rows only; 0 = the preference term alone.")
    trainable: Literal["attention", "full"] = Field(
        "attention", description="attention: only every layer's attention projections train (full weights, or "
        "LoRA on exactly them when lora.enabled), as the paper does; full: every weight (or LoRA on "
        "lora.target_modules).")
    max_items: int | None = Field(None, ge=1, description="Use the first N English rows (each paired with "
                                  "every target language); the paper sweeps 400 to 6,400.")
    reference_batch_size: int | None = Field(None, ge=1, le=4096, description="Units per forward when computing "
                                             "the reference log-probabilities; default: train.per_device_batch_size.")


class RunConfig(_Strict):
    """Everything one training run needs."""

    model: str = Field(description="Hub name or local path of the base causal LM.")
    tokenizer: str | None = Field(None, description="Default: same as model.")
    trust_remote_code: bool = Field(
        False, description="Run model/tokenizer code shipped with a hub repository or directory. Off by default: "
        "turn it on only for a source you trust.")
    method: str = Field("xllama", description="english | bactrian | xllama | prom | prom-noreg | clo "
                        "(more in later releases).")
    languages: list[str] = Field(default_factory=list, description="Target language codes.")
    data: list[DataSource] = Field(default_factory=list)
    template: Literal["alpaca", "chat"] = Field("alpaca", description="Prompt template.")
    max_seq_len: int = Field(1024, ge=8, le=1_048_576)
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    prom: PromSettings = Field(default_factory=PromSettings, description="PROM's objective settings.")
    clo: CloSettings = Field(default_factory=CloSettings, description="CLO's objective and data settings.")
    interference: InterferenceSettings = Field(
        default_factory=InterferenceSettings, description="Gradient interference logged during training.")
    lingualift: LinguaLiftSettings = Field(default_factory=LinguaLiftSettings,
                                           description="LinguaLIFT's bridge and two-stage settings.")
    output_dir: str = Field("runs/run", description="Run directory (checkpoints, final model, logs).")
    seed: int = Field(42, ge=0)
    skip_invalid: bool = Field(False, description="Drop invalid rows instead of stopping.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from .methods import METHODS

        if v not in METHODS:
            near = difflib.get_close_matches(v, list(METHODS), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ValueError(f"unknown method '{v}'; choose one of {', '.join(METHODS)}.{hint}")
        return v

    @model_validator(mode="after")
    def _data_matches_method(self):
        from .methods import METHODS

        lpl = self.prom.lambda_per_language
        if lpl:
            if self.method == "prom-noreg":
                raise ValueError("method 'prom-noreg' applies prom.lambda_en to every language; "
                                 "prom.lambda_per_language (the regulation) is for method 'prom'")
            unknown = sorted(set(lpl) - set(self.languages))
            if unknown:
                raise ValueError(f"prom.lambda_per_language names {unknown}, which are not in languages "
                                 f"{self.languages}")
        if not self.data:
            return self
        wanted = METHODS[self.method].roles
        if not any(d.role in wanted for d in self.data):
            raise ValueError(
                f"method '{self.method}' trains on roles {sorted(wanted)}, but no data source has one of "
                f"them (roles given: {sorted({d.role for d in self.data})})")
        for d in self.data:
            if d.role in ("tgt", "mt") and self.languages and d.lang not in self.languages:
                raise ValueError(f"data source '{d.name}' has lang '{d.lang}', which is not in "
                                 f"languages {self.languages}")
        return self

    @model_validator(mode="after")
    def _lingualift_settings(self):
        if self.method != "lingualift":
            return self
        ll = self.lingualift
        if not ll.encoder:
            raise ValueError("method 'lingualift' needs lingualift.encoder: the multilingual encoder to bridge in")
        unknown = sorted(set(ll.lexicons) - set(self.languages))
        if unknown and self.languages:
            raise ValueError(f"lingualift.lexicons names {unknown}, which are not in languages {self.languages}")
        if 1 in ll.stages and self.data and not ll.lexicons and not any(d.role == "cs" for d in self.data):
            raise ValueError("lingualift stage 1 trains on code-switched data: give lingualift.lexicons (to switch "
                             "the English data) or a data source with role 'cs'")
        return self


# ---------------------------------------------------------------- loading


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys of the sub-model that ``loc`` points into."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int) or cur is None:
            continue
        field = cur.model_fields.get(part) if isinstance(cur, type) and issubclass(cur, BaseModel) else None
        if field is None:
            break
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cur = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(cur.model_fields) if isinstance(cur, type) and issubclass(cur, BaseModel) else []


_RANGE_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def format_validation_error(err: ValidationError, source: str) -> str:
    """One readable paragraph per problem, with nearest-key hints and ranges."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            parent, name = loc[:-1], str(loc[-1])
            valid = _fields_at(RunConfig, parent)
            near = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{'.'.join(map(str, (*parent, near[0])))}'?" if near else ""
            lines.append(f"{key}: unknown key.{hint} Valid keys here: {', '.join(valid)}.")
        elif e["type"] in _RANGE_WORDS:
            limit = next(iter(e.get("ctx", {}).values()), "?")
            lines.append(f"{key}: {e['input']!r} is out of range; it must be {_RANGE_WORDS[e['type']]} {limit}.")
        elif e["type"] == "missing":
            lines.append(f"{key}: required but missing.")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg} (got {e.get('input')!r}).")
    return f"Invalid configuration in {source}:\n  - " + "\n  - ".join(lines)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=1e-5")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML; list items by index)."""
    for item in overrides:
        path, value = _parse_override(item)
        cur: Any = raw
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(cur, list):
                if not part.isdigit() or int(part) >= len(cur):
                    raise ConfigError(f"--set {item}: '{part}' is not an index of a list of {len(cur)}")
                if last:
                    cur[int(part)] = value
                else:
                    cur = cur[int(part)]
            else:
                if last:
                    cur[part] = value
                else:
                    if cur.get(part) is None:   # absent or `key: null` in the file: start a section
                        cur[part] = {}
                    cur = cur[part]
                    if not isinstance(cur, (dict, list)):
                        raise ConfigError(f"--set {item}: '{part}' holds a value, not a section")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> RunConfig:
    """Read YAML (or start from ``base``), apply overrides, validate."""
    raw: dict = copy.deepcopy(dict(base or {}))   # overrides edit nested sections in place
    source = "overrides"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Config file not found: {path}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"Config file {path} is not valid UTF-8 (byte {e.start}).") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"Config file {path}{where}: not valid YAML ({getattr(e, 'problem', e)}).") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file {path}: the top level must be a mapping of keys to values.")
        raw.update(loaded)
    raw = apply_overrides(raw, list(overrides or []))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
