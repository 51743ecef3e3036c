"""One runnable case per registered method on the tiny models, for the road-level tests parametrized over the
registry (tests/test_roads.py): a run config and the samples it trains on.

The data serve every method: English rows (role en), their translations into the declared language ``xx``
(role tgt, row i translating English row i), and translation-task rows (role mt). A method that needs settings
of its own to run here (evidence, an encoder) names them in :data:`SETTINGS`; a new method with none gets every
road-level test without a line here.
"""

from __future__ import annotations

from pathlib import Path

from lingualift_helpers import save_tiny_encoder, write_tiny_lexicon

from pivotune.data.records import Sample

OUTPUTS = ["the red cat", "a blue bird sees the dog", "two green trees", "the big river is water",
           "one small dog eats food", "good food and water", "hello world", "yes and no"]


def _reverse(text: str) -> str:   # a stand-in translation: exact, invertible, different from the English
    return " ".join(reversed(text.split()))


ENGLISH = [Sample(instruction=f"Name item {i}.", input="the house" if i % 2 else "", output=o, role="en", lang="en",
                  source="en.jsonl", origin=f"en.jsonl, line {i + 1}") for i, o in enumerate(OUTPUTS)]
TARGET = [Sample(instruction=_reverse(s.instruction), input=_reverse(s.input), output=_reverse(s.output), role="tgt",
                 lang="xx", source="xx.jsonl", origin=f"xx.jsonl, line {i + 1}") for i, s in enumerate(ENGLISH)]
MT = [Sample(instruction="Translate into xx:", input=s.output, output=_reverse(s.output), role="mt", lang="xx",
             source="mt.jsonl", origin=f"mt.jsonl, line {i + 1}") for i, s in enumerate(ENGLISH)]
SAMPLES = ENGLISH + TARGET + MT


def parts(d: Path, tokenizer) -> dict[str, str]:
    """Files the cases refer to: LinguaLIFT's tiny encoder and lexicon."""
    return {"encoder": str(save_tiny_encoder(tokenizer, d / "encoder")),
            "lexicon": str(write_tiny_lexicon(d / "en-xx.txt"))}


#: what a method needs beyond the common config to run here: ``settings(parts) -> {section: {...}}``
SETTINGS = {
    "prom": lambda p: {"prom": {"lambda_per_language": {"xx": 0.5}}},   # λ given: no probe to run
    "lingualift": lambda p: {"lingualift": {"encoder": p["encoder"], "lexicons": {"xx": p["lexicon"]},
                                            "stage1_max_steps": 2, "stage1_lr": 1e-2, "max_encoder_len": 64}},
    "lens-local": lambda p: {"lens_local": {"split_layer": 1}},   # the split given: no probe to run
}


def raw_config(method: str, model_dir, out: Path, files: dict[str, str], **train) -> dict:
    """The case's run config: 2 optimizer steps of batch 2, logged every step, checkpointed every step."""
    return {"model": str(model_dir), "method": method, "extra_languages": ["xx"], "languages": ["xx"],
            "output_dir": str(out), "max_seq_len": 256, "seed": 3,
            "train": {"lr": 1e-2, "max_steps": 2, "per_device_batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0,
                      "scheduler": "constant", "logging_steps": 1, "save_steps": 1, "progress_bar": False, **train},
            **SETTINGS.get(method, lambda p: {})(files)}
