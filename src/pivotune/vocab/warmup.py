"""The embedding warm-up (``vocab.warmup_steps``): before the method trains, only the new rows train.

Why. A new token stands for a word the base model has only seen as a sequence of old tokens; its rows start as
the mean of those tokens' rows (:mod:`pivotune.vocab.init`), a guess the model has never been trained with. A
short instruction-tuning run at the method's learning rate barely moves them, and every target-language input
and answer now goes through them. So the new rows are first taught on their own, as in the first stage of
Chinese-LLaMA-Alpaca (docs/methods.md, "Vocabulary extension"): the causal-LM loss on the extension's corpus,
every weight of the model frozen but the input and output embeddings, whose old rows' gradient is zeroed and which
get no weight decay, so the old rows and every other weight stay bitwise as they were (Adam moves a row with a
zero gradient by zero). Tied embeddings are one matrix and stay one.

How. The corpus (:func:`pivotune.vocab.run.run_corpus`: ``vocab.corpus``/``vocab.parallel``, else the run's
tgt/mt data in the extension's languages) is tokenized, each text ended by EOS, concatenated and cut into rows of
``max_seq_len`` tokens, every token a label (packed, as in pretraining). It trains on the road every stage takes
(:class:`~pivotune.train.trainer.PivotuneTrainer` with the causal-LM objective, the run's precision, seed, batch
geometry, scheduler and guards) for ``vocab.warmup_steps`` optimizer steps at ``vocab.warmup_lr``, in
``RUN/vocab-warmup``, and logs its losses (run.json's ``vocab_warmup``).

Resume. The warm-up writes no checkpoint: with ``save_checkpoints`` its result, the new rows, is written atomically
to ``RUN/vocab-warmup/model`` with what it was trained from. A resumed run loads them from there instead of
training again (refusing rows trained from other data or settings); when they are not there it trains the warm-up
again from its start, which is seeded and so gives the same rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import PivotuneError
from .init import NewRows

log = logging.getLogger(__name__)

WARMUP_DIR = "vocab-warmup"   # RUN/<WARMUP_DIR>: the warm-up's Trainer directory
RESULT = "model"              # RUN/vocab-warmup/model: its result (a stage result: the run directory keeps it)
ROWS_FILE = "new_rows.safetensors"
INFO_FILE = "vocab_warmup.json"
#: what may have changed when a saved warm-up does not match the run
CHANGED = ("the warm-up's corpus or settings differ from those its saved rows were trained with (vocab.corpus, "
           "vocab.parallel, the run's tgt/mt data, vocab.warmup_steps, vocab.warmup_lr, max_seq_len, tokenizer "
           "or seed)")


def warmup_train(cfg):
    """The warm-up's optimisation settings: the run's ``train`` with ``vocab.warmup_steps`` steps at
    ``vocab.warmup_lr`` (default ``vocab.embedding_lr``, else ``train.lr``) and no weight decay."""
    v = cfg.vocab
    return cfg.train.model_copy(update={"lr": v.warmup_lr or v.embedding_lr or cfg.train.lr,
                                        "max_steps": v.warmup_steps, "weight_decay": 0.0})


def packed_rows(texts: list[str], tokenizer, length: int) -> list:
    """``texts`` tokenized, each ended by EOS, concatenated and cut into rows of ``length`` tokens (the last one
    shorter), every token a label: :class:`~pivotune.data.collate.Encoded` rows of role ``tgt``."""
    from ..data.collate import Encoded
    from ..data.records import ROLE_IDS

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream = [t for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for t in [*ids, *eos]]
    return [Encoded(stream[i:i + length], stream[i:i + length], ROLE_IDS["tgt"], -1, 1.0, False, i // length)
            for i in range(0, len(stream), length) if len(stream[i:i + length]) > 1]


@contextmanager
def only_new_rows_training(model: nn.Module, rows: NewRows):
    """Within the block, the embedding matrices are ``model``'s only trainable parameters and their old rows'
    gradient is zeroed; afterwards every parameter trains as it did before."""
    from .train import freeze_old_rows

    before = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in before:
        p.requires_grad_(False)
    handles = freeze_old_rows(model, rows)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for p, flag in before:
            p.requires_grad_(flag)


def _matrices(model: nn.Module) -> dict[str, nn.Parameter]:
    """The input embedding, and the output embedding when it is a matrix of its own, by their names in the result."""
    from .train import embedding_matrices

    return dict(zip(("input", "output"), embedding_matrices(model)))


@torch.no_grad()
def _load_rows(model: nn.Module, rows: NewRows, saved: dict[str, torch.Tensor], where: Path) -> None:
    """Put the saved new rows into ``model``'s matrices, once they are found to fit."""
    ids, targets = torch.tensor(rows.ids), _matrices(model)
    if saved.keys() != targets.keys() or any(saved[k].shape != (len(ids), w.shape[1]) for k, w in targets.items()):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in saved.items())
        raise PivotuneError(f"Cannot resume from {where}: its new rows ({shapes}) do not fit this run's extension "
                            f"({len(ids)} new rows of {', '.join(targets)} embeddings of width "
                            f"{targets['input'].shape[1]}). Start the run afresh (--overwrite) or in another "
                            "output_dir.")
    for key, weight in targets.items():
        weight[ids.to(weight.device)] = saved[key].to(weight.device, weight.dtype)


def warm_up(cfg, tokenizer, model: nn.Module, vocabulary, args, *, resume=False, save: bool = True) -> dict:
    """Train the new rows of ``model`` in place on the text ``vocabulary`` (the run's
    :class:`~pivotune.vocab.run.RunVocabulary`) was learned from (see the module docstring), with the
    TrainingArguments ``args`` (:func:`warmup_train`'s settings, its output dir RUN/vocab-warmup), or, resuming, load
    them from a finished warm-up there; ``save``: write the result for a later resume. Returns what run.json
    records."""
    from transformers import set_seed

    from ..data.collate import Collator, EncodedDataset
    from ..io import atomic_path, write_json_atomic
    from ..methods.sft.objective import SFTObjective
    from ..train.guards import IndexedCollator, IndexedDataset, guarded_train, training_guards
    from ..train.losses import loss_series
    from ..train.resume import check_same_run, data_fingerprint, geometry
    from ..train.rundir import is_main_process
    from ..train.trainer import PivotuneTrainer

    rows = vocabulary.rows
    items = packed_rows(vocabulary.texts, tokenizer, cfg.max_seq_len)
    if not items:
        raise PivotuneError("vocab.warmup_steps: the extension's corpus holds no text to warm the new rows up on.")
    settings = {"steps": args.max_steps, "lr": args.learning_rate, "scheduler": str(args.lr_scheduler_type),
                "warmup": args.warmup_steps}
    fingerprint = hashlib.sha256((data_fingerprint(items) + json.dumps(settings, sort_keys=True)).encode()).hexdigest()
    result = Path(args.output_dir) / RESULT
    if resume and (result / INFO_FILE).is_file():
        from safetensors.torch import load_file

        info = json.loads((result / INFO_FILE).read_text(encoding="utf-8"))
        check_same_run(info, fingerprint, geometry(args), result, CHANGED)
        _load_rows(model, rows, load_file(str(result / ROWS_FILE)), result)
        log.info("vocabulary warm-up: not retrained, the new rows loaded from %s", result)
        return {**info["report"], "resumed": f"not retrained: {result} is complete"}
    args.save_strategy = "no"   # its result is its checkpoint: a warm-up cut short is trained again from its start
    set_seed(cfg.seed)
    with only_new_rows_training(model, rows):
        trainer = PivotuneTrainer(
            model=model, args=args, train_dataset=IndexedDataset(EncodedDataset(items)),
            data_collator=IndexedCollator(Collator(tokenizer.pad_token_id)), objective=SFTObjective(),
            **training_guards(None, fingerprint, lambda i: f"row {i} of the warm-up's packed corpus"))
        outcome = guarded_train(trainer, Path(args.output_dir), None)
    report = {"steps": trainer.state.global_step, "lr": args.learning_rate, "rows": len(items),
              "tokens": sum(len(e.input_ids) for e in items), "train_loss": outcome.training_loss,
              "losses": loss_series(trainer.state.log_history),
              "seconds": round(outcome.metrics.get("train_runtime", 0.0), 1)}
    log.info("vocabulary warm-up: %d steps on the %d new rows, loss %.3f", report["steps"], len(rows.ids),
             outcome.training_loss)
    if save and is_main_process():
        from safetensors.torch import save_file

        with atomic_path(result) as tmp:
            tmp.mkdir()
            ids = torch.tensor(rows.ids)
            save_file({k: w.detach()[ids.to(w.device)].cpu().contiguous() for k, w in _matrices(model).items()},
                      str(tmp / ROWS_FILE))
            write_json_atomic(tmp / INFO_FILE, {"data_fingerprint": fingerprint, "geometry": geometry(args),
                                                "report": report})
    return report
