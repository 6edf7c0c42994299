"""Pseudo-labels of HSIseg (../shared/papers/002_e54cedfdb6e864cf.txt §3.5), built from a prediction.

The threshold rule T = max(τ, μ + σ) is the DFS module's (hsicli.models.thresholds).
- `pseudo_threshold`, `pseudo_layer` / `pseudolabel`: eqs. 47-53 — the threshold of one round's
  prediction, the pixels whose maximum probability reaches it, the new label layer (class ids,
  original training labels kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.errors import HsiError, StoreError
from hsicli.models.thresholds import adaptive_threshold
from hsicli.store.provenance import API_COMMAND


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
# The rule that drew a round's labels, the same for every round and seed of one run (its setup).
RULE_FIELDS = ("tau_base", "zeta", "includes_eval_locations")


def pseudo_label_record(store, labels_name: str | None) -> dict[str, Any]:
    """What a checkpoint records of the pseudo-labels it was trained on: `pseudo_round` (0 for the
    split's labels alone, so the initial model and every round sit on one `hsi plot sweep --x
    training.pseudo_round` axis) and the round's threshold and counts."""
    if not labels_name:
        return {"pseudo_round": 0}
    attrs = store.layer_attrs("labels", labels_name)
    return {"pseudo_round": attrs.get("round", 0),
            "pseudo_labels": {key: attrs.get(key) for key in (*ROUND_FIELDS, *RULE_FIELDS)}}


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


def default_layer_name(checkpoint_sha256: str | None, options: PseudolabelOptions) -> str:
    """`pseudoK-<8 hex of the source checkpoint>`, then the rule's settings that differ from the
    defaults (`-tau0.8`, `-zeta0.01`, `-eval`): one name per (model, round, rule), short enough to
    sit inside the checkpoint names of later rounds, and stable, so a re-run is a no-op and rounds
    of other rules from one model (a sweep over τ2) do not collide."""
    digest = checkpoint_sha256 or "unknown"
    default = PseudolabelOptions()
    rule = [f"tau{options.tau:g}" if options.tau != default.tau else "",
            f"zeta{options.zeta:g}" if options.zeta != default.zeta else "",
            "eval" if options.include_eval else ""]
    return "-".join([f"pseudo{options.round}", digest[:8], *filter(None, rule)])


def pseudolabel(prediction: Path, options: PseudolabelOptions, *, command: str = API_COMMAND) -> PseudolabelResult:
    """Build and store round `options.round`'s pseudo-label layer from a prediction store."""
    from hsicli.data.splits import TEST, TRAIN, VAL
    from hsicli.store.prediction import PredictionStore
    from hsicli.store.provenance import record as provenance
    from hsicli.store.scene import SceneStore

    tau = round_tau(options.tau, options.zeta, options.round)
    pred = PredictionStore.open(Path(prediction))
    if pred.pixel_set != "all":  # its unclassified pixels would skew μ and σ
        raise StoreError(f"{pred.path} classifies only the {pred.pixel_set} pixels; pseudo-labels "
                         "need every pixel's probabilities", hint="predict again with --pixels all")
    probabilities = pred.probabilities()
    if probabilities is None:
        raise StoreError(f"{pred.path} holds no class probabilities",
                         hint="predict again without --no-probabilities")
    non_finite = probabilities.size - int(np.count_nonzero(np.isfinite(probabilities)))
    if non_finite:  # a threshold over NaN is NaN, and every comparison with it is false
        raise StoreError(f"{pred.path} holds {non_finite} non-finite class probabilities (NaN or inf)",
                         hint="the model that made it is damaged; train and predict again")
    store = SceneStore.open(pred.scene_path or Path())
    if pred.scene_fingerprint != store.fingerprint:
        raise StoreError(f"the scene store {store.path} changed since {pred.path.name} was predicted",
                         hint="predict the scene again")
    if probabilities.shape != (*store.shape[:2], store.n_classes):
        raise StoreError(
            f"{pred.path} has probabilities {probabilities.shape}, the scene {store.path} is "
            f"{store.shape[0]} × {store.shape[1]} with {store.n_classes} classes",
            hint="pseudo-label a prediction of this scene",
        )
    split_name = pred.split
    if not split_name:
        raise StoreError(f"{pred.path} does not name the split its model was trained on",
                         hint="pseudo-label a prediction made by `hsi predict` from a trained checkpoint")
    split = store.read_layer("splits", split_name).data
    gt = store.gt()
    train_labels = np.where((split == TRAIN) & (gt > 0), gt, 0)
    evaluation = (split == VAL) | (split == TEST)
    layer = pseudo_layer(probabilities, train_labels, evaluation, tau=tau, include_eval=options.include_eval)
    name = options.name or default_layer_name(pred.checkpoint_sha256, options)
    attrs = {
        **layer.record,
        "kind": "pseudo-labels",
        "round": options.round,
        "tau_base": options.tau,
        "zeta": options.zeta,
        "split": split_name,
        "source_prediction": str(pred.path.absolute()),
        "source_checkpoint": (pred.checkpoint or {}).get("path"),
        "model": pred.model,
        "class_names": store.class_names,
        "provenance": provenance(command, {"prediction": {**pred.as_input(),
                                                           "checkpoint": pred.checkpoint}}),
    }
    path = store.add_layer("labels", name, layer.labels, attrs)
    return PseudolabelResult(path, name, {**layer.record, "round": options.round, "tau_base": options.tau,
                                          "zeta": options.zeta})


