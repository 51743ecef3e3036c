"""The one training road, for every registered method (a new method gets these tests by registering): the run
config's trust_remote_code reaches every loader, and gradient interference is either measured or refused by the
config with a clear error, never silently ignored."""

from __future__ import annotations

import json

import pytest
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
