"""``pivotune train CONFIG --check``: every check a run makes before its model loads, every problem at once.

The config has already validated (:func:`pivotune.config.load_config`). Then, reusing the run's own
readers and builders, nothing written and no model weights loaded:

* every data source the method trains on is read and every row validated (the loaders of
  :mod:`pivotune.data.load`), all invalid rows listed, one line each;
* the method's data is built from those rows (its mixture; CLO's cross-lingual units; LinguaLIFT's
  stages, lexicons included);
* local model, tokenizer and encoder paths: the config parses, the tokenizer loads, and PROM's pivot layer
  (and ``interference.layers``) fit the model's depth;
* PROM's regulation evidence (probe report or word-pair files) and LinguaLIFT's ``stage1_from``.

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
    samples = _read_data(cfg, report)
    lexicons_read = _check_lingualift(cfg, report)
    if samples is not None and lexicons_read:
        _build_method_data(cfg, samples, report)
    _check_models(cfg, report)
    from .train.regulation import evidence_problems

    for line in evidence_problems(cfg):
        report.problem(line)
    return report


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


def _build_method_data(cfg: RunConfig, samples: list[Sample], report: CheckReport) -> None:
    """What the method makes of the rows: its mixture, CLO's units or LinguaLIFT's stages."""
    own = METHODS[cfg.method].own_training
    try:
        if own == "clo":
            from .train.clo import clo_units

            if not clo_units(cfg, samples):
                report.problem(f"method '{cfg.method}': no cross-lingual unit is left (every English response "
                               "equals its translation).")
        elif own == "lingualift":
            from .train.lingualift import stage_data

            stage_data(cfg, samples)
        else:
            from .data.mixture import build_mixture

            if not build_mixture(cfg.method, samples, cfg.seed):
                report.problem(f"method '{cfg.method}' has no training samples: check `data` roles and paths.")
    except PivotuneError as e:
        report.problem(e)


def _check_lingualift(cfg: RunConfig, report: CheckReport) -> bool:
    """LinguaLIFT's lexicons and ``stage1_from``; False when a lexicon cannot be read (the stages, which
    read them again, are then not built)."""
    if cfg.method != "lingualift":
        return True
    from .data.codeswitch import read_lexicon
    from .train.lingualift import stage1_start

    ll = cfg.lingualift
    read = True
    for lang, path in ll.lexicons.items():
        try:
            read_lexicon(path, lang)
        except PivotuneError as e:
            report.problem(f"lingualift.lexicons.{lang}: {e}")
            read = False
    if 1 not in ll.stages:
        try:
            stage1_start(cfg)
        except PivotuneError as e:
            report.problem(e)
    return read


def _check_models(cfg: RunConfig, report: CheckReport) -> None:
    """Local model, tokenizer and encoder paths: present, their config parses, tokenizers load; the pivot
    layer fits the model's depth. Hub names are noted."""
    from .models.loading import load_tokenizer

    trust = cfg.trust_remote_code
    ll = cfg.lingualift
    checks = [("model", cfg.model, lambda name: _check_depth(cfg, _model_config(name, trust), report)),
              ("tokenizer", cfg.tokenizer or cfg.model, lambda name: load_tokenizer(name, trust_remote_code=trust))]
    if cfg.method == "lingualift" and ll.encoder:
        checks += [("lingualift.encoder", ll.encoder, lambda name: _model_config(name, False)),   # as trained
                   ("lingualift.encoder_tokenizer", ll.encoder_tokenizer or ll.encoder, load_tokenizer)]
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


def _check_depth(cfg: RunConfig, config, report: CheckReport) -> None:
    """PROM's pivot layer and the interference blocks against the model's number of decoder blocks."""
    from .models.pivot_head import resolve_pivot_layer

    num_layers = getattr(config.get_text_config(), "num_hidden_layers", None)
    if not isinstance(num_layers, int):
        return
    pivot = None
    if METHODS[cfg.method].objective == "prom" or cfg.interference.layers == "pivot":
        try:
            pivot = resolve_pivot_layer(cfg.prom.pivot_layer, num_layers)
        except PivotuneError as e:
            report.problem(e)
    if cfg.interference.every > 0 and (pivot is not None or cfg.interference.layers != "pivot"):
        from .analysis.interference import resolve_blocks

        try:
            resolve_blocks(cfg.interference.layers, num_layers, pivot)
        except PivotuneError as e:
            report.problem(e)
