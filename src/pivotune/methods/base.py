"""What a training method is: its registration (:class:`Method`) and its road (:class:`Road`).

Every method trains on the one road, :func:`pivotune.train.run.train`, which does the shared work once (run
directory, seed, data before the model, tokenizer and model loading, guards, resume, interference, saving, run
metadata) and asks the method's :class:`Road` only what differs. A road's hooks are listed here with their
defaults, in the order the run calls them, one sentence each (after torchtune's recipe interface); a method
overrides the ones it needs. Nothing in this module imports torch, so the registry stays cheap to load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import RunConfig, TrainConfig
    from ..data.records import Sample
    from ..objectives.base import Objective


@dataclass(frozen=True)
class ToyRun:
    """What the toy demo knows when it writes a method's run config (:attr:`DemoEntry.adjust`)."""

    paths: Any               # pivotune.toy.model.ToyPaths: the world's files and base model
    languages: list[str]     # the target languages of the study
    steps: int               # optimizer steps every method gets
    batch_size: int          # rows per optimizer step every method gets
    probe: dict              # the world's logit-lens probe as ``prom`` settings (word pairs, language names)


@dataclass(frozen=True)
class DemoEntry:
    """What ``pivotune demo`` (and the study around it) does differently for a method."""

    default: bool = True     # trained when --methods is not given
    interference: bool = False   # the demo logs its gradient interference (claim 2: PROM against t+e)
    #: the method's changes to the demo's run config: ``adjust(raw, toy) -> raw``
    adjust: Callable[[dict, ToyRun], dict] | None = None


@dataclass(frozen=True)
class Method:
    """A method's registration: everything the rest of pivotune needs to know about it."""

    name: str
    roles: frozenset[str]    # sample roles its data are built from (the others are not read)
    description: str
    road: Callable[[RunConfig], Road]   # its road, built from the validated run config
    #: its settings section in the run config (``key``, pydantic class); methods may share one (prom, prom-noreg)
    settings: tuple[str, type] | None = None
    #: why the config refuses interference.every for it (None: it is measured, through the method's objective)
    interference_refused: str | None = None
    #: whole-config rules of this method (raise pivotune.config.KeyProblem naming the key)
    check_config: Callable[[RunConfig], None] | None = None
    causal_lm: bool = True   # RUN/model is a plain causal LM (the logit lens reads it, export writes it)
    demo: DemoEntry = DemoEntry()


@dataclass(frozen=True)
class Stage:
    """One Trainer run of a method; most methods have one, trained in the run directory itself."""

    name: str = "train"
    directory: str | None = None   # RUN/<directory> holds its checkpoints; None: RUN
    train: TrainConfig | None = None   # its optimisation settings; None: the run config's ``train``
    final: bool = True   # a run that ends with this stage writes RUN/model from it (LinguaLIFT's stage 1: no)

    @property
    def report_key(self) -> str | None:
        """Where run.json records the stage: under its name (several stages), or at the top (one)."""
        return self.name if self.directory else None


@dataclass
class Units:
    """A stage's training units, encoded, and what the run needs to know about them."""

    items: list              # what the dataset yields, in training order
    collator: Callable       # items -> batch
    fingerprint: str         # what a resumed run must find again (pivotune.train.resume.data_fingerprint)
    describe: Callable[[int], str]   # row i -> its source, for the loss guard's message
    report: dict = field(default_factory=dict)   # run.json entries (counts, truncations)
    tokenizer: Any = None    # saved beside the LM's files (checkpoints, RUN/model); None: the model saves its own
    interference: list | None = None   # encoded rows (pivotune.data.collate.Encoded) interference draws from
    lang_ids: dict[str, int] = field(default_factory=dict)


class Road(Protocol):
    """What differs between methods on the one training road; ``cfg`` is the run's validated config."""

    cfg: RunConfig

    def inputs(self) -> list[str]:
        """Paths the run reads beyond the model, tokenizer and data files (never removed from its directory)."""
        return []

    def models(self) -> list[tuple[str, str, bool]]:
        """Models and tokenizers the run loads besides the base model and its tokenizer: (config key, name or path,
        whether it is a tokenizer), checked by ``--check`` like the base model."""
        return []

    def checks(self, num_layers: int | None) -> list[str]:
        """Problems found before any weights load (``num_layers``: the model's depth, when its config is local)."""
        return []

    def training_data(self, samples: list[Sample] | None) -> Any:
        """The method's data built from ``samples`` (or the configured sources), every row validated, before any
        model loads."""
        ...

    def stages(self) -> list[Stage]:
        """The Trainer runs of the method, in order."""
        return [Stage()]

    def resume_plan(self, run_dir: Path, resume: bool | str) -> dict[str, Path]:
        """The checkpoint each stage continues from (stage name → path) for ``resume``."""
        from ..train.resume import find_resume_checkpoint

        checkpoint = find_resume_checkpoint(run_dir, resume)
        return {self.stages()[0].name: checkpoint} if checkpoint is not None else {}

    def units(self, stage: Stage, data: Any, tokenizer) -> Units:
        """The stage's training units, encoded."""
        ...

    def prepare_base(self, model, tokenizer, run_dir: Path, save_checkpoints: bool):
        """Read or wrap the loaded base model before any stage (PROM's regulation, LinguaLIFT's bridge); may set
        ``self.cfg`` to the config the run records."""
        return model

    def finished_stage(self, stage: Stage, model, units: Units, args) -> dict | None:
        """A stage whose result the run directory already holds (loaded into ``model``): its report; None: train it."""
        return None

    def trainable(self, stage: Stage, model):
        """Choose the parameters the stage trains (freezing, LoRA) and return the model to train."""
        from ..models.loading import apply_lora

        return apply_lora(model, self.cfg.lora) if self.cfg.lora.enabled else model

    def objective(self, stage: Stage) -> Objective:
        """The stage's loss, built from the method's own settings."""
        ...

    def before_training(self, stage: Stage, model, units: Units, device) -> dict:
        """Work on the model to train before its first step (CLO's reference pass); returns run.json entries."""
        return {}

    def after_stage(self, stage: Stage, model, units: Units, args, report: dict) -> None:
        """Work once a stage has trained (LinguaLIFT: write stage 1's result, merge stage 2's LoRA)."""
        return None

    def report(self) -> dict:
        """What run.json records about the run beyond its stages' reports (LinguaLIFT: encoder, stages)."""
        return {}
