"""Evaluation behind `hsi evaluate`: metrics on a split's test pixels, one or several runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.data.splits import dropped_classes, labelled_test_mask
from hsicli.engine.metrics import classification_metrics, summarize_runs
from hsicli.errors import HsiError
from hsicli.store.atomic import atomic_path
from hsicli.store.prediction import PredictionStore
from hsicli.store.provenance import record
from hsicli.store.scene import SceneStore


@dataclass
class EvaluationResult:
    path: Path
    result: dict[str, Any]  # one run's metrics, or the summary of several
    runs: list[dict[str, Any]]


def test_pixels(prediction: PredictionStore, split: str | None = None) -> tuple[SceneStore, str, np.ndarray]:
    """(scene store, split name, mask of the labelled test pixels) a prediction is judged on."""
    store = prediction.scene()
    split_name = split or prediction.attrs.get("split")
    if not split_name:
        raise HsiError(f"{prediction.path} records no split to evaluate on", hint="choose one with --split")
    test = labelled_test_mask(
        store, split_name, prediction.attrs.get("split_fingerprint") if split is None else None,
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
        model=prediction.attrs.get("model"),
        inference_seconds=prediction.attrs.get("inference_seconds"),
    )
    return metrics


def _write_json(path: Path, payload: dict, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    return path


def metrics_path(prediction: Path) -> Path:
    prediction = Path(prediction).absolute()
    return prediction.parent / (prediction.name.removesuffix(".zarr").removesuffix(".pred") + ".metrics.json")


def evaluate(predictions: list[Path], *, split: str | None, out: Path | None, command: str,
             overwrite: bool = False) -> EvaluationResult:
    """Evaluate each prediction (metrics saved beside it, refreshed on every run); several give
    mean ± std. An explicit `out` is never replaced without `overwrite`."""
    runs = []
    for prediction in predictions:
        metrics = evaluate_prediction(prediction, split)
        metrics["provenance"] = record(command, {"prediction": PredictionStore.open(prediction).as_input()})
        _write_json(metrics_path(prediction), metrics)
        runs.append(metrics)
    if len(runs) == 1:
        path = Path(out).absolute() if out else metrics_path(predictions[0])
        if path != metrics_path(predictions[0]):  # `--out` naming the file beside it is that file
            _write_json(path, runs[0], overwrite)
        return EvaluationResult(path, runs[0], runs)
    summary = summarize_runs(runs)
    summary.update(predictions=[r["prediction"] for r in runs], provenance=record(command))
    if out is None:
        digest = hashlib.sha256("\n".join(sorted(r["prediction"] for r in runs)).encode()).hexdigest()[:10]
        path = _write_json(Path.cwd() / f"summary-{digest}.metrics.json", summary)
    else:
        path = _write_json(Path(out).absolute(), summary, overwrite)
    return EvaluationResult(path, summary, runs)
