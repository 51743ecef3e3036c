"""Safe loading defaults: safetensors only, remote code off unless configured, no network for local paths."""

from __future__ import annotations

import pytest
import torch

from pivotune.config import load_config
from pivotune.errors import PivotuneError
from pivotune.models.loading import load_model, load_tokenizer, source_kwargs


def test_local_directory_loads_offline_without_remote_code(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = {}
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, name, **kwargs):
        seen.update(kwargs)
        return real(cls, name, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    load_model(str(tiny_model_dir))
    assert seen["local_files_only"] is True and seen["trust_remote_code"] is False
    assert seen["use_safetensors"] is True
    assert load_tokenizer(str(tiny_model_dir)).pad_token_id is not None


def test_hub_name_may_use_the_network_and_remote_code_only_when_asked():
    assert source_kwargs("meta-llama/Llama-2-7b-hf") == {"trust_remote_code": False}
    assert source_kwargs("org/model", trust_remote_code=True) == {"trust_remote_code": True}


@pytest.mark.parametrize("name", ["./missing-model", "/no/such/dir", "runs/a/model"])
def test_missing_local_path_is_not_sent_to_the_hub(name, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        classmethod(lambda cls, *a, **k: pytest.fail("reached from_pretrained")))
    with pytest.raises(PivotuneError, match="Could not load.*path does not exist.*nothing was downloaded"):
        load_model(name)


def test_pickled_weights_are_refused(tiny_model_dir, tmp_path):
    import shutil

    import torch

    d = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").unlink()
    torch.save({}, d / "pytorch_model.bin")
    with pytest.raises(PivotuneError, match=r"only pickled weights \(pytorch_model.bin\).*safetensors only"):
        load_model(str(d))


class _Stop(Exception):
    pass


@pytest.mark.parametrize("flag", [False, True])
def test_trust_remote_code_comes_from_the_config_only(tiny_model_dir, tmp_path, monkeypatch, flag):
    from pivotune.data.records import Sample
    from pivotune.train import run

    assert load_config(base={"model": "m"}).trust_remote_code is False
    seen = {}
    real_tok = run.load_tokenizer
    monkeypatch.setattr(run, "load_tokenizer", lambda name, trust_remote_code=None: seen.update(
        tokenizer=trust_remote_code) or real_tok(name, trust_remote_code))

    def stop(name, dtype="float32", trust_remote_code=None):
        seen["model"] = trust_remote_code
        raise _Stop

    monkeypatch.setattr(run, "load_model", stop)
    over = {"trust_remote_code": True} if flag else {}
    cfg = load_config(base={"model": str(tiny_model_dir), "method": "english", "output_dir": str(tmp_path / "r"),
                            "max_seq_len": 128, **over})
    with pytest.raises(_Stop):
        run.train(cfg, [Sample(instruction="Say.", output="the cat", role="en")])
    assert seen == {"tokenizer": flag, "model": flag}


# ------------------------------------------------------------------ pickles in checkpoints and model directories

class _Planted:
    """Unpickling this object calls os.mkdir(marker): harmless, and visible if it ever ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory, tiny_model_dir):
    """(config path, run dir) of a finished 4-step CLI run with checkpoints 2 and 4."""
    from test_cli import _write_config

    from pivotune.cli import main

    d = tmp_path_factory.mktemp("planted")
    cfg = _write_config(d, tiny_model_dir, train={
        "lr": 1e-3, "max_steps": 4, "save_steps": 2, "per_device_batch_size": 2, "grad_accum": 1,
        "warmup_ratio": 0.0, "logging_steps": 1, "progress_bar": False})
    assert main(["train", cfg]) == 0
    return cfg, d / "run"


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_resume_refuses_a_checkpoint_file_holding_other_pickles(checkpointed_run, tmp_path, capsys, name):
    """A checkpoint file with pickled objects beyond tensors is refused by name, in one paragraph, exit 2;
    nothing in it runs."""
    import shutil

    import torch

    from pivotune.cli import main

    cfg, ref = checkpointed_run
    run = tmp_path / "run"
    shutil.copytree(ref / "checkpoint-2", run / "checkpoint-2")
    marker = tmp_path / "it-ran"
    torch.save({"state": _Planted(marker)}, run / "checkpoint-2" / name)
    code = main(["train", cfg, "--output-dir", str(run), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert f"{name} is not trusted" in err and "pickled objects beyond tensors" in err and "posix.mkdir" in err
    assert "weights_only" in err and "another checkpoint" in err and "Traceback" not in err
    assert len(err.split("error: ", 1)[1]) < 2000


def test_export_refuses_pickled_weights(checkpointed_run, tmp_path, capsys):
    """A run whose model directory holds only pytorch_model.bin: export refuses it clearly (safetensors only)."""
    import shutil

    from pivotune.cli import main

    _, ref = checkpointed_run
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    (run / "model" / "model.safetensors").unlink()
    torch.save({}, run / "model" / "pytorch_model.bin")
    assert main(["export", str(run), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "only pickled weights (pytorch_model.bin)" in err and "safetensors only" in err and "Traceback" not in err


def test_lora_base_model_with_pickled_weights_is_refused(tiny_model_dir, tmp_path):
    """Exporting a LoRA run loads its base model by the same rule: pickled-only weights are refused."""
    import shutil

    from peft import LoraConfig, get_peft_model

    from pivotune.export import export

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    lm = load_model(str(base))
    get_peft_model(lm, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")).save_pretrained(
        tmp_path / "run" / "model")
    load_tokenizer(str(base)).save_pretrained(tmp_path / "run" / "model")
    (base / "model.safetensors").unlink()
    torch.save({}, base / "pytorch_model.bin")
    with pytest.raises(PivotuneError, match=r"'.*base' holds only pickled weights"):
        export(tmp_path / "run", tmp_path / "out")


def test_every_model_load_goes_through_the_safe_loader():
    """No module but models/loading.py calls a model class's from_pretrained (tokenizers, configs and pivotune's own
    bridge loader aside), so the safetensors-only rule cannot be bypassed."""
    import re
    from pathlib import Path

    import pivotune

    root = Path(pivotune.__file__).parent
    model_load = re.compile(r"\b(Auto\w*Model\w*|PeftModel|\w+ForCausalLM|AutoPeft\w+)\.from_pretrained\(")
    found = [f"{p.relative_to(root)}: {m.group(0)}" for p in root.rglob("*.py") if p.name != "loading.py"
             for m in model_load.finditer(p.read_text(encoding="utf-8"))]
    assert found == []
