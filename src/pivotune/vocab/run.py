"""A training run's vocabulary extension (the run config's ``vocab`` section), for every method.

* :func:`extend_for_run` — called once by :func:`pivotune.train.run.adapt_vocabulary`, after the tokenizer and
  the base model load and before the data are encoded or any method sees the model: the tokenizer extended
  with ``vocab.n_new`` tokens learned from the run's target data (or ``vocab.corpus``), the model's embeddings
  resized and the new rows initialised. Every method then encodes with the extended tokenizer and starts from
  the resized model: PROM's pivot head is copied from the resized W_U (its new rows initialised the same way),
  CLO's reference log-probabilities and the regulation's logit lens read the extended tokenizer.
* :func:`pivotune.vocab.warmup.warm_up` — with ``vocab.warmup_steps``, called right after: the new rows train
  alone on that text before any method sees the model.
* :func:`train_new_rows` — called for each stage once the method chose what trains: the new rows train too
  (under LoRA through peft's trainable tokens, else the embedding matrices with the old rows' gradient zeroed
  unless they train anyway), in an optimizer group of their own at ``vocab.embedding_lr``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import PivotuneError
from ..models.parts import ModelWithParts
from .init import NewRows
from .scripts import CONFIG_NAMES, language_scripts


@dataclass(frozen=True)
class RunVocabulary:
    """A run's extension: where the new rows are, what RUN/model/vocab_extension.json and run.json record, and the
    text the tokens were learned from (the embedding warm-up trains on it)."""

    rows: NewRows
    record: dict
    texts: list[str]


@dataclass(frozen=True)
class NewRowGroup:
    """The parameters holding the new rows, and their optimizer group's settings."""

    params: list[nn.Parameter]
    lr: float
    weight_decay: float


def run_corpus(cfg, samples=None) -> list[str]:
    """The text the run's new tokens are learned from: ``vocab.corpus``/``vocab.parallel`` when given, else the
    run's tgt and mt data in the extension's languages (``samples`` when the run was given them)."""
    from ..data.mixture import load_source
    from .corpus import read_parallel_targets, read_texts, texts_of

    v = cfg.vocab
    if v.corpus or v.parallel:
        lang = v.languages[0] if len(v.languages) == 1 else ""
        return ([t for f in v.corpus for t in read_texts(f, lang=lang, skip_invalid=cfg.skip_invalid)]
                + [t for f in v.parallel for t in read_parallel_targets(f, lang=lang, skip_invalid=cfg.skip_invalid)])
    langs = set(v.languages or cfg.languages)
    wanted = lambda role, lang: role in ("tgt", "mt") and (not langs or lang in langs)   # noqa: E731
    if samples is None:
        samples = [s for src in cfg.data if wanted(src.role, src.lang)
                   for s in load_source(src, skip_invalid=cfg.skip_invalid)]
    return texts_of(s for s in samples if wanted(s.role, s.lang))


def run_scripts(cfg) -> tuple[str, ...] | None:
    """``vocab.scripts``, else the scripts of the extension's languages (:func:`scripts_of`)."""
    return tuple(cfg.vocab.scripts) if cfg.vocab.scripts else scripts_of(cfg.vocab.languages or cfg.languages)


def scripts_of(languages) -> tuple[str, ...] | None:
    """The scripts of ``languages``; None (the corpus decides) when a language's script is unknown."""
    scripts: list[str] = []
    for lang in languages:
        found = language_scripts(lang)
        if found is None:
            return None
        if "Latn" in found:
            raise PivotuneError(
                f"vocab: language '{lang}' is written in Latin script, English's own, so new tokens for it would "
                "change how English tokenizes. Set vocab.languages to the run's languages written in a script of "
                "their own (Thai, Greek, Arabic, ...), or vocab.scripts, or turn the extension off (vocab.n_new: 0).")
        scripts += [s for s in found if s not in scripts]
    return tuple(scripts) or None


def extend_for_run(cfg, tokenizer, model, samples=None):
    """``(tokenizer, model, RunVocabulary)``: ``tokenizer`` extended with ``vocab.n_new`` target tokens and ``model``
    resized for it (new rows: the mean of their old pieces' rows); errors name the config keys."""
    from .corpus import read_texts
    from .extend import extend_tokenizer
    from .init import resize_and_init
    from .measure import tokens_per_word
    from .save import extension_record

    v = cfg.vocab
    texts = run_corpus(cfg, samples)
    checks = [t for f in v.check for t in read_texts(f, skip_invalid=cfg.skip_invalid)]
    base = cfg.tokenizer or cfg.model
    ext = extend_tokenizer(tokenizer, texts, v.n_new, scripts=run_scripts(cfg), check_texts=checks,
                           min_frequency=v.min_frequency, name=base, names=CONFIG_NAMES)
    fertility = (tokens_per_word(tokenizer, texts), tokens_per_word(ext.tokenizer, texts))
    rows = resize_and_init(model, tokenizer, ext.tokenizer)
    return ext.tokenizer, model, RunVocabulary(rows, extension_record(base, ext, fertility, rows), texts)


def _lm(model: nn.Module) -> nn.Module:
    return model.lm if isinstance(model, ModelWithParts) else model


def _add_trainable_tokens(peft_model, rows: NewRows) -> None:
    """peft's trainable tokens for the new rows, added to a LoRA model the method built (its config records them,
    so they are saved with the adapter and merged by ``merge_and_unload``)."""
    from peft.tuners.tuners_utils import BaseTuner
    from peft.utils import set_additional_trainable_modules

    from ..models.arch import unwrap
    from .train import trainable_token_indices

    name = peft_model.active_adapter
    config = peft_model.peft_config[name]
    config.trainable_token_indices = trainable_token_indices(peft_model, rows)
    set_additional_trainable_modules(model=unwrap(peft_model), peft_config=config,
                                     model_config=BaseTuner.get_model_config(peft_model), adapter_name=name)


def train_new_rows(model: nn.Module, vocab: RunVocabulary, cfg, lr: float, weight_decay: float) -> NewRowGroup | None:
    """Make the new rows of ``model`` (as the method's ``trainable`` returned it) train; None when the stage trains
    nothing of the LM (LinguaLIFT's stage 1). ``lr``/``weight_decay``: the stage's."""
    from peft import PeftModel

    from .train import embedding_matrices, freeze_old_rows, new_row_parameters

    lm = _lm(model)
    if not any(p.requires_grad for p in lm.parameters()):
        return None
    frozen = []
    if isinstance(lm, PeftModel):
        _add_trainable_tokens(lm, vocab.rows)
    else:   # a matrix the method trains keeps its old rows training, unless vocab.freeze_old_rows
        frozen = [w for w in embedding_matrices(lm) if cfg.vocab.freeze_old_rows or not w.requires_grad]
        freeze_old_rows(lm, vocab.rows, frozen)
    return NewRowGroup(new_row_parameters(lm), cfg.vocab.embedding_lr or lr,
                       0.0 if frozen else weight_decay)   # decay would still shrink the frozen rows
