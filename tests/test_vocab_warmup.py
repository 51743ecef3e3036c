"""The embedding warm-up (``vocab.warmup_steps``): only the new rows train, on the extension's corpus, before the
method; the config refuses it without an extension; a resumed run loads the finished warm-up and ends bitwise where
an uninterrupted run ends."""

from __future__ import annotations

import json

import pytest
import torch
from test_vocab_run import SAMPLES, files, tiny_llama, vocab_config  # noqa: F401 - files: a fixture

from pivotune.errors import ConfigError, PivotuneError
from pivotune.models.loading import load_model, load_tokenizer
from pivotune.train.run import adapt_vocabulary, train, training_arguments
from pivotune.vocab.warmup import RESULT, WARMUP_DIR, warm_up, warmup_train

pytestmark = pytest.mark.usefixtures("one_thread")

WARMUP = {"warmup_steps": 6, "warmup_lr": 5e-2}


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory, tokenizer):
    """The tiny Llama with one matrix for its input and output embeddings."""
    d = tmp_path_factory.mktemp("tiny-tied")
    model = tiny_llama(tokenizer)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def _warmed_up(model_dir, tmp_path):
    """The model of a run config with WARMUP, extended and warmed up: (model, new rows, the parameters before the
    warm-up, its report)."""
    cfg = vocab_config("xllama", model_dir, tmp_path / "run", vocab=WARMUP)
    tokenizer, model = load_tokenizer(str(model_dir)), load_model(str(model_dir))
    tokenizer, model, vocabulary = adapt_vocabulary(cfg, tokenizer, model, SAMPLES)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = training_arguments(cfg, tmp_path / "run" / WARMUP_DIR, warmup_train(cfg))
    report = warm_up(cfg, tokenizer, model, vocabulary, args, save=False)
    return model, vocabulary.rows, before, report


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_the_warmup_moves_only_the_new_rows_and_its_loss_falls(tied, tiny_model_dir, tied_model_dir, tmp_path):
    """Every parameter but the embeddings and every old embedding row are bitwise as before, the new rows of the
    input and output embeddings moved (tied: still one matrix), every parameter trains again afterwards, and the
    logged loss falls."""
    model, rows, before, report = _warmed_up(tied_model_dir if tied else tiny_model_dir, tmp_path)
    emb, unembed = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert (unembed is emb) == tied
    matrices = {n for n, p in model.named_parameters() if p is emb or p is unembed}
    new = torch.zeros(emb.shape[0], dtype=torch.bool)
    new[list(rows.ids)] = True
    for name, p in model.named_parameters():
        if name in matrices:
            assert torch.equal(p[~new], before[name][~new]), name
            assert (p[new] - before[name][new]).abs().amax(dim=1).min() > 0, f"{name}: a new row did not move"
        else:
            assert torch.equal(p, before[name]), name
        assert p.requires_grad and not p._backward_hooks, name
    losses = report["losses"]["loss"]
    assert report["steps"] == WARMUP["warmup_steps"] == len(losses) and report["lr"] == WARMUP["warmup_lr"]
    assert losses[-1] < losses[0] - 0.5, losses


def test_warmup_without_an_extension_is_refused_naming_both_keys(tiny_model_dir, tmp_path):
    """vocab.warmup_steps with vocab.n_new 0 is a ConfigError naming vocab.warmup_steps and vocab.n_new."""
    with pytest.raises(ConfigError, match=r"field vocab\.warmup_steps: .*vocab\.n_new is 0"):
        vocab_config("xllama", tiny_model_dir, tmp_path / "run", vocab={"n_new": 0, "warmup_steps": 5})


def test_a_run_records_its_warmup_and_the_method_starts_from_the_warmed_rows(tiny_model_dir, tmp_path, monkeypatch):
    """run.json records the warm-up's steps and losses, RUN/vocab-warmup/model holds its new rows, and the method's
    road is handed the model the warm-up left (PROM's pivot head would be copied from it)."""
    from safetensors.torch import load_file

    from pivotune.methods.sft.road import SupervisedRoad

    seen = {}
    real = SupervisedRoad.prepare_base

    def prepare_base(self, model, *a):
        seen["rows"] = model.get_input_embeddings().weight.detach().clone()
        return real(self, model, *a)
    monkeypatch.setattr(SupervisedRoad, "prepare_base", prepare_base)
    out = tmp_path / "run"
    train(vocab_config("xllama", tiny_model_dir, out, vocab=WARMUP), SAMPLES)
    warmup = json.loads((out / "run.json").read_text())["vocab_warmup"]
    assert warmup["steps"] == WARMUP["warmup_steps"] and len(warmup["losses"]["loss"]) == WARMUP["warmup_steps"]
    saved = load_file(str(out / WARMUP_DIR / RESULT / "new_rows.safetensors"))
    n_new = saved["input"].shape[0]
    assert torch.equal(seen["rows"][-n_new:], saved["input"]) and saved.keys() == {"input", "output"}


def test_an_interrupted_run_loads_its_warmup_and_resumes_to_the_uninterrupted_weights(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    """Crashed in the method's step 3 and resumed: the warm-up is not trained again (its rows are loaded) and the
    run ends with the weights of a run never stopped, bitwise; a resume with other warm-up settings is refused."""
    from test_roads import _weights, train_until_crash

    from pivotune.train.trainer import PivotuneTrainer

    def cfg(out, **vocab):
        return vocab_config("xllama", tiny_model_dir, out, save_steps=1, vocab={**WARMUP, **vocab})

    train(cfg(tmp_path / "ref"), SAMPLES)
    run = tmp_path / "run"
    train_until_crash(cfg(run), SAMPLES, run, 3, monkeypatch)
    with pytest.raises(PivotuneError, match=r"Cannot resume from .*vocab-warmup.*vocab\.warmup_lr"):
        train(cfg(run, warmup_lr=1e-2), SAMPLES, resume="auto")
    trained = []
    with monkeypatch.context() as mp:
        real = PivotuneTrainer.train
        mp.setattr(PivotuneTrainer, "train", lambda self, *a, **k: trained.append(self.args.output_dir) or
                   real(self, *a, **k))
        train(cfg(run), SAMPLES, resume="auto")
    assert trained == [str(run)], "the warm-up was trained again"
    want, got = _weights(tmp_path / "ref"), _weights(run)
    assert want and want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), [k for k in want if not torch.equal(want[k], got[k])]
    record = json.loads((run / "run.json").read_text())
    assert record["resumed_from"] == "checkpoint-2" and "not retrained" in record["vocab_warmup"]["resumed"]


@pytest.mark.parametrize(("method", "lora"), [("prom", True), ("lingualift", False)], ids=["prom-lora", "lingualift"])
def test_methods_that_wrap_the_model_train_after_the_warmup(method, lora, tiny_model_dir, files, tmp_path):
    """PROM under LoRA (its pivot head copied from the warmed W_U, the new rows then trainable tokens) and LinguaLIFT
    (the warmed LM inside its bridge) train after the warm-up, and run.json records it."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    train(vocab_config(method, tiny_model_dir, out, files, vocab=WARMUP, lora={"enabled": lora, "r": 4}), SAMPLES)
    assert json.loads((out / "run.json").read_text())["vocab_warmup"]["steps"] == WARMUP["warmup_steps"]
    if method == "prom":
        warmed = load_file(str(out / WARMUP_DIR / RESULT / "new_rows.safetensors"))["output"]
        head = load_file(str(out / "pivot_head.safetensors"))["proj.weight"]
        assert head.shape[0] == len(load_tokenizer(str(tiny_model_dir))) + warmed.shape[0]
