"""The record of a training run: every setting that determines a checkpoint, declared once.

Each setting is a dataclass field whose metadata carries its command-line flag, help text and
check. `TrainDefaults` is a paper's training protocol: every model registers one, and a run uses
it for the settings the user did not give. `RunRecord` is one run, fully resolved: the model, its
architecture arguments with every default applied, the split and label layer, the seed and the
protocol. From these declarations come the options of `hsi train`, the engine's `TrainOptions`,
the checkpoint metadata (`to_metadata` / `from_metadata`), the resume state's key and the
settings a pseudo-label round replays, so a new setting is added here and nowhere else.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from typing import Any, Callable, Optional

from hsicli.errors import HsiError

SCHEDULES = ("constant", "step", "cosine")
CLASS_WEIGHTS = ("none", "balanced")
PROTOCOLS = ("adaptive", "paper")  # hsicli.engine.budget
DEFAULT_STEP_BUDGET = 1500

Check = Callable[[Any], Optional[str]]  # the problem with a value, or None when it is valid


SEED_MAX = 2**32 - 1  # the largest random_state scikit-learn accepts


def setting(default: Any = MISSING, flag: str | None = None, help: str = "", check: Check | None = None,
            *, default_factory: Any = MISSING, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, layer_name: bool = False) -> Any:
    """A declared setting: `flag` makes it an option of `hsi train`; a number declares its range
    (ge / gt / le / lt) and a layer's name says so (`layer_name`), both checked by the command
    line; `check` validates any other value."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, default_factory=default_factory,
                 metadata={"flag": flag, "help": help, "check": check, "range": bounds, "layer_name": layer_name})


def _one_of(choices: tuple[str, ...], what: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, not the unknown {what} {v!r}"


@dataclass(frozen=True)
class TrainDefaults:
    """A paper's training protocol; `hsi train` uses these unless options override them."""

    patch: int = setting(11, "--patch", "Patch / window size, odd (default: the paper's).", ge=1)
    optimizer: str = setting("adamw")  # adam | adamw | sgd | rmsprop: the paper's, no flag
    lr: float = setting(1e-3, "--lr", "Learning rate (default: the paper's).", gt=0.0)
    weight_decay: float = setting(0.0, "--weight-decay", "Weight decay (default: the paper's).", ge=0.0)
    betas: tuple[float, float] = setting((0.9, 0.999))
    momentum: float = setting(0.9)  # sgd only
    batch_size: int = setting(64, "--batch-size", "Batch size (default: the paper's).", ge=1)
    eval_batch_size: int = setting(256)
    epochs: int = setting(100, "--epochs", "Epochs (default: the paper's).", ge=1)
    # Early stopping on validation accuracy; None = keep the best epoch, no stop.
    patience: Optional[int] = setting(None, "--patience", "Stop after N epochs without validation improvement.",
                                      ge=1)
    augment: bool = setting(False, "--augment/--no-augment", "CLAReSNet §III-B augmentations.")
    schedule: str = setting("constant", "--schedule",
                            "Learning-rate schedule: constant, step or cosine (default: the paper's).",
                            _one_of(SCHEDULES, "learning-rate schedule"))
    warmup: int = setting(0, "--warmup", "Epochs of linear learning-rate warm-up (default: the paper's, 0).", ge=0)
    clip_grad: Optional[float] = setting(None, "--clip-grad",
                                         "Clip the gradients' global L2 norm to this (default: off).", gt=0.0)
    ema: Optional[float] = setting(
        None, "--ema", "Average the weights exponentially with this decay per step (e.g. 0.999); validation, "
        "the best epoch and the checkpoint use the average (default: off).", gt=0.0, lt=1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainDefaults:
        values = dict(values)
        if "scheduler" in values:  # the name before the run record (checkpoints of hsicli <= 0.x)
            values["schedule"] = values.pop("scheduler")
        known = {f.name for f in fields(cls)}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class RunRecord:
    """One training run, fully resolved: what `hsi train --like CKPT` repeats exactly."""

    model: str = setting("svm", "--model", "Registered model (see `hsi models`).")
    # Every architecture argument, the registry's defaults applied (never "the default of the day").
    model_args: dict[str, Any] = setting(
        flag="--model-args", help='Architecture arguments as JSON, e.g. \'{"layers": 1}\'.', default_factory=dict)
    split: Optional[str] = setting(None, "--split", "Split layer (default: the piped or only one).", layer_name=True)
    labels: Optional[str] = setting(None, "--labels", "Pseudo-label layer to train on.", layer_name=True)
    seed: int = setting(0, "--seed", "Random seed.", ge=0, le=SEED_MAX)
    class_weights: str = setting("none", "--class-weights", "'none' or 'balanced' (inverse class frequency).",
                                 _one_of(CLASS_WEIGHTS, "class weighting"))
    amp: bool = setting(False, "--amp", "bfloat16 autocast (faster on CPUs with bf16 and on GPUs).")
    init: Optional[str] = setting(None, "--init", "Start from this checkpoint's weights.")
    # How long a torch model trains (hsicli.engine.budget); not given: "paper" with --epochs N
    # (exactly N epochs), else "adaptive".
    protocol: str = setting(
        "adaptive", "--protocol", "'adaptive': past the paper's epochs while the training loss falls, up to "
        "--step-budget optimiser steps, or fewer once the training set is fitted and the loss flat; 'paper': "
        "the epochs exactly (default: paper with --epochs, else adaptive).", _one_of(PROTOCOLS, "protocol"))
    step_budget: int = setting(DEFAULT_STEP_BUDGET, "--step-budget",
                               "Optimiser steps an adaptive run may extend to (default: 1500).", ge=0)
    hyper: TrainDefaults = field(default_factory=TrainDefaults)

    def to_metadata(self) -> dict[str, Any]:
        """The record in the checkpoint's metadata layout (the layout of schema 1, kept readable)."""
        return {
            "model": self.model,
            "model_args": self.model_args,
            "training": {"split": self.split, "labels": self.labels, "seed": self.seed,
                         "class_weights": self.class_weights, "amp": self.amp, "init": self.init,
                         "protocol": self.protocol, "step_budget": self.step_budget,
                         "hyper": self.hyper.to_dict()},
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> RunRecord:
        training = metadata.get("training") or {}
        init = training.get("init")
        if init is None:  # checkpoints written before the record kept --init in their provenance only
            init = ((metadata.get("provenance") or {}).get("inputs") or {}).get("init", {}).get("path")
        return cls(
            model=metadata["model"], model_args=dict(metadata.get("model_args") or {}),
            split=training.get("split"), labels=training.get("labels"), seed=int(training.get("seed", 0)),
            class_weights=training.get("class_weights", "none"), amp=bool(training.get("amp", False)),
            init=init, hyper=TrainDefaults.from_dict(training.get("hyper") or {}),
            # Checkpoints written before the adaptive budget trained their epochs exactly.
            protocol=training.get("protocol", "paper"), step_budget=int(training.get("step_budget", 0)),
        )

    def options(self) -> str:
        """The record as `hsi train` options (what `hsi info` shows)."""
        words = []
        for owner in (self, self.hyper):
            for f in flagged(type(owner)):
                value, flag = getattr(owner, f.name), f.metadata["flag"]
                if isinstance(value, bool):
                    on, _, off = flag.partition("/")
                    words += [on] if value else [off] if off else []
                elif value is not None:
                    text = json.dumps(value) if isinstance(value, dict) else str(value)
                    words += [flag, shlex.quote(text)]
        return " ".join(words)


def flagged(cls: type) -> list[Field]:
    """The fields of `cls` that are options of `hsi train`, in declaration order."""
    return [f for f in fields(cls) if f.metadata.get("flag")]


def validate(hyper: TrainDefaults, record: RunRecord | None = None) -> None:
    """The declared checks of the settings that are not numbers (a number's range is checked where
    the command line is parsed); the first failure is an error naming its flag."""
    for owner in (hyper, record):
        if owner is None:
            continue
        for f in flagged(type(owner)):
            value, check = getattr(owner, f.name), f.metadata["check"]
            problem = check(value) if check is not None and value is not None else None
            if problem:
                raise HsiError(f"{f.metadata['flag'].split('/')[0]} {problem}")


def with_overrides(defaults: TrainDefaults, **overrides: Any) -> TrainDefaults:
    """Defaults with the settings the user gave (None means not given)."""
    return replace(defaults, **{k: v for k, v in overrides.items() if v is not None})
