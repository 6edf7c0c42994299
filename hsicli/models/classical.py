"""Classical baselines on centre spectra: SVM (RBF), random forest and gradient boosting.

CLAReSNet (Tables III-IV) compares against Random Forest and XGBoost on PCA-reduced spectra
and cites SVMs with kernels as the classical reference (§II, ref. [6], Melgani & Bruzzone
2004). All take one spectrum per pixel (patch 1) and are scikit-learn estimators; `xgboost`
needs the optional extra (`pip install 'hsicli[xgboost]'`), and `gboost` is scikit-learn's
stand-in for it where the extra is absent.

Their fitted state is stored without pickle: `estimator_to_arrays` turns a fitted estimator
into plain numeric arrays plus JSON metadata (written into a safetensors checkpoint), and
`estimator_from_arrays` rebuilds a fitted estimator whose `predict` and `predict_proba` are
bit-identical to the original's. The rebuild sets scikit-learn's private fitted attributes,
so it is tied to the scikit-learn minor version recorded in the metadata. An XGBoost model is
stored as its booster in XGBoost's own UBJSON format (bytes in a uint8 array), which later
XGBoost versions read.

The class map of an SVM is its one-vs-one vote, `predict()`: its probabilities come from
Platt scaling fitted by an internal cross-validation and pairwise coupling, and their argmax
can disagree with the vote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hsicli.errors import HsiError
from hsicli.models.kinds import SPECTRAL
from hsicli.models.registry import TrainDefaults, register_model

FORMAT = "hsicli.classical/1"

# Classical models see one spectrum per pixel; the optimiser settings do not apply to them.
_SPECTRAL_DEFAULTS = TrainDefaults(patch=1)
_STATE_HINT = "the checkpoint is damaged or was not written by `hsi train`; train the model again"


def _estimator(cls: type, settings: dict[str, Any], params: dict[str, Any]) -> Any:
    """`cls(**settings, **params)`, with the builder's fixed settings protected and the values
    checked now, so that a bad `--model-args` fails before any data is read."""
    clash = sorted(settings.keys() & params.keys())
    if clash:
        raise HsiError(
            f"--model-args may not set {', '.join(clash)} for {cls.__name__}: hsi sets it",
            hint="use --seed for the random state; probabilities are always enabled",
        )
    # An unknown keyword raises TypeError here, which `create_model` reports as a clear error.
    estimator = cls(**settings, **params)
    try:
        estimator._validate_params()
    except ValueError as exc:  # sklearn's InvalidParameterError
        raise HsiError(f"invalid model argument: {exc}", hint="fix --model-args") from None
    return estimator


@register_model(
    "svm",
    kind=SPECTRAL,
    paper="SVM, RBF kernel (CLAReSNet §II ref. [6], Melgani & Bruzzone 2004)",
    defaults=_SPECTRAL_DEFAULTS,
    arguments={},  # the builder's own; other keywords are scikit-learn's, stored with the fitted estimator
)
def svm(
    bands: int,
    classes: int,
    *,
    seed: int = 0,
    C: float = 100.0,
    gamma: float | str = "scale",
    kernel: str = "rbf",
    **params: Any,
) -> Any:
    """SVM with an RBF kernel on centre spectra; class map from its one-vs-one vote.

    `gamma="scale"` is 1 / (bands · Var(X)), so the kernel width follows the data's scale.
    Probabilities are libsvm's Platt scaling (fitted by 5-fold cross-validation, seeded).
    Other keyword arguments go to `sklearn.svm.SVC`.
    """
    from sklearn.svm import SVC

    settings = {"kernel": kernel, "C": C, "gamma": gamma, "probability": True, "random_state": seed}
    return _estimator(SVC, settings, params)


@register_model(
    "rf",
    kind=SPECTRAL,
    paper="Random forest (CLAReSNet Tables III-IV baseline)",
    defaults=_SPECTRAL_DEFAULTS,
    arguments={},  # the builder's own; other keywords are scikit-learn's, stored with the fitted estimator
)
def rf(
    bands: int,
    classes: int,
    *,
    seed: int = 0,
    n_estimators: int = 200,
    max_depth: int | None = None,
    max_features: str | float | int = "sqrt",
    n_jobs: int | None = None,
    **params: Any,
) -> Any:
    """Random forest of 200 trees on centre spectra, grown to full depth, √bands features tried per split.

    `n_jobs` speeds up training without changing the trees; a restored forest predicts on one
    thread (see `estimator_from_arrays`). Other keyword arguments go to
    `sklearn.ensemble.RandomForestClassifier`.
    """
    from sklearn.ensemble import RandomForestClassifier

    settings = {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "max_features": max_features,
        "n_jobs": n_jobs,
        "random_state": seed,
    }
    return _estimator(RandomForestClassifier, settings, params)


@register_model(
    "gboost",
    kind=SPECTRAL,
    paper="Gradient boosting, stand-in for XGBoost (CLAReSNet Tables III-IV baseline)",
    defaults=_SPECTRAL_DEFAULTS,
    arguments={},  # the builder's own; other keywords are scikit-learn's, stored with the fitted estimator
)
def gboost(
    bands: int,
    classes: int,
    *,
    seed: int = 0,
    max_iter: int = 100,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 31,
    max_depth: int | None = None,
    **params: Any,
) -> Any:
    """Histogram gradient boosting on centre spectra, standing in for CLAReSNet's XGBoost.

    scikit-learn's `HistGradientBoostingClassifier` is the same family of second-order
    boosted trees on binned features (LightGBM-style); `xgboost` itself is an optional extra.
    One tree per class and iteration. Other keyword arguments go to the estimator.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    settings = {
        "max_iter": max_iter,
        "learning_rate": learning_rate,
        "max_leaf_nodes": max_leaf_nodes,
        "max_depth": max_depth,
        "random_state": seed,
    }
    return _estimator(HistGradientBoostingClassifier, settings, params)


XGBOOST_HINT = "install the extra: pip install 'hsicli[xgboost]' (or use --model gboost)"


def _xgboost_module() -> Any:
    try:
        import xgboost
    except ImportError:
        raise HsiError("model xgboost needs the xgboost package, which is not installed",
                       hint=XGBOOST_HINT) from None
    return xgboost


class XGBoostClassifier:
    """xgboost's `XGBClassifier` on any integer labels: XGBoost learns codes 0..k-1 of the
    labels it was given, so a class missing from the training pixels is simply absent from
    `classes_`, as with the scikit-learn baselines. `params` go to `XGBClassifier`."""

    def __init__(self, **params: Any):
        self.params = params
        self.booster_model = _xgboost_module().XGBClassifier(**params)

    def _validate_params(self) -> None:
        # XGBoost only warns, at fit time, about a parameter it does not know.
        known = type(self.booster_model)().get_params().keys()  # a fresh one: its own, without extras
        unknown = sorted(self.params.keys() - known)
        if unknown:
            raise ValueError(f"XGBClassifier has no parameter {', '.join(unknown)}")

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return dict(self.params)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "XGBoostClassifier":
        classes, codes = np.unique(y, return_inverse=True)
        self.booster_model.fit(X, codes)
        self.classes_, self.n_features_in_ = classes, X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.booster_model.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@register_model(
    "xgboost",
    kind=SPECTRAL,
    paper="XGBoost (CLAReSNet Tables III-IV baseline)",
    defaults=_SPECTRAL_DEFAULTS,
    arguments={},  # the builder's own; other keywords are XGBoost's, stored with the booster
)
def xgboost_trees(
    bands: int,
    classes: int,
    *,
    seed: int = 0,
    n_estimators: int = 100,
    max_depth: int = 6,
    learning_rate: float = 0.3,
    subsample: float = 1.0,
    colsample_bytree: float = 1.0,
    tree_method: str = "hist",
    n_jobs: int | None = None,
    **params: Any,
) -> Any:
    """XGBoost's boosted trees on centre spectra (needs the optional xgboost extra).

    CLAReSNet states no settings for its XGBoost baseline, so these are XGBoost's own
    defaults: 100 rounds of depth-6 trees, learning rate 0.3, histogram splits. Other keyword
    arguments go to `xgboost.XGBClassifier`.
    """
    settings = {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "learning_rate": learning_rate,
        "subsample": subsample,
        "colsample_bytree": colsample_bytree,
        "tree_method": tree_method,
        "n_jobs": n_jobs,
        "random_state": seed,
    }
    return _estimator(XGBoostClassifier, settings, params)


# --- reading stored state, with errors instead of crashes in compiled code ----------------


def _array(
    arrays: dict[str, np.ndarray], key: str, dtype: Any, shape: tuple[int | None, ...]
) -> np.ndarray:
    """`arrays[key]` checked for dtype (None: any integer or float) and shape (None: any
    length), returned as a writeable C-contiguous copy."""
    value = arrays.get(key)
    if not isinstance(value, np.ndarray):
        found = "nothing" if value is None else type(value).__name__
        raise HsiError(
            f"classical model state: expected array {key!r}, found {found}", hint=_STATE_HINT
        )
    dtype_ok = value.dtype.kind in "iuf" if dtype is None else value.dtype == np.dtype(dtype)
    shape_ok = value.ndim == len(shape) and all(
        want is None or want == got for want, got in zip(shape, value.shape)
    )
    if not (dtype_ok and shape_ok):
        want_dtype = "integer or float" if dtype is None else np.dtype(dtype).name
        want_shape = str(tuple("n" if s is None else s for s in shape)).replace("'", "")
        raise HsiError(
            f"classical model state: array {key!r} should be {want_dtype} of shape {want_shape}, "
            f"found {value.dtype} of shape {value.shape}",
            hint=_STATE_HINT,
        )
    return np.array(value, order="C")


def _meta_value(meta: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = meta.get(key)
    # bool is an int in Python: accept it only where a bool is asked for.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise HsiError(
            f"classical model metadata: {key!r} should be {kinds}, found {value!r}",
            hint=_STATE_HINT,
        )
    return value


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise HsiError(f"classical model state: {what}", hint=_STATE_HINT)


def _offsets(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Start offsets of concatenated per-tree records: 0, then strictly increasing."""
    offsets = _array(arrays, key, np.int64, (None,))
    _require(
        offsets.size >= 2 and offsets[0] == 0 and bool(np.all(np.diff(offsets) > 0)),
        f"{key!r} should start at 0 and increase strictly",
    )
    return offsets


def _split_fields(nodes: np.ndarray) -> dict[str, np.ndarray]:
    """A structured node array as one plain numeric array per field."""
    return {f"node_{name}": np.ascontiguousarray(nodes[name]) for name in nodes.dtype.names}


def _join_fields(arrays: dict[str, np.ndarray], dtype: np.dtype, n_nodes: int) -> np.ndarray:
    """The inverse of `_split_fields`, into the installed scikit-learn's exact node dtype."""
    nodes = np.empty(n_nodes, dtype=dtype)
    for name in dtype.names:
        nodes[name] = _array(arrays, f"node_{name}", dtype.fields[name][0], (n_nodes,))
    return nodes


def _check_tree_links(
    offsets: np.ndarray, internal: np.ndarray, left: np.ndarray, right: np.ndarray,
    feature: np.ndarray, n_features: int, what: str,
) -> None:
    """Every split node's children come after it inside its own tree and its feature exists.

    scikit-learn numbers children after their parent; requiring it rules out cycles and
    out-of-bounds reads in the compiled tree walk.
    """
    counts = np.diff(offsets)
    local = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
    size = np.repeat(counts, counts)
    ok = (
        (left > local) & (left < size) & (right > local) & (right < size)
        & (feature >= 0) & (feature < n_features)
    )
    bad = np.flatnonzero(internal & ~ok)
    if bad.size:
        tree = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise HsiError(
            f"classical model state: {what} {tree} node {int(local[bad[0]])} has invalid children "
            "or feature",
            hint=_STATE_HINT,
        )


# --- one codec per estimator type ---------------------------------------------------------


def _svc_to_arrays(est: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if est._sparse or callable(est.kernel):
        raise HsiError(
            "an SVM fitted on sparse input or with a callable kernel cannot be stored",
            hint="fit it on a dense array with a named kernel",
        )
    if est._probA.size == 0:
        raise HsiError(
            "the SVM was fitted without probability estimates",
            hint="build it with probability=True (as `hsi train --model svm` does)",
        )
    arrays = {
        "support": est.support_,
        "support_vectors": est.support_vectors_,
        "n_support": est._n_support,
        # The private coefficients are what libsvm predicts with; the public ones are
        # sign-flipped for two classes.
        "dual_coef": est._dual_coef_,
        "intercept": est._intercept_,
        "prob_a": est._probA,
        "prob_b": est._probB,
        "class_weight": est.class_weight_,
        "n_iter": est.n_iter_,
    }
    extra = {
        "gamma": float(est._gamma),
        "shape_fit": [int(n) for n in est.shape_fit_],
        "fit_status": int(est.fit_status_),
    }
    return arrays, extra


def _svc_restore(est: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    n_class, n_features = est.classes_.size, est.n_features_in_
    n_pairs = n_class * (n_class - 1) // 2
    vectors = _array(arrays, "support_vectors", np.float64, (None, n_features))
    n_sv = vectors.shape[0]
    n_support = _array(arrays, "n_support", np.int32, (n_class,))
    _require(
        bool(np.all(n_support >= 0)) and int(n_support.sum()) == n_sv,
        "'n_support' does not add up to the number of support vectors",
    )
    est.support_ = _array(arrays, "support", np.int32, (n_sv,))
    est.support_vectors_ = vectors
    est._n_support = n_support
    est._dual_coef_ = _array(arrays, "dual_coef", np.float64, (n_class - 1, n_sv))
    est._intercept_ = _array(arrays, "intercept", np.float64, (n_pairs,))
    est._probA = _array(arrays, "prob_a", np.float64, (n_pairs,))
    est._probB = _array(arrays, "prob_b", np.float64, (n_pairs,))
    est.class_weight_ = _array(arrays, "class_weight", np.float64, (n_class,))
    est._num_iter = est.n_iter_ = _array(arrays, "n_iter", np.int32, (n_pairs,))
    sign = -1.0 if n_class == 2 else 1.0  # as in BaseLibSVM.fit
    est.dual_coef_ = sign * est._dual_coef_
    est.intercept_ = sign * est._intercept_
    est._gamma = float(_meta_value(meta, "gamma", (float, int)))
    shape_fit = _meta_value(meta, "shape_fit", list)
    _require(
        len(shape_fit) == 2 and all(isinstance(n, int) for n in shape_fit),
        "'shape_fit' should be two integers",
    )
    est.shape_fit_ = tuple(shape_fit)
    est.fit_status_ = _meta_value(meta, "fit_status", int)
    est._sparse = False
    est._effective_probability = est.probability is True


def _forest_to_arrays(est: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if est.n_outputs_ != 1:
        raise HsiError("a multi-output forest cannot be stored", hint="fit one label per pixel")
    states = [tree.tree_.__getstate__() for tree in est.estimators_]
    counts = [state["node_count"] for state in states]
    arrays = {
        "tree_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "tree_max_depth": np.array([state["max_depth"] for state in states], dtype=np.int64),
        # values: (nodes, n_outputs = 1, classes) per tree; stored as (all nodes, classes).
        "tree_values": np.concatenate([state["values"][:, 0, :] for state in states]),
        **_split_fields(np.concatenate([state["nodes"] for state in states])),
    }
    return arrays, {}


def _forest_restore(est: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    from sklearn.tree._tree import NODE_DTYPE, TREE_LEAF, Tree

    n_class, n_features = est.classes_.size, est.n_features_in_
    offsets = _offsets(arrays, "tree_offsets")
    n_trees, n_nodes = offsets.size - 1, int(offsets[-1])
    max_depth = _array(arrays, "tree_max_depth", np.int64, (n_trees,))
    values = _array(arrays, "tree_values", np.float64, (n_nodes, n_class))
    nodes = _join_fields(arrays, NODE_DTYPE, n_nodes)
    internal = nodes["left_child"] != TREE_LEAF
    _require(
        bool(np.all(internal | (nodes["right_child"] == TREE_LEAF))),
        "a leaf of the forest has a right child",
    )
    _check_tree_links(
        offsets, internal, nodes["left_child"], nodes["right_child"], nodes["feature"],
        n_features, "tree",
    )
    est._validate_estimator()  # sets the template tree `estimator_`
    estimators = []
    for i in range(n_trees):
        start, stop = offsets[i], offsets[i + 1]
        tree = est._make_estimator(append=False)
        tree.tree_ = Tree(n_features, np.array([n_class], dtype=np.intp), 1)
        tree.tree_.__setstate__({
            "max_depth": int(max_depth[i]),
            "node_count": int(stop - start),
            "nodes": nodes[start:stop],
            "values": values[start:stop, None, :],
        })
        # The trees of a fitted forest learn the encoded labels 0..C-1 (as floats).
        tree.classes_ = np.arange(n_class, dtype=np.float64)
        tree.n_classes_ = np.intp(n_class)
        tree.n_outputs_ = 1
        tree.n_features_in_ = n_features
        estimators.append(tree)
    est.estimators_ = estimators
    est.n_classes_ = n_class
    est.n_outputs_ = 1


def _hgb_to_arrays(est: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if est.is_categorical_ is not None:
        raise HsiError(
            "gradient boosting with categorical features cannot be stored",
            hint="spectra are numeric: leave categorical_features unset",
        )
    predictors = [p for iteration in est._predictors for p in iteration]
    counts = [p.nodes.size for p in predictors]
    bins = est._bin_mapper
    arrays = {
        "baseline": est._baseline_prediction.ravel(),
        "predictor_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        **_split_fields(np.concatenate([p.nodes for p in predictors])),
        # Binning is not needed to predict raw spectra, but makes the restored estimator whole.
        "bin_thresholds": np.concatenate(bins.bin_thresholds_),
        "bin_offsets": np.concatenate(
            [[0], np.cumsum([t.size for t in bins.bin_thresholds_])]
        ).astype(np.int64),
        "n_bins_non_missing": bins.n_bins_non_missing_,
        "train_score": est.train_score_,
        "validation_score": est.validation_score_,
    }
    extra = {
        "missing_values_bin_idx": int(bins.missing_values_bin_idx_),
        "early_stopping": bool(est.do_early_stopping_),
    }
    return arrays, extra


def _hgb_restore(est: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
    from sklearn.ensemble._hist_gradient_boosting.common import (
        PREDICTOR_RECORD_DTYPE,
        X_BITSET_INNER_DTYPE,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    n_class, n_features = est.classes_.size, est.n_features_in_
    per_iteration = 1 if n_class == 2 else n_class  # one tree per class, one for two classes
    baseline = _array(arrays, "baseline", np.float64, (per_iteration,))
    offsets = _offsets(arrays, "predictor_offsets")
    n_predictors, n_nodes = offsets.size - 1, int(offsets[-1])
    _require(
        n_predictors % per_iteration == 0,
        f"{n_predictors} trees do not split into iterations of {per_iteration}",
    )
    nodes = _join_fields(arrays, PREDICTOR_RECORD_DTYPE, n_nodes)
    _require(not nodes["is_categorical"].any(), "a tree splits on a categorical feature")
    _check_tree_links(
        offsets, nodes["is_leaf"] == 0, nodes["left"].astype(np.int64),
        nodes["right"].astype(np.int64), nodes["feature_idx"], n_features, "boosted tree",
    )
    n_bins = _array(arrays, "n_bins_non_missing", np.uint32, (n_features,))
    bin_offsets = _array(arrays, "bin_offsets", np.int64, (n_features + 1,))
    _require(
        bin_offsets[0] == 0 and bool(np.all(np.diff(bin_offsets) >= 0)),
        "'bin_offsets' should start at 0 and not decrease",
    )
    thresholds = _array(arrays, "bin_thresholds", np.float64, (int(bin_offsets[-1]),))

    no_categories = np.zeros((0, 8), dtype=X_BITSET_INNER_DTYPE)
    trees = [
        TreePredictor(nodes[offsets[i] : offsets[i + 1]], no_categories, no_categories)
        for i in range(n_predictors)
    ]
    est._predictors = [
        trees[i : i + per_iteration] for i in range(0, n_predictors, per_iteration)
    ]
    est.n_trees_per_iteration_ = per_iteration
    est._baseline_prediction = baseline.reshape(1, per_iteration)
    est._loss = est._get_loss(sample_weight=None)
    est.train_score_ = _array(arrays, "train_score", np.float64, (None,))
    est.validation_score_ = _array(arrays, "validation_score", np.float64, (None,))
    est.do_early_stopping_ = _meta_value(meta, "early_stopping", bool)
    est._n_features = n_features
    est._preprocessor = None
    est.is_categorical_ = None
    est._is_categorical_remapped = None
    mapper = _BinMapper(n_bins=est.max_bins + 1)
    mapper.is_categorical_ = np.zeros(n_features, dtype=np.uint8)
    mapper.bin_thresholds_ = np.split(thresholds, bin_offsets[1:-1])
    mapper.n_bins_non_missing_ = n_bins
    mapper.missing_values_bin_idx_ = _meta_value(meta, "missing_values_bin_idx", int)
    est._bin_mapper = mapper


def _xgb_to_arrays(est: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    raw = bytes(est.booster_model.get_booster().save_raw(raw_format="ubj"))
    return {"booster_ubj": np.frombuffer(raw, dtype=np.uint8)}, {
        "xgboost": _xgboost_module().__version__, "booster_sha256": hashlib.sha256(raw).hexdigest()}


def _xgb_restore(est: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    xgboost = _xgboost_module()
    raw = _array(arrays, "booster_ubj", np.uint8, (None,)).tobytes()
    # XGBoost's parser may allocate without bound on damaged bytes: they are checked first.
    _require(hashlib.sha256(raw).hexdigest() == _meta_value(meta, "booster_sha256", str),
             "the XGBoost booster's bytes do not match their recorded SHA-256")
    try:
        est.booster_model.load_model(bytearray(raw))
    except (xgboost.core.XGBoostError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise HsiError(f"classical model state: the XGBoost booster: {first_line}", hint=_STATE_HINT) from None
    booster = est.booster_model.get_booster()
    _require(booster.num_features() == est.n_features_in_,
             f"the XGBoost booster reads {booster.num_features()} features, not {est.n_features_in_}")
    _require(est.booster_model.n_classes_ == est.classes_.size,
             f"the XGBoost booster has {est.booster_model.n_classes_} classes, not {est.classes_.size}")


@dataclass(frozen=True)
class _Codec:
    estimator: str  # class name
    to_arrays: Callable[[Any], tuple[dict[str, np.ndarray], dict[str, Any]]]
    restore: Callable[[Any, dict[str, np.ndarray], dict[str, Any]], None]
    # Settings a restored estimator predicts with, whatever it was trained with.
    predict_params: dict[str, Any] = field(default_factory=dict)
    # The restore sets scikit-learn's private attributes, which change between minor versions.
    tied_to_sklearn: bool = True


_CODECS = {
    "svm": _Codec("SVC", _svc_to_arrays, _svc_restore),
    # With threads a forest sums its trees' probabilities in completion order, which is not
    # reproducible to the last bit; one thread is.
    "rf": _Codec("RandomForestClassifier", _forest_to_arrays, _forest_restore, {"n_jobs": None}),
    "gboost": _Codec("HistGradientBoostingClassifier", _hgb_to_arrays, _hgb_restore),
    "xgboost": _Codec("XGBoostClassifier", _xgb_to_arrays, _xgb_restore, tied_to_sklearn=False),
}


def _estimator_class(name: str) -> type:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.svm import SVC

    classes = (SVC, RandomForestClassifier, HistGradientBoostingClassifier, XGBoostClassifier)
    return {c.__name__: c for c in classes}[name]


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def estimator_to_arrays(estimator: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A fitted classical estimator as (plain numeric arrays, JSON-able metadata).

    The arrays hold no objects (integers and floats only, structured node records split into
    one array per field) so that safetensors can store them; the metadata records the format,
    the registry name, the estimator's constructor arguments and the scikit-learn version.
    """
    import sklearn

    found = [
        (name, codec)
        for name, codec in _CODECS.items()
        if type(estimator) is _estimator_class(codec.estimator)
    ]
    if not found:
        raise HsiError(
            f"cannot store a {type(estimator).__name__} as a classical model",
            hint=f"classical models are {', '.join(c.estimator for c in _CODECS.values())}",
        )
    name, codec = found[0]
    if getattr(estimator, "classes_", None) is None:  # every classifier sets it in fit
        raise HsiError(f"the {codec.estimator} is not fitted", hint="fit it first")
    if estimator.classes_.dtype.kind not in "iuf":
        raise HsiError(
            f"class labels of dtype {estimator.classes_.dtype} cannot be stored",
            hint="use integer class ids",
        )
    arrays, extra = codec.to_arrays(estimator)
    arrays = {"classes": estimator.classes_, **arrays}
    arrays = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    meta = {
        "format": FORMAT,
        "model": name,
        "estimator": codec.estimator,
        "sklearn": sklearn.__version__,
        "n_features": int(estimator.n_features_in_),
        "params": estimator.get_params(deep=False),
        **extra,
    }
    try:
        # Round-tripped so that the caller holds exactly what a checkpoint will give back.
        meta = json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise HsiError(
            f"the {codec.estimator}'s settings cannot be stored as JSON: {exc}",
            hint="pass model arguments as plain numbers, strings, lists or null",
        ) from None
    return arrays, meta


def estimator_from_arrays(name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """The fitted estimator of registry model `name` rebuilt from `estimator_to_arrays` output.

    Its `predict` and `predict_proba` equal the original's bit for bit (a forest predicts on
    one thread, `n_jobs=None`, so that they are reproducible). Anything missing or malformed
    raises HsiError before scikit-learn's compiled code sees it.
    """
    import sklearn

    codec = _CODECS.get(name)
    if codec is None:
        raise HsiError(
            f"{name!r} is not a classical model", hint=f"classical models are {', '.join(_CODECS)}"
        )
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise HsiError(
            f"classical model metadata: expected format {FORMAT!r}, found {found!r}",
            hint=_STATE_HINT,
        )
    if meta.get("estimator") != codec.estimator:
        raise HsiError(
            f"classical model metadata: model {name!r} should be a {codec.estimator}, "
            f"found {meta.get('estimator')!r}",
            hint=_STATE_HINT,
        )
    saved = str(meta.get("sklearn"))
    if codec.tied_to_sklearn and _minor(saved) != _minor(sklearn.__version__):
        raise HsiError(
            f"the {name} model was saved by scikit-learn {saved}, "
            f"but scikit-learn {sklearn.__version__} is installed",
            hint=f"install scikit-learn=={'.'.join(_minor(saved))}.* or train the model again",
        )
    params = {**_meta_value(meta, "params", dict), **codec.predict_params}
    try:
        estimator = _estimator_class(codec.estimator)(**params)
        estimator._validate_params()  # some settings (e.g. the SVM's) reach compiled code
    except (TypeError, ValueError) as exc:
        raise HsiError(f"classical model metadata: bad 'params': {exc}", hint=_STATE_HINT) from None

    classes = _array(arrays, "classes", None, (None,))
    _require(classes.size >= 2, f"'classes' should hold at least 2 labels, found {classes.size}")
    n_features = _meta_value(meta, "n_features", int)
    _require(n_features >= 1, f"'n_features' should be positive, found {n_features}")
    estimator.classes_ = classes
    estimator.n_features_in_ = n_features
    codec.restore(estimator, arrays, meta)
    return estimator
