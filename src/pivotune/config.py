"""The typed run configuration: YAML file + ``--set key=value`` overrides.

Validation happens here, before any model or data loads, and every problem is
reported in words a user can act on: an unknown key names the nearest valid
one, an out-of-range value states the range.

Each method's own section (``prom``, ``clo``, ``lingualift``, ...) is its settings class, declared by its
registration (:mod:`pivotune.methods`) and gathered into :class:`RunConfig` here, so a new method brings its
section with it.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from .errors import ConfigError, PivotuneError, bullet_list, short_repr, shorten
from .languages import check_code
from .methods import METHODS
from .methods.clo.settings import CloSettings
from .methods.lingualift.settings import LinguaLiftSettings
from .methods.prom.settings import PromSettings
from .settings import KeyProblem, LanguageCode
from .settings import Strict as _Strict
from .vocab.settings import VocabSettings
from .yamlio import parse_yaml, read_yaml

__all__ = ["CloSettings", "DataSource", "InterferenceSettings", "KeyProblem", "LanguageCode", "LinguaLiftSettings",
           "LoraSettings", "PromSettings", "RunConfig", "TrainConfig", "VocabSettings", "apply_overrides", "dump_config",
           "format_validation_error", "load_config"]


class DataSource(_Strict):
    """One data file (or hub dataset) and the role its samples play."""

    path: str = Field(description="Local file or hub dataset name.")
    role: Literal["en", "tgt", "mt", "cs"] = Field(
        description="en: English instructions; tgt: target-language instructions; "
        "mt: parallel pairs turned into an English→target translation task; cs: code-switched.")
    lang: LanguageCode = Field(description="Language code of the text: 'en' for role en, the target for tgt/mt.")
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
        "float32", description="Training precision: bfloat16/float16 compute in half precision under autocast over "
        "float32 master weights (the saved model is in this dtype).")
    pure_half: bool = Field(
        False, description="With dtype bfloat16: the weights themselves in bfloat16 (half the memory; updates "
        "below bf16's resolution are lost).")
    gradient_checkpointing: bool = False
    packing: bool = Field(
        False, description="Pack several samples into each row of max_seq_len tokens (best-fit-decreasing, each "
        "sample attending only to itself) instead of padding every row to the batch's longest; "
        "per_device_batch_size then counts packed rows.")
    report_to: list[Literal["tensorboard", "wandb", "none"]] = Field(default_factory=list)
    progress_bar: bool = True

    @model_validator(mode="after")
    def _pure_half_needs_bf16(self):
        if self.pure_half and self.dtype != "bfloat16":
            why = ("float32 has no half-precision weights to keep" if self.dtype == "float32" else
                   "float16 weights need loss scaling, and torch's gradient scaler refuses float16 gradients; use "
                   "train.dtype bfloat16 for pure half precision, or float16 with float32 master weights")
            raise KeyProblem(("train", "pure_half"), f"true needs train.dtype bfloat16, not "
                             f"{self.dtype} ({why}); set train.pure_half to false")
        return self


class LoraSettings(_Strict):
    """LoRA via peft; off means full fine-tuning."""

    enabled: bool = False
    r: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0.0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


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

    def language_codes(self) -> Iterator[tuple[str, str]]:
        """``(field, code)`` for every language code these settings name."""
        from .data.records import parse_source

        for i, pair in enumerate(self.pairs):
            yield from ((f"interference.pairs[{i}]", lang) for _, lang in map(parse_source, pair) if lang)

    @field_validator("pairs")
    @classmethod
    def _sources(cls, v):
        from .data.records import parse_source

        for pair in v:
            for spec in pair:
                try:
                    parse_source(spec)
                except PivotuneError as e:   # a ValueError, so pydantic reports it at this field
                    raise ValueError(str(e)) from None
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v):
        spec = str(v).strip()
        if spec not in ("last", "pivot", "all") and not all(x.strip().isdigit() for x in spec.split(",")):
            raise ValueError("expected last, pivot, all or block numbers such as 3 or '2,4'")
        return spec


class _RunConfigBase(_Strict):
    """Everything one training run needs (the methods' own sections are added below, from the registry)."""

    model: str = Field(description="Hub name or local path of the base causal LM.")
    tokenizer: str | None = Field(None, description="Default: same as model.")
    trust_remote_code: bool = Field(
        False, description="Run model/tokenizer code shipped with a hub repository or directory (the base model, "
        "its tokenizer and any other model the method loads). Off by default: turn it on only for a source you "
        "trust.")
    method: str = Field("xllama", description=f"One of {' | '.join(METHODS)}.")
    extra_languages: list[LanguageCode] = Field(
        default_factory=list, description="Language codes outside pivotune's table (ISO 639-1, and the ISO 639-3 "
        "codes of FLORES-200 languages) that this run may use; still codes (2-3 lowercase letters, optional "
        "-Script/-REGION). Any other unknown code is an error, so a typo never trains silently.")
    languages: list[LanguageCode] = Field(default_factory=list, description="Target language codes (th, tha, pt-BR).")
    data: list[DataSource] = Field(default_factory=list)
    template: Literal["alpaca", "chat"] = Field("alpaca", description="Prompt template.")
    max_seq_len: int = Field(1024, ge=8, le=1_048_576)
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    interference: InterferenceSettings = Field(
        default_factory=InterferenceSettings, description="Gradient interference logged during training.")
    vocab: VocabSettings = Field(default_factory=VocabSettings,
                                 description="Vocabulary extension for the target script before training.")
    output_dir: str = Field("runs/run", description="Run directory (checkpoints, final model, logs).")
    seed: int = Field(42, ge=0)
    skip_invalid: bool = Field(False, description="Drop invalid rows instead of stopping.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            near = difflib.get_close_matches(v, list(METHODS), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ValueError(f"unknown method '{v}'; choose one of {', '.join(METHODS)}.{hint}")
        return v

    @staticmethod
    def _check_known(codes: Iterable[tuple[str, str]], info: ValidationInfo) -> None:
        # extra_languages is declared before every field that names a language, so it is validated first
        extra = info.data.get("extra_languages", [])
        for where, code in codes:
            check_code(code, where, extra=extra)

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, v: list[str], info: ValidationInfo) -> list[str]:
        cls._check_known((("", code) for code in v), info)   # the error's place is `languages` itself
        return v

    @field_validator("data")
    @classmethod
    def _known_data_languages(cls, v: list[DataSource], info: ValidationInfo) -> list[DataSource]:
        cls._check_known(((f"data[{i}].lang", d.lang) for i, d in enumerate(v)), info)
        return v

    @field_validator("*")
    @classmethod
    def _known_section_languages(cls, v, info: ValidationInfo):
        if isinstance(v, _Strict):   # a section: interference, and each method's (prom, lingualift, ...)
            cls._check_known(v.language_codes(), info)
        return v

    @model_validator(mode="after")
    def _data_matches_method(self):
        method = METHODS[self.method]
        if self.interference.every and method.interference_refused:
            raise KeyProblem(("interference", "every"), f"method '{self.method}' cannot log gradient interference: "
                             f"{method.interference_refused}; set interference.every to 0")
        if method.check_config is not None:
            method.check_config(self)
        if not self.data:
            return self
        vocab, langs = self.vocab, self.vocab.languages or self.languages
        if vocab.enabled and not vocab.corpus and not vocab.parallel and not any(
                d.role in ("tgt", "mt") and (not langs or d.lang in langs) for d in self.data):
            raise KeyProblem(("vocab", "corpus"), f"vocab.n_new={vocab.n_new} learns target tokens from the run's "
                             f"tgt/mt data{' in ' + ', '.join(langs) if langs else ''}, and it has none: add such "
                             "data, or give the text to learn from in vocab.corpus or vocab.parallel")
        if not any(d.role in method.roles for d in self.data):
            raise KeyProblem(("data",),
                             f"method '{self.method}' trains on roles {sorted(method.roles)}, but no data source has "
                             f"one of them (roles given: {sorted({d.role for d in self.data})})")
        for i, d in enumerate(self.data):
            if d.role in ("tgt", "mt") and self.languages and d.lang not in self.languages:
                raise KeyProblem(("data", str(i), "lang"), f"data source '{d.name}' has lang '{d.lang}', which is "
                                 f"not in languages {self.languages}")
        return self


def _method_sections() -> dict[str, tuple]:
    """Each registered method's settings section, as a field: ``key: (settings class, default)``."""
    sections: dict[str, tuple] = {}
    for m in METHODS.values():
        if m.settings is not None:
            key, settings = m.settings
            sections.setdefault(key, (settings, Field(default_factory=settings, description=(
                settings.__doc__ or "").strip().splitlines()[0])))
    return sections


RunConfig = create_model("RunConfig", __base__=_RunConfigBase, __module__=__name__, **_method_sections())
RunConfig.__doc__ = "Everything one training run needs, each method's own section included."


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


def _where(loc: tuple[str, ...], source: str | None, lines: dict, overrides: list[str]) -> str:
    """Where a problem at key path ``loc`` was written: the ``--set`` that set it (the last one wins), else
    the file's line of the deepest key on the path that is in the file."""
    field = f"field {'.'.join(loc)}" if loc else ""
    for item in reversed(overrides):
        path = tuple(item.split("=", 1)[0].strip().split("."))
        if loc[:len(path)] == path:
            return ", ".join(p for p in (f"--set {shorten(item, 80)}", field) if p)
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    return ", ".join(p for p in (source, f"line {line}" if line else "", field) if p) or "<config>"


def format_validation_error(err: ValidationError, source: str, lines: dict | None = None,
                            overrides: list[str] | None = None, file: str | None = None) -> str:
    """One line per problem, each naming where it was written (``file, line L, field a.b.c``, or the
    ``--set`` that gave it), with nearest-key hints and ranges; quoted values are shortened, and the whole
    message stays under :data:`~pivotune.errors.MESSAGE_LIMIT` characters."""
    problems = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        located_at = e.get("ctx", {}).get("error")
        if isinstance(located_at, KeyProblem):   # a whole-config check that knows the key it is about
            loc = tuple(located_at.loc)
        where = _where(loc, file, lines or {}, list(overrides or []))
        if e["type"] == "extra_forbidden":
            parent, name = loc[:-1], loc[-1]
            valid = _fields_at(RunConfig, tuple(int(p) if p.isdigit() else p for p in parent))
            near = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{'.'.join((*parent, near[0]))}'?" if near else ""
            problems.append(f"{where}: unknown key.{hint} Valid keys here: {', '.join(valid)}.")
        elif e["type"] in _RANGE_WORDS:
            limit = next(iter(e.get("ctx", {}).values()), "?")
            problems.append(f"{where}: {short_repr(e['input'])} is out of range; it must be "
                            f"{_RANGE_WORDS[e['type']]} {limit}.")
        elif e["type"] == "missing":
            problems.append(f"{where}: required but missing.")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            # the value is worth quoting where it is one field's; a whole-config check's input is the config
            got = "" if isinstance(located_at, KeyProblem) or not e["loc"] else f" (got {short_repr(e.get('input'))})"
            problems.append(f"{where}: {msg}{got}.")
    return bullet_list(f"Invalid configuration in {source}:", problems)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {shorten(item, 80)!r}: expected KEY=VALUE, e.g. --set train.lr=1e-5")
    key, raw = item.split("=", 1)
    try:
        value = parse_yaml(raw, f"--set {key.strip()}").data if raw.strip() else ""
    except ConfigError:
        value = raw          # not YAML (or refused): the text itself, validated as a string
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
                    raise ConfigError(f"--set {shorten(item, 200)}: '{shorten(part, 80)}' is not an index of a "
                                      f"list of {len(cur)}")
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
                        raise ConfigError(f"--set {shorten(item, 200)}: '{shorten(part, 80)}' holds a value, "
                                          "not a section")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> RunConfig:
    """Read YAML (or start from ``base``), apply overrides, validate."""
    raw: dict = copy.deepcopy(dict(base or {}))   # overrides edit nested sections in place
    source, file, lines = "overrides", None, {}
    if path is not None:
        source = file = str(path)
        doc = read_yaml(path)
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigError(f"Config file {path}: the top level must be a mapping of keys to values.")
        raw.update(doc.data or {})
        lines = doc.lines
    overrides = list(overrides or [])
    raw = apply_overrides(raw, overrides)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, lines, overrides, file)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
