"""Safe loading defaults: safetensors only, remote code off unless configured, no network for local paths."""

from __future__ import annotations

import pytest

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
