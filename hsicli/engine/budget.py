"""How long a torch model trains: a budget that adapts to the training-set size, and the check
that a run did not end while still underfitting.

The papers' recipes fix a number of epochs for their scenes' training sets (1 % of 50,000+
pixels, or 72 % of a scene). On a small training set the same epochs are a few hundred optimiser
steps: Lite-C2ANet on 257 pixels at batch 64 makes 400 steps and ends at 73 % training accuracy
with its loss still falling. Under the "adaptive" protocol (the default) a run may therefore go on
past the paper's epochs, up to `step_budget` optimiser steps, for as long as its loss still falls;
and it may end before them once it has fitted the training set (training accuracy ≥
FITTED_ACCURACY) and its loss has flattened. The "paper" protocol (the default with an explicit
--epochs) trains exactly that many epochs. Any run that ends underfit says so.

Pure functions of the epoch history, so a resumed run takes the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hsicli.store.record import TrainDefaults, with_overrides
# The loss is still falling while its mean, or its lowest epoch, over the last window is this
# fraction or more below the window before's; it has flattened once the mean's fall is under
# FLAT_DROP of the first epoch's loss (a loss decaying towards 0 keeps falling in relative terms).
PLATEAU_DROP = 0.05
FLAT_DROP = 0.01
# A run is fitted, and cannot be underfit, from this training accuracy on (augmentation and dropout
# keep a converged model's running training accuracy a little under 100 %).
FITTED_ACCURACY = 0.95


@dataclass(frozen=True)
class Budget:
    protocol: str
    paper_epochs: int
    max_epochs: int  # the loop's bound: paper epochs, or more to reach step_budget
    step_budget: int
    steps_per_epoch: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def protocol_defaults(spec, protocol: str) -> TrainDefaults:
    """The training settings a protocol starts from: the paper's, with the model's adaptive
    replacements (`ModelSpec.adaptive`) under the adaptive protocol."""
    return with_overrides(spec.defaults, **spec.adaptive) if protocol == "adaptive" else spec.defaults


def resolve_protocol(given: str | None, epochs_given: bool, previous: str | None) -> str:
    """The protocol of a run: as given; else "paper" when --epochs is (exactly N epochs); else the
    --like checkpoint's; else adaptive."""
    if given is not None:
        return given
    if epochs_given:
        return "paper"
    return previous or "adaptive"


def plan(protocol: str, epochs: int, step_budget: int, *, train_pixels: int, batch_size: int) -> Budget:
    steps_per_epoch = max(1, math.ceil(train_pixels / batch_size))
    adaptive = protocol == "adaptive"
    max_epochs = max(epochs, math.ceil(step_budget / steps_per_epoch)) if adaptive else epochs
    return Budget(protocol, epochs, max_epochs, step_budget if adaptive else 0, steps_per_epoch)


def _window(history: list[dict[str, Any]]) -> int:
    """Epochs compared: a tenth of the run, at least 10 (augmented epochs' losses are noisy: with
    5, CLAReSNet's loss looked flat at 84 % training accuracy and still falling)."""
    return max(10, math.ceil(len(history) / 10))


def _recent_accuracy(history: list[dict[str, Any]]) -> float:
    window = history[-_window(history):]
    return float(sum(entry["train_accuracy"] for entry in window) / len(window))


def _last_two_windows(history: list[dict[str, Any]]) -> tuple[list[float], list[float]] | None:
    """The losses of the last window and of the window before (None: too short to judge)."""
    window = _window(history)
    if len(history) < 2 * window:
        return None
    losses = [entry["loss"] for entry in history]
    return losses[-window:], losses[-2 * window:-window]


def loss_drop(history: list[dict[str, Any]], reference: float | None = None) -> float | None:
    """Fall of the mean training loss between the last two windows, as a fraction of the earlier
    window's mean or of `reference` (None: too short to judge)."""
    windows = _last_two_windows(history)
    if windows is None:
        return None
    recent, before = (sum(losses) / len(losses) for losses in windows)
    scale = before if reference is None else reference
    return float((before - recent) / scale) if scale > 0 else 0.0


def lowest_loss_drop(history: list[dict[str, Any]]) -> float | None:
    """Fall of the lowest epoch loss between the last two windows, as a fraction of the earlier
    window's (None: too short to judge). A few epochs of a loss spike lift a window's mean but not
    its lowest epoch: CLAReSNet (20 pixels a class, 40 paper epochs) reached a new low of 0.37
    against 0.51 the window before, then spiked to 1.0; its mean fell 4.4 % and read as a plateau,
    and the run stopped at 72.5 % training accuracy."""
    windows = _last_two_windows(history)
    if windows is None:
        return None
    recent, before = (min(losses) for losses in windows)
    return float((before - recent) / before) if before > 0 else 0.0


def _still_falling(history: list[dict[str, Any]]) -> bool:
    return loss_drop(history) >= PLATEAU_DROP or lowest_loss_drop(history) >= PLATEAU_DROP


def _in_a_spike(history: list[dict[str, Any]]) -> bool:
    """Whether the last epoch's loss is more than PLATEAU_DROP above the mean of its window. A run
    without validation pixels keeps its last epoch's weights, and a noisy loss reads as flat while
    it jumps: SSFTT (lr 1e-3, 200 pixels) stopped "fitted" on an epoch at loss 0.26 against ~0.08
    before it, and its checkpoint classified 91.5 % of the training pixels."""
    window = history[-_window(history):]
    return history[-1]["loss"] > (1 + PLATEAU_DROP) * sum(entry["loss"] for entry in window) / len(window)


def should_stop(budget: Budget, history: list[dict[str, Any]]) -> bool:
    """Whether an adaptive run ends after the last epoch of `history`: once it fits the training set
    with a flat loss, or past the paper's epochs once its loss no longer falls; never on an epoch
    whose loss jumped above the recent ones (the weights it would keep are the spike's)."""
    if budget.protocol != "adaptive" or not history:
        return False
    drop = loss_drop(history)
    if drop is None or _in_a_spike(history):
        return False
    if len(history) >= budget.paper_epochs and not _still_falling(history):
        # A run that has not fitted its training set goes on to half its step budget: at a few steps
        # an epoch, ten epochs are a few dozen steps, and a slow fall reads as flat (CLAReSNet with
        # augmentation, 40 pixels, 3 steps an epoch: loss 1.39 -> 0.93 in 47 epochs, stopped at 57 %).
        fitted = _recent_accuracy(history) >= FITTED_ACCURACY
        return fitted or 2 * len(history) * budget.steps_per_epoch >= budget.step_budget
    flat = loss_drop(history, reference=history[0]["loss"])
    return bool(flat < FLAT_DROP and _recent_accuracy(history) >= FITTED_ACCURACY)


def underfit(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The evidence when a run ended underfit (low training accuracy, loss still falling), else None."""
    drop = loss_drop(history)
    if drop is None or not _still_falling(history):
        return None
    accuracy = _recent_accuracy(history)
    if accuracy >= FITTED_ACCURACY:
        return None
    return {"train_accuracy": round(accuracy, 4), "loss_drop": round(drop, 4),
            "lowest_loss_drop": round(lowest_loss_drop(history), 4), "window": _window(history),
            "epochs": len(history)}


def stop_record(budget: Budget, history: list[dict[str, Any]], *, patience_stop: bool) -> dict[str, Any]:
    """How a run ended, for its checkpoint: "patience" (no validation gain), the adaptive budget's
    stop on a flat loss, "fitted" or "unfitted" (its training set not fitted: the stop line's case,
    which `underfit` leaves out as its loss no longer falls), or "epochs" (the loop's bound)."""
    accuracy = _recent_accuracy(history)
    if patience_stop:
        reason = "patience"
    elif should_stop(budget, history):
        reason = "fitted" if accuracy >= FITTED_ACCURACY else "unfitted"
    else:
        reason = "epochs"
    return {"reason": reason, "epochs": len(history), "train_accuracy": round(accuracy, 4)}


def stop_message(budget: Budget, history: list[dict[str, Any]]) -> str:
    accuracy = _recent_accuracy(history)
    unfitted = ("; its loss has flattened without fitting the training set (try --lr, --no-augment, a smaller "
                "model)" if accuracy < FITTED_ACCURACY else "")
    return (f"adaptive budget: stopping after epoch {len(history)} of at most {budget.max_epochs} "
            f"(paper: {budget.paper_epochs}) at {accuracy:.1%} training accuracy{unfitted}")


def underfit_message(evidence: dict[str, Any]) -> str:
    return (f"underfit: training ended at {evidence['train_accuracy']:.1%} training accuracy with the loss "
            f"still falling (its mean {evidence['loss_drop']:.0%}, its lowest epoch "
            f"{evidence['lowest_loss_drop']:.0%} over the last {evidence['window']} epochs); "
            "train longer (--step-budget, --epochs) or raise --lr")
