"""Segmenter-specific engine code (HSIseg, ../shared/papers/002_e54cedfdb6e864cf.txt §3.3.4, §3.5).

- `adaptive_threshold`: the rule T = max(τ, μ + σ) shared by the DFS masks (eqs. 24-26) and the
  pseudo-labels (eqs. 49-51). The paper calls τ an "upper bound" (τ ≥ T ≥ μ + σ), yet its only
  stated rule is "if τ ≤ μ + σ, T = μ + σ", its τ sweeps change the results, and τ grows by ζ
  every round (eq. 53): read together, T = max(τ, μ + σ). σ is the population deviation (eq. 24).
- `predict_windows`: full-scene prediction by overlapping S×S windows on a grid anchored at the
  scene origin, blended with a smooth Hann weight. A row block reads only the halo its windows
  need, so predicting a scene block by block (or shard by shard) equals predicting it whole.
- `pseudo_threshold`, `pseudo_layer` / `pseudolabel`: eqs. 47-53 — the threshold of one round's
  prediction, the pixels whose maximum probability reaches it, the new label layer (class ids,
  original training labels kept).
- `progressive`: the train → predict → pseudolabel loop of Fig. 5, keeping every round's artifacts.
- `scene_inputs`: the model input of a scene, the cube with the auxiliary rasters appended as extra
  channels when the model reads them (`aux_bands` > 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.errors import HsiError, StoreError
from hsicli.store.provenance import API_COMMAND


def adaptive_threshold(confidence, tau: float, axis=None):
    """T = max(τ, μ + σ) of a map of maximum class probabilities, over `axis` (kept as size 1).

    Works on numpy arrays and torch tensors alike, so the DFS module (per window, in torch) and
    the pseudo-labels (whole scene, in numpy) share one rule.
    """
    mean = confidence.mean(axis=axis, keepdims=True)
    std = ((confidence - mean) ** 2).mean(axis=axis, keepdims=True) ** 0.5
    return (mean + std).clip(min=tau)


# -- model inputs -------------------------------------------------------------------------------


def scene_inputs(store, aux_bands: int, rows: slice = slice(None)) -> np.ndarray:
    """Rows of the scene as the model reads them: (h, W, T) cube, or (h, W, T + K) with aux rasters.

    HSIseg's auxiliary branch (§3.4) receives the K co-registered rasters of `hsi prep --aux` as
    channels after the T reduced bands; the model splits them again (its `aux_bands` argument).
    """
    cube = store.cube(rows)
    if not aux_bands:
        return cube
    aux = store.aux()
    if aux is None:
        raise StoreError(
            f"the model reads {aux_bands} auxiliary band(s) but {store.path} has no auxiliary rasters",
            hint="prep the scene with --aux FILE, or train with sources 'hsi' and aux_bands 0",
        )
    if aux.shape[2] != aux_bands:
        raise StoreError(
            f"the model reads {aux_bands} auxiliary band(s), {store.path} has {aux.shape[2]}",
            hint=f'set --model-args \'{{"aux_bands": {aux.shape[2]}}}\'',
        )
    return np.concatenate([cube, aux[rows]], axis=2)


# -- window prediction --------------------------------------------------------------------------


def default_stride(window: int) -> int:
    """Half a window: every pixel is seen by about four windows, and Hann weights of windows
    half a period apart sum to a constant."""
    return max(1, window // 2)


def hann_weights(window: int) -> np.ndarray:
    """(S, S) blending weight sin²(π (i + ½) / S) ⊗ itself: largest at the centre, small but
    positive at the edges, so every pixel a window covers gets some weight."""
    ramp = np.sin(np.pi * (np.arange(window) + 0.5) / window) ** 2
    return np.outer(ramp, ramp).astype(np.float32)


def window_centres(length: int, stride: int) -> np.ndarray:
    """Centres 0, s, 2s, … up to the first at or past length − 1: a grid anchored at the scene's
    origin, so any block of rows finds the same windows, and the last row is covered."""
    return np.arange(math.ceil((length - 1) / stride) + 1) * stride


def reflect(index: np.ndarray, length: int) -> np.ndarray:
    """Scene coordinates of (possibly outside) indices under reflect padding (numpy's "reflect",
    the padding the training sampler uses), for any distance from the border."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    folded = np.mod(index, period)
    return np.where(folded >= length, period - folded, folded)


def predict_windows(
    model,
    read_rows: Callable[[slice], np.ndarray],
    *,
    height: int,
    width: int,
    top: int,
    bottom: int,
    window: int,
    stride: int,
    batch_size: int,
    device,
    amp: bool = False,
) -> np.ndarray:
    """Class probabilities (bottom − top, width, C) of scene rows [top, bottom) from a segmenter.

    `read_rows(rows)` returns a slice of scene rows as (h, width, bands) float32 — `store.cube`,
    or `scene_inputs` for a model with auxiliary bands — and is called once, for the rows the
    block's windows need (the block and its halo).
    Windows are S×S, centred on a grid of step `stride` anchored at the scene origin, reflect-padded
    at the border exactly like training windows; each window's softmax is weighted by
    `hann_weights` and the weighted sum is divided by the summed weights. Only windows that overlap
    the block are run, in a fixed order, so a block equals the same rows of a whole-scene call.
    """
    import torch
    import torch.nn.functional as F

    from hsicli.models.precision import autocast

    if window % 2 == 0 or window < 1:
        raise HsiError(f"window size must be odd and positive, got {window}", hint="use e.g. 33")
    if not 1 <= stride <= window:
        raise HsiError(f"window stride must be in 1..{window}, got {stride}",
                       hint="a stride below the window size makes windows overlap")
    radius = window // 2
    row_centres = window_centres(height, stride)
    row_centres = row_centres[(row_centres + radius >= top) & (row_centres - radius <= bottom - 1)]
    col_centres = window_centres(width, stride)
    offsets = np.arange(-radius, radius + 1)
    row_source = reflect(row_centres[:, None] + offsets, height)  # (n_r, S) scene rows per window
    col_source = reflect(col_centres[:, None] + offsets, width)  # (n_c, S)
    low, high = int(row_source.min()), int(row_source.max())
    block = np.ascontiguousarray(read_rows(slice(low, high + 1)), dtype=np.float32)
    row_local = row_source - low

    n_r, n_c = len(row_centres), len(col_centres)
    grid_r, grid_c = np.divmod(np.arange(n_r * n_c), n_c)  # windows in row-major order
    weights = torch.from_numpy(hann_weights(window)).to(device)
    weighted = []
    with torch.no_grad(), autocast(device, amp):
        for start in range(0, n_r * n_c, batch_size):
            sl = slice(start, start + batch_size)
            patches = block[row_local[grid_r[sl]][:, :, None], col_source[grid_c[sl]][:, None, :]]  # (B, S, S, T)
            x = torch.from_numpy(patches).permute(0, 3, 1, 2).to(device)
            probabilities = torch.softmax(model(x).float(), dim=1)
            weighted.append(probabilities * weights)
    stacked = torch.cat(weighted)  # (n_r·n_c, C, S, S)
    classes = stacked.shape[1]
    # col2im: the weighted windows summed into the canvas the window grid spans.
    canvas = ((n_r - 1) * stride + window, (n_c - 1) * stride + window)
    numerator = F.fold(stacked.flatten(1).T.unsqueeze(0), canvas, window, stride=stride)[0]
    coverage = weights.flatten()[:, None].expand(-1, n_r * n_c).unsqueeze(0)
    denominator = F.fold(coverage, canvas, window, stride=stride)[0]
    # The canvas starts at scene row (first centre − radius) and column −radius.
    first = int(row_centres[0]) - radius
    rows = slice(top - first, bottom - first)
    cols = slice(radius, radius + width)
    blended = numerator[:, rows, cols] / denominator[:, rows, cols]
    return blended.permute(1, 2, 0).cpu().numpy().reshape(bottom - top, width, classes)


# -- pseudo-labels (§3.5) -----------------------------------------------------------------------


def pseudo_threshold(probabilities: np.ndarray, tau: float) -> tuple[float, float]:
    """(T2, μ2 + σ2) of eqs. 49-50 for class probabilities (H, W, C): T2 = max(τ2, μ2 + σ2).

    μ2 and σ2 are taken over the whole probability map O (every class probability of every pixel,
    "the mean value and standard deviation of the probability map"), not over the per-pixel maxima
    Ŷ they are compared with. Over the maxima the rule cannot work on real data: a good model's
    maxima crowd near 1 with a tail of doubtful pixels, so μ + σ exceeds 1 (SalinasA: 1.05) and no
    pixel is ever admitted, which contradicts the paper's Table 9 and Figs. 17-21 (pixels added
    every round) and Fig. 16 (τ2 between 0.7 and 0.9 changes the result; 0.1 and 0.4 "fall below the
    statistical threshold"). Over O, μ2 = 1/C and μ2 + σ2 ≤ (1 + √(C − 1))/C, below 1 from 3 classes
    on (0.80 for 3, 0.54 for 6, 0.30 for 16): a confident map of 4 or more classes is thresholded at
    τ2 = 0.7-0.9, a diffuse one at its own statistic.
    """
    statistic = adaptive_threshold(np.asarray(probabilities, dtype=np.float64), 0.0).item()
    return max(tau, statistic), statistic


@dataclass
class PseudoLayer:
    labels: np.ndarray  # (H, W) uint16 class ids, 0 = none
    record: dict[str, Any]


def pseudo_layer(
    probabilities: np.ndarray,
    train_labels: np.ndarray,
    evaluation: np.ndarray,
    *,
    tau: float,
    include_eval: bool = False,
) -> PseudoLayer:
    """Eqs. 48-52 on one round's prediction.

    `probabilities` (H, W, C) of the whole scene; `train_labels` (H, W) class ids at the training
    pixels of the split, 0 elsewhere; `evaluation` (H, W) bool, the validation and test pixels.
    Pixels whose maximum probability (eq. 48) reaches `pseudo_threshold` (eqs. 49-50) get their
    argmax class id (eqs. 51-52). The layer is built from this prediction alone (not accumulated). Training pixels
    always keep their original label; validation and test pixels get a predicted label only with
    `include_eval` (the paper labels every pixel) — never their true label, which is not an input.
    """
    confidence = probabilities.max(axis=2)
    threshold, statistic = pseudo_threshold(probabilities, tau)
    predicted = probabilities.argmax(axis=2) + 1
    train = train_labels > 0
    eligible = ~train if include_eval else ~train & ~evaluation
    selected = (confidence >= threshold) & eligible
    labels = np.where(train, train_labels, np.where(selected, predicted, 0)).astype(np.uint16)
    classes = probabilities.shape[2]
    added = np.bincount(predicted[selected], minlength=classes + 1)[1:]
    record = {
        "tau": tau,
        "mean_plus_std": statistic,
        "threshold": threshold,
        "confidence_mean": float(confidence.mean()),
        "confidence_std": float(confidence.std()),
        "confidence_max": float(confidence.max()),
        # The threshold comes from the whole scene (eq. 49); only eligible pixels can be added.
        # The statistic of the maxima, which the threshold no longer uses, stays for comparison.
        "eligible_confidence_max": float(confidence[eligible].max()) if eligible.any() else None,
        "added": int(selected.sum()),
        "added_per_class": [int(n) for n in added],
        "training_pixels": int(train.sum()),
        "includes_eval_locations": include_eval,
    }
    return PseudoLayer(labels, record)


ROUND_FIELDS = ("round", "tau", "mean_plus_std", "threshold", "added", "added_per_class")


def pseudo_label_record(store, labels_name: str | None) -> dict[str, Any]:
    """What a checkpoint records of the pseudo-labels it was trained on: `pseudo_round` (0 for the
    split's labels alone, so the initial model and every round sit on one `hsi plot sweep --x
    training.pseudo_round` axis) and the round's threshold and counts."""
    if not labels_name:
        return {"pseudo_round": 0}
    attrs = store.layer_attrs("labels", labels_name)
    return {"pseudo_round": attrs.get("round", 0),
            "pseudo_labels": {key: attrs.get(key) for key in ROUND_FIELDS}}


@dataclass
class PseudolabelOptions:
    tau: float = 0.7
    zeta: float = 0.005
    round: int = 1
    name: str | None = None
    include_eval: bool = False


@dataclass
class PseudolabelResult:
    path: Path  # STORE/labels/NAME
    name: str
    record: dict[str, Any]


def round_tau(tau: float, zeta: float, round_number: int) -> float:
    """τ2 of round K (eq. 53): τ + ζ·(K − 1), so round 1 uses τ itself."""
    if round_number < 1:
        raise HsiError(f"there is no round {round_number}: rounds count from 1", hint="number the rounds 1, 2, …")
    return tau + zeta * (round_number - 1)


def default_layer_name(prediction_attrs: dict[str, Any], round_number: int) -> str:
    """`pseudoK-<8 hex of the source checkpoint>`: one name per (model, round), short enough to
    sit inside the checkpoint names of later rounds, and stable, so a re-run is a no-op."""
    digest = (prediction_attrs.get("checkpoint") or {}).get("sha256") or "unknown"
    return f"pseudo{round_number}-{digest[:8]}"


def pseudolabel(prediction: Path, options: PseudolabelOptions, *, command: str = API_COMMAND) -> PseudolabelResult:
    """Build and store round `options.round`'s pseudo-label layer from a prediction store."""
    from hsicli.data.splits import TEST, TRAIN, VAL
    from hsicli.store.prediction import PredictionStore
    from hsicli.store.provenance import record as provenance
    from hsicli.store.scene import SceneStore

    tau = round_tau(options.tau, options.zeta, options.round)
    pred = PredictionStore.open(Path(prediction))
    if pred.attrs.get("pixel_set", "all") != "all":  # its unclassified pixels would skew μ and σ
        raise StoreError(f"{pred.path} classifies only the {pred.attrs['pixel_set']} pixels; pseudo-labels "
                         "need every pixel's probabilities", hint="predict again with --pixels all")
    probabilities = pred.probabilities()
    if probabilities is None:
        raise StoreError(f"{pred.path} holds no class probabilities",
                         hint="predict again without --no-probabilities")
    non_finite = probabilities.size - int(np.count_nonzero(np.isfinite(probabilities)))
    if non_finite:  # a threshold over NaN is NaN, and every comparison with it is false
        raise StoreError(f"{pred.path} holds {non_finite} non-finite class probabilities (NaN or inf)",
                         hint="the model that made it is damaged; train and predict again")
    source = pred.attrs.get("scene_store") or {}
    store = SceneStore.open(Path(source.get("path", "")))
    if source.get("fingerprint") != store.fingerprint:
        raise StoreError(f"the scene store {store.path} changed since {pred.path.name} was predicted",
                         hint="predict the scene again")
    if probabilities.shape != (*store.shape[:2], store.n_classes):
        raise StoreError(
            f"{pred.path} has probabilities {probabilities.shape}, the scene {store.path} is "
            f"{store.shape[0]} × {store.shape[1]} with {store.n_classes} classes",
            hint="pseudo-label a prediction of this scene",
        )
    split_name = pred.attrs.get("split")
    if not split_name:
        raise StoreError(f"{pred.path} does not name the split its model was trained on",
                         hint="pseudo-label a prediction made by `hsi predict` from a trained checkpoint")
    split = store.read_layer("splits", split_name).data
    gt = store.gt()
    train_labels = np.where((split == TRAIN) & (gt > 0), gt, 0)
    evaluation = (split == VAL) | (split == TEST)
    layer = pseudo_layer(probabilities, train_labels, evaluation, tau=tau, include_eval=options.include_eval)
    name = options.name or default_layer_name(pred.attrs, options.round)
    attrs = {
        **layer.record,
        "kind": "pseudo-labels",
        "round": options.round,
        "tau_base": options.tau,
        "zeta": options.zeta,
        "split": split_name,
        "source_prediction": str(pred.path.absolute()),
        "source_checkpoint": (pred.attrs.get("checkpoint") or {}).get("path"),
        "model": pred.attrs.get("model"),
        "class_names": store.class_names,
        "provenance": provenance(command, {"prediction": {**pred.as_input(),
                                                           "checkpoint": pred.attrs.get("checkpoint")}}),
    }
    path = store.add_layer("labels", name, layer.labels, attrs)
    return PseudolabelResult(path, name, layer.record)


# -- progressive learning (Fig. 5) --------------------------------------------------------------


@dataclass
class ProgressiveOptions:
    pseudo: PseudolabelOptions = field(default_factory=PseudolabelOptions)
    iterations: int = 1
    epochs: int | None = None  # per round; None = the first checkpoint's epochs
    device: str = "auto"
    threads: int | None = None


@dataclass
class RoundResult:
    round: int
    labels: PseudolabelResult
    checkpoint: Path
    prediction: Path
    trained: bool = True  # False: the round labelled no pixel and kept the previous model
    oa: float | None = None  # of `prediction` on the split's test pixels (None: the split has none)

    def to_dict(self) -> dict[str, Any]:
        return {**{key: self.labels.record.get(key) for key in ROUND_FIELDS}, "round": self.round,
                "oa": self.oa, "trained": self.trained, "labels": str(self.labels.path),
                "checkpoint": str(self.checkpoint), "prediction": str(self.prediction)}


def test_accuracy(prediction: Path) -> float | None:
    """OA of a prediction on its split's test pixels; None when the split has none."""
    from hsicli.engine.evaluate import evaluate_prediction, test_pixels
    from hsicli.store.prediction import PredictionStore

    try:
        test_pixels(PredictionStore.open(prediction))
    except HsiError:
        return None
    return evaluate_prediction(prediction)["oa"]


def progressive(
    prediction: Path,
    options: ProgressiveOptions,
    *,
    command: str = API_COMMAND,
    on_labels: Callable[[PseudolabelResult], None] = lambda result: None,
    on_message: Callable[[str], None] = lambda message: None,
) -> list[RoundResult]:
    """`iterations` rounds of pseudolabel → train (from the previous weights) → predict.

    Round K labels the scene from the previous round's prediction with τ + ζ·(K − 1), fine-tunes
    the previous checkpoint on those labels (its whole run record is repeated: model, arguments,
    split, seed and every training setting; only `epochs` per round may differ) and predicts the
    scene.
    A round whose mask is empty (no eligible pixel reaches the threshold) keeps the
    previous checkpoint and prediction instead of fine-tuning on the training labels alone.
    Every round's layer, checkpoint and prediction stay on disk under their default names, and a
    re-run reuses the rounds already done (same layer, same training request, same checkpoint) and
    resumes a round's interrupted training after its last finished epoch.
    """
    from dataclasses import replace

    from hsicli.engine.predict import PredictOptions, default_prediction_path, predict
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import Checkpoint, load_arrays
    from hsicli.store.prediction import PredictionStore
    from hsicli.store.provenance import file_sha256
    from hsicli.store.scene import SceneStore

    results: list[RoundResult] = []
    current = Path(prediction)

    def checkpoint_of(prediction_store: Path) -> Path:
        return Path((PredictionStore.open(prediction_store).attrs.get("checkpoint") or {}).get("path", ""))

    if checkpoint_of(current).is_file():  # a round that labels nothing keeps it as it is: refuse NaN weights first
        load_arrays(checkpoint_of(current))
    for step in range(options.iterations):
        round_number = options.pseudo.round + step
        name = options.pseudo.name
        if name and options.iterations > 1:
            name = f"{name}-{round_number}"
        labels = pseudolabel(current, replace(options.pseudo, round=round_number, name=name), command=command)
        on_labels(labels)
        checkpoint = checkpoint_of(current)
        if labels.record["added"] == 0:
            # Eq. 52 with an empty mask leaves the training labels alone: fine-tuning on them adds no
            # information, only optimiser noise, so the round keeps the current model.
            on_message(f"round {round_number} labelled no pixel: keeping {checkpoint.name}")
            results.append(RoundResult(round_number, labels, checkpoint, current, trained=False,
                                       oa=test_accuracy(current)))
            continue
        # The round repeats the run of the checkpoint it continues (`hsi train --like`), on the new
        # labels, from its weights; a killed round resumes from its state file when run again.
        trained = train(
            Path(Checkpoint.open(checkpoint).source_store["path"]),
            TrainOptions(like=checkpoint, labels=labels.name, init=checkpoint, epochs=options.epochs,
                         device=options.device, threads=options.threads, resume=True),
            command=command,
            on_message=on_message,
        )
        model = Checkpoint.open(trained.path)
        store = SceneStore.open(Path(model.source_store["path"]))
        existing = default_prediction_path(trained.path, store, True)
        if existing.exists() and (PredictionStore.open(existing).attrs.get("checkpoint") or {}).get(
                "sha256") == file_sha256(trained.path):
            on_message(f"{existing} is up to date")
            current = existing
        else:
            current = predict(trained.path, PredictOptions(device=options.device, threads=options.threads,
                                                           amp=model.record.amp),
                              command=command, on_message=on_message).path
        results.append(RoundResult(round_number, labels, trained.path, current, oa=test_accuracy(current)))
    return results
