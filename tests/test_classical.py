"""Classical baselines: builders, and their fitted state as plain arrays + JSON (no pickle)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from hsicli.errors import HsiError
from hsicli.models import create_model, get_model_spec, list_models
from hsicli.models.classical import FORMAT, estimator_from_arrays, estimator_to_arrays
from hsicli.models.kinds import SPECTRAL

# scikit-learn 1.9 deprecates SVC(probability=True) in favour of CalibratedClassifierCV; libsvm's
# Platt scaling is still what it computes, and what the SVM baseline uses.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The `probability` parameter was deprecated:FutureWarning"
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Small models so that the whole file stays fast on a shared machine.
FAST_ARGS: dict[str, dict[str, Any]] = {
    "svm": {},
    "rf": {"n_estimators": 25},
    "gboost": {"max_iter": 15},
}
if importlib.util.find_spec("xgboost") is not None:  # the optional extra; its own tests say when skipped
    FAST_ARGS["xgboost"] = {"n_estimators": 15}
MODELS = sorted(FAST_ARGS)
needs_xgboost = pytest.mark.skipif("xgboost" not in FAST_ARGS,
                                   reason="the xgboost extra is not installed (pip install 'hsicli[xgboost]')")


def synthetic(n_classes: int, n: int = 480, bands: int = 16, seed: int = 0):
    """Overlapping Gaussian classes (labels 1..C, as in a label map) split in half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(1, n_classes + 1, n)
    means = rng.normal(scale=0.8, size=(n_classes + 1, bands))
    X = (means[y] + rng.normal(size=(n, bands))).astype(np.float32)
    return X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :]


def fit(name: str, X: np.ndarray, y: np.ndarray, seed: int = 0):
    n_classes = int(np.unique(y).size)
    return create_model(name, X.shape[1], n_classes, seed=seed, **FAST_ARGS[name]).fit(X, y)


def assert_same_predictions(a: Any, b: Any, X: np.ndarray) -> None:
    assert np.array_equal(a.predict(X), b.predict(X))
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Gradient boosting's OpenMP threads crawl on a busy shared machine; one is faster here.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[Any, np.ndarray]]:
    X, y, Xt, _ = synthetic(4)
    return {name: (fit(name, X, y), Xt) for name in MODELS}


def test_registered_as_spectral_models_with_patch_1():
    assert set(MODELS) <= set(list_models(SPECTRAL))
    for name in MODELS:
        assert get_model_spec(name).defaults.patch == 1


# Two classes: libsvm's sign flip and one tree per boosting round.
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("name", MODELS)
def test_arrays_round_trip_predicts_identically(name: str, n_classes: int):
    X, y, Xt, yt = synthetic(n_classes)
    est = fit(name, X, y)
    # It learned something, so identical outputs mean something.
    assert np.mean(est.predict(Xt) == yt) > 0.75

    arrays, meta = estimator_to_arrays(est)
    for key, value in arrays.items():
        assert isinstance(value, np.ndarray), key
        assert value.dtype.names is None and value.dtype.kind in "iuf", (key, value.dtype)
    assert json.loads(json.dumps(meta)) == meta
    assert meta["format"] == FORMAT and meta["model"] == name and meta["n_features"] == X.shape[1]

    back = estimator_from_arrays(name, arrays, meta)
    assert type(back) is type(est)
    assert back is not est
    assert_same_predictions(est, back, Xt)
    assert np.array_equal(back.classes_, np.arange(1, n_classes + 1))


@pytest.mark.parametrize("name", MODELS)
def test_safetensors_round_trip(name: str, fitted, tmp_path: Path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    est, Xt = fitted[name]
    arrays, meta = estimator_to_arrays(est)
    path = tmp_path / f"{name}.safetensors"
    save_file(arrays, str(path), metadata={"classical": json.dumps(meta)})

    with safe_open(str(path), framework="numpy") as f:
        meta_back = json.loads(f.metadata()["classical"])
    back = estimator_from_arrays(name, load_file(str(path)), meta_back)
    assert_same_predictions(est, back, Xt)


def test_svm_class_map_is_the_vote_not_the_probability_argmax(fitted):
    """libsvm's probabilities are Platt-scaled by an internal cross-validation, so their argmax
    can disagree with the one-vs-one vote that `predict` returns; the class map must be the
    vote. On these overlapping classes the two disagree on some pixels, and the restored SVM
    reproduces the vote there."""
    est, Xt = fitted["svm"]
    vote = est.predict(Xt)
    argmax = est.classes_[est.predict_proba(Xt).argmax(axis=1)]
    disagree = vote != argmax
    assert disagree.any()
    back = estimator_from_arrays("svm", *estimator_to_arrays(est))
    assert np.array_equal(back.predict(Xt[disagree]), vote[disagree])


def test_builders_equal_a_direct_scikit_learn_fit():
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.svm import SVC

    direct = {
        "svm": SVC(kernel="rbf", C=100.0, gamma="scale", probability=True, random_state=7),
        "rf": RandomForestClassifier(n_estimators=200, max_features="sqrt", random_state=7),
        "gboost": HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=7),
    }
    X, y, Xt, _ = synthetic(3, n=240)
    for name, reference in direct.items():
        assert create_model(name, X.shape[1], 3, seed=7).get_params() == reference.get_params()
        # Same settings, same seed: the same fitted model (small sizes to stay fast).
        ours = create_model(name, X.shape[1], 3, seed=7, **FAST_ARGS[name]).fit(X, y)
        assert_same_predictions(ours, reference.set_params(**FAST_ARGS[name]).fit(X, y), Xt)


def test_builder_arguments():
    est = create_model("svm", 8, 3, seed=5, C=3.0, tol=1e-4)
    assert (est.C, est.tol, est.random_state, est.kernel) == (3.0, 1e-4, 5, "rbf")
    with pytest.raises(HsiError, match="unknown argument"):
        create_model("rf", 8, 3, n_trees=10)
    with pytest.raises(HsiError, match="invalid model argument"):
        create_model("svm", 8, 3, C=-1.0)
    with pytest.raises(HsiError, match="random_state"):
        create_model("gboost", 8, 3, random_state=1)
    with pytest.raises(HsiError, match="probability"):
        create_model("svm", 8, 3, probability=False)


def test_restored_forest_predicts_on_one_thread():
    X, y, Xt, _ = synthetic(3)
    est = create_model("rf", X.shape[1], 3, n_estimators=20, n_jobs=2).fit(X, y)
    back = estimator_from_arrays("rf", *estimator_to_arrays(est))
    assert back.n_jobs is None
    assert np.array_equal(back.predict_proba(Xt), est.set_params(n_jobs=None).predict_proba(Xt))


def test_to_arrays_rejects_what_it_cannot_store():
    from sklearn.linear_model import LogisticRegression

    X, y, _, _ = synthetic(3)
    with pytest.raises(HsiError, match="not fitted"):
        estimator_to_arrays(create_model("rf", X.shape[1], 3))
    with pytest.raises(HsiError, match="cannot store a LogisticRegression"):
        estimator_to_arrays(LogisticRegression().fit(X, y))
    names = np.array(["a", "b", "c"])[y - 1]
    named = create_model("rf", X.shape[1], 3, n_estimators=3).fit(X, names)
    with pytest.raises(HsiError, match="class labels"):
        estimator_to_arrays(named)


def _set(key: str, index: Any, value: Any) -> Callable[[dict], None]:
    def mutate(arrays: dict) -> None:
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value

    return mutate


def _root_split(field: str, leaf_test: Callable[[dict], np.ndarray]) -> Callable[[dict], None]:
    """Point the first split node's `field` back at itself (a cycle in the tree walk)."""

    def mutate(arrays: dict) -> None:
        node = int(np.flatnonzero(~leaf_test(arrays))[0])
        arrays[field] = arrays[field].copy()
        arrays[field][node] = node

    return mutate


MALFORMED: list[tuple[str, str, Callable[[dict], None]]] = [
    ("svm", "missing", lambda a: a.pop("support_vectors")),
    ("svm", "float32", lambda a: a.update(dual_coef=a["dual_coef"].astype(np.float32))),
    ("svm", "shape", lambda a: a.update(intercept=a["intercept"][:-1])),
    ("svm", "n_support", _set("n_support", 0, 0)),
    ("svm", "classes", lambda a: a.update(classes=a["classes"][:1])),
    ("rf", "missing", lambda a: a.pop("node_threshold")),
    ("rf", "int32", lambda a: a.update(node_feature=a["node_feature"].astype(np.int32))),
    ("rf", "shape", lambda a: a.update(tree_values=a["tree_values"][:, :-1])),
    ("rf", "offsets", _set("tree_offsets", 0, 1)),
    ("rf", "cycle", _root_split("node_left_child", lambda a: a["node_left_child"] == -1)),
    ("rf", "feature", _set("node_feature", 0, 10_000)),
    ("gboost", "missing", lambda a: a.pop("baseline")),
    ("gboost", "shape", lambda a: a.update(baseline=a["baseline"][:-1])),
    ("gboost", "iterations", lambda a: a.update(predictor_offsets=a["predictor_offsets"][:-1])),
    ("gboost", "cycle", _root_split("node_right", lambda a: a["node_is_leaf"] == 1)),
    ("gboost", "feature", _set("node_feature_idx", 0, -1)),
    ("gboost", "categorical", _set("node_is_categorical", 0, 1)),
]


@pytest.mark.parametrize(
    ("name", "case", "mutate"), MALFORMED, ids=[f"{n}-{c}" for n, c, _ in MALFORMED]
)
def test_malformed_arrays_raise_hsierror(name: str, case: str, mutate, fitted):
    arrays, meta = estimator_to_arrays(fitted[name][0])
    mutate(arrays)
    with pytest.raises(HsiError):
        estimator_from_arrays(name, arrays, meta)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.update(format="other/1"), "format"),
        (lambda m: m.update(sklearn="0.24.2"), "scikit-learn 0.24.2"),
        (lambda m: m.update(estimator="SVC"), "should be a HistGradientBoostingClassifier"),
        (lambda m: m["params"].update(bogus=1), "bad 'params'"),
        (lambda m: m["params"].update(max_bins=-3), "bad 'params'"),
        (lambda m: m.update(n_features=True), "n_features"),
        (lambda m: m.pop("missing_values_bin_idx"), "missing_values_bin_idx"),
    ],
)
def test_malformed_metadata_raises_hsierror(change, match: str, fitted):
    arrays, meta = estimator_to_arrays(fitted["gboost"][0])
    change(meta)
    with pytest.raises(HsiError, match=match):
        estimator_from_arrays("gboost", arrays, meta)


def test_unknown_or_mismatched_model_name(fitted):
    arrays, meta = estimator_to_arrays(fitted["svm"][0])
    with pytest.raises(HsiError, match="not a classical model"):
        estimator_from_arrays("hybridsn", arrays, meta)
    with pytest.raises(HsiError, match="should be a RandomForestClassifier"):
        estimator_from_arrays("rf", arrays, meta)


def test_salinasA_centre_spectra(tmp_path: Path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    from scipy.io import loadmat

    folder = DATA / "salinasA"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    cube = loadmat(folder / "SalinasA_corrected.mat")["salinasA_corrected"].astype(np.float32)
    gt = loadmat(folder / "SalinasA_gt.mat")["salinasA_gt"].ravel()
    X, y = cube.reshape(-1, cube.shape[-1])[gt > 0], gt[gt > 0]
    # 5 % of each class for training (270 pixels), the rest held out; bands standardised.
    rng = np.random.default_rng(0)
    train = np.concatenate([
        rng.choice(np.flatnonzero(y == c), -(-np.sum(y == c) * 5 // 100), replace=False)
        for c in np.unique(y)
    ])
    test = np.setdiff1d(np.arange(y.size), train)
    X = (X - X[train].mean(0)) / X[train].std(0)

    for name in MODELS:
        est = fit(name, X[train], y[train])
        assert np.mean(est.predict(X[test]) == y[test]) > 0.9
        arrays, meta = estimator_to_arrays(est)
        path = tmp_path / f"{name}.safetensors"
        save_file(arrays, str(path), metadata={"classical": json.dumps(meta)})
        with safe_open(str(path), framework="numpy") as f:
            meta_back = json.loads(f.metadata()["classical"])
        back = estimator_from_arrays(name, load_file(str(path)), meta_back)
        assert_same_predictions(est, back, X[test])
        if name == "svm":  # on real spectra too, the vote and the probability argmax differ
            proba_argmax = est.classes_[est.predict_proba(X[test]).argmax(axis=1)]
            assert np.any(est.predict(X[test]) != proba_argmax)


@needs_xgboost
def test_xgboost_is_stored_as_its_own_ubjson_with_any_labels():
    """The booster's bytes are XGBoost's UBJSON (readable by xgboost itself); labels need not be
    0..C-1, as when a class has no training pixels; arguments XGBoost does not know are refused."""
    import xgboost

    X, y, Xt, _ = synthetic(4)
    y = np.where(y == 2, 7, y)  # labels 1, 3, 4, 7
    est = fit("xgboost", X, y)
    arrays, meta = estimator_to_arrays(est)
    booster = xgboost.Booster()
    booster.load_model(bytearray(arrays["booster_ubj"].tobytes()))
    assert np.array_equal(booster.predict(xgboost.DMatrix(Xt)), est.predict_proba(Xt))
    back = estimator_from_arrays("xgboost", arrays, meta)
    assert np.array_equal(back.classes_, [1, 3, 4, 7])
    assert_same_predictions(est, back, Xt)
    with pytest.raises(HsiError, match="no parameter n_trees"):
        create_model("xgboost", 8, 3, n_trees=10)
    with pytest.raises(HsiError, match="random_state"):
        create_model("xgboost", 8, 3, random_state=1)
    damaged = {**arrays, "booster_ubj": arrays["booster_ubj"][: arrays["booster_ubj"].size // 2]}
    with pytest.raises(HsiError, match="do not match their recorded SHA-256"):
        estimator_from_arrays("xgboost", damaged, meta)
    # Bytes that match their hash but are no booster: XGBoost's own error, as one HsiError.
    junk = np.frombuffer(b"{not a booster", dtype=np.uint8)
    with pytest.raises(HsiError, match="XGBoost booster"):
        estimator_from_arrays("xgboost", {**arrays, "booster_ubj": junk},
                              {**meta, "booster_sha256": hashlib.sha256(junk.tobytes()).hexdigest()})
