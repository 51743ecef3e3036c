"""Time one training step of PROM against plain SFT and a naive PROM, same model, data and batch.

Variants (each runs forward + backward + AdamW step, ``--warmup`` untimed steps then ``--steps`` timed
ones, median reported), every one in its own subprocess so that its peak memory is its own:

  a  plain SFT as the Hugging Face Trainer computes it for ``xllama``: ``model(..., labels=labels).loss``
     over every row (full forward, full [B, T, V] logits, the model's own causal-LM loss).
  b  naive PROM: full forward of every row with ``output_hidden_states=True``, final norm + a second head
     (the pivot head's Linear) on ``hidden_states[n]`` -> a second full [B, T, V] logits tensor,
     label-smoothed CE on the English rows of it + CE of the model's logits on the target rows
     (ignore_index masks, no row gathers: the cheapest way to write it naively).
  c  pivotune's PROM: ``PromObjective`` through ``PivotedModel`` (English rows through blocks 1..n only,
     logits only at supervised positions, ``prom.chunk_size`` at a time, ``prom.recompute_logits``).

Model: a Llama built from its config (random init, float32): 8 blocks, hidden 512, MLP 1376, 8 heads,
Llama-2's 32000-token vocabulary, untied embeddings (58.4M parameters; PROM's pivot head adds a 16.4M
copy of W_U). Pivot layer n = 6 (round(0.75·8)). PROM settings are the defaults (λ = 0.1, α = 0.1,
head ``copy``, chunk 2048, recompute on) unless ``--chunk-size`` / ``--no-recompute`` say otherwise.

Batch: ``--batch`` rows mixed like an xllama mixture (s_e ∪ s_t ∪ s_mt): 40% English Alpaca rows, 40%
target-language Alpaca rows, 20% English->target translation rows, in shuffled order, encoded as the
pipeline does (BOS, Alpaca prompt masked with -100, response, EOS; truncated at ``--seq``) and padded by
pivotune's ``Collator``. Token ids are random; lengths are drawn to look like Alpaca under a Llama-2
tokenizer with a low-resource target script (English rows short, target rows long and often truncated,
translation rows mid-length); the table header prints the shares actually used.

Throughput is **total (non-padding) tokens of the batch per second** of step time; the batch is the same
for all variants, so supervised-token throughput has the same ratios (both are printed). Peak memory on
CPU: ``ru_maxrss`` of the variant's process (whole process: Python, torch, model, optimizer, step), and
"step" = the highest RSS sampled (every 2 ms) during the steps minus the RSS just before the first step
(model and optimizer built, Adam state not yet allocated). With ``--device cuda``:
``torch.cuda.max_memory_allocated``.

Usage: nice -n 19 python bench/prom_step.py [--batch 10] [--seq 256] [--threads 1] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time

VOCAB, HIDDEN, MLP, LAYERS, HEADS, PIVOT = 32000, 512, 1376, 8, 8, 6
# role -> (share of rows, prompt length range, response length range), tokens under a Llama-2 tokenizer
MIX = {"en": (0.4, (45, 90), (40, 160)), "tgt": (0.4, (90, 150), (110, 220)), "mt": (0.2, (60, 110), (50, 120))}
NAMES = {"a": "SFT, HF labels= loss (xllama)", "b": "naive PROM (full fwd, 2 full logits)",
         "c": "pivotune PROM (PromObjective)"}


# ----------------------------------------------------------------------------------------------- data

def make_batch(n_rows: int, seq: int, seed: int = 0):
    from pivotune.data.collate import Collator, Encoded
    from pivotune.data.records import ROLE_IDS

    rng = random.Random(seed)
    counts = {r: round(share * n_rows) for r, (share, _, _) in MIX.items()}
    counts["en"] += n_rows - sum(counts.values())
    items = []
    for role, k in counts.items():
        _, (p_lo, p_hi), (r_lo, r_hi) = MIX[role]
        for _ in range(k):
            p, r = rng.randint(p_lo, p_hi), rng.randint(r_lo, r_hi)
            body = [rng.randrange(3, VOCAB) for _ in range(p + r)]
            ids = [1, *body, 2]
            labels = [-100] * (1 + p) + body[p:] + [2]
            items.append(Encoded(ids[:seq], labels[:seq], ROLE_IDS[role], 0 if role == "en" else 1, 1.0,
                                 len(ids) > seq))
    rng.shuffle(items)
    return Collator(pad_token_id=0)(items)


def batch_stats(batch) -> dict:
    from pivotune.data.records import ROLE_IDS

    mask, sup = batch["attention_mask"].bool(), batch["labels"][:, 1:].ne(-100)
    en = batch["roles"].eq(ROLE_IDS["en"])
    return {"rows": len(en), "en_rows": int(en.sum()), "width": int(mask.shape[1]),
            "tokens": int(mask.sum()), "supervised": int(sup.sum()), "en_tokens": int(mask[en].sum()),
            "en_supervised": int(sup[en].sum()),
            "roles": {r: int(batch["roles"].eq(i).sum()) for r, i in ROLE_IDS.items() if batch["roles"].eq(i).any()}}


# ---------------------------------------------------------------------------------------------- model

def build_lm():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=4096,
                      tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def prom_objective(chunk_size: int, recompute: bool):
    from pivotune.config import load_config
    from pivotune.methods import run_objective

    cfg = load_config(base={"model": "bench", "method": "prom", "languages": ["th"],
                            "prom": {"pivot_layer": PIVOT, "chunk_size": chunk_size,
                                     "recompute_logits": recompute}})
    return run_objective(cfg)


def naive_prom_loss(pm, batch, lam: float, alpha: float):
    import torch.nn.functional as F

    from pivotune.data.records import ROLE_IDS

    lm, head, n = pm.lm, pm.pivot_head, pm.pivot_layer
    out = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
             use_cache=False)
    pivot_logits = head.proj(lm.model.norm(out.hidden_states[n]))          # a second [B, T, V]
    shifted = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]           # position t predicts t+1
    en = batch["roles"].eq(ROLE_IDS["en"])[:, None]
    lab_en, lab_t = shifted.masked_fill(~en, -100), shifted.masked_fill(en, -100)
    v = pivot_logits.shape[-1]
    ce_en = F.cross_entropy(pivot_logits.view(-1, v), lab_en.reshape(-1), reduction="sum", label_smoothing=alpha)
    ce_t = F.cross_entropy(out.logits.view(-1, v), lab_t.reshape(-1), reduction="sum")
    return lam * ce_en / lab_en.ne(-100).sum().clamp(min=1) + ce_t / lab_t.ne(-100).sum().clamp(min=1)


# --------------------------------------------------------------------------------------------- worker

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    def __init__(self, every: float = 0.002):
        super().__init__(daemon=True)
        self.every, self.peak, self._stop_evt = every, 0, threading.Event()

    def run(self):
        while not self._stop_evt.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.every)

    def stop(self):
        self._stop_evt.set()
        self.join()
        self.peak = max(self.peak, _rss_bytes())


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = {k: v.to(device) for k, v in make_batch(args.batch, args.seq, args.seed).items()}
    lm = build_lm()
    if args.variant == "a":
        model = lm.to(device)

        def loss_fn():
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"], use_cache=False).loss
    else:
        obj = prom_objective(args.chunk_size, not args.no_recompute)
        model = obj.prepare_model(lm).to(device)
        if args.variant == "b":
            s = obj.settings

            def loss_fn():
                return naive_prom_loss(model, batch, obj.lambda_e, s.label_smoothing)
        else:
            norms = {k: v.to(device) for k, v in obj.normalizers(batch).items()}

            def loss_fn():
                return obj.loss(model, batch, norms)[0]
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, foreach=True)

    def step():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    sampler = None
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_bytes()
        sampler = RssSampler()
        sampler.start()
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses.append(step())
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        total_peak = peak
    else:
        sampler.stop()
        peak = sampler.peak
        total_peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"variant": args.variant, "median_s": statistics.median(times), "times": times,
            "loss0": losses[0], "peak_bytes": total_peak, "step_bytes": peak - base,
            "params": sum(p.numel() for p in params), "device": str(device),
            "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------- parent

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seq", type=int, default=256, help="max_seq_len (rows are truncated to it)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=2048)
    ap.add_argument("--no-recompute", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="abc")
    ap.add_argument("--variant", help=argparse.SUPPRESS)   # worker mode
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(worker(args)))
        return

    st = batch_stats(make_batch(args.batch, args.seq, args.seed))
    print(f"model: Llama {LAYERS} blocks, hidden {HIDDEN}, MLP {MLP}, vocab {VOCAB}, untied, float32; pivot "
          f"layer {PIVOT}; device {args.device}, {args.threads} thread(s); PROM chunk {args.chunk_size}, "
          f"recompute {'off' if args.no_recompute else 'on'}")
    print(f"batch: {st['rows']} rows {st['roles']} padded to {st['width']}; {st['tokens']} tokens "
          f"({st['en_tokens']} English = {st['en_tokens'] / st['tokens']:.0%}), {st['supervised']} supervised "
          f"({st['supervised'] / st['tokens']:.0%} of tokens; {st['en_supervised']} English); "
          f"{st['rows'] * st['width'] - st['tokens']} padding positions")
    print(f"steps: {args.warmup} warm-up + {args.steps} timed (median), forward + backward + AdamW, "
          f"one subprocess per variant")
    res = {}
    base_cmd = [sys.executable, os.path.abspath(__file__)] + [
        f"--batch={args.batch}", f"--seq={args.seq}", f"--warmup={args.warmup}", f"--steps={args.steps}",
        f"--threads={args.threads}", f"--seed={args.seed}", f"--chunk-size={args.chunk_size}",
        f"--device={args.device}"] + (["--no-recompute"] if args.no_recompute else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    for v in args.variants:
        out = subprocess.run(base_cmd + [f"--variant={v}"], capture_output=True, text=True, env=env, check=False)
        if out.returncode:
            sys.exit(f"variant {v} failed:\n{out.stderr[-4000:]}")
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])

    mib = 1 / 2**20
    mem = "peak MiB" if args.device == "cpu" else "max alloc MiB"
    print(f"\n{'':2}{'variant':38}{'params':>8}{'step s':>8}{'tok/s':>8}{'sup tok/s':>10}{mem:>10}{'step MiB':>10}"
          f"  times")
    for v, r in res.items():
        print(f"{v:2}{NAMES[v]:38}{r['params'] / 1e6:7.1f}M{r['median_s']:8.2f}{st['tokens'] / r['median_s']:8.0f}"
              f"{st['supervised'] / r['median_s']:10.0f}{r['peak_bytes'] * mib:10.0f}{r['step_bytes'] * mib:10.0f}"
              f"  {' '.join(f'{t:.2f}' for t in r['times'])}")
    if "c" in res:
        c = res["c"]
        for ref, target in (("a", "throughput >= 1.10x, peak memory <= 1.00x"), ("b", "throughput >= 1.5x")):
            if ref not in res:
                continue
            r = res[ref]
            print(f"(c)/({ref}): throughput {r['median_s'] / c['median_s']:.2f}x, "
                  f"peak memory {c['peak_bytes'] / r['peak_bytes']:.2f}x, "
                  f"step memory {c['step_bytes'] / max(r['step_bytes'], 1):.2f}x   (target: {target})")


if __name__ == "__main__":
    main()
