"""lm-evaluation-harness evaluates a bridged model offline (model ``pivotune-bridge``), on small local tasks;
its scores are recomputed here from the bridge directly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_llama
from lingualift_helpers import tiny_encoder

from pivotune.models.bridge import LinguaLiftModel

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = [{"question": f"repeat {w}", "answer": w, "choices": [w, "dog", "tree"], "label": i % 3}
        for i, w in enumerate(["cat", "bird", "red", "water", "house", "one"])]

TASKS = {
    "bridge_toy_gen": {"output_type": "generate_until", "doc_to_target": "{{answer}}",
                       "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "do_sample": False},
                       "metric_list": [{"metric": "exact_match"}]},
    "bridge_toy_mc": {"output_type": "multiple_choice", "doc_to_choice": "{{choices}}", "doc_to_target": "label",
                      "metric_list": [{"metric": "acc"}]},
}


@pytest.fixture(scope="module")
def bridge_dir(tmp_path_factory, tokenizer):
    d = tmp_path_factory.mktemp("bridge")
    bridge = LinguaLiftModel.build(tiny_encoder(tokenizer), tiny_llama(tokenizer, init_std=0.3),
                                   bos_token_id=tokenizer.bos_token_id, encoder_tokenizer=tokenizer,
                                   lm_tokenizer=tokenizer)
    return bridge.save_pretrained(d / "model")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    import yaml

    d = tmp_path_factory.mktemp("tasks")
    (d / "docs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in DOCS))
    for name, spec in TASKS.items():
        body = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(d / "docs.jsonl")}},
                "test_split": "test", "doc_to_text": "{{question}}", **spec}
        (d / f"{name}.yaml").write_text(yaml.safe_dump(body))
    return d


def test_harness_evaluates_a_bridge_offline(bridge_dir, task_dir, tokenizer):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import pivotune.eval.bridge_lm  # noqa: F401  (registers pivotune-bridge)

    out = lm_eval.simple_evaluate(model="pivotune-bridge", model_args=f"pretrained={bridge_dir},batch_size=4",
                                  tasks=list(TASKS), task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                                  log_samples=True, random_seed=0)
    res = out["results"]

    # independent recomputation, straight through the bridge
    bridge = LinguaLiftModel.from_pretrained(bridge_dir).eval()
    exact, correct = 0, 0
    for doc in DOCS:
        enc = tokenizer([doc["question"]], return_tensors="pt")
        new = bridge.generate_new(enc["input_ids"], enc["attention_mask"], max_new_tokens=4, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(new[0], skip_special_tokens=True).split("\n")[0]
        exact += text == doc["answer"]
        scores = []
        for choice in doc["choices"]:
            ids = torch.tensor([tokenizer.encode(" " + choice, add_special_tokens=False)])
            with torch.no_grad():
                logp = torch.log_softmax(bridge(enc["input_ids"], enc["attention_mask"], ids).logits[0], -1)
            scores.append(float(sum(logp[t, ids[0, t]] for t in range(ids.shape[1]))))
        correct += max(range(3), key=scores.__getitem__) == doc["label"]
    assert res["bridge_toy_gen"]["exact_match,none"] == pytest.approx(exact / len(DOCS))
    assert res["bridge_toy_mc"]["acc,none"] == pytest.approx(correct / len(DOCS))
    gen_samples = out["samples"]["bridge_toy_gen"]
    assert len(gen_samples) == len(DOCS) and all(isinstance(s["resps"][0][0], str) for s in gen_samples)
    mc = out["samples"]["bridge_toy_mc"][0]["resps"]
    assert len(mc) == 3 and all(isinstance(r[0][0], float) for r in mc)
