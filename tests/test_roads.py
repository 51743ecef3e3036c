"""The one training road, for every registered method (a new method gets these tests by registering): the run
config's trust_remote_code reaches every loader; gradient interference is either measured or refused by the
config with a clear error, never silently ignored; an interrupted run resumes to the uninterrupted weights; a NaN
loss and a full disk stop the run clearly; the run exports as a plain model (or says why not). DDP under 2
processes, for every method: tests/test_accelerate_launch.py (slow)."""

from __future__ import annotations

import json

import pytest
import torch
from road_cases import SAMPLES, parts, raw_config

from pivotune.config import load_config
from pivotune.errors import ConfigError
from pivotune.methods import METHODS
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer):
    return parts(tmp_path_factory.mktemp("road-parts"), tokenizer)


@pytest.mark.parametrize("method", list(METHODS))
def test_trust_remote_code_reaches_every_loader(method, tiny_model_dir, files, tmp_path, monkeypatch):
    """With trust_remote_code on, every model and tokenizer the run loads (the LM, its tokenizer, LinguaLIFT's
    encoder and its tokenizer) is loaded with it; CLO and LinguaLIFT used to drop it."""
    import pivotune.models.loading as loading

    seen: list[tuple[str, bool]] = []
    real = loading.source_kwargs
    monkeypatch.setattr(loading, "source_kwargs", lambda name, trust_remote_code=False: seen.append(
        (str(name), trust_remote_code)) or real(name, trust_remote_code))
    raw = raw_config(method, tiny_model_dir, tmp_path / "run", files, max_steps=1, save_steps=None)
    train(load_config(base={**raw, "trust_remote_code": True}), SAMPLES, save_checkpoints=False)
    loaded = {name for name, _ in seen}
    assert str(tiny_model_dir) in loaded and all(trust for _, trust in seen), seen
    if method == "lingualift":
        assert files["encoder"] in loaded


@pytest.mark.parametrize("method", list(METHODS))
def test_interference_is_measured_or_refused(method, tiny_model_dir, files, tmp_path):
    """interference.every is logged through the method's objective (RUN/interference.json, the log history), or
    the config refuses it naming the key and the reason."""
    raw = raw_config(method, tiny_model_dir, tmp_path / "run", files, save_steps=None)
    # two sources of the method's own data (English last: PROM's English gradient never reaches the last block)
    a, b = (sorted(METHODS[method].roles, key=lambda r: (r == "en", r)) * 2)[:2]
    raw["interference"] = {"every": 1, "batches": 1, "batch_size": 2, "pairs": [[a, b]]}
    refused = METHODS[method].interference_refused
    if refused:
        with pytest.raises(ConfigError, match=f"interference.every: method '{method}' cannot log gradient "
                                              f"interference: {refused}"):
            load_config(base=raw)
        return
    trainer = train(load_config(base=raw), SAMPLES, save_checkpoints=False)
    records = json.loads((tmp_path / "run" / "interference.json").read_text())["records"]
    assert [r["step"] for r in records] == [0, 1, 2]
    assert any(f"interference/{a}~{b}" in h for h in trainer.state.log_history)


#: methods whose batches are not rows of one role each (CLO: units of four sequences), so no loss per role
NO_ROLE_LOSSES = {"clo"}


@pytest.mark.parametrize("method", list(METHODS))
def test_run_json_holds_the_loss_of_each_role_and_language(method, tiny_model_dir, files, tmp_path):
    """run.json's ``losses`` has a value at every logging step for each of the method's roles and languages when
    every batch holds them all (LinguaLIFT: its two stages one after the other), and none for CLO."""
    raw = raw_config(method, tiny_model_dir, tmp_path / "run", files, per_device_batch_size=len(SAMPLES),
                     save_steps=None)
    train(load_config(base=raw), SAMPLES, save_checkpoints=False)
    losses = json.loads((tmp_path / "run" / "run.json").read_text())["losses"]
    if method in NO_ROLE_LOSSES:
        assert losses is None
        return
    assert set(losses["role"]) == METHODS[method].roles
    assert set(losses["lang"]) == {"en" if r == "en" else "xx" for r in METHODS[method].roles}   # cs: xx text
    stages = [s.name for s in METHODS[method].road(load_config(base=raw)).stages()]
    assert losses["steps"] == list(range(1, 2 * len(stages) + 1))   # 2 steps a stage, one after the other
    assert losses.get("stage", stages * 2) == [name for name in stages for _ in range(2)]
    for values in (*losses["role"].values(), *losses["lang"].values()):   # at both steps of its stage
        assert len([v for v in values if v is not None and v > 0]) == 2, losses


# ------------------------------------------------------------------------------------------ resume, guards, export

def _last_stage_dir(method: str, run):
    """Where the method's last stage checkpoints (RUN, or RUN/<stage>)."""
    road = METHODS[method].road(load_config(base={"model": "m", "method": method, "lingualift": {"encoder": "e"}}))
    last = road.stages()[-1]
    return run / last.directory if last.directory else run


def _weights(run) -> dict:
    """Every tensor the run wrote: RUN/model's files (a bridge's too) and parts beside it (PROM's pivot head)."""
    from safetensors.torch import load_file

    files = sorted((run / "model").rglob("*.safetensors")) + sorted(run.glob("*.safetensors"))
    return {f"{f.relative_to(run)}:{k}": v for f in files for k, v in load_file(str(f)).items()}


def _crash_in(stage_dir, step: int):
    """A PivotuneTrainer.compute_loss that raises in optimizer step ``step`` of the stage training in
    ``stage_dir``."""
    from pivotune.train.trainer import PivotuneTrainer

    real = PivotuneTrainer.compute_loss

    def compute_loss(self, *a, **k):
        if str(self.args.output_dir) == str(stage_dir) and self.state.global_step + 1 == step:
            raise RuntimeError("simulated crash")
        return real(self, *a, **k)
    return compute_loss


def train_until_crash(cfg, samples, stage_dir, step: int, monkeypatch) -> None:
    """``train(cfg, samples)``, crashed in optimizer step ``step`` of the stage training in ``stage_dir``."""
    from pivotune.train.trainer import PivotuneTrainer

    with monkeypatch.context() as mp:
        mp.setattr(PivotuneTrainer, "compute_loss", _crash_in(stage_dir, step))
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, samples)


@pytest.mark.slow   # three short runs per method; the fast suite resumes each road in its own test file
@pytest.mark.parametrize("method", list(METHODS))
def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(method, tiny_model_dir, files, tmp_path,
                                                                 monkeypatch):
    """Crashed in its last stage's step 3, resumed with resume="auto" from that stage's checkpoint-2: the same
    weights as a run never stopped, bitwise."""
    cfg = lambda out: load_config(base=raw_config(method, tiny_model_dir, out, files, max_steps=3))
    train(cfg(tmp_path / "ref"), SAMPLES)
    run = tmp_path / "run"
    train_until_crash(cfg(run), SAMPLES, _last_stage_dir(method, run), 3, monkeypatch)
    assert not (run / "model").exists()
    train(cfg(run), SAMPLES, resume="auto")
    want, got = _weights(tmp_path / "ref"), _weights(run)
    assert want and want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), [k for k in want if not torch.equal(want[k], got[k])]
    meta = json.loads((run / "run.json").read_text())
    stage = meta if "resumed_from" in meta else meta[_last_stage_dir(method, run).name]
    assert stage["resumed_from"] == "checkpoint-2"


class _NanFrom:
    """An objective whose loss turns NaN from optimizer step ``step`` on."""

    def __init__(self, objective, trainer, step: int):
        self.inner, self.trainer, self.step = objective, trainer, step

    def normalizers(self, batch):
        return self.inner.normalizers(batch)

    def loss(self, model, batch, norms):
        loss, logs = self.inner.loss(model, batch, norms)
        return (loss * float("nan") if self.trainer.state.global_step + 1 >= self.step else loss), logs


@pytest.mark.parametrize("method", list(METHODS))
def test_a_nan_loss_stops_before_the_update_naming_step_and_sources(method, tiny_model_dir, files, tmp_path,
                                                                    monkeypatch):
    from pivotune.train.guards import NonFiniteLossError
    from pivotune.train.trainer import PivotuneTrainer

    real = PivotuneTrainer.__init__

    def init(self, *a, **k):
        real(self, *a, **k)
        self.objective = _NanFrom(self.objective, self, 2)

    monkeypatch.setattr(PivotuneTrainer, "__init__", init)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        train(load_config(base=raw_config(method, tiny_model_dir, run, files)), SAMPLES)
    msg = str(err.value)
    assert "optimizer step 2" in msg and "source '" in msg and "last complete checkpoint is kept" in msg
    stages = [p for p in (run, run / "stage1") if (p / "checkpoint-1").is_dir()]   # the stage that stopped
    assert stages and not (stages[0] / "checkpoint-2").exists() and not (run / "model").exists()


@pytest.mark.parametrize("method", list(METHODS))
def test_too_little_disk_space_stops_before_any_training(method, tiny_model_dir, files, tmp_path, monkeypatch):
    from collections import namedtuple

    from pivotune.errors import PivotuneError
    from pivotune.train.trainer import PivotuneTrainer

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("pivotune.train.guards.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    started = []
    monkeypatch.setattr(PivotuneTrainer, "__init__", lambda self, *a, **k: started.append(1))
    with pytest.raises(PivotuneError, match=r"Not enough disk space for output_dir .*0.00 GiB free"):
        train(load_config(base=raw_config(method, tiny_model_dir, tmp_path / "run", files)), SAMPLES)
    assert not started and not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", list(METHODS))
def test_the_run_exports_as_a_plain_model_or_says_why_not(method, tiny_model_dir, files, tmp_path):
    """A causal-LM method's RUN/model exports as a plain Hugging Face model with the trained LM's logits (training
    parts left out); a bridge is refused naming what it is."""
    from pivotune.errors import PivotuneError
    from pivotune.export import export

    run = tmp_path / "run"
    trainer = train(load_config(base=raw_config(method, tiny_model_dir, run, files, save_steps=None)), SAMPLES,
                    save_checkpoints=False)
    if not METHODS[method].causal_lm:
        with pytest.raises(PivotuneError, match="bridge"):
            export(run, tmp_path / "out")
        return
    from transformers import AutoModelForCausalLM

    from pivotune.models.parts import ModelWithParts

    exported = AutoModelForCausalLM.from_pretrained(export(run, tmp_path / "out"))
    lm = trainer.model.lm if isinstance(trainer.model, ModelWithParts) else trainer.model
    ids = torch.tensor([[1, 5, 9, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(exported(input_ids=ids).logits, lm(input_ids=ids).logits, atol=1e-5)
    assert not any("pivot_head" in k for k in exported.state_dict())


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("method", list(METHODS))
def test_bfloat16_computes_under_autocast_over_float32_master_weights(method, lora, tiny_model_dir, files, tmp_path):
    """train.dtype bfloat16: each step's forward computes in bf16 while every weight that trains, the method's own
    parts included (PROM's pivot head, LinguaLIFT's alignment layer), trains and is checkpointed in float32 (under
    LoRA the frozen base stays bf16); a causal LM's RUN/model is written in bf16."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from pivotune.train.trainer import reporting_to

    computed: set[torch.dtype] = set()
    weights = {True: set(), False: set()}   # requires_grad → the dtypes of those weights, in every stage

    class RecordDtypes(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            q_proj = next(m for name, m in model.named_modules() if name.endswith("q_proj"))
            q_proj.register_forward_hook(lambda module, inputs, out: computed.add(out.dtype))
            for name, p in model.named_parameters():
                if "encoder." not in name:   # LinguaLIFT's encoder never trains: it stays in the run's dtype
                    weights[p.requires_grad].add(p.dtype)

    run = tmp_path / "run"
    raw = {**raw_config(method, tiny_model_dir, run, files, dtype="bfloat16"), "lora": {"enabled": lora, "r": 4}}
    with reporting_to(RecordDtypes()):
        train(load_config(base=raw), SAMPLES)
    assert computed == {torch.bfloat16}
    assert weights[True] == {torch.float32}
    assert (torch.bfloat16 in weights[False]) == lora, weights   # a frozen LoRA base costs 2 bytes a weight
    checkpoint = _last_stage_dir(method, run) / "checkpoint-2"
    saved = {f"{f.name}:{k}": v.dtype for f in checkpoint.rglob("*.safetensors") for k, v in load_file(f).items()}
    assert saved and set(saved.values()) == {torch.float32}, saved
    if METHODS[method].causal_lm and not lora:
        final = load_file(run / "model" / "model.safetensors")
        assert {v.dtype for v in final.values()} == {torch.bfloat16}
        assert json.loads((run / "model" / "config.json").read_text())["dtype"] == "bfloat16"
