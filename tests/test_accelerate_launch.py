"""The user's road to several processes: ``accelerate launch ... -m pivotune train CONFIG`` (and ``torchrun``).

Fast: every ready-made config in ``examples/accelerate/`` goes through accelerate's own config loader and launch
code, and turns into the distributed setup its name promises (8 processes, bf16, FSDP2 / ZeRO-2 / ZeRO-3).

Slow: every method in ``pivotune.methods.METHODS`` is trained by the CLI under ``accelerate launch`` with 2
processes on the CPU (gloo), a handful of optimizer steps each. accelerate's ``--cpu`` with several processes
starts one process unless MPI is set up (``--mpirun_hostfile``), which would then train alone on all the data;
so the launch is ``--multi_gpu`` with no GPU visible: torchrun starts both ranks and the Trainer trains on the
CPU over gloo. The number of optimizer steps shows both ranks took part (one process would take twice as
many). For xllama the final weights equal one process's with the same global batch (also under ``torchrun``);
for xllama and PROM the FSDP example config launches too. accelerate turns FSDP on only on an accelerator, so
on the CPU that launch trains as DDP: it checks the FSDP launch road (config, environment, the Trainer under
it, saving), and ``test_fsdp.py`` checks the sharded arithmetic itself.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pivotune.methods import METHODS
from pivotune.outputs import MARKER
from pivotune.train.rundir import LOCK

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "accelerate"
PROMISES = {   # file → (accelerate's distributed type, what the name promises beyond it)
    "ddp-1node-8gpu.yaml": ("MULTI_GPU", {}),
    "fsdp-1node-8gpu.yaml": ("FSDP", {"fsdp_version": 2}),
    "deepspeed-zero2-1node-8gpu.yaml": ("DEEPSPEED", {"zero_stage": 2}),
    "deepspeed-zero3-1node-8gpu.yaml": ("DEEPSPEED", {"zero_stage": 3}),
}


# ------------------------------------------------------------------------------------------ the example configs

def test_every_example_config_has_a_promise_and_the_readme_names_it():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(PROMISES)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in PROMISES:
        assert f"`{name}`" in readme, name


def _launch_args(name: str):
    """The arguments ``accelerate launch --config_file FILE -m pivotune train run.yaml`` trains with, merged
    from the file by accelerate's own launch code."""
    from accelerate.commands.launch import (
        _validate_launch_command,
        launch_command_parser,
    )

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(EXAMPLES / name), "-m", "pivotune", "train", "run.yaml"])
    options = {a.dest for a in parser._actions}
    args, defaults, mp_from_config = _validate_launch_command(args)
    return args, defaults, mp_from_config, options


@pytest.mark.parametrize("name", sorted(PROMISES))
def test_example_config_loads_and_launches_as_its_name_promises(name, monkeypatch):
    from accelerate.commands.config.config_args import (
        ClusterConfig,
        load_config_from_file,
    )
    from accelerate.utils import (
        DeepSpeedPlugin,
        DistributedType,
        FullyShardedDataParallelPlugin,
    )
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    kind, promised = PROMISES[name]
    cfg = load_config_from_file(str(EXAMPLES / name))
    assert isinstance(cfg, ClusterConfig)
    assert cfg.distributed_type == DistributedType[kind]
    assert (cfg.num_processes, cfg.num_machines, cfg.mixed_precision, cfg.use_cpu) == (8, 1, "bf16", False)
    header = (EXAMPLES / name).read_text(encoding="utf-8").split("compute_environment")[0]
    assert f"accelerate launch --config_file examples/accelerate/{name} -m pivotune train CONFIG" in header

    args, defaults, mp_from_config, options = _launch_args(name)
    # accelerate copies every fsdp_config / deepspeed_config key onto the launch arguments without checking
    # it: a misspelt key would be dropped silently, so each must be a launch option
    for key in cfg.fsdp_config:
        assert (key if key.startswith("fsdp") else f"fsdp_{key}") in options, key
    for key in cfg.deepspeed_config:
        assert key in options, key
    assert (args.num_processes, args.mixed_precision) == (8, "bf16")
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (kind == "MULTI_GPU", kind == "FSDP",
                                                                  kind == "DEEPSPEED")

    # the environment the launcher gives every rank, and the plugin accelerate builds from it there
    for k in list(os.environ):
        if k.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.delenv(k)
    if kind == "DEEPSPEED":
        args.deepspeed_fields_from_accelerate_config = ",".join(
            [*defaults.deepspeed_config, *(["mixed_precision"] if mp_from_config else [])])   # as launch_command
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        args.main_process_port = _free_port()
        env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for k, v in env.items():
        if k.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(k, v)
    if kind == "FSDP":
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == promised["fsdp_version"]
        assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"   # one unit per block class
        assert plugin.transformer_cls_names_to_wrap is None   # read from the model's _no_split_modules
        assert plugin.state_dict_type.name == "SHARDED_STATE_DICT" and plugin.reshard_after_forward is True
        assert plugin.cpu_ram_efficient_loading is True and env["FSDP_SYNC_MODULE_STATES"] == "true"
    elif kind == "DEEPSPEED":
        plugin = DeepSpeedPlugin()
        zero = plugin.deepspeed_config["zero_optimization"]
        assert zero["stage"] == promised["zero_stage"]
        assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
        # "auto": filled in from the run config's train.grad_accum and train.max_grad_norm by the Trainer
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == plugin.deepspeed_config[
            "gradient_clipping"] == "auto"
        # ZeRO-3: weights gathered into one 16-bit state dict at save time, so RUN/model is a plain directory
        assert zero["stage3_gather_16bit_weights_on_model_save"] == (promised["zero_stage"] == 3)
        assert plugin.zero3_init_flag == (promised["zero_stage"] == 3)
    else:
        assert env.get("ACCELERATE_USE_FSDP") is None and env.get("ACCELERATE_USE_DEEPSPEED") is None


# ------------------------------------------------------------------------------------------ launching the CLI

BATCH = 2           # per device
ROWS = {"en": 8, "tgt": 8, "mt": 4}
LANG = "el"
WORDS = "the cat dog bird sees eats likes big small red blue green house tree river water food".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _words(i: int, k: int) -> str:
    return " ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(k))


def _reverse(text: str) -> str:   # the "translation": row i of tgt translates row i of en, as CLO needs
    return " ".join(reversed(text.split()))


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory, tokenizer):
    """Data files for every role, a word-pair file for PROM's probe, and LinguaLIFT's encoder and lexicon."""
    from lingualift_helpers import save_tiny_encoder, write_tiny_lexicon

    d = tmp_path_factory.mktemp("launch-data")
    en = [{"instruction": f"Repeat {_words(i, 3)}.", "input": _words(i + 1, 2) if i % 2 else "",
           "output": _words(i + 2, 4)} for i in range(ROWS["en"])]
    tgt = [{k: _reverse(v) for k, v in row.items()} for row in en]
    return {
        "en": _write_jsonl(d / "en.jsonl", en),
        "tgt": _write_jsonl(d / "tgt.jsonl", tgt),
        "mt": _write_jsonl(d / "mt.jsonl", [{"source": _words(i, 4), "target": _reverse(_words(i, 4))}
                                            for i in range(ROWS["mt"])]),
        "pairs": str(_write_tsv(d / "pairs.tsv")),
        "encoder": str(save_tiny_encoder(tokenizer, d / "encoder")),
        "lexicon": str(write_tiny_lexicon(d / "lexicon.txt")),
    }


def _write_tsv(path: Path) -> Path:
    path.write_text("".join(f"{a}\t{b}\n" for a, b in zip(WORDS[:8], WORDS[8:16])), encoding="utf-8")
    return path


def _run_config(method: str, model_dir, data: dict, out: Path, *, probe: bool = True) -> Path:
    """The run config of ``method`` on the data files; PROM's λ comes from the probe of the base model, or
    (``probe=False``) is set to lambda_en, so that the pivot term surely trains."""
    roles = METHODS[method].roles
    sources = [{"path": data[r], "role": r, "lang": "en" if r == "en" else LANG} for r in ("en", "tgt", "mt")
               if r in roles]
    raw = {"model": str(model_dir), "method": method, "languages": [LANG], "output_dir": str(out),
           "max_seq_len": 256, "data": sources,
           "train": {"lr": 1e-3, "epochs": 1, "per_device_batch_size": BATCH, "grad_accum": 1, "warmup_ratio": 0.0,
                     "scheduler": "linear", "logging_steps": 1, "progress_bar": False},
           "prom": {"pivot_layer": 1, "lambda_en": 0.5, "probe_pairs": {LANG: data["pairs"]}}}
    if method == "prom-noreg" or not probe:
        del raw["prom"]["probe_pairs"]
    if method == "prom" and not probe:
        raw["prom"]["lambda_per_language"] = {LANG: raw["prom"]["lambda_en"]}
    if method == "lingualift":
        raw["lingualift"] = {"encoder": data["encoder"], "lexicons": {LANG: data["lexicon"]}, "max_encoder_len": 64,
                             "stage1_lr": 1e-2}
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _expected_steps(method: str) -> dict[str, int]:
    """Optimizer steps of one epoch with 2 × BATCH rows per step (one process alone would take twice as many)."""
    per_step = 2 * BATCH
    if method == "lingualift":   # stage 1: each English row code-switched; stage 2: the English rows
        return {"stage1": math.ceil(ROWS["en"] / per_step), "stage2": math.ceil(ROWS["en"] / per_step)}
    if method == "clo":          # one unit per English row and its translation
        return {"steps": math.ceil(ROWS["en"] / per_step)}
    return {"steps": math.ceil(sum(ROWS[r] for r in METHODS[method].roles) / per_step)}


def _launch(launcher: list[str], config: Path, home: Path, timeout: float = 400) -> str:
    """Run ``LAUNCHER -m pivotune train CONFIG`` on the CPU in its own session; kill the whole group on timeout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "FSDP_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                        "MASTER_ADDR", "MASTER_PORT")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                "HF_HOME": str(home),   # no default accelerate config of this machine's user applies
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])})
    cmd = [*launcher, "-m", "pivotune", "train", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the launcher and both ranks: they share the new session
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s (a collective hung?):\n{out[-3000:]}")
    assert proc.returncode == 0, out[-5000:]
    return out


def _accelerate(*options: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", *options, "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port())]


DDP = ("--multi_gpu",)
FSDP = ("--config_file", str(EXAMPLES / "fsdp-1node-8gpu.yaml"))   # the example, at 2 processes and fp32


def _check_run(method: str, run: Path, log: str, *, probe: bool = True) -> dict:
    """The run directory of a finished 2-process run: complete, loadable, one writer; returns run.json."""
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert log.count("done: ") == 2, log[-3000:]   # both ranks finished
    # atomic writes leave no temporary sibling behind, even if two ranks had raced for RUN/model; the run's own
    # hidden files are its lock (taken by rank 0 alone), its marker and that of its probe (RUN/probe, read by PROM's
    # regulation and lens-local)
    own = (LOCK, MARKER, f"probe/{MARKER}")
    assert not [p.name for p in run.rglob(".*") if p.relative_to(run).as_posix() not in own], log[-3000:]
    if method == "lingualift":
        from pivotune.models.bridge import LinguaLiftModel

        for stage in ("stage1", "stage2"):
            assert meta[stage]["steps"] == _expected_steps(method)[stage], (stage, meta[stage])
            # a checkpoint at the end of the epoch, with both ranks' RNG states
            ckpt = run / stage / f"checkpoint-{meta[stage]['steps']}"
            assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
        bridge = LinguaLiftModel.from_pretrained(run / "model")
        assert all(torch.isfinite(p).all() for p in bridge.parameters())
        return meta
    from transformers import AutoModelForCausalLM

    assert meta["steps"] == _expected_steps(method)["steps"], meta["steps"]
    ckpt = run / f"checkpoint-{meta['steps']}"
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert [h["loss"] for h in meta["log_history"] if "loss" in h] and math.isfinite(meta["train_loss"])
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if method == "prom" and probe:   # regulated from the probe of the base model, before training
        reg = json.loads((run / "regulation.json").read_text(encoding="utf-8"))
        assert set(reg["lambda_per_language"]) == {LANG} and (run / "probe" / "probe.json").is_file()
    if method.startswith("prom"):   # the pivot head beside the model, never in it
        assert (run / "pivot_head.safetensors").is_file()
        assert not any(k.startswith("pivot_head") for k in model.state_dict())
    return meta


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_under_accelerate_launch_with_two_processes(method, tiny_model_dir, data, tmp_path):
    config = _run_config(method, tiny_model_dir, data, tmp_path / "run")
    log = _launch(_accelerate(*DDP), config, tmp_path / "hf")
    _check_run(method, tmp_path / "run", log)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The final model's weights, and PROM's pivot head's (saved beside it)."""
    from safetensors.torch import load_file

    out = load_file(run / "model" / "model.safetensors")
    if (run / "pivot_head.safetensors").is_file():
        out.update({f"pivot_head.{k}": v for k, v in load_file(run / "pivot_head.safetensors").items()})
    return out


def _losses(meta: dict) -> torch.Tensor:
    return torch.tensor([h["loss"] for h in meta["log_history"] if "loss" in h])


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, data, tmp_path_factory):
    """``method`` trained in this process with 2 × BATCH rows per micro-batch: the 2-process runs' global
    batch. Returns (run.json, weights); computed once per method."""
    from pivotune.config import load_config
    from pivotune.train.run import train

    done: dict[str, tuple[dict, dict]] = {}

    def get(method: str):
        if method not in done:
            out = tmp_path_factory.mktemp(f"one-{method}") / "run"
            config = _run_config(method, tiny_model_dir, data, out, probe=False)
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train(load_config(config, [f"train.per_device_batch_size={2 * BATCH}"]), save_checkpoints=False)
            finally:
                torch.set_num_threads(before)
            meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
            assert meta["steps"] == _expected_steps(method)["steps"]   # twice the rows per process, same steps
            done[method] = meta, _weights(out)
        return done[method]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("launcher,method", [("accelerate", "xllama"), ("torchrun", "xllama"),
                                             ("accelerate-fsdp", "xllama"), ("accelerate-fsdp", "prom")])
def test_two_processes_end_with_one_process_weights(launcher, method, tiny_model_dir, data, tmp_path, one_process):
    """2 processes × BATCH rows per step = one process × 2·BATCH rows: accelerate hands rank r the batches
    r, r+2, ... of the one sampler order, so each step holds the same rows in both runs, and the loss is
    normalised over the step's tokens on all ranks; losses (per role and language too) and final weights agree to
    roundoff."""
    config = _run_config(method, tiny_model_dir, data, tmp_path / "run", probe=False)
    cmd = {"accelerate": _accelerate(*DDP), "accelerate-fsdp": _accelerate(*FSDP),
           "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port())]}[launcher]
    meta = _check_run(method, tmp_path / "run", _launch(cmd, config, tmp_path / "hf"), probe=False)
    ref_meta, ref = one_process(method)
    got = _weights(tmp_path / "run")
    assert len(_losses(meta)) == len(_losses(ref_meta)) == meta["steps"]
    assert torch.allclose(_losses(meta), _losses(ref_meta), rtol=0, atol=1e-5)
    for group in ("role", "lang"):   # per role and language: over both ranks' rows, as in one process
        ours, theirs = meta["losses"][group], ref_meta["losses"][group]
        assert ours.keys() == theirs.keys() and ours
        for k in theirs:
            assert [v is None for v in ours[k]] == [v is None for v in theirs[k]], k
            torch.testing.assert_close(torch.tensor([v for v in ours[k] if v is not None]),
                                       torch.tensor([v for v in theirs[k] if v is not None]), rtol=0, atol=1e-5)
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.allclose(got[k], ref[k], rtol=0, atol=1e-5), (k, (got[k] - ref[k]).abs().max())
    from safetensors.torch import load_file

    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert max((ref[k] - base[k]).abs().max().item() for k in base) > 1e-4   # training moved the weights
    if method == "prom":   # the pivot term trained the head
        head = [k for k in ref if k.startswith("pivot_head.")]
        assert head and max((ref[k] - base["lm_head.weight"]).abs().max().item() for k in head
                            if ref[k].shape == base["lm_head.weight"].shape) > 1e-4
