"""Time one training step of PROM and of plain SFT against their reference implementations, same model,
data and batch.

Variants (each runs forward + backward + AdamW step), every one in its own subprocess so that its peak
memory is its own; their steps are interleaved (bench/interleave.py): ``--warmup`` untimed rounds, then
``--steps`` (at least 5) timed rounds a, b, c, d, e, f, a, b, ...; medians are compared.

  a  plain SFT as the Hugging Face Trainer computes it: ``model(..., labels=labels).loss`` over every row
     (full forward, full [B, T, V] logits, the model's own causal-LM loss).
  b  naive PROM: full forward of every row with ``output_hidden_states=True``, final norm + a second head
     (the pivot head's Linear) on ``hidden_states[n]`` -> a second full [B, T, V] logits tensor,
     label-smoothed CE on the English rows of it + CE of the model's logits on the target rows
     (ignore_index masks, no row gathers: the cheapest way to write it naively).
  c  pivotune's PROM: ``PromObjective`` through ``PivotedModel`` (English rows through blocks 1..n only,
     logits only at supervised positions, ``prom.chunk_size`` at a time, ``prom.recompute_logits`` as
     ``--recompute`` says: auto, the default, decides by the logits' size as a run does).
  d  pivotune's SFT: ``SFTObjective``, the loss of every baseline (english, bactrian, xllama): logits only
     at supervised positions, as c's final head (``--recompute`` as for c).
  f  pivotune's PROM with ``prom.recompute_logits`` forced on: what recomputing the logits costs and saves
     (the same as c where auto decides to recompute).
  e  TRL's SFT loss on its compact path: ``SFTTrainer.compute_loss``'s default (``loss_type="nll"``, no
     label smoothing): the model patched by ``trl.trainer.utils.add_fused_lm_head`` with the outputs
     SFTTrainer asks for (log-probs, entropy, top-1), called with ``fused_lm_head=True``, loss =
     -Σ log p / supervised tokens. TRL takes the compact path (only supervised positions go through the
     head, in tiles) where Triton runs (CUDA); on any other device the bench makes TRL take it as well
     (its tiles are then folded in torch, as TRL does without Triton). Needs ``trl`` (the dev extra).

The objectives are built by their methods' roads as a run builds them, with per_device_batch_size = the
batch's rows and the batch's rows as the run's encoded data (what ``prom.recompute_logits: auto`` reads);
each variant's resolved ``recompute_logits`` is printed under the table.

Model: a Llama built from its config (random init, float32): 8 blocks, hidden 512, MLP 1376, 8 heads,
Llama-2's 32000-token vocabulary, untied embeddings (58.4M parameters; PROM's pivot head adds a 16.4M
copy of W_U). Pivot layer n = 6 (round(0.75·8)). PROM settings are the defaults (λ = 0.1, α = 0.1,
head ``copy``, chunk 2048, recompute auto) unless ``--chunk-size`` / ``--recompute`` say otherwise.

Batch: ``--batch`` rows mixed like an xllama mixture (s_e ∪ s_t ∪ s_mt): 40% English Alpaca rows, 40%
target-language Alpaca rows, 20% English->target translation rows, in shuffled order, encoded as the
pipeline does (BOS, Alpaca prompt masked with -100, response, EOS; truncated at ``--seq``) and padded by
pivotune's ``Collator``. Token ids are random; lengths are drawn to look like Alpaca under a Llama-2
tokenizer with a low-resource target script (English rows short, target rows long and often truncated,
translation rows mid-length); the table header prints the shares actually used.

Throughput is **total (non-padding) tokens of the batch per second** of step time; the batch is the same
for all variants, so supervised-token throughput has the same ratios (both are printed). ``loss0`` is each
variant's loss at the first step: a, d and e compute the same loss and must agree. Peak memory on CPU:
``ru_maxrss`` of the variant's process (whole process: Python, torch, model, optimizer, step), and "step" =
the highest RSS sampled (every 2 ms while the variant steps) minus the RSS just before its first step
(model and optimizer built, Adam state not yet allocated). With ``--device cuda``:
``torch.cuda.max_memory_allocated``.

Usage: nice -n 19 python bench/prom_step.py [--batch 10] [--seq 256] [--threads 1] [--steps 5] [--variants abcdef]
       [--recompute auto|true|false]
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from interleave import MIN_TIMED, Worker, check_steps, serve_training_steps, time_workers

VOCAB, HIDDEN, MLP, LAYERS, HEADS, PIVOT = 32000, 512, 1376, 8, 8, 6
# role -> (share of rows, prompt length range, response length range), tokens under a Llama-2 tokenizer
MIX = {"en": (0.4, (45, 90), (40, 160)), "tgt": (0.4, (90, 150), (110, 220)), "mt": (0.2, (60, 110), (50, 120))}
NAMES = {"a": "SFT, HF labels= loss", "b": "naive PROM (full fwd, 2 full logits)",
         "c": "pivotune PROM (PromObjective)", "d": "pivotune SFT (SFTObjective)",
         "e": "TRL SFT loss, compact path", "f": "pivotune PROM, recompute_logits on"}
# (faster, reference, target) ratio lines printed under the table when both variants ran
COMPARISONS = (("c", "a", "throughput >= 1.10x, peak memory <= 1.00x"), ("c", "b", "throughput >= 1.5x"),
               ("d", "e", "throughput >= 1.0x"), ("d", "a", None), ("f", "c", None))


# ----------------------------------------------------------------------------------------------- data

def make_batch(n_rows: int, seq: int, seed: int = 0, vocab: int = VOCAB):
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
            body = [rng.randrange(3, vocab) for _ in range(p + r)]
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


def run_objective_on(method: str, batch: dict, **prom):
    """The objective a run of ``method`` trains with (``prom`` settings as given), built by its road as in a run:
    per_device_batch_size = the batch's rows, and the batch's rows stand for the encoded data."""
    from pivotune.config import load_config
    from pivotune.methods import METHODS
    from pivotune.methods.base import Stage

    rows, width = batch["labels"].shape
    cfg = load_config(base={"model": "bench", "method": method, "languages": ["th"], "max_seq_len": max(width, 8),
                            "train": {"per_device_batch_size": rows}, "prom": prom})
    road, stage = METHODS[method].road(cfg), Stage()
    road.supervised[stage.name] = batch["labels"][:, 1:].ne(-100).sum(1).tolist()   # what road.units records
    return road.objective(stage)


def prom_objective(batch: dict, pivot_layer: int = PIVOT, **prom):
    return run_objective_on("prom", batch, pivot_layer=pivot_layer, **prom)


def sft_objective(batch: dict, **prom):
    return run_objective_on("xllama", batch, **prom)


def trl_compact_sft(model, device):
    """TRL's SFT loss function on ``model`` (patched in place), on its compact path whatever the device."""
    import trl
    from trl.trainer import utils as trl_utils

    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))   # as SFTTrainer does
    if device.type != "cuda":
        # TRL decides "compact" by whether its Triton kernels run on the device; only that decision changes
        compact = "_use_triton"
        if not callable(getattr(trl_utils, compact, None)):
            sys.exit(f"trl {trl.__version__} has no trainer.utils.{compact}: update how this bench selects TRL's "
                     "compact path")
        setattr(trl_utils, compact, lambda _device: True)

    def loss_fn(batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    use_cache=False, fused_lm_head=True)
        return -out.log_probs.sum() / out.label_mask.sum().clamp(min=1)
    return loss_fn


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

def build_loss(variant: str, args, device, batch):
    """(model, loss function of no argument, the recompute_logits it resolved: None where not pivotune's)."""
    lm = build_lm()
    if variant == "a":
        model = lm.to(device)
        return model, lambda: model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    labels=batch["labels"], use_cache=False).loss, None
    settings = {"chunk_size": args.chunk_size, "recompute_logits": args.recompute}
    if variant == "d":
        obj = sft_objective(batch, **settings)
        model = obj.prepare_model(lm.to(device))
        norms = {k: v.to(device) for k, v in obj.normalizers(batch).items()}
        return model, lambda: obj.loss(model, batch, norms)[0], obj.recompute.value
    if variant == "e":
        model = lm.to(device)
        loss_fn = trl_compact_sft(model, device)
        return model, lambda: loss_fn(batch), None
    obj = prom_objective(batch, **{**settings, **({"recompute_logits": True} if variant == "f" else {})})
    model = obj.prepare_model(lm).to(device)
    if variant == "b":
        return model, lambda: naive_prom_loss(model, batch, obj.lambda_e, obj.settings.label_smoothing), None
    norms = {k: v.to(device) for k, v in obj.normalizers(batch).items()}
    return model, lambda: obj.loss(model, batch, norms)[0], obj.recompute.value


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = {k: v.to(device) for k, v in make_batch(args.batch, args.seq, args.seed).items()}
    model, loss_fn, recompute = build_loss(args.variant, args, device, batch)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, foreach=True)

    def step():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    serve_training_steps(step, device, {"params": sum(p.numel() for p in params),
                                        "torch_threads": torch.get_num_threads(), "recompute": recompute})


# --------------------------------------------------------------------------------------------- parent

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seq", type=int, default=256, help="max_seq_len (rows are truncated to it)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=MIN_TIMED, help=f"timed steps per variant (at least {MIN_TIMED})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=2048)
    ap.add_argument("--recompute", choices=("auto", "true", "false"), default="auto",
                    help="prom.recompute_logits of c and d (f: true)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="abcdef")
    ap.add_argument("--variant", help=argparse.SUPPRESS)   # worker mode
    args = ap.parse_args()
    if args.variant:
        worker(args)
        return
    check_steps(args.steps)
    if unknown := set(args.variants) - set(NAMES):
        ap.error(f"--variants: unknown {''.join(sorted(unknown))}; choose from {''.join(NAMES)}")

    st = batch_stats(make_batch(args.batch, args.seq, args.seed))
    print(f"model: Llama {LAYERS} blocks, hidden {HIDDEN}, MLP {MLP}, vocab {VOCAB}, untied, float32; pivot "
          f"layer {PIVOT}; device {args.device}, {args.threads} thread(s); chunk {args.chunk_size}, "
          f"recompute_logits {args.recompute} (f: true)")
    print(f"batch: {st['rows']} rows {st['roles']} padded to {st['width']}; {st['tokens']} tokens "
          f"({st['en_tokens']} English = {st['en_tokens'] / st['tokens']:.0%}), {st['supervised']} supervised "
          f"({st['supervised'] / st['tokens']:.0%} of tokens; {st['en_supervised']} English); "
          f"{st['rows'] * st['width'] - st['tokens']} padding positions")
    print(f"steps: {args.warmup} warm-up + {args.steps} timed rounds, variants interleaved "
          f"({', '.join(args.variants)}, {args.variants[0]}, ...), median per variant; forward + backward + "
          "AdamW, one subprocess per variant")
    base_cmd = [sys.executable, os.path.abspath(__file__)] + [
        f"--batch={args.batch}", f"--seq={args.seq}", f"--threads={args.threads}", f"--seed={args.seed}",
        f"--chunk-size={args.chunk_size}", f"--device={args.device}", f"--recompute={args.recompute}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    t = time_workers({v: Worker(v, base_cmd + [f"--variant={v}"], env) for v in args.variants},
                     warmup=args.warmup, steps=args.steps)

    mib = 1 / 2**20
    mem = "peak MiB" if args.device == "cpu" else "max alloc MiB"
    print(f"\n{'':2}{'variant':38}{'params':>8}{'loss0':>8}{'step s':>8}{'tok/s':>8}{'sup tok/s':>10}{mem:>10}"
          f"{'step MiB':>10}  timed steps (s)")
    for v in t.names:
        r, med = t.reports[v], t.median(v)
        print(f"{v:2}{NAMES[v]:38}{r['params'] / 1e6:7.1f}M{t.results[v][0]['loss']:8.4f}{med:8.2f}"
              f"{st['tokens'] / med:8.0f}{st['supervised'] / med:10.0f}{r['peak_bytes'] * mib:10.0f}"
              f"{r['step_bytes'] * mib:10.0f}  {t.spread(v)}")
    resolved = {v: t.reports[v]["recompute"] for v in t.names if t.reports[v]["recompute"] is not None}
    print("recompute_logits as resolved: " + ", ".join(f"{v} {r}" for v, r in resolved.items()))
    for fast, ref, target in COMPARISONS:
        if fast in t.names and ref in t.names:
            f, r = t.reports[fast], t.reports[ref]
            print(f"({fast})/({ref}): throughput {t.speedup(fast, ref):.2f}x, "
                  f"peak memory {f['peak_bytes'] / r['peak_bytes']:.2f}x, "
                  f"step memory {f['step_bytes'] / max(r['step_bytes'], 1):.2f}x"
                  + (f"   (target: {target})" if target else ""))


if __name__ == "__main__":
    main()
