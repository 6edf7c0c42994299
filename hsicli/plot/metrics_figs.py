"""Figures of evaluations: confusion matrix, precision-recall curves, model comparison, sweeps.

Inputs are prediction stores (evaluated on their split's test pixels as `hsi evaluate` evaluates
them, by `hsicli.store.evaluation`, so a figure never disagrees with the table) or the metrics
JSON files `hsi evaluate` writes; a summary JSON of several runs stands for the runs it lists.

- `confusion`: rows true class, columns predicted, each row divided by its support (recall on the
  diagonal); several runs are pooled.
- `pr`: one-vs-rest precision-recall curve per class on test pixels (CLAReSNet Fig. 3), with the
  class's average precision from `hsicli.metrics`.
- `compare`: OA, AA and κ, mean ± sample std over the runs of each setup (Lite-C2ANet Table 7 as
  a picture), and OA against parameter count when the runs' checkpoints are at hand.
- `sweep --x KEY`: a metric against any recorded parameter, mean ± std bands per setup
  (Lite-C2ANet Figs. 3, 4, 8; HSIseg Figs. 15, 16).

Runs are grouped as `hsi evaluate` groups them (`group_runs`): by model, arguments, training
settings, scene and split protocol, so runs of different setups are never averaged; a sweep
leaves its own KEY out of the setup, as that is what it varies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hsicli.errors import HsiError, InputError, StoreError, UsageError
from hsicli.metrics import classification_metrics, summarize_runs
from hsicli.plot.common import (
    PlotOptions, artifact_kind, figure_legend, legend_height, new_figure, open_prediction,
)
from hsicli.store.evaluation import evaluate_prediction, group_runs, read_metrics_file, test_pixels
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore

# metric key: (axis label, scale)
METRICS: dict[str, tuple[str, float]] = {
    "oa": ("OA (%)", 100.0),
    "aa": ("AA (%)", 100.0),
    "kappa": ("κ × 100", 100.0),
    "mcc": ("MCC × 100", 100.0),
    "ari": ("ARI × 100", 100.0),
    "map": ("mAP (%)", 100.0),
    "centroid_distance": ("centroid distance", 1.0),
}
_ABSENT = object()


def _dig(data: Any, key: str) -> Any:
    """data['a']['b'] for key 'a.b' (list items by index), or _ABSENT."""
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


def _numeric_keys(data: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the numbers in nested dicts (what --x can name)."""
    if isinstance(data, dict):
        return [key for name, value in data.items() for key in _numeric_keys(value, f"{prefix}{name}.")]
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return [prefix.rstrip(".")]
    return []


@dataclass
class Run:
    """One evaluated prediction: its metrics and, loaded when asked, what produced it."""

    metrics: dict[str, Any]
    source: Path  # the metrics file or prediction store it was read from
    prediction_path: Path | None

    @cached_property
    def prediction(self) -> PredictionStore | None:
        if self.prediction_path is None or not self.prediction_path.exists():
            return None
        return PredictionStore.open(self.prediction_path)

    @property
    def prediction_attrs(self) -> dict[str, Any]:
        """Everything the prediction recorded, by name (what `lookup` searches)."""
        return self.prediction.attrs if self.prediction is not None else {}

    @cached_property
    def checkpoint_path(self) -> Path | None:
        path = self.prediction.checkpoint_path if self.prediction is not None else None
        return path if path is not None and path.is_file() else None

    @cached_property
    def checkpoint_meta(self) -> dict[str, Any]:
        from hsicli.store.checkpoint import read_header

        return read_header(self.checkpoint_path)[1] if self.checkpoint_path else {}

    @cached_property
    def split_attrs(self) -> dict[str, Any]:
        store_path = self.prediction.scene_path if self.prediction is not None else None
        split = self.metrics.get("split") or (self.prediction.split if self.prediction is not None else None)
        if store_path is None or not split:
            return {}
        try:
            return SceneStore.open(store_path).layer_attrs("splits", split)
        except HsiError:
            return {}

    @property
    def model(self) -> str:
        return str(self.metrics.get("model") or (self.prediction.model if self.prediction is not None else None)
                   or "model")

    def value(self, metric: str) -> float:
        value = self.metrics.get(metric)
        if not isinstance(value, (int, float)):
            raise StoreError(f"{self.source} has no {metric!r} value",
                             hint="mAP needs stored probabilities, centroid distance `hsi predict --embeddings`")
        return float(value)

    def lookup(self, key: str) -> Any:
        """KEY in the metrics, the prediction's attributes, the checkpoint's metadata or the split's
        attributes, first found; or namespaced, e.g. `split.params.ratio`, `checkpoint.training.seed`."""
        sources = ("metrics", "prediction_attrs", "checkpoint_meta", "split_attrs")
        for name in sources:
            found = _dig(getattr(self, name), key)
            if found is not _ABSENT:
                break
        else:
            spaces = dict(zip(("metrics", "prediction", "checkpoint", "split"), (getattr(self, n) for n in sources)))
            found = _dig(spaces, key)
        if found is _ABSENT:
            known = list(dict.fromkeys(k for name in sources[1:] for k in _numeric_keys(getattr(self, name))))
            raise StoreError(
                f"{self.source} records no {key!r} in its metrics, prediction, checkpoint or split",
                hint=f"numbers it records include: {', '.join(known[:15]) or 'none (checkpoint and store gone?)'}",
            )
        if isinstance(found, (dict, list)):
            raise StoreError(f"{key!r} of {self.source} is a {type(found).__name__}, not a single value",
                             hint="name a key inside it, e.g. training.hyper.patch")
        return found


def _run_from_json(path: Path, split: str | None) -> list[Run]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable metrics JSON file: {exc}",
                         hint="give the metrics file `hsi evaluate` printed") from None
    if isinstance(data, dict) and isinstance(data.get("predictions"), list) and "runs" in data:
        # A summary of several runs: stand for each run it lists.
        return [_run_of_prediction(Path(p), split) for p in data["predictions"]]
    return [Run(run, Path(path), Path(run["prediction"]) if run.get("prediction") else None)
            for run in read_metrics_file(path)]


def _run_of_prediction(path: Path, split: str | None) -> Run:
    # Evaluated afresh (a fraction of a second), so a figure never shows a stale record.
    return Run(evaluate_prediction(Path(path), split), Path(path), Path(path))


def load_runs(inputs: list[Path], kind: str, split: str | None) -> list[Run]:
    runs = []
    for path in map(Path, inputs):
        if not path.exists():
            raise InputError(f"{path} does not exist", hint="check the path of the prediction store or metrics file")
        found = artifact_kind(path)
        if found == "prediction":
            runs.append(_run_of_prediction(path, split))
        elif found == "metrics":
            runs += _run_from_json(path, split)
        else:
            raise InputError(
                f"{path} is {'a ' + found if found else 'not an hsi artifact'}; "
                f"`hsi plot {kind}` reads prediction stores or metrics JSON",
                hint="give the prediction stores `hsi predict` printed or the files `hsi evaluate` printed",
            )
    return runs


# Namespaces `Run.lookup` accepts before a key, and where the setup keeps what they hold.
_SETUP_NAMESPACES = {"checkpoint": "", "split": "protocol.", "prediction": "", "metrics": ""}


def _without(value: Any, keys: set[str], prefix: str = "") -> Any:
    """`value` (nested objects) without the leaves at, or ending in, one of the dotted `keys`."""
    if not isinstance(value, dict):
        return value
    kept = {}
    for name, item in value.items():
        key = f"{prefix}{name}"
        if not any(key == k or key.endswith("." + k) for k in keys):
            kept[name] = _without(item, keys, key + ".")
    return kept


def _grouped(runs: list[Run], varied: str | None = None) -> dict[str, list[Run]]:
    """Runs by setup, labelled as `hsi evaluate` labels its columns; `varied` (a sweep's KEY) is
    left out of the setups."""
    keys = set()
    if varied:
        space, _, rest = varied.partition(".")
        keys = {varied, _SETUP_NAMESPACES[space] + rest} if space in _SETUP_NAMESPACES and rest else {varied}
    records = [{"setup": _without(run.metrics["setup"], keys), "index": index} for index, run in enumerate(runs)]
    return {group.label: [runs[record["index"]] for record in group.runs] for group in group_runs(records)}


def _check_metric(metric: str) -> tuple[str, float]:
    if metric not in METRICS:
        raise UsageError(f"unknown --metric {metric!r}", hint=f"use one of {', '.join(METRICS)}")
    return METRICS[metric]


# -- confusion ---------------------------------------------------------------------------------------


def confusion_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    runs = load_runs(inputs, "confusion", options.split)
    names = [row["name"] for row in runs[0].metrics["per_class"]]
    for run in runs[1:]:
        if [row["name"] for row in run.metrics["per_class"]] != names:
            raise UsageError(f"{run.source} has other classes than {runs[0].source}",
                             hint="pool only runs of the same scene")
    missing = [run.source for run in runs if "confusion" not in run.metrics]
    if missing:
        raise StoreError(f"{missing[0]} has no confusion matrix", hint="give the prediction store instead")
    counts = np.sum([np.asarray(run.metrics["confusion"], dtype=np.int64) for run in runs], axis=0)
    support = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, support, out=np.full(counts.shape, np.nan), where=support > 0)
    n = len(names)
    label_room = min(2.4, 0.4 + 0.055 * max(len(name) for name in names))
    cells = max(2.0, 0.32 * n)
    fig = new_figure(options, (cells + label_room + 1.0, cells + label_room + 0.4))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    if n <= 25:
        for row, col in np.argwhere(np.isfinite(normalised)):
            value = normalised[row, col]
            ax.text(col, row, f"{100 * value:.{1 if n <= 10 else 0}f}", ha="center", va="center",
                    fontsize=6 if n <= 16 else 5, color="white" if value > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.spines[:].set_visible(False)
    ax.tick_params(length=0)
    pooled = f", {len(runs)} runs pooled" if len(runs) > 1 else ""
    ax.set_title(f"Confusion matrix (% of each true class{pooled})")
    fig.colorbar(image, ax=ax, shrink=0.8, format=lambda value, _: f"{100 * value:.0f}%")
    return fig


# -- precision-recall --------------------------------------------------------------------------------


def pr_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct score threshold, highest first; ties form one threshold.

    Drawn as a step curve that holds precision P_i over (R_{i−1}, R_i], its area is the average
    precision Σ (R_i − R_{i−1}) P_i of `hsicli.metrics`.
    """
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    true_pos = np.cumsum(positive[order])[ends]
    return true_pos / true_pos[-1], true_pos / (ends + 1)


def pr_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    if len(inputs) != 1:
        raise UsageError(f"`hsi plot pr` takes one prediction store, got {len(inputs)}",
                         hint="plot each prediction on its own")
    path = Path(inputs[0])
    if artifact_kind(path) == "metrics":
        path = Path(_run_from_json(path, None)[0].prediction_path or path)
    prediction = open_prediction(path, "pr")
    probabilities = prediction.probabilities()
    if probabilities is None:
        raise StoreError(f"{prediction.path} stores no class probabilities",
                         hint="predict again without --no-probabilities")
    store, _, test = test_pixels(prediction, options.split)
    gt = store.gt().astype(np.int64)
    y_true = gt[test] - 1
    scores = probabilities[test]
    metrics = classification_metrics(y_true, prediction.classes().astype(np.int64)[test] - 1, store.n_classes,
                                     class_names=store.class_names, probabilities=scores)
    labels, handles = [], []
    width = 5.0
    names = store.class_names
    fig = new_figure(options, (width, 3.6 + legend_height([f"{n} (AP 00.0)" for n in names], width)))
    ax = fig.subplots()
    for k, (name, color, row) in enumerate(zip(names, store.class_colors, metrics["per_class"])):
        if row.get("ap") is None:
            continue  # no test pixel of this class: no curve
        recall, precision = pr_curve(scores[:, k], y_true == k)
        (line,) = ax.plot(np.r_[0.0, recall], np.r_[precision[0], precision], drawstyle="steps-pre", color=color)
        handles.append(line)
        labels.append(f"{name} (AP {100 * row['ap']:.1f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02),
           title=f"Precision–recall on test pixels (mAP {100 * metrics['map']:.1f}%)")
    ax.grid(alpha=0.3, linewidth=0.5)
    figure_legend(fig, handles, labels)
    return fig


# -- comparison and sweeps ---------------------------------------------------------------------------


def _parameters(runs: list[Run]) -> int | None:
    """Trainable parameters of the model behind runs (from the first checkpoint at hand)."""
    from hsicli.store.checkpoint import parameter_count, read_header

    for run in runs:
        if run.checkpoint_path is not None:
            count = parameter_count(read_header(run.checkpoint_path)[0])
            return count or None  # classical baselines store no network weights
    return None


def compare_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """OA / AA / κ bars (mean ± std per setup), and OA against parameters when checkpoints are known."""
    groups = _grouped(load_runs(inputs, "compare", options.split))
    summaries = {label: summarize_runs([run.metrics for run in runs]) for label, runs in groups.items()}
    params = {label: _parameters(runs) for label, runs in groups.items()}
    known = {label: count for label, count in params.items() if count}
    keys = ("oa", "aa", "kappa")
    labels = [f"{label} (n={len(groups[label])})" for label in groups]
    width = 7.0 if known else 4.8
    fig = new_figure(options, (width, 3.0 + legend_height(labels, width)))
    axes = fig.subplots(1, 2 if known else 1, squeeze=False)[0]
    bar_ax = axes[0]
    step = 0.8 / len(groups)
    lowest = 100.0
    for index, (label, summary) in enumerate(summaries.items()):
        means = np.array([100 * summary[k]["mean"] for k in keys])
        stds = np.array([100 * summary[k]["std"] for k in keys])
        lowest = min(lowest, float((means - stds).min()))
        positions = np.arange(len(keys)) - 0.4 + step * (index + 0.5)
        bar_ax.bar(positions, means, step * 0.9, yerr=stds, color=f"C{index % 10}", capsize=2,
                   error_kw={"elinewidth": 0.6, "capthick": 0.6})
        single = len(groups[label]) == 1  # one run has no spread: no "± 0.0"
        for x, mean, std in zip(positions, means, stds):
            # Inside the bar's top: the axis ends at 100 %, and a label above a 99 % bar would not fit.
            bar_ax.text(x, mean - 0.5, f"{mean:.1f}" if single else f"{mean:.1f}±{std:.1f}", ha="center", va="top",
                        fontsize=5, rotation=90, color="white", clip_on=True)
    bar_ax.set_xticks(range(len(keys)), [METRICS[k][0] for k in keys])
    bar_ax.set_ylim(max(0.0, np.floor(lowest / 5) * 5 - 5), 100)
    bar_ax.set(ylabel="%", title="Accuracy (mean ± std)")
    bar_ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    if known:
        ax = axes[1]
        for index, (label, summary) in enumerate(summaries.items()):
            if label in known:
                oa = summary["oa"]
                ax.errorbar(known[label], 100 * oa["mean"], yerr=100 * oa["std"], fmt="o", color=f"C{index % 10}",
                            capsize=2, markersize=4)
                ax.annotate(label, (known[label], 100 * oa["mean"]), textcoords="offset points", xytext=(4, 3),
                            fontsize=6)
        ax.set_xscale("log")
        ax.set(xlabel="parameters", ylabel=METRICS["oa"][0], title="Accuracy against model size")
        ax.grid(alpha=0.3, linewidth=0.5)
    figure_legend(fig, [Line2D([], [], color=f"C{i % 10}", linewidth=6) for i in range(len(groups))], labels)
    return fig


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(run: Run, key: str) -> float:
    found = run.lookup(key)
    if not _is_number(found):
        raise StoreError(f"{key!r} of {run.source} is {found!r}, not a number", hint="name a numeric key")
    return float(found)


# What a swept setting means, by the last part of its key (`training.hyper.patch`, `params.ratio`).
_SETTING_MEANINGS = {
    "patch": "patch size (pixels)",
    "ratio": "training fraction per class",
    "per_class": "training pixels per class",
    "val": "validation share per class",
    "seed": "seed",
    "epochs": "epochs",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "batch_size": "batch size",
    "pseudo_round": "pseudo-label round",
    "group_channels": "bands per spectral group g_c",
}
# Up to this many swept values each get a tick; more span a range wide enough for whole-number ticks.
_MAX_LISTED_TICKS = 12


def setting_meaning(key: str) -> str:
    """The axis label of a swept KEY: what it means, or the key itself when unknown."""
    *parents, name = key.split(".")
    if name in _SETTING_MEANINGS:
        return _SETTING_MEANINGS[name]
    return f"{name} (model argument)" if "model_args" in parents else key


def sweep_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """A metric against a recorded parameter: mean line and ± std band per setup over repeated runs.

    The x axis is labelled with what the parameter means; its ticks are the swept values when
    there are few (a sweep over patches 5, 7, 9 shows exactly those, never 5.5), and one tick
    per value, in the order the inputs first give them, for words ("lstm", "gru")."""
    if not options.x:
        raise UsageError("`hsi plot sweep` needs --x KEY, the parameter on the x axis",
                         hint="e.g. --x training.hyper.patch, --x params.ratio or --x training.seed")
    metric = options.metric
    # A recorded number, named as --x names one (e.g. training.pseudo_labels.added: pixels per round).
    recorded = metric not in METRICS and "." in metric
    label, scale = (metric, 1.0) if recorded else _check_metric(metric)

    def value(run: Run) -> float:
        return _number(run, metric) if recorded else scale * run.value(metric)

    groups = _grouped(load_runs(inputs, "sweep", options.split), varied=options.x)
    xs = {id(run): run.lookup(options.x) for runs in groups.values() for run in runs}
    numeric = all(_is_number(x) for x in xs.values())
    categories = [] if numeric else list(dict.fromkeys(str(x) for x in xs.values()))
    position: Callable[[Any], float] = float if numeric else (lambda x: float(categories.index(str(x))))
    names = list(groups)
    width = 4.8
    fig = new_figure(options, (width, 3.2 + legend_height(names, width)))
    ax = fig.subplots()
    for index, runs in enumerate(groups.values()):
        points = np.array([position(xs[id(run)]) for run in runs])
        values = np.array([value(run) for run in runs])
        grid = np.unique(points)
        means = np.array([values[points == x].mean() for x in grid])
        stds = np.array([values[points == x].std(ddof=1) if (points == x).sum() > 1 else 0.0 for x in grid])
        color = f"C{index % 10}"
        ax.plot(grid, means, "-o", color=color, markersize=3)
        ax.fill_between(grid, means - stds, means + stds, color=color, alpha=0.2, linewidth=0)
    swept = sorted(set(xs.values())) if numeric else []
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    elif len(swept) <= _MAX_LISTED_TICKS:
        ax.set_xticks(swept, [f"{x:g}" for x in swept])
    meaning = setting_meaning(options.x)
    ax.set(xlabel=meaning, ylabel=label, title=f"{label.split(' ')[0]} (mean ± std) against {meaning}")
    ax.grid(alpha=0.3, linewidth=0.5)
    figure_legend(fig, [Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3) for i in range(len(names))],
                  names)
    return fig
