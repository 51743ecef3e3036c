from pivotune.data.collate import IGNORE_INDEX, Collator, encode_all, encode_sample
from pivotune.data.records import ROLE_IDS, Sample
from pivotune.data.templates import alpaca_prompt


def test_alpaca_prompt_shape():
    assert alpaca_prompt("Say hi") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi\n\n### Response:\n")
    with_input = alpaca_prompt("Translate.", "the cat")
    assert "paired with an input" in with_input and "### Input:\nthe cat\n\n### Response:\n" in with_input


def test_label_masking_hand_worked(tokenizer):
    s = Sample(instruction="Say hi", output="hello world", role="tgt", lang="el", weight=0.5)
    enc = encode_sample(s, tokenizer, lang_ids={"en": 0, "el": 1})
    prompt_ids = tokenizer.encode(alpaca_prompt("Say hi"), add_special_tokens=False)
    resp_ids = tokenizer.encode("hello world", add_special_tokens=False)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    # Worked out by hand: BOS + prompt are context only; the response and EOS are supervised.
    assert enc.input_ids == [bos, *prompt_ids, *resp_ids, eos]
    assert enc.labels == [IGNORE_INDEX] * (1 + len(prompt_ids)) + [*resp_ids, eos]
    supervised = [t for t in enc.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == "hello world</s>"
    assert (enc.role, enc.lang, enc.weight, enc.truncated) == (ROLE_IDS["tgt"], 1, 0.5, False)


def test_truncation_keeps_prefix_and_counts(tokenizer, caplog):
    long = Sample(instruction="Say hi", output="the cat " * 50)
    n_prompt = 1 + len(tokenizer.encode(alpaca_prompt("Say hi"), add_special_tokens=False))
    enc = encode_sample(long, tokenizer, max_seq_len=n_prompt + 5)
    assert len(enc.input_ids) == n_prompt + 5 and enc.truncated
    assert enc.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    # a sample cut inside its prompt has nothing to learn from and is dropped, with a warning
    kept = encode_all([long, Sample(instruction="Say hi", output="ok")], tokenizer, max_seq_len=n_prompt - 2)
    assert kept == []
    assert "truncated" in caplog.text and "dropped" in caplog.text


def test_collator_pads_and_carries_roles(tokenizer):
    a = encode_sample(Sample(instruction="a", output="the cat", role="en"), tokenizer)
    b = encode_sample(Sample(instruction="a", output="the big red dog runs", role="mt", weight=2.0), tokenizer)
    batch = Collator(tokenizer.pad_token_id)([a, b])
    width = max(len(a.input_ids), len(b.input_ids))
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][0].sum() == len(a.input_ids)
    assert (batch["labels"][0, len(a.input_ids):] == IGNORE_INDEX).all()
    assert batch["roles"].tolist() == [ROLE_IDS["en"], ROLE_IDS["mt"]]
    assert batch["weights"].tolist() == [1.0, 2.0]


def test_chat_template_masks_all_but_assistant_turns(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant: {% endif %}")
    msgs = ({"role": "user", "content": "the cat"}, {"role": "assistant", "content": "a dog"},
            {"role": "user", "content": "two"}, {"role": "assistant", "content": "three"})
    enc = encode_sample(Sample(messages=msgs), tok, template="chat")
    supervised = [t if t != IGNORE_INDEX else None for t in enc.labels]
    # the supervised spans, decoded, are exactly the assistant replies and their end-of-turn marks
    spans, cur = [], []
    for t in supervised:
        if t is None:
            if cur:
                spans.append(tok.decode(cur))
            cur = []
        else:
            cur.append(t)
    if cur:
        spans.append(tok.decode(cur))
    assert spans == ["a dog</s>", "three</s>"]
    assert tok.decode(enc.input_ids) == tok.apply_chat_template(list(msgs), tokenize=False)
