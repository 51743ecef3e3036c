"""A tiny random-init NLLB-style MT model directory, built once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_nllb_dir(tmp_path_factory):
    from pivotune.toy.mt_model import build_tiny_nllb

    return build_tiny_nllb(tmp_path_factory.mktemp("tiny-nllb"))


@pytest.fixture(scope="session")
def tiny_translator(tiny_nllb_dir):
    import torch

    from pivotune.translate.seq2seq import HFSeq2SeqTranslator

    torch.set_num_threads(1)     # tiny ops on a busy 2-core machine: threads only wait at the barrier
    return HFSeq2SeqTranslator(str(tiny_nllb_dir), device="cpu", batch_size=4, max_new_tokens=8)
