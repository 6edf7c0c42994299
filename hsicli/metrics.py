"""Classification metrics for `hsi evaluate`: the papers' accuracy scores from one confusion matrix.

Plain numpy math on arrays, below every layer that scores a prediction (hsicli.store.evaluation,
`hsi evaluate`'s tables, `hsi plot`'s figures), so each reads the one implementation.

Everything derives from the C×C confusion matrix (rows true, columns predicted) of the evaluated
pixels, counted with one `np.bincount`; scikit-learn is the reference in the tests but is not
imported here (import cost). Class index k is label value k + 1 of the scene's label map
(0 = unlabelled is not a class).

Metrics (CLAReSNet §V-B: OA, balanced accuracy, κ, MCC, ARI, average inter-class centroid distance;
Lite-C2ANet §4.1: OA, AA, κ):

- ``oa``: trace / n.
- ``aa``: mean per-class recall over the classes present in ``y_true``. This is balanced accuracy
  (CLAReSNet's "BA"); a class absent from the evaluated pixels has no recall and is left out of
  the mean, as scikit-learn's ``balanced_accuracy_score`` does (it warns; we do not).
- ``kappa``: Cohen's κ = (p_o − p_e) / (1 − p_e). The denominator is 0 only when truth and
  prediction are the same single class, i.e. perfect agreement: κ = 1.0 there (scikit-learn
  returns its ``replace_undefined_by``, NaN by default).
- ``mcc``: multi-class Matthews correlation (Gorodkin's R_K). When either labelling is constant it
  is 0/0: 1.0 if the two agree on every pixel, else 0.0 (scikit-learn returns 0.0 in both cases).
- ``ari``: adjusted Rand index of the two partitions, 1.0 when they are identical (including the
  degenerate one-cluster and all-singleton cases, as scikit-learn).
- ``per_class``: support, precision, recall, F1 with scikit-learn's ``zero_division=0``
  (0 where the class is never predicted / never present), and ``accuracy``: the class's recall as
  the papers print it, ``None`` for a class with no evaluated pixels; ``dropped``: true for a
  class the split left out (``hsi split --min-pixels``), which the tables mark as such.
- with ``probabilities``: per-class ``ap`` (average precision, one-vs-rest, the area under the
  step-wise precision-recall curve; CLAReSNet §V-C reports per-class AP), ``None`` for absent
  classes, and ``map``, their mean over present classes.
- with ``embeddings``: ``centroid_distance``, the mean Euclidean distance between the centroids
  of the classes present in ``y_true`` over their C(C−1)/2 pairs (CLAReSNet's "Avg. Dist."),
  ``None`` when fewer than two classes are present.

Overall scores are computed from exact Python integers, so no degenerate case divides by zero
or warns. Results are plain JSON (no NaN); rates are fractions in [0, 1] (κ, MCC, ARI in [-1, 1]).
"""

from __future__ import annotations

import math

import numpy as np

from hsicli.errors import InputError

# Overall scores every result carries, then the optional ones; (key, label in tables).
OVERALL_SCORES = (
    ("oa", "OA (%)"), ("aa", "AA (%)"), ("kappa", "κ × 100"), ("mcc", "MCC × 100"), ("ari", "ARI × 100"),
)
OPTIONAL_SCORES = (("map", "mAP (%)"), ("centroid_distance", "Centroid distance"))
_OPTIONAL_KEYS = {key for key, _ in OPTIONAL_SCORES}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """C×C int64 counts, rows true class, columns predicted class (indices already validated)."""
    flat = y_true.astype(np.int64) * n_classes + y_pred
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    class_names: list[str] | None = None,
    probabilities: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> dict:
    """All metrics of the evaluated pixels as a JSON-able dict (conventions: module docstring).

    ``y_true``/``y_pred``: (N,) class indices 0..C-1; ``probabilities``: (N, C) class scores;
    ``embeddings``: (N, D) features of the same pixels.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise InputError(
            f"n_classes must be a positive integer, found {n_classes!r}",
            hint="pass the number of classes of the scene store",
        )
    n_classes = int(n_classes)
    y_true = _class_indices(y_true, "y_true", n_classes)
    y_pred = _class_indices(y_pred, "y_pred", n_classes)
    if y_true.shape != y_pred.shape:
        raise InputError(
            f"y_true and y_pred differ in length: {y_true.size} true labels, {y_pred.size} predictions",
            hint="evaluate the prediction on the same pixels as the reference labels",
        )
    if y_true.size == 0:
        raise InputError(
            "no pixels to evaluate: y_true and y_pred are empty",
            hint="the split has no test pixels; choose another --split",
        )
    names = _check_names(class_names, n_classes)

    confusion = confusion_matrix(y_true, y_pred, n_classes)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion).astype(np.float64)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2.0 * hits, support + predicted)  # 2tp / (2tp + fp + fn)
    present = support > 0

    overall = _overall_scores(confusion)
    result: dict = {
        "n": int(y_true.size),
        "oa": overall["oa"],
        "aa": float(recall[present].mean()),
        "kappa": overall["kappa"],
        "mcc": overall["mcc"],
        "ari": overall["ari"],
    }
    result["per_class"] = [
        {
            "name": names[k],
            "support": int(support[k]),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "accuracy": float(recall[k]) if present[k] else None,
        }
        for k in range(n_classes)
    ]
    result["confusion"] = confusion.tolist()
    if probabilities is not None:
        scores = _float_matrix(probabilities, "probabilities", y_true.size, n_classes)
        ap = _average_precision(scores, y_true, present)
        for row, value in zip(result["per_class"], ap):
            row["ap"] = value
        result["map"] = float(np.mean([v for v in ap if v is not None]))
    if embeddings is not None:
        result["centroid_distance"] = _centroid_distance(
            _float_matrix(embeddings, "embeddings", y_true.size, None), y_true, present
        )
    return result


def summarize_runs(runs: list[dict]) -> dict:
    """Mean ± std over runs (results of `classification_metrics`), as the papers' tables print them.

    Each statistic is ``{"mean", "std", "runs"}``: sample std (ddof=1) over the runs that have a
    value, 0.0 for a single value, ``None`` for none. Per-class accuracy counts only the runs in
    which the class was evaluated; ``map`` and ``centroid_distance`` appear when some run has them.
    """
    if not runs:
        raise InputError(
            "no runs to summarise: the list of results is empty", hint="give at least one prediction store"
        )
    names = [row["name"] for row in runs[0]["per_class"]]
    for i, run in enumerate(runs[1:], start=2):
        other = [row["name"] for row in run["per_class"]]
        if other != names:
            raise InputError(
                f"run {i} has classes {other}, expected those of run 1: {names}",
                hint="summarise predictions of the same scene, with the same classes",
            )
    summary: dict = {"runs": len(runs)}
    for key, _ in OVERALL_SCORES + OPTIONAL_SCORES:
        values = [run[key] for run in runs if run.get(key) is not None]
        if values or key not in _OPTIONAL_KEYS:
            summary[key] = _stats(values)
    accuracies = [[run["per_class"][k]["accuracy"] for run in runs] for k in range(len(names))]
    summary["per_class"] = [
        {"name": name, "accuracy": _stats([a for a in values if a is not None])}
        for name, values in zip(names, accuracies)
    ]
    for k, row in enumerate(summary["per_class"]):
        if any(run["per_class"][k].get("dropped") for run in runs):
            row["dropped"] = True
    return summary


# --- computation -------------------------------------------------------------------------------


def _overall_scores(confusion: np.ndarray) -> dict:
    """OA, κ, MCC and ARI from exact integer sums of the confusion matrix (no overflow, no 0/0)."""
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    n = int(support.sum())
    correct = int(np.trace(confusion))
    chance = int(support @ predicted)  # n² · p_e
    true_sq = int(support @ support)
    pred_sq = int(predicted @ predicted)
    cell_sq = int((confusion * confusion).sum())

    # κ = (p_o − p_e) / (1 − p_e), scaled by n²; zero denominator ⇔ one shared class ⇒ agreement.
    kappa_den = n * n - chance
    kappa = (n * correct - chance) / kappa_den if kappa_den else 1.0

    # MCC (Gorodkin 2004), the form scikit-learn uses.
    cov_pp = n * n - pred_sq
    cov_tt = n * n - true_sq
    if cov_pp and cov_tt:
        mcc = (n * correct - chance) / math.sqrt(cov_pp * cov_tt)
    else:
        mcc = 1.0 if correct == n else 0.0

    # ARI from pair counts (ordered pairs, Hubert & Arabie 1985): together in both / in one only.
    both = cell_sq - n
    pred_only = pred_sq - cell_sq
    true_only = true_sq - cell_sq
    neither = n * n - pred_only - true_only - cell_sq
    if pred_only == 0 and true_only == 0:
        ari = 1.0
    else:
        ari = 2.0 * (both * neither - true_only * pred_only) / (
            (both + true_only) * (true_only + neither) + (both + pred_only) * (pred_only + neither)
        )
    return {"oa": correct / n, "kappa": float(kappa), "mcc": float(mcc), "ari": float(ari)}


def _average_precision(scores: np.ndarray, y_true: np.ndarray, present: np.ndarray) -> list[float | None]:
    """One-vs-rest AP per class: Σ_thresholds (R_i − R_{i−1}) · P_i, ties forming one threshold.

    One vectorised pass per class (C is small); classes absent from y_true get None.
    """
    ap: list[float | None] = [None] * scores.shape[1]
    for k in np.flatnonzero(present):
        order = np.argsort(-scores[:, k], kind="stable")
        ranked = scores[order, k]
        # Last position of each run of equal scores: one threshold per distinct score.
        ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
        true_pos = np.cumsum(y_true[order] == k)[ends]
        precision = true_pos / (ends + 1)
        recall_step = np.diff(true_pos, prepend=0) / true_pos[-1]
        # A mean of precisions weighted by recall steps that sum to 1: at most 1, bar rounding
        # (1327 steps of 1/1327 add up to 1 + 9e-16), which a metrics file must not carry.
        ap[k] = min(float(recall_step @ precision), 1.0)
    return ap


def _centroid_distance(embeddings: np.ndarray, y_true: np.ndarray, present: np.ndarray) -> float | None:
    """Mean pairwise Euclidean distance between the centroids of the classes present (float64)."""
    classes = np.flatnonzero(present)
    if classes.size < 2:
        return None
    # One vectorised mean per class: a float64 one-hot product would copy the whole (N, D) array.
    centroids = np.stack([embeddings[y_true == k].mean(axis=0, dtype=np.float64) for k in classes])
    upper_i, upper_j = np.triu_indices(classes.size, k=1)
    return float(np.linalg.norm(centroids[upper_i] - centroids[upper_j], axis=1).mean())


# --- validation and formatting helpers ---------------------------------------------------------


def _class_indices(values: np.ndarray, what: str, n_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"{what} must be a 1-D array of integer class indices, "
            f"found shape {array.shape} of {array.dtype}",
            hint="pass the class indices (label value − 1) of the evaluated pixels",
        )
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= n_classes:
            raise InputError(
                f"{what} holds class index {low if low < 0 else high}, "
                f"expected 0..{n_classes - 1} ({n_classes} classes)",
                hint="check that the prediction and the reference labels share the scene and its classes",
            )
    return array.astype(np.int64, copy=False)


def _float_matrix(values: np.ndarray, what: str, n: int, columns: int | None) -> np.ndarray:
    array = np.asarray(values)
    expected = f"({n}, {columns})" if columns is not None else f"({n}, D)"
    if (
        array.ndim != 2
        or array.shape[0] != n
        or (columns is not None and array.shape[1] != columns)
        or not np.issubdtype(array.dtype, np.number)
    ):
        raise InputError(
            f"{what} must be a numeric array of shape {expected}, found shape {array.shape} of {array.dtype}",
            hint=f"pass the {what} of the same pixels as y_true, one row per pixel",
        )
    if not np.isfinite(array).all():
        raise InputError(
            f"{what} contain NaN or infinite values",
            hint="the model diverged or the prediction store is damaged; re-run predict",
        )
    return array


def _check_names(class_names: list[str] | None, n_classes: int) -> list[str]:
    if class_names is None:
        return [f"class {k + 1}" for k in range(n_classes)]
    if len(class_names) != n_classes:
        raise InputError(
            f"expected {n_classes} class names, found {len(class_names)}",
            hint="class names must match the scene store's classes",
        )
    return [str(name) for name in class_names]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "runs": 0}
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "runs": int(array.size)}
