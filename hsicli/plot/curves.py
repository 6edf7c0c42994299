"""Training curves from checkpoints' histories: loss and accuracy (CLAReSNet Fig. 3) and the learned
loss weights α, β, γ, δ per epoch (HSIseg Fig. 14).

The history is the per-epoch record `hsi train` keeps in the checkpoint's metadata
(`training.history`: epoch, loss, train_accuracy, val_accuracy, and optional val_loss and
loss_weights). A training state file (`NAME.resume.safetensors`) holds the history so far, so a
running job can be watched. Only the JSON header is read; the weights are never loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hsicli.errors import InputError, StoreError
from hsicli.plot.common import PlotOptions, figure_legend, legend_height, new_figure, stem
from hsicli.store.checkpoint import read_header

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ"}
LINESTYLES = ("-", "--", ":", "-.")


def read_history(path: Path, kind: str) -> tuple[dict, list[dict]]:
    """(metadata, per-epoch history) of a checkpoint or a training state file."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".safetensors":
        found = "a directory (a store)" if path.is_dir() else f"a {path.suffix or 'suffix-less'} file"
        raise InputError(
            f"{path} is {found}, not a checkpoint; `hsi plot {kind}` reads .safetensors checkpoints",
            hint="give the checkpoint `hsi train` printed (NAME.safetensors)",
        )
    _, metadata = read_header(path)
    if metadata.get("kind") == "checkpoint":
        history = (metadata.get("training") or {}).get("history")
    elif metadata.get("kind") == "resume-state":
        history = metadata.get("history")
    else:
        raise StoreError(f"{path} is a {metadata.get('kind')} file, not a checkpoint",
                         hint="give the checkpoint `hsi train` printed")
    if not history:
        raise StoreError(f"{path} records no training history", hint="it was written before its first epoch ended")
    return metadata, history


def run_labels(paths: list[Path], metadatas: list[dict]) -> list[str]:
    """Model names, or file names where two runs share a model."""
    models = [str(meta.get("model") or stem(path)) for path, meta in zip(paths, metadatas)]
    return [m if models.count(m) == 1 else stem(p) for m, p in zip(models, paths)]


def _series(history: list[dict], key: str, scale: float = 1.0) -> np.ndarray:
    return np.array([np.nan if entry.get(key) is None else scale * float(entry[key]) for entry in history])


def curves_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """Loss and accuracy per epoch, training solid and validation dashed, one colour per checkpoint."""
    runs = [read_history(Path(p), "curves") for p in inputs]
    labels = run_labels([Path(p) for p in inputs], [meta for meta, _ in runs])
    legend_labels = labels + ["train", "validation", "best epoch"]
    width = 7.0
    fig = new_figure(options, (width, 2.6 + legend_height(legend_labels, width)))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for index, (metadata, history) in enumerate(runs):
        color = f"C{index % 10}"
        epochs = _series(history, "epoch")
        marker = "o" if len(history) <= 20 else None
        style = {"color": color, "marker": marker, "markersize": 2.5}
        loss_ax.plot(epochs, _series(history, "loss"), "-", **style)
        loss_ax.plot(epochs, _series(history, "val_loss"), "--", **style)
        acc_ax.plot(epochs, _series(history, "train_accuracy", 100), "-", **style)
        val = _series(history, "val_accuracy", 100)
        acc_ax.plot(epochs, val, "--", **style)
        best = (metadata.get("training") or {}).get("best_epoch") or metadata.get("best_epoch")
        hit = np.flatnonzero(epochs == best)
        if hit.size and np.isfinite(val[hit[0]]):
            acc_ax.plot(epochs[hit[0]], val[hit[0]], "*", color=color, markersize=8, markeredgecolor="black",
                        markeredgewidth=0.4)
    # Histories record validation loss only where training computed it; say which loss is drawn.
    has_val_loss = any(entry.get("val_loss") is not None for _, history in runs for entry in history)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss" if has_val_loss else "Training loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, linewidth=0.5)
    handles = [Line2D([], [], color=f"C{i % 10}") for i in range(len(runs))]
    handles += [Line2D([], [], color="0.3", linestyle="-"), Line2D([], [], color="0.3", linestyle="--"),
                Line2D([], [], color="0.3", marker="*", linestyle="none", markersize=7)]
    figure_legend(fig, handles, legend_labels)
    return fig


def loss_weights_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """The learned weights of the loss terms per epoch (history entries' `loss_weights` dicts)."""
    series: list[tuple[str, dict[str, np.ndarray], np.ndarray]] = []
    paths = [Path(p) for p in inputs]
    runs = [read_history(p, "loss-weights") for p in paths]
    for path, label, (_, history) in zip(paths, run_labels(paths, [m for m, _ in runs]), runs):
        entries = [entry for entry in history if isinstance(entry.get("loss_weights"), dict)]
        if not entries:
            raise StoreError(
                f"{path} records no learned loss weights: its history entries have no 'loss_weights'",
                hint="loss-weights plots models that learn their loss weights, e.g. `hsi train --model hsiseg` "
                "(HSIseg's α, β, γ, δ)",
            )
        keys = list(dict.fromkeys(key for entry in entries for key in entry["loss_weights"]))
        try:
            values = {key: np.array([float(e["loss_weights"].get(key, np.nan)) for e in entries]) for key in keys}
        except (TypeError, ValueError):
            raise StoreError(f"{path} has loss weights that are not numbers",
                             hint="each history entry's loss_weights must map names to numbers") from None
        series.append((label, values, np.array([float(e["epoch"]) for e in entries])))
    keys = list(dict.fromkeys(key for _, values, _ in series for key in values))
    legend_labels = [GREEK.get(k, k) for k in keys] + ([label for label, _, _ in series] if len(series) > 1 else [])
    width = 4.5
    fig = new_figure(options, (width, 2.8 + legend_height(legend_labels, width)))
    ax = fig.subplots()
    for run, (label, values, epochs) in enumerate(series):
        for index, key in enumerate(keys):
            if key in values:
                ax.plot(epochs, values[key], LINESTYLES[run % len(LINESTYLES)], color=f"C{index % 10}")
    ax.set(xlabel="epoch", ylabel="weight", title="Learned loss weights")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, linewidth=0.5)
    handles = [Line2D([], [], color=f"C{i % 10}") for i in range(len(keys))]
    if len(series) > 1:
        handles += [Line2D([], [], color="0.3", linestyle=LINESTYLES[r % len(LINESTYLES)]) for r in range(len(series))]
    figure_legend(fig, handles, legend_labels)
    return fig
