"""A prediction judged from its artifacts alone, and the metrics records `hsi evaluate` writes.

`evaluate_prediction` scores a prediction store on the labelled test pixels of its split (the
metric math is `hsicli.metrics`) and records its `setup`: the same model with the same arguments
and training settings (`training_setup`), on the same scene (content fingerprint), under the same
split protocol (strategy and parameters, the seed left out). Runs of one setup are comparable;
`group_runs` groups and labels them. The metrics files and summaries are read back validated
(`read_metrics_file`). `hsi evaluate` (hsicli.engine.evaluate) and `hsi plot` both read runs
through here, so a figure never disagrees with the table.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.errors import HsiError, InputError
from hsicli.metrics import OPTIONAL_SCORES, OVERALL_SCORES, classification_metrics
from hsicli.store.checkpoint import read_header, training_setup
from hsicli.store.prediction import PredictionStore
from hsicli.store.provenance import file_sha256
from hsicli.store.record import RunRecord
from hsicli.store.scene import SceneStore
from hsicli.store.splits import dropped_classes, labelled_test_mask

MAX_METRICS_BYTES = 64 * 1024 * 1024  # a metrics file or summary is kilobytes; refuse anything huge


@dataclass
class RunGroup:
    label: str  # the group's column header: the model, plus what tells it from others of that model
    setup: dict[str, Any]
    runs: list[dict[str, Any]]


def test_pixels(prediction: PredictionStore, split: str | None = None) -> tuple[SceneStore, str, np.ndarray]:
    """(scene store, split name, mask of the labelled test pixels) a prediction is judged on."""
    store = prediction.scene()
    split_name = split or prediction.split
    if not split_name:
        raise HsiError(f"{prediction.path} records no split to evaluate on", hint="choose one with --split")
    test = labelled_test_mask(
        store, split_name, prediction.split_fingerprint if split is None else None,
        f"{prediction.path.name}'s model",
        hint="predict again with a model trained on this split, or name another split with --split",
    )
    if not test.any():
        raise HsiError(f"split {split_name!r} has no test pixels", hint="evaluate on another split")
    return store, split_name, test


def evaluate_prediction(prediction_path: Path, split: str | None = None) -> dict[str, Any]:
    """Metrics of one prediction store on the test pixels of its split (or `split`)."""
    prediction = PredictionStore.open(prediction_path)
    store, split_name, test = test_pixels(prediction, split)
    gt = store.gt().astype(np.int64)
    y_true = gt[test] - 1
    y_pred = prediction.classes().astype(np.int64)[test] - 1
    probabilities = prediction.probabilities()
    embeddings = None
    embedded = prediction.embeddings()
    if embedded is not None:
        index, features = embedded
        position = np.full(gt.size, -1, dtype=np.int64)
        position[index] = np.arange(index.size)
        rows = position[np.flatnonzero(test)]
        if (rows >= 0).all():
            embeddings = features[rows]
    metrics = classification_metrics(
        y_true,
        y_pred,
        store.n_classes,
        class_names=store.class_names,
        probabilities=None if probabilities is None else probabilities[test],
        embeddings=embeddings,
    )
    # Classes the split dropped have no test pixels; their rows say why.
    for cls in dropped_classes(store, split_name):
        metrics["per_class"][cls - 1]["dropped"] = True
    metrics.update(
        prediction=str(prediction.path.absolute()),
        split=split_name,
        model=prediction.model,
        inference_seconds=prediction.inference_seconds,
        setup=run_setup(prediction, store, split_name),
    )
    return metrics


def run_setup(prediction: PredictionStore, store: SceneStore, split_name: str) -> dict[str, Any]:
    """What makes a run comparable with another: model and training settings, scene, split protocol."""
    training = _training_setup(prediction)
    return {
        "model": prediction.model,
        "training": None if training is None else {k: v for k, v in training.items() if k != "model"},
        "scene": store.fingerprint,
        "protocol": split_protocol(store, split_name),
    }


def _training_setup(prediction: PredictionStore) -> dict[str, Any] | None:
    """Recorded by `hsi predict`; for older stores read from their checkpoint when it is unchanged;
    None when unknown (such runs pool only with runs of unknown settings of the same model)."""
    if prediction.training_setup is not None:
        return prediction.training_setup
    path = prediction.checkpoint_path
    if path is not None and path.is_file() and file_sha256(path) == prediction.checkpoint_sha256:
        metadata = read_header(path)[1]
        return training_setup(RunRecord.from_metadata(metadata), metadata.get("provenance"),
                              (metadata.get("training") or {}).get("pseudo_labels"))
    return None


def split_protocol(store: SceneStore, split_name: str) -> dict[str, Any]:
    """How a split was drawn, without its seed: splits of one protocol differ only by chance. A split
    that records no protocol stands for itself (its name)."""
    attrs = store.layer_attrs("splits", split_name)
    if not attrs.get("strategy"):
        return {"split": split_name}
    params = attrs.get("params") if isinstance(attrs.get("params"), dict) else {}
    protocol = {"strategy": attrs["strategy"], "params": {k: v for k, v in params.items() if k != "seed"}}
    maps = ((attrs.get("provenance") or {}).get("inputs") or {}).get("maps")
    if isinstance(maps, dict):  # predefined train/test maps: which maps, by content
        protocol["maps"] = maps.get("sha256")
    return protocol


def metrics_path(prediction: Path) -> Path:
    prediction = Path(prediction).absolute()
    return prediction.parent / (prediction.name.removesuffix(".zarr").removesuffix(".pred") + ".metrics.json")


# --- grouping -----------------------------------------------------------------------------------


def setup_key(run: dict[str, Any]) -> str:
    return json.dumps(run["setup"], sort_keys=True)


def group_runs(runs: list[dict[str, Any]]) -> list[RunGroup]:
    """Runs grouped by setup, in order of first appearance, each group labelled for its column."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(setup_key(run), []).append(run)
    setups = [members[0]["setup"] for members in grouped.values()]
    return [RunGroup(label, setup, members)
            for label, setup, members in zip(_labels(setups), setups, grouped.values())]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf} of nested objects; an empty object has no leaves (empty model arguments are the
    defaults, as absent ones are)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _short(value: Any) -> str:
    if value is None:
        return "–"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:8] if isinstance(value, str) and len(value) >= 32 else text  # fingerprints: a prefix


# Order of a label's differences: `run_setup`'s parts (and old records' split), then anything else.
_SETUP_PARTS = {part: rank for rank, part in enumerate(("model", "training", "scene", "protocol", "split"))}


def _labels(setups: list[dict[str, Any]], limit: int = 48) -> list[str]:
    """The model's name; where several setups share a model, what tells each from its nearest
    neighbours among them (e.g. `rf (n_estimators=50)`), or a short digest of the setup when that
    would be long or would not tell it apart."""
    models = [str(setup.get("model") or "unknown model") for setup in setups]
    flat = [_flat(setup) for setup in setups]
    digests = [hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()[:6] for setup in setups]
    labels = []
    for index, (mine, model) in enumerate(zip(flat, models)):
        differences = [
            {key for key in mine.keys() | other.keys() if mine.get(key) != other.get(key)}
            for other, name in zip(flat, models) if name == model and other is not mine
        ]
        if not differences:
            labels.append(model)
            continue
        nearest = min(map(len, differences))
        found = set().union(*(d for d in differences if len(d) == nearest))
        keys = sorted(found, key=lambda key: (_SETUP_PARTS.get(key.split(".")[0], len(_SETUP_PARTS)), key))
        shown = ", ".join(f"{key.rsplit('.', 1)[-1]}={_short(mine.get(key))}" for key in keys)
        labels.append(f"{model} ({shown})" if len(shown) + len(model) + 3 <= limit else f"{model} #{digests[index]}")
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{model} #{digest}" if label in repeated else label
            for label, model, digest in zip(labels, models, digests)]


# --- metrics files as inputs --------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def read_metrics_file(path: Path) -> list[dict[str, Any]]:
    """The runs of a metrics file or summary `hsi evaluate` wrote, validated."""
    path = Path(path)
    hint = "give the prediction stores, or the metrics files `hsi evaluate` wrote"
    try:
        size = path.stat().st_size
        if size > MAX_METRICS_BYTES:
            raise InputError(f"{path} is not a metrics file: {size} bytes", hint=hint)
        data = json.loads(path.read_bytes(), parse_constant=_reject_constant)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
        raise InputError(f"{path} is not a readable metrics file: {reason}", hint=hint) from None
    if isinstance(data, dict) and "run_metrics" in data:
        runs = data["run_metrics"]
        if not isinstance(runs, list) or not runs:
            raise InputError(f"{path} is a summary without runs", hint=hint)
    elif isinstance(data, dict) and "groups" not in data and isinstance(data.get("runs"), int):
        raise InputError(f"{path} is a summary written by an older hsi evaluate, without its runs",
                         hint="evaluate its prediction stores again")
    else:
        runs = [data]
    for index, run in enumerate(runs):
        problem = _run_problem(run)
        if problem:
            where = f"run {index + 1} of {path}" if len(runs) > 1 else str(path)
            raise InputError(f"{where} is not a metrics record of `hsi evaluate`: {problem}", hint=hint)
        if "setup" not in run:  # written before runs recorded their setup: pools only with its like
            run["setup"] = {"model": run.get("model"), "split": run.get("split")}
    return runs


def _is_number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _run_problem(run: Any) -> str | None:
    """Why `run` is not one run's metrics (a result of `evaluate_prediction`), or None."""
    if not isinstance(run, dict):
        return f"a JSON {type(run).__name__}, not an object"
    if isinstance(run.get("n"), bool) or not isinstance(run.get("n"), int) or run["n"] < 1:
        return "no pixel count 'n'"
    for key, _ in OVERALL_SCORES:
        if not _is_number(run.get(key), -1.0, 1.0):
            return f"{key!r} is not a score in [-1, 1]"
    for key, _ in OPTIONAL_SCORES:
        if run.get(key) is not None and not _is_number(run[key], 0.0, 1.0 if key == "map" else math.inf):
            return f"{key!r} is not a valid score"
    for key in ("prediction", "model", "split"):
        if run.get(key) is not None and not isinstance(run[key], str):
            return f"{key!r} is not a string"
    if "setup" in run and not isinstance(run["setup"], dict):
        return "'setup' is not an object"
    rows = run.get("per_class")
    if not isinstance(rows, list) or not rows:
        return "no 'per_class' list"
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            return "a per-class entry without a name"
        if isinstance(row.get("support"), bool) or not isinstance(row.get("support"), int) or row["support"] < 0:
            return f"class {row['name'][:40]!r} has no valid support"
        for key in ("precision", "recall", "f1", "accuracy", "ap"):
            required = key in ("precision", "recall", "f1")
            if (required or row.get(key) is not None) and not _is_number(row.get(key), 0.0, 1.0):
                return f"class {row['name'][:40]!r} has no valid {key}"
    return None
