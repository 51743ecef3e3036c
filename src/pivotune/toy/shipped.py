"""The default toy world's pretrained base model and LinguaLIFT encoder, shipped in the package.

Pretraining them costs about half an hour of one CPU core, which every user would otherwise pay on their
first ``make demo``. The package carries the result in ``toy/shipped/``: ``base/`` and ``encoder/`` (the
``save_pretrained`` files: safetensors weights, config, tokenizer) and ``MANIFEST.json``, which records the
world config hash and encoder key they were built for, each file's sha256, and the first steps of the build
(their losses and the weights' sha256 after them).

When a cache entry for exactly that world (or encoder) is built, the files are copied in after their sha256
is checked, instead of pretraining; any other world still pretrains its own. ``pivotune toy build-base`` is
the recipe (:func:`build_base`): it rebuilds both from the world config, bitwise the same where they were built
(the manifest records torch's and transformers' versions and the CPU kernels: another CPU or release may round
differently, by about 1e-6 of a loss), and says file by file whether they match the shipped ones; ``--steps K``
rebuilds only the first K steps and checks them against the manifest's record, which is what the slow test
runs; ``--ship`` (in a source checkout) replaces the shipped files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ..errors import PivotuneError
from ..io import atomic_path, write_json_atomic

SHIPPED = Path(__file__).parent / "shipped"
MANIFEST = "MANIFEST.json"
KINDS = ("base", "encoder")
FIRST_STEPS = 20      # steps of the build recorded in the manifest and re-run by `build-base --steps`
RECIPE = "pivotune toy build-base"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file in ``directory`` (not recursive), by name."""
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}


def weights_sha256(model) -> str:
    """sha256 over the parameter names, dtypes, shapes and bytes of ``model``'s state dict, in name order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_manifest(root: Path = SHIPPED) -> dict | None:
    """The manifest at ``root``, or None where nothing is shipped."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise PivotuneError(f"{path}: not valid JSON ({e}); reinstall pivotune or run `{RECIPE} --ship`.") from None


def install_shipped(kind: str, key: str, dest: Path, root: Path = SHIPPED) -> bool:
    """Copy the shipped ``kind`` ("base" or "encoder") into the new directory ``dest`` if it was built for
    ``key`` (world config hash, or encoder key), after checking every file's sha256. False where nothing is
    shipped for that key; a clear error where a shipped file is missing or altered."""
    manifest = read_manifest(root)
    entry = (manifest or {}).get(kind)
    if not entry or entry.get("key") != key:
        return False
    src = root / kind
    for name, want in entry["files"].items():
        path = src / name
        got = sha256_file(path) if path.is_file() else "missing"
        if got != want:
            raise PivotuneError(
                f"the shipped toy {kind} file {path} is damaged (sha256 {got[:16]}…, the manifest records "
                f"{want[:16]}…): reinstall pivotune, or rebuild it with `{RECIPE}` (about half an hour on a CPU).")
    dest.mkdir(parents=True)
    for name in entry["files"]:
        shutil.copyfile(src / name, dest / name)
    return True


def build_base(out: Path, *, steps: int | None = None, encoder: bool = True, ship: bool = False,
               say: Callable[[str], None] = print) -> dict:
    """Rebuild the default world's base model (and encoder) from its config into ``out`` (new; replaced
    atomically) and compare with the shipped files. ``steps``: only the first ``steps`` optimizer steps of
    each build, compared with the manifest's record of them. ``ship``: also record everything as the shipped
    files (full builds only). Returns the comparison."""
    import torch

    from .encoder import EncoderConfig, balanced_docs, encoder_tokenizer, pretrain_mlm
    from .model import ToyPaths, pretrain, train_tokenizer
    from .world import WorldConfig, build_world, read_pretrain_docs

    if ship and steps is not None:
        raise PivotuneError("--ship records full builds only; drop --steps.")
    torch.set_num_threads(1)   # one thread: the reductions' order, hence every bit, is fixed
    cfg, ecfg = WorldConfig(), EncoderConfig()
    manifest = read_manifest() or {}
    record: dict = {"recipe": RECIPE, "world": cfg.to_dict(), **environment()}
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        build_world(cfg, tmp / "world")
        docs = read_pretrain_docs(tmp / "world")
        tok = train_tokenizer(docs, cfg.vocab_size)
        first = FIRST_STEPS if steps is None else steps
        # the first steps, recorded (a full build repeats them bitwise: same seeds, same schedule)
        model, stats = pretrain(cfg, tok, docs, progress=say, stop_after=first)
        record["base"] = {"key": cfg.config_hash(), "first_steps": {
            "steps": first, "losses": stats["first_losses"], "weights_sha256": weights_sha256(model)}}
        if steps is None:
            model, stats = pretrain(cfg, tok, docs, progress=say)
            model.save_pretrained(tmp / "base")
            tok.save_pretrained(tmp / "base")
            record["base"].update(files=file_hashes(tmp / "base"), pretrain=stats)
        record["base"]["seconds"] = round(time.perf_counter() - t0, 1)
        if encoder:
            t0 = time.perf_counter()
            paths = ToyPaths(tmp, tmp / "world", tmp / "base", cfg)
            if steps is not None:   # the encoder's tokenizer is the base's plus <mask>: save the base's
                tok.save_pretrained(tmp / "base")
            etok = encoder_tokenizer(tmp / "base")
            edocs = balanced_docs(paths)
            emodel, estats = pretrain_mlm(paths, ecfg, etok, edocs, say, stop_after=first)
            record["encoder"] = {"key": ecfg.key(paths), "config": asdict(ecfg), "first_steps": {
                "steps": first, "losses": estats["first_losses"], "weights_sha256": weights_sha256(emodel)}}
            if steps is None:
                emodel, estats = pretrain_mlm(paths, ecfg, etok, edocs, say)
                emodel.save_pretrained(tmp / "encoder")
                etok.save_pretrained(tmp / "encoder")
                record["encoder"].update(files=file_hashes(tmp / "encoder"), pretrain=estats)
            record["encoder"]["seconds"] = round(time.perf_counter() - t0, 1)
        record["compared"] = compare(record, manifest)
        write_json_atomic(tmp / MANIFEST, record)
    if ship:
        ship_from(Path(out))
    return record


def environment() -> dict[str, str]:
    """What a build's bits depend on beside the recipe: torch's and transformers' versions and the CPU kernels
    torch dispatches to (``get_cpu_capability``: e.g. AVX2, AVX512)."""
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def same_environment(record: dict, manifest: dict) -> bool:
    """Whether ``record`` was built where ``manifest`` was (every field of :func:`environment` recorded in both)."""
    return all(k in manifest and record.get(k) == manifest[k] for k in environment())


def largest_loss_difference(mine: dict, shipped: dict) -> float:
    """The largest relative difference between two records' first-step losses (inf when their counts differ)."""
    a, b = mine["losses"], shipped["losses"]
    if len(a) != len(b):
        return float("inf")
    return max((abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)), default=0.0)


def compare(record: dict, manifest: dict) -> dict[str, str]:
    """Per kind: "identical", or what differs from the shipped manifest ("not shipped" where it has none)."""
    out = {}
    for kind in KINDS:
        mine, shipped = record.get(kind), manifest.get(kind)
        if mine is None:
            continue
        if not shipped or shipped.get("key") != mine["key"]:
            out[kind] = "not shipped for this config"
        elif mine["first_steps"] != shipped["first_steps"]:
            gap = largest_loss_difference(mine["first_steps"], shipped["first_steps"])
            where = "" if same_environment(record, manifest) else \
                "; built with other library versions or CPU kernels than the shipped files"
            out[kind] = f"first steps differ (losses by up to {gap:.1e} relative{where})"
        elif "files" in mine and mine["files"] != shipped["files"]:
            out[kind] = "files differ: " + ", ".join(n for n in mine["files"] if mine["files"][n] != shipped["files"].get(n))
        else:
            out[kind] = "identical" if "files" in mine else f"first {mine['first_steps']['steps']} steps identical"
    return out


def ship_from(built: Path, root: Path = SHIPPED) -> None:
    """Make the build at ``built`` (from :func:`build_base`) the shipped files."""
    record = json.loads((built / MANIFEST).read_text(encoding="utf-8"))
    record.pop("compared", None)
    root.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        if kind in record:
            with atomic_path(root / kind) as tmp:
                shutil.copytree(built / kind, tmp)
    write_json_atomic(root / MANIFEST, record)


__all__ = ["FIRST_STEPS", "KINDS", "SHIPPED", "build_base", "compare", "environment", "install_shipped",
           "largest_loss_difference", "read_manifest", "same_environment", "sha256_file", "ship_from",
           "weights_sha256"]


def add_parser(sub) -> None:
    """``pivotune toy build-base``."""
    t = sub.add_parser("toy", help="the toy world's artefacts (the shipped base model's recipe)")
    tsub = t.add_subparsers(dest="toy_command", required=True, metavar="SUBCOMMAND")
    b = tsub.add_parser(
        "build-base", help="rebuild the default toy world's base model and encoder and compare with the shipped ones",
        description="Build the default world, train its tokenizer, pretrain the base model and the LinguaLIFT "
                    "encoder exactly as the shipped ones were (one CPU thread; about half an hour), write them to "
                    "OUT with OUT/MANIFEST.json, and say whether each is bitwise the shipped one (expected on the "
                    "machine that built them; another CPU may round differently).",
        epilog=f"examples:\n  {RECIPE} --out toy-base\n  {RECIPE} --steps {FIRST_STEPS} --out /tmp/first-steps",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--out", required=True, help="output directory (new, empty or an earlier build-base's)")
    b.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    b.add_argument("--steps", type=int, default=None, metavar="K",
                   help=f"only the first K optimizer steps of each build (compared with the manifest's record "
                        f"of its first {FIRST_STEPS}; a minute instead of half an hour)")
    b.add_argument("--no-encoder", action="store_true", help="the base model only")
    b.add_argument("--ship", action="store_true", help="make this build the shipped one (a source checkout)")
    b.set_defaults(func=_cmd_build_base)


def _cmd_build_base(args) -> int:
    from ..outputs import claim_output_dir, mark_output

    if args.steps is not None and args.steps < 1:
        raise PivotuneError(f"--steps must be at least 1, got {args.steps}")
    out = claim_output_dir(Path(args.out), "toy build-base", force=args.force, replaces=True)
    record = build_base(out, steps=args.steps, encoder=not args.no_encoder, ship=args.ship)
    mark_output(out, "toy build-base")
    for kind, verdict in record["compared"].items():
        print(f"{kind}: {verdict} (shipped with pivotune: {SHIPPED / kind})")
    print(f"wrote {out}")
    differs = [v for v in record["compared"].values() if not v.endswith("identical")]
    return 1 if differs and not args.ship else 0
