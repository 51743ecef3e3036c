"""Is the toy world English-centric? Build it, pretrain, instruction-tune, evaluate, print scores and times.

    .venv/bin/python bench/toy_world_check.py [--quick] [--cache DIR] [--epochs 2] [--limit N]

Runs two fine-tunes of the cached base model:
  english  — instructions/en.jsonl only
  en+tgt   — English + the well-represented target's translated instructions + its translation task
and prints toy-MGSM accuracy and toy-XQuAD EM/F1 per language for the base model and both.
The fine-tune here is a short plain-torch loop (loss on response tokens, via
pivotune.data.collate); ``pivotune train`` is the real road.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from pivotune.data.collate import Collator, encode_sample  # noqa: E402
from pivotune.data.records import Sample  # noqa: E402
from pivotune.eval.toy_scoring import evaluate_toy, headline, load_model  # noqa: E402
from pivotune.toy import grammar  # noqa: E402
from pivotune.toy.language import translate  # noqa: E402
from pivotune.toy.model import get_or_build, lr_at  # noqa: E402
from pivotune.toy.world import WorldConfig  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def instruction_samples(world: Path, lang: str, role: str) -> list[Sample]:
    return [Sample(instruction=r["instruction"], input=r["input"], output=r["output"], role=role, lang=lang)
            for r in read_jsonl(world / "instructions" / f"{lang}.jsonl")]


def translation_samples(world: Path, lang: str, seed: int) -> list[Sample]:
    """English→target translation task, instruction wordings cycled (in the toy vocabulary)."""
    lang_word = grammar.LANG_WORDS[lang]
    pool = [t.format(lang=lang_word) for t in grammar.TRANSLATE_INSTRUCTIONS]
    return [Sample(instruction=pool[i % len(pool)], input=r["source"], output=r["target"], role="mt", lang=lang)
            for i, r in enumerate(read_jsonl(world / "parallel" / f"en-{lang}.jsonl"))]


def finetune(base: Path, samples: list[Sample], *, epochs: float, lr: float, batch_size: int = 16,
             max_len: int = 320, seed: int = 0):
    """Full fine-tuning, loss on response tokens only; returns (model, tokenizer, seconds)."""
    model, tok = load_model(base)
    torch.manual_seed(seed)
    enc = [encode_sample(s, tok, max_seq_len=max_len) for s in samples]
    rng = random.Random(seed)
    total = max(1, int(len(enc) * epochs) // batch_size)
    order: list[int] = []
    while len(order) < total * batch_size:
        perm = list(range(len(enc)))
        rng.shuffle(perm)
        order += perm
    coll = Collator(tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for step in range(total):
        batch = coll([enc[i] for i in order[step * batch_size:(step + 1) * batch_size]])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, lr, max(1, total // 20))
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0 or step + 1 == total:
            print(f"  step {step + 1}/{total} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    return model, tok, time.perf_counter() - t0


def show(name: str, res: dict) -> None:
    h = headline(res)
    cells = "  ".join(f"{l}: mgsm {v.get('mgsm', 0):5.1f} xq-em {v.get('xquad_em', 0):5.1f} "
                      f"f1 {v.get('xquad_f1', 0):5.1f}" for l, v in h.items())
    print(f"{name:8s} {cells}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--override", default="{}", help="JSON of WorldConfig overrides")
    args = ap.parse_args(argv)
    over = json.loads(args.override)
    cfg = WorldConfig.quick(**over) if args.quick else WorldConfig(**over)
    t0 = time.perf_counter()
    paths = get_or_build(cfg, args.cache, progress=lambda m: print(m, flush=True))
    print(f"world + base model ready in {time.perf_counter() - t0:.1f}s at {paths.root}")
    ready = json.loads((paths.root / "READY.json").read_text())
    print("build timings:", json.dumps(ready["timings"]), "pretrain:", json.dumps(ready["pretrain"]))
    world, tgt = paths.world, cfg.well_represented

    def run_eval(name, model, tok):
        t = time.perf_counter()
        res = evaluate_toy(model, tok, world, limit=args.limit)
        show(name, res)
        print(f"  eval {time.perf_counter() - t:.1f}s")
        return res

    base_model, base_tok = load_model(paths.base)
    out = {"base": run_eval("base", base_model, base_tok)}
    en = instruction_samples(world, "en", "en")
    mix = en + instruction_samples(world, tgt, "tgt") + translation_samples(world, tgt, cfg.seed)
    for name, samples, epochs in (("english", en, args.epochs), ("en+tgt", mix, args.epochs)):
        print(f"fine-tune {name}: {len(samples)} samples, {epochs} epochs")
        model, tok, secs = finetune(paths.base, samples, epochs=epochs, lr=args.lr, seed=cfg.seed)
        print(f"  fine-tune {secs:.1f}s")
        out[name] = run_eval(name, model, tok)
    print("\nsummary (percent):")
    for name, res in out.items():
        show(name, res)
    h = headline(out["english"])
    under = cfg.under_represented
    print(f"english-only: en xquad EM {h['en']['xquad_em']:.1f} / mgsm {h['en']['mgsm']:.1f}  vs  "
          f"{under} {h[under]['xquad_em']:.1f} / {h[under]['mgsm']:.1f}")
    print(f"{tgt}: english-only {h[tgt]['xquad_em']:.1f}/{h[tgt]['mgsm']:.1f} -> en+tgt "
          f"{headline(out['en+tgt'])[tgt]['xquad_em']:.1f}/{headline(out['en+tgt'])[tgt]['mgsm']:.1f}")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
