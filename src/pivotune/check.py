"""``pivotune train CONFIG --check``: every check a run makes before its model loads, every problem at once.

The config has already validated (:func:`pivotune.config.load_config`). Then, reusing the run's own
readers and builders, nothing written and no model weights loaded:

* every data source the method trains on is read and every row validated (the loaders of
  :mod:`pivotune.data.load`), all invalid rows listed, one line each;
* the method's own checks (:meth:`pivotune.methods.base.Road.checks`: PROM's regulation evidence and pivot
  layer, LinguaLIFT's lexicons and ``stage1_from``, ...), then, when they pass, the method's data built from those
  rows (its mixture; CLO's cross-lingual units; LinguaLIFT's stages);
* local model and tokenizer paths, the method's other models (LinguaLIFT's encoder) included: the config parses,
  the tokenizer loads, and ``interference.layers`` fits the model's depth;
* with ``vocab.n_new`` set and a local tokenizer, the extension itself (tokenizer only: its corpus read, the
  tokens learned, the checks run), so a corpus too small or a tokenizer that cannot be extended is found here.

Hub names (models, datasets) are noted, not fetched: a check downloads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .data.records import Sample
from .errors import DataError, PivotuneError, bullet_list
from .methods import METHODS


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)   # one line each; any problem fails the check
    notes: list[str] = field(default_factory=list)      # what was not checked, and why
    rows: int = 0                                       # valid rows read

    def problem(self, err: Exception | str) -> None:
        lines = err.problems if isinstance(err, DataError) and err.problems else [str(err)]
        self.problems += [line for line in lines if line not in self.problems]


def check_run(cfg: RunConfig) -> CheckReport:
    """Run every check of ``cfg`` that needs no model weights; see the module docstring."""
    report = CheckReport()
    road = METHODS[cfg.method].road(cfg)
    samples = _read_data(cfg, report)
    num_layers = _check_models(cfg, road, report)
    problems = road.checks(num_layers)
    for line in problems:
        report.problem(line)
    if samples is not None and not problems:
        try:
            road.training_data(samples)   # what the method makes of the rows: its mixture, CLO's units, ...
        except PivotuneError as e:
            report.problem(e)
    if cfg.vocab.enabled:
        _check_vocab(cfg, report)
    return report


def _check_vocab(cfg: RunConfig, report: CheckReport) -> None:
    """The run's vocabulary extension, tokenizer only (no model loads), when the tokenizer is local."""
    from .models.loading import load_tokenizer, source_kwargs
    from .vocab.extend import extend_tokenizer
    from .vocab.run import run_corpus, run_scripts
    from .vocab.scripts import CONFIG_NAMES

    name = cfg.tokenizer or cfg.model
    try:
        if not source_kwargs(name).get("local_files_only", False):
            report.notes.append(f"vocab: the tokenizer '{name}' is a hub name; the extension is not tried by --check.")
            return
        v = cfg.vocab
        ext = extend_tokenizer(load_tokenizer(name, trust_remote_code=cfg.trust_remote_code), run_corpus(cfg),
                               v.n_new, scripts=run_scripts(cfg), min_frequency=v.min_frequency, name=name,
                               names=CONFIG_NAMES)
        report.notes.append(f"vocab: {len(ext.new_tokens)} {'+'.join(ext.scripts)}-script tokens learned; "
                            f"{ext.checked} check texts outside the script tokenize as before.")
    except PivotuneError as e:
        report.problem(f"vocab: {e}")


def check_config(cfg: RunConfig, source: str) -> str:
    """The ``--check`` summary for ``cfg`` (read from ``source``), or a :class:`PivotuneError` listing
    every problem."""
    report = check_run(cfg)
    if report.problems:
        n = len(report.problems)
        raise PivotuneError(bullet_list(f"{source}: {n} problem{'s' if n > 1 else ''} found by --check:",
                                        report.problems))
    notes = "".join(f"\n  note: {note}" for note in report.notes)
    return (f"{source}: valid (method {cfg.method}, {len(cfg.data)} data sources, {report.rows} rows checked)"
            f"{notes}")


def _read_data(cfg: RunConfig, report: CheckReport) -> list[Sample] | None:
    """Every row of every source the method trains on; None when some could not be read or are invalid."""
    from .data.load import is_hub_dataset
    from .data.mixture import read_source

    roles = METHODS[cfg.method].roles
    samples: list[Sample] = []
    complete = True
    for i, src in enumerate(cfg.data):
        if src.role not in roles:
            report.notes.append(f"data.{i} ({src.path}): method {cfg.method} does not train on role {src.role}; "
                                "not read.")
            continue
        if src.target_path is None and is_hub_dataset(src.path):
            report.notes.append(f"data.{i} ({src.path}): a hub dataset; not downloaded by --check.")
            complete = False
            continue
        try:
            got, res = read_source(src, skip_invalid=True)
        except DataError as e:
            report.problem(e)
            complete = False
            continue
        if res.skipped and cfg.skip_invalid:
            report.notes.append(f"{res.path}: {len(res.skipped)} invalid rows will be skipped (skip_invalid).")
        elif res.skipped:
            for line in res.skipped:
                report.problem(line)
            complete = False
        report.rows += len(got)
        samples += got
    return samples if complete else None


def _check_models(cfg: RunConfig, road, report: CheckReport) -> int | None:
    """Local model and tokenizer paths (the method's other models too): present, their config parses, tokenizers
    load; the interference blocks fit the model's depth. Hub names are noted. Returns the model's depth when its
    config is local."""
    from .models.loading import load_tokenizer

    trust = cfg.trust_remote_code
    depth: list[int] = []

    def base_model(name: str) -> None:
        num_layers = getattr(_model_config(name, trust).get_text_config(), "num_hidden_layers", None)
        if isinstance(num_layers, int):
            depth.append(num_layers)
            _check_interference_depth(cfg, num_layers, report)

    tokenizer = lambda name: load_tokenizer(name, trust_remote_code=trust)   # as the run loads them
    checks = [("model", cfg.model, base_model), ("tokenizer", cfg.tokenizer or cfg.model, tokenizer),
              *((key, name, tokenizer if is_tokenizer else lambda n: _model_config(n, trust))
                for key, name, is_tokenizer in road.models())]
    local: dict[str, bool] = {}
    for key, name, check in checks:
        if name not in local:                     # a path named twice is reported once
            local[name] = _is_local(name, key, report)
        if not local[name]:
            continue
        try:
            check(name)
        except PivotuneError as e:
            report.problem(f"{key}: {e}")
    return depth[0] if depth else None


def _is_local(name: str, key: str, report: CheckReport) -> bool:
    from .models.loading import source_kwargs

    try:
        local = source_kwargs(name).get("local_files_only", False)
    except PivotuneError as e:                    # a path that does not exist
        report.problem(f"{key}: {e}")
        return False
    if not local:
        note = f"{key} '{name}': a hub name; not downloaded by --check."
        if note not in report.notes:
            report.notes.append(note)
    return local


def _model_config(name: str, trust_remote_code: bool):
    from transformers import AutoConfig

    if not (Path(name).expanduser() / "config.json").is_file():
        raise PivotuneError(f"'{name}' holds no config.json, so it is not a model directory.")
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - transformers raises many types; the user needs one line
        raise PivotuneError(f"the config in '{name}' does not load ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}).") from None


def _check_interference_depth(cfg: RunConfig, num_layers: int, report: CheckReport) -> None:
    """``interference.layers`` (its ``pivot``: PROM's pivot layer, for any method) against the model's depth."""
    from .models.pivot_head import resolve_pivot_layer

    if cfg.interference.every <= 0:
        return
    from .analysis.interference import resolve_blocks

    try:
        pivot = resolve_pivot_layer(cfg.prom.pivot_layer, num_layers) if cfg.interference.layers == "pivot" else None
        resolve_blocks(cfg.interference.layers, num_layers, pivot)
    except PivotuneError as e:
        report.problem(e)
