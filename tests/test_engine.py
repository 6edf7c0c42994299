"""The training, prediction and evaluation engine (issue 3): pipes, baselines, checkpoints, tiling.

Scenes are tiny synthetic stores written directly with `SceneStore.create`; the real-shell pipe
runs on SalinasA from ../shared/data (conftest's `salinas_a`, skipped when absent). Torch models
are HybridSN shrunk by `--model-args` so that an epoch takes milliseconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hsicli.engine.predict as predict_module
import hsicli.engine.train as train_module
from hsicli.data.patches import PatchSampler
from hsicli.data.splits import TEST, TRAIN, UNUSED, VAL, stratified
from hsicli.engine.averaging import WeightAverage
from hsicli.engine.predict import PredictOptions, predict
from hsicli.engine.train import TrainOptions, train
from hsicli.errors import HsiError, OutputExistsError, UsageError
from hsicli.models.registry import create_model
from hsicli.store.atomic import up_to_date
from hsicli.store.checkpoint import load_arrays
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore

torch.set_num_threads(1)

BIN = Path(sys.executable).parent
# Subprocesses: one thread each (2 shared cores) and the venv's `hsi` first on PATH.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
# HybridSN with one 3-D layer of 2 kernels, 4 2-D kernels and one dense layer of 8: ~1 ms a batch.
TINY = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}
CLASS_NAMES = ["a", "b", "c"]


def make_scene(path: Path, *, height: int = 20, width: int = 20, bands: int = 8, noise: float = 0.3,
               seed: int = 0) -> SceneStore:
    """Three vertical class stripes (about 15 % unlabelled pixels) with split "s": 30 % train, 10 % val."""
    rng = np.random.default_rng(seed)
    gt = np.broadcast_to(np.arange(width) * 3 // width + 1, (height, width)).astype(np.uint16)
    gt[rng.random((height, width)) < 0.15] = 0
    means = rng.normal(0.0, 1.0, (len(CLASS_NAMES) + 1, bands)).astype(np.float32)
    cube = means[gt] + noise * rng.normal(0.0, 1.0, (height, width, bands)).astype(np.float32)
    store = SceneStore.create(
        path, cube=cube, gt=gt, rgb=np.zeros((height, width, 3), np.uint8),
        attrs={"class_names": CLASS_NAMES, "class_colors": ["#ff0000", "#00ff00", "#0000ff"]},
        transform={"offset": np.zeros(bands, np.float32)}, transform_attrs={},
    )
    store.add_layer("splits", "s", stratified(gt, train=0.3, val=0.1, seed=seed).astype(np.uint8), {})
    return SceneStore.open(path)


def tiny_options(**overrides) -> TrainOptions:
    settings = dict(model="hybridsn", model_args=dict(TINY), patch=TINY["patch"], epochs=3, device="cpu", seed=0)
    return TrainOptions(**{**settings, **overrides})


def model_arrays(checkpoint: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in load_arrays(checkpoint)[0].items() if k.startswith("model.")}


def load_model(checkpoint: Path) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's network rebuilt from its metadata, independently of the predict engine."""
    arrays, meta = load_arrays(checkpoint)
    model = create_model(meta["model"], meta["input"]["bands"], len(meta["class_names"]), **meta["model_args"])
    model.load_state_dict({k.removeprefix("model."): torch.from_numpy(v) for k, v in arrays.items()
                           if k.startswith("model.")})
    return model.eval(), meta


def training_pixels(store: SceneStore, split: str = "s") -> tuple[np.ndarray, np.ndarray]:
    """Centre spectra and class indices of the split's labelled training pixels, row-major."""
    gt = store.gt().astype(np.int64)
    rows, cols = np.nonzero((store.read_layer("splits", split).data == TRAIN) & (gt > 0))
    return store.cube()[rows, cols], gt[rows, cols] - 1


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneStore:
    return make_scene(tmp_path_factory.mktemp("scene") / "d.zarr")


@pytest.fixture(scope="module")
def hybrid_ckpt(scene) -> Path:
    return train(scene.path, tiny_options(out=scene.path.parent / "hybrid.safetensors"), command="test").path


# -- the pipe, through a real shell ---------------------------------------------------


def _shell_pipe(cwd: Path, salinas_a: tuple[Path, Path], train_args: str) -> dict:
    """`hsi prep … | hsi split | hsi train … | hsi predict | hsi evaluate` in bash; the metrics."""
    mat, gt = (shlex.quote(str(path)) for path in salinas_a)
    pipe = (f"hsi prep {mat} --gt {gt} --pca 30 | hsi split --ratio 0.05 | hsi train {train_args} --threads 1 "
            "| hsi predict --threads 1 | hsi evaluate")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipe], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    path = Path(lines[0])
    assert path.is_absolute() and path.name.endswith(".metrics.json") and path.parent == cwd
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipe")


def test_shell_pipe_svm_on_salinas_a(pipe_dir, salinas_a):
    metrics = _shell_pipe(pipe_dir, salinas_a, "--model svm")
    assert metrics["model"] == "svm"
    assert metrics["n"] == 4653  # SalinasA's 5348 labelled pixels minus 5 % train and 8 % val per class
    assert metrics["oa"] > 0.9


def test_shell_pipe_hybridsn_on_salinas_a(pipe_dir, salinas_a):
    # Re-running prep and split in the same folder is a no-op, so this reuses the svm test's store.
    # --patch alone sizes the network's window.
    args = shlex.quote(json.dumps({k: v for k, v in TINY.items() if k != "patch"}))
    metrics = _shell_pipe(pipe_dir, salinas_a, f"--model hybridsn --epochs 1 --patch 9 --model-args {args}")
    assert metrics["model"] == "hybridsn"
    assert metrics["n"] == 4653
    checkpoint = Path(PredictionStore.open(Path(metrics["prediction"])).attrs["checkpoint"]["path"])
    assert load_arrays(checkpoint)[1]["input"]["patch"] == 9
    assert 0.0 <= metrics["oa"] <= 1.0 and len(metrics["per_class"]) == 6


# -- classical baselines are scikit-learn, exactly --------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("model", ["svm", "rf"])
def test_classical_models_equal_a_direct_sklearn_fit(tmp_path, model):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    store = make_scene(tmp_path / "n.zarr", noise=1.5, seed=1)  # overlapping classes: errors to reproduce
    checkpoint = train(store.path, TrainOptions(model=model, seed=3), command="test").path
    stored = PredictionStore.open(predict(checkpoint, PredictOptions(), command="test").path)

    x_train, y_train = training_pixels(store)
    cube = store.cube()
    x_all = cube.reshape(-1, cube.shape[2])

    def fit(seed: int):
        if model == "svm":  # hsicli.models.classical.svm's settings
            estimator = SVC(kernel="rbf", C=100.0, gamma="scale", probability=True, random_state=seed)
        else:  # hsicli.models.classical.rf's settings
            estimator = RandomForestClassifier(n_estimators=200, max_features="sqrt", random_state=seed)
        return estimator.fit(x_train, y_train)

    reference = fit(3)
    expected_classes = (reference.predict(x_all) + 1).reshape(cube.shape[:2])
    assert 0.3 < (expected_classes == store.gt()).mean() < 0.97  # a non-trivial map
    assert np.array_equal(stored.classes(), expected_classes)
    expected_probabilities = reference.predict_proba(x_all).astype(np.float32)
    assert np.array_equal(stored.probabilities(), expected_probabilities.reshape(*cube.shape[:2], -1))
    # The comparison is sharp: another seed gives other probabilities.
    assert not np.array_equal(fit(0).predict_proba(x_all), reference.predict_proba(x_all))



@pytest.mark.skipif(importlib.util.find_spec("xgboost") is None,
                    reason="the xgboost extra is not installed (pip install 'hsicli[xgboost]')")
def test_xgboost_round_trips_through_hsi_predict_without_pickle(tmp_path, cli):
    """`hsi train --model xgboost` stores the booster as UBJSON bytes; `hsi predict` gives the
    class map and probabilities of the booster fitted in memory with the same settings."""
    import xgboost

    store = make_scene(tmp_path / "n.zarr", noise=1.5, seed=1)
    assert cli("train", "n.zarr", "--model", "xgboost", "--seed", "3", "--model-args", '{"n_estimators": 20}',
               "--out", "x.safetensors").exit_code == 0
    assert cli("predict", "x.safetensors", "--out", "x.zarr").exit_code == 0
    arrays, meta = load_arrays(tmp_path / "x.safetensors")
    assert set(arrays) == {"est.classes", "est.booster_ubj"} and arrays["est.booster_ubj"].dtype == np.uint8
    assert meta["training"]["estimator"]["xgboost"] == xgboost.__version__
    stored = PredictionStore.open(tmp_path / "x.zarr")

    x_train, y_train = training_pixels(store)
    cube = store.cube()
    x_all = cube.reshape(-1, cube.shape[2])
    booster = xgboost.XGBClassifier(n_estimators=20, max_depth=6, learning_rate=0.3, tree_method="hist",
                                    random_state=3).fit(x_train, y_train)
    expected_classes = (booster.predict(x_all) + 1).reshape(cube.shape[:2])
    assert 0.3 < (expected_classes == store.gt()).mean() < 0.97  # a non-trivial map
    assert np.array_equal(stored.classes(), expected_classes)
    assert np.array_equal(stored.probabilities(), booster.predict_proba(x_all).reshape(*cube.shape[:2], -1))


def test_xgboost_without_the_extra_is_one_line_with_the_install_hint(tmp_path, cli, monkeypatch):
    make_scene(tmp_path / "n.zarr")
    monkeypatch.setitem(sys.modules, "xgboost", None)  # `import xgboost` raises ImportError
    result = cli("train", "n.zarr", "--model", "xgboost")
    assert result.exit_code == 1 and result.stdout == ""
    assert "xgboost package, which is not installed" in result.stderr
    assert "pip install 'hsicli[xgboost]'" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.safetensors"))

# -- predictions --------------------------------------------------------------------------------


def test_prediction_in_a_fresh_process_is_identical(tmp_path, hybrid_ckpt):
    # The checkpoint alone rebuilds the model: a new `hsi predict` process gives this process's
    # probabilities bit for bit.
    fresh = tmp_path / "fresh.pred.zarr"
    done = subprocess.run([str(BIN / "hsi"), "predict", str(hybrid_ckpt), "--out", str(fresh), "--device", "cpu",
                           "--threads", "1", "-q"], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(fresh)
    here = predict(hybrid_ckpt, PredictOptions(device="cpu", threads=1, out=tmp_path / "here.pred.zarr"), command="t")
    a, b = PredictionStore.open(fresh), PredictionStore.open(here.path)
    assert np.array_equal(a.probabilities(), b.probabilities())
    assert np.array_equal(a.classes(), b.classes()) and np.array_equal(a.entropy(), b.entropy())


def test_prediction_store_contents(tmp_path, scene, hybrid_ckpt):
    full = PredictionStore.open(
        predict(hybrid_ckpt, PredictOptions(device="cpu", embeddings=True, out=tmp_path / "e.zarr"), command="t").path
    )
    height, width, _ = scene.shape
    classes, probabilities = full.classes(), full.probabilities()
    assert classes.shape == (height, width) and classes.dtype == np.uint16
    assert probabilities.shape == (height, width, 3) and probabilities.dtype == np.float32
    assert classes.min() >= 1 and classes.max() <= 3
    assert np.array_equal(classes, probabilities.argmax(-1) + 1)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-6)
    p = probabilities.astype(np.float64)
    np.testing.assert_allclose(full.entropy(), -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1), rtol=1e-5, atol=1e-6)
    assert full.attrs["split"] == "s" and full.attrs["scene_store"]["path"] == str(scene.path.absolute())
    assert full.attrs["inference_seconds"] >= 0

    # Embeddings: the 8-d features of exactly the labelled pixels, in flat pixel order.
    index, embeddings = full.embeddings()
    gt = scene.gt()
    assert np.array_equal(index, np.flatnonzero(gt > 0))
    assert embeddings.shape == (index.size, TINY["hidden"][-1])
    model, _ = load_model(hybrid_ckpt)
    rows, cols = np.divmod(index, width)
    patches = PatchSampler.from_cube(scene.cube(), TINY["patch"]).patches(rows, cols)
    with torch.no_grad():
        expected = model.forward_features(torch.from_numpy(patches).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-6)

    lean = PredictionStore.open(
        predict(hybrid_ckpt, PredictOptions(device="cpu", probabilities=False, out=tmp_path / "n.zarr"),
                command="t").path
    )
    assert lean.probabilities() is None and lean.embeddings() is None
    assert np.array_equal(lean.classes(), classes) and np.array_equal(lean.entropy(), full.entropy())


def test_repeating_a_prediction_is_a_no_op(tmp_path, hybrid_ckpt):
    # DESIGN.md §1: re-running a finished step with the same inputs is cheap or a no-op, so a
    # re-run pipe goes through; other options never replace the store silently.
    out = tmp_path / "again.pred.zarr"
    first = predict(hybrid_ckpt, PredictOptions(device="cpu", out=out), command="t")
    stamp = (out / "zarr.json").stat().st_mtime_ns
    again = predict(hybrid_ckpt, PredictOptions(device="cpu", out=out), command="t")
    assert again.path == first.path == out and (out / "zarr.json").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError):
        predict(hybrid_ckpt, PredictOptions(device="cpu", out=out, probabilities=False), command="t")


def test_an_identical_prediction_published_meanwhile_is_a_no_op(monkeypatch, tmp_path, hybrid_ckpt):
    """Two identical `hsi predict` racing (issue 17): the one that finds, when it publishes, the
    store its twin published meanwhile returns it instead of failing with "already exists"."""
    out = tmp_path / "twin.pred.zarr"
    first = predict(hybrid_ckpt, PredictOptions(device="cpu", out=out), command="t")
    stamp = (out / "zarr.json").stat().st_mtime_ns
    checks = []

    def checked_before_the_twin_published(path, key, read_key, overwrite):
        checks.append(path)
        return False if len(checks) == 1 else up_to_date(path, key, read_key, overwrite)

    monkeypatch.setattr(predict_module, "up_to_date", checked_before_the_twin_published)
    messages = []
    again = predict(hybrid_ckpt, PredictOptions(device="cpu", out=out), command="t", on_message=messages.append)
    assert again.path == first.path and len(checks) == 2 and "up to date" in messages[-1]
    assert (out / "zarr.json").stat().st_mtime_ns == stamp and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    checks.clear()  # a store from other options is still never replaced
    with pytest.raises(OutputExistsError, match="other inputs or options"):
        predict(hybrid_ckpt, PredictOptions(device="cpu", out=out, probabilities=False), command="t")


def test_tiled_prediction_equals_whole_scene(monkeypatch, tmp_path, scene, hybrid_ckpt):
    # Blocks of 3 rows: 7 tiles over 20 rows, each needing rows of its neighbours (patch radius 2).
    monkeypatch.setattr(predict_module, "ROW_BLOCK", 3)
    stored = PredictionStore.open(
        predict(hybrid_ckpt, PredictOptions(device="cpu", batch_size=7, out=tmp_path / "t.zarr"), command="t").path
    )
    model, meta = load_model(hybrid_ckpt)
    cube = scene.cube()
    height, width, _ = cube.shape
    rows, cols = np.divmod(np.arange(height * width), width)
    patches = PatchSampler.from_cube(cube, meta["input"]["patch"]).patches(rows, cols)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(patches).permute(0, 3, 1, 2)), 1).numpy()
    expected = expected.reshape(height, width, -1)
    np.testing.assert_allclose(stored.probabilities(), expected, rtol=0, atol=1e-6)
    assert np.array_equal(stored.classes(), expected.argmax(-1) + 1)


def test_history_records_the_validation_loss_of_the_kept_weights(scene, hybrid_ckpt):
    """Each epoch records the validation loss (cross-entropy at the validation pixels) that `hsi plot
    curves` draws beside the training loss; the kept epoch's equals the kept weights' own."""
    model, meta = load_model(hybrid_ckpt)
    training = meta["training"]
    assert all(entry["val_loss"] > 0 for entry in training["history"])
    gt = scene.gt().astype(np.int64)
    rows, cols = np.nonzero((scene.read_layer("splits", "s").data == VAL) & (gt > 0))
    patches = PatchSampler.from_cube(scene.cube(), meta["input"]["patch"]).patches(rows, cols)
    with torch.no_grad():
        logits = model(torch.from_numpy(patches).permute(0, 3, 1, 2))
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(gt[rows, cols] - 1))
    kept = training["history"][training["best_epoch"] - 1]
    assert kept["val_loss"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("pixels", ["labelled", "test"])
def test_prediction_of_labelled_or_test_pixels_only(tmp_path, scene, hybrid_ckpt, pixels):
    """`--pixels`: the chosen pixels as the whole-scene prediction has them, nothing elsewhere, and
    the same metrics as the whole-scene store (which `hsi evaluate` reads at the test pixels only)."""
    from hsicli.store.evaluation import evaluate_prediction

    whole_path = predict(hybrid_ckpt, PredictOptions(device="cpu", out=tmp_path / "all.zarr"), command="t").path
    part_path = predict(hybrid_ckpt, PredictOptions(device="cpu", pixels=pixels, embeddings=True,
                                                    out=tmp_path / f"{pixels}.zarr"), command="t").path
    whole, part = PredictionStore.open(whole_path), PredictionStore.open(part_path)
    gt = scene.gt()
    chosen = gt > 0
    if pixels == "test":
        chosen &= scene.read_layer("splits", "s").data == TEST
    assert chosen.any() and (pixels == "labelled" or chosen.sum() < (gt > 0).sum())
    assert part.attrs["pixels"] == chosen.sum() and part.attrs["pixel_set"] == pixels
    assert whole.attrs["pixels"] == gt.size and whole.attrs["pixel_set"] == "all"
    assert np.array_equal(part.classes(), np.where(chosen, whole.classes(), 0))
    np.testing.assert_allclose(part.probabilities()[chosen], whole.probabilities()[chosen], rtol=0, atol=1e-6)
    assert not part.probabilities()[~chosen].any()
    np.testing.assert_allclose(part.entropy()[chosen], whole.entropy()[chosen], rtol=1e-5, atol=1e-6)
    assert np.isnan(part.entropy()[~chosen]).all()
    index, _ = part.embeddings()
    assert np.array_equal(index, np.flatnonzero(chosen))
    assert evaluate_prediction(part_path)["oa"] == evaluate_prediction(whole_path)["oa"]


def test_pixel_set_errors(tmp_path, scene, hybrid_ckpt):
    with pytest.raises(UsageError, match="--pixels"):
        predict(hybrid_ckpt, PredictOptions(device="cpu", pixels="some", out=tmp_path / "x.zarr"), command="t")
    # Another scene (same bands and preprocessing) without the checkpoint's split "s".
    other = SceneStore.create(
        tmp_path / "other.zarr", cube=scene.cube(), gt=scene.gt(), rgb=np.zeros((*scene.shape[:2], 3), np.uint8),
        attrs={"class_names": CLASS_NAMES, "class_colors": ["#ff0000", "#00ff00", "#0000ff"]},
        transform={"offset": np.zeros(scene.shape[2], np.float32)}, transform_attrs={},
    )
    with pytest.raises(HsiError, match="split"):
        predict(hybrid_ckpt, PredictOptions(device="cpu", store=other.path, pixels="test", out=tmp_path / "y.zarr"),
                command="t")
    labelled = predict(hybrid_ckpt, PredictOptions(device="cpu", store=other.path, pixels="labelled",
                                                   out=tmp_path / "z.zarr"), command="t").path
    assert PredictionStore.open(labelled).attrs["pixels"] == (scene.gt() > 0).sum()


def test_litec2anet_prediction_through_its_pixel_stage(monkeypatch, tmp_path, scene):
    """Lite-C2ANet's 1x1 reductions run once per scene pixel in `hsi predict`, its patches cut from
    their output: the probabilities are those of the raw patches, across row blocks and borders."""
    monkeypatch.setattr(predict_module, "ROW_BLOCK", 6)
    cut_from = []  # channels of the maps the patches were cut from
    original = predict_module.Classifier.predict

    def spy(self, sampler, *args):
        cut_from.append(sampler.bands)
        return original(self, sampler, *args)

    monkeypatch.setattr(predict_module.Classifier, "predict", spy)
    checkpoint = train(scene.path, TrainOptions(model="litec2anet", model_args={"group_channels": 8}, epochs=2,
                                                device="cpu", out=tmp_path / "lite.safetensors"), command="t").path
    stored = PredictionStore.open(
        predict(checkpoint, PredictOptions(device="cpu", batch_size=50, out=tmp_path / "lite.zarr"), command="t").path
    )
    model, meta = load_model(checkpoint)
    assert model.pixel_stage is not None and meta["input"]["patch"] == 9
    cube = scene.cube()
    height, width, _ = cube.shape
    rows, cols = np.divmod(np.arange(height * width), width)
    patches = PatchSampler.from_cube(cube, 9).patches(rows, cols)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(patches).permute(0, 3, 1, 2)), 1).numpy()
    np.testing.assert_allclose(stored.probabilities(), expected.reshape(height, width, -1), rtol=0, atol=1e-5)
    assert cut_from == [model.width] * 4  # 4 row blocks, each cut from the D-channel stage output


# -- training -------------------------------------------------------------------------------------


FAULTS_PER_STEP = """
import resource, torch
from hsicli.engine.train import keep_freed_memory
from hsicli.models import create_model

keep_freed_memory()
torch.set_num_threads(1)
model = create_model("litec2anet", 204, 16)
x, y = torch.randn(64, 204, 9, 9), torch.zeros(64, dtype=torch.long)

def step():
    torch.nn.functional.cross_entropy(model(x), y).backward()

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc's")
def test_freed_activation_memory_is_reused_rather_than_faulted_in_again():
    # A training step's activations take about 10,000 pages; glibc's defaults fault most of them
    # in again at every step (about 3,800 faults here), reused blocks need next to none.
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1000


def test_training_is_deterministic_for_a_seed(tmp_path, scene):
    def weights(seed: int, name: str) -> dict[str, np.ndarray]:
        options = tiny_options(epochs=2, seed=seed, augment=True, batch_size=16, out=tmp_path / name)
        return model_arrays(train(scene.path, options, command="test").path)

    first, again, other = weights(0, "a.safetensors"), weights(0, "b.safetensors"), weights(1, "c.safetensors")
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)


def test_early_stopping_without_improvement(tmp_path, scene):
    # lr 0: validation accuracy never improves on epoch 1, so patience 1 stops after epoch 2; the
    # tie keeps the later epoch.
    result = train(scene.path, tiny_options(epochs=10, lr=0.0, patience=1, out=tmp_path / "e.safetensors"),
                   command="test")
    training = load_arrays(result.path)[1]["training"]
    assert [entry["epoch"] for entry in training["history"]] == [1, 2]
    assert training["best_epoch"] == 2 and result.summary["best_epoch"] == 2
    stop = training["stop"]  # the window's mean training accuracy: both epochs
    assert (stop["reason"], stop["epochs"]) == ("patience", 2)
    assert stop["train_accuracy"] == pytest.approx(np.mean([e["train_accuracy"] for e in training["history"]]), abs=1e-4)


def test_best_epochs_weights_are_kept(monkeypatch, tmp_path, scene):
    def scripted(accuracies):
        values = iter(accuracies)
        monkeypatch.setattr(train_module, "evaluate_pixels", lambda *args, **kwargs: (next(values), None))

    def run(name: str, epochs: int, patience: int | None) -> Path:
        options = tiny_options(epochs=epochs, patience=patience, lr=0.01, out=tmp_path / name)
        return train(scene.path, options, command="test").path

    scripted([0.5, 0.9, 0.6, 0.7, 0.8, 0.95])
    stopped = run("stopped.safetensors", 10, 2)
    training = load_arrays(stopped)[1]["training"]
    assert [entry["val_accuracy"] for entry in training["history"]] == [0.5, 0.9, 0.6, 0.7]
    assert training["best_epoch"] == 2 and training["best_val_accuracy"] == 0.9
    # Training is deterministic per epoch, so a 2-epoch run ends with epoch 2's weights ...
    scripted([0.5, 0.9])
    epoch2 = model_arrays(run("epoch2.safetensors", 2, None))
    # ... and a 4-epoch run improving every epoch with epoch 4's.
    scripted([0.1, 0.2, 0.3, 0.4])
    epoch4 = model_arrays(run("epoch4.safetensors", 4, None))
    kept = model_arrays(stopped)
    assert all(np.array_equal(kept[k], epoch2[k]) for k in kept)
    assert not all(np.array_equal(kept[k], epoch4[k]) for k in kept)


def test_ties_keep_the_later_epoch_and_do_not_reset_patience(monkeypatch, tmp_path, scene):
    """With a few dozen validation pixels accuracies tie often; the later epoch is the better trained."""
    def run(name: str, accuracies: list[float], patience: int | None) -> tuple[dict, dict]:
        values = iter(accuracies)
        monkeypatch.setattr(train_module, "evaluate_pixels", lambda *args, **kwargs: (next(values), None))
        options = tiny_options(epochs=len(accuracies), patience=patience, lr=0.01, out=tmp_path / name)
        path = train(scene.path, options, command="test").path
        return load_arrays(path)[1]["training"], model_arrays(path)

    # Epochs 2 and 3 tie at the best accuracy: epoch 3's weights are kept. The tie is no improvement,
    # so patience 2 stops after epoch 4 (0.6), before epoch 5 (0.99) is reached.
    training, kept = run("tie.safetensors", [0.5, 0.9, 0.9, 0.6, 0.99], 2)
    assert [entry["val_accuracy"] for entry in training["history"]] == [0.5, 0.9, 0.9, 0.6]
    assert training["best_epoch"] == 3 and training["best_val_accuracy"] == 0.9
    # Training is deterministic per epoch: a 3-epoch run ends with epoch 3's weights, a 2-epoch one
    # with epoch 2's, which differ.
    _, epoch3 = run("epoch3.safetensors", [0.1, 0.2, 0.3], None)
    _, epoch2 = run("epoch2.safetensors", [0.1, 0.2], None)
    assert all(np.array_equal(kept[k], epoch3[k]) for k in kept)
    assert not all(np.array_equal(kept[k], epoch2[k]) for k in kept)


@contextlib.contextmanager
def each_optimiser_step(callback):
    """Calls `callback(optimizer)` just before every optimiser step of the trainings inside."""
    build = train_module.build_optimizer

    def hooked(*args, **kwargs):
        optimizer = build(*args, **kwargs)
        optimizer.register_step_pre_hook(lambda opt, *_: callback(opt))
        return optimizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "build_optimizer", hooked)
        yield


def global_grad_norm(optimizer) -> float:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


@pytest.mark.parametrize(
    ("schedule", "warmup", "expected"),
    [
        ("constant", 0, [0.01] * 6),
        ("constant", 3, [0.01 / 3, 0.02 / 3, 0.01, 0.01, 0.01, 0.01]),
        # cosine over the 3 epochs after the warm-up: 1, (1 + cos(π/3))/2, (1 + cos(2π/3))/2
        ("cosine", 3, [0.01 / 3, 0.02 / 3, 0.01, 0.01, 0.0075, 0.0025]),
        ("step", 0, [0.01 * 0.9**k for k in range(6)]),  # × 0.9 every max(1, 6 // 10) epochs
    ],
)
def test_learning_rate_warmup_and_schedule_reach_the_optimiser(tmp_path, scene, schedule, warmup, expected):
    seen = []
    options = tiny_options(epochs=6, lr=0.01, schedule=schedule, warmup=warmup, batch_size=1000,
                           out=tmp_path / "lr.safetensors")
    with each_optimiser_step(lambda optimizer: seen.append(optimizer.param_groups[0]["lr"])):
        result = train(scene.path, options, command="test")
    history = load_arrays(result.path)[1]["training"]["history"]
    np.testing.assert_allclose([entry["lr"] for entry in history], expected, rtol=1e-12)
    np.testing.assert_allclose(seen, expected, rtol=1e-12)  # one batch per epoch
    assert load_arrays(result.path)[1]["training"]["hyper"]["warmup"] == warmup


def test_clip_grad_bounds_every_steps_gradient_norm(tmp_path, scene):
    def norms(clip: float | None) -> list[float]:
        seen = []
        options = tiny_options(epochs=2, lr=0.01, clip_grad=clip, batch_size=16, out=tmp_path / f"{clip}.safetensors")
        with each_optimiser_step(lambda optimizer: seen.append(global_grad_norm(optimizer))):
            result = train(scene.path, options, command="test")
        assert load_arrays(result.path)[1]["training"]["hyper"]["clip_grad"] == clip
        return seen

    free = norms(None)
    assert min(free) > 0.05  # the bound below really binds
    clipped = norms(0.05)
    assert len(clipped) == len(free)
    np.testing.assert_allclose(clipped, 0.05, rtol=1e-4)


def test_ema_keeps_the_moving_average_of_every_steps_weights(tmp_path, scene):
    """One batch per epoch: the checkpoint of the best epoch e holds the average after e steps,
    computed here from the live weights seen around every optimiser step."""
    decay = 0.6
    live = []  # the weights before the first step, then after every step
    build = train_module.build_optimizer

    def hooked(parameters, hyper):
        parameters = list(parameters)
        optimizer = build(parameters, hyper)
        snapshot = lambda *_: live.append([p.detach().clone().double() for p in parameters])
        optimizer.register_step_pre_hook(lambda *_: None if live else snapshot())
        optimizer.register_step_post_hook(snapshot)
        return optimizer

    options = tiny_options(epochs=5, lr=0.05, ema=decay, batch_size=1000, out=tmp_path / "ema.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "build_optimizer", hooked)
        result = train(scene.path, options, command="test")
    arrays, meta = load_arrays(result.path)
    assert meta["training"]["hyper"]["ema"] == decay
    best = meta["training"]["best_epoch"]
    average = live[0]
    for n, weights in enumerate(live[1:best + 1]):
        keep = min(decay, (1 + n) / (10 + n))
        average = [keep * a + (1 - keep) * w for a, w in zip(average, weights)]
    names = [name for name, _ in create_model("hybridsn", 8, 3, **TINY).named_parameters()]
    for name, expected, last in zip(names, average, live[best]):
        np.testing.assert_allclose(arrays[f"model.{name}"], expected.numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(arrays[f"model.{name}"], last.numpy())  # not the live weights


def test_weight_average_follows_integer_buffers_and_averages_statistics():
    norm = torch.nn.BatchNorm1d(2)
    average = WeightAverage(norm, 0.5)
    norm.train()(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))  # running_mean 0 → 0.1 × batch mean (2, 4)
    average.update(norm)  # keeps min(0.5, 1/10) of the shadow
    np.testing.assert_allclose(average.state["running_mean"].numpy(), 0.9 * np.array([0.2, 0.4]), rtol=1e-6)
    assert int(average.state["num_batches_tracked"]) == 1 and average.updates == 1
    assert average.keep() == pytest.approx(2 / 11)


def test_unknown_schedule_is_an_error(tmp_path, scene):
    with pytest.raises(HsiError, match="unknown learning-rate schedule 'linear'"):
        train(scene.path, tiny_options(schedule="linear", out=tmp_path / "a.safetensors"), command="test")
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_pseudo_labels_add_pixels_outside_validation_and_test(tmp_path):
    from sklearn.svm import SVC

    store = make_scene(tmp_path / "p.zarr", noise=1.0, seed=2)
    gt = store.gt().astype(np.int64)
    split = store.read_layer("splits", "s").data
    rng = np.random.default_rng(5)
    # Random pseudo-labels everywhere, also on validation and test pixels (which must never train)
    # and on training pixels (whose ground truth wins).
    pseudo = rng.integers(1, 4, gt.shape).astype(np.uint16)
    pseudo[rng.random(gt.shape) < 0.3] = 0
    store.add_layer("labels", "pl", pseudo, {})
    result = train(store.path, TrainOptions(model="svm", labels="pl"), command="test")
    assert "pl" in result.path.name
    stored = PredictionStore.open(predict(result.path, PredictOptions(), command="test").path)

    is_train = (split == TRAIN) & (gt > 0)
    added = (pseudo > 0) & (split == UNUSED)
    assert added.sum() > 20 and ((pseudo > 0) & np.isin(split, (VAL, TEST))).sum() > 20
    cube = store.cube()
    x_all = cube.reshape(-1, cube.shape[2])

    def fitted_map(mask: np.ndarray) -> np.ndarray:
        targets = np.where(is_train, gt - 1, pseudo.astype(np.int64) - 1)
        rows, cols = np.nonzero(mask)
        svc = SVC(kernel="rbf", C=100.0, gamma="scale", probability=True, random_state=0)
        return (svc.fit(cube[rows, cols], targets[rows, cols]).predict(x_all) + 1).reshape(gt.shape)

    assert np.array_equal(stored.classes(), fitted_map(is_train | added))
    leaky = is_train | ((pseudo > 0) & (split != TRAIN))
    assert not np.array_equal(stored.classes(), fitted_map(leaky))


def test_init_starts_from_the_checkpoints_weights(tmp_path, scene, hybrid_ckpt):
    # lr 0 keeps the starting weights, so the result shows where training started.
    start = model_arrays(hybrid_ckpt)
    tuned = train(scene.path, tiny_options(seed=7, lr=0.0, epochs=1, init=hybrid_ckpt, out=tmp_path / "i.safetensors"),
                  command="test")
    fresh = train(scene.path, tiny_options(seed=7, lr=0.0, epochs=1, out=tmp_path / "f.safetensors"), command="test")
    tuned_arrays, meta = load_arrays(tuned.path)
    assert all(np.array_equal(tuned_arrays[k], start[k]) for k in start)
    assert not all(np.array_equal(model_arrays(fresh.path)[k], start[k]) for k in start)
    assert meta["provenance"]["inputs"]["init"]["path"] == str(hybrid_ckpt.absolute())


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_default_checkpoint_names_and_rerun(tmp_path):
    store = make_scene(tmp_path / "d.zarr")
    gt = store.gt()
    store.add_layer("splits", "t", stratified(gt, train=0.3, val=0.1, seed=9).astype(np.uint8), {})
    runs = [("svm", "s", 0), ("svm", "s", 1), ("svm", "t", 0), ("rf", "s", 0)]
    paths = [train(store.path, TrainOptions(model=model, split=split, seed=seed,
                                            model_args={"n_estimators": 5} if model == "rf" else {}),
                   command="test").path for model, split, seed in runs]
    assert len(set(paths)) == len(runs)
    assert all(path.parent == tmp_path and path.is_file() for path in paths)

    before = paths[0].read_bytes(), paths[0].stat().st_mtime_ns
    again = train(store.path, TrainOptions(model="svm", split="s", seed=0), command="test")
    assert again.reused and again.path == paths[0]
    assert (paths[0].read_bytes(), paths[0].stat().st_mtime_ns) == before
    # Other settings under the same default name are never written over silently.
    with pytest.raises(OutputExistsError):
        train(store.path, TrainOptions(model="svm", split="s", seed=0, model_args={"C": 10.0}), command="test")
    assert paths[0].read_bytes() == before[0]


def test_rerunning_a_finished_torch_training_is_a_no_op(scene, hybrid_ckpt):
    before = hybrid_ckpt.read_bytes()
    again = train(scene.path, tiny_options(out=hybrid_ckpt), command="test")
    assert again.reused and again.path == hybrid_ckpt and hybrid_ckpt.read_bytes() == before
    with pytest.raises(OutputExistsError):
        train(scene.path, tiny_options(out=hybrid_ckpt, epochs=4), command="test")


def test_patch_option_sizes_the_model(tmp_path, scene):
    # `--patch 7` alone must give a 7×7 HybridSN: the dense layer's width depends on the window.
    args = {k: v for k, v in TINY.items() if k != "patch"}
    result = train(scene.path, tiny_options(model_args=args, patch=7, epochs=1, out=tmp_path / "p7.safetensors"),
                   command="test")
    meta = load_arrays(result.path)[1]
    assert meta["input"]["patch"] == 7
    assert load_model(result.path)[1]["model_args"]["patch"] == 7
    stored = PredictionStore.open(predict(result.path, PredictOptions(device="cpu"), command="test").path)
    assert stored.classes().shape == scene.shape[:2]
    # A contradicting window size in --model-args is an error, not a silently ignored setting.
    with pytest.raises(HsiError, match="patch"):
        train(scene.path, tiny_options(patch=7, out=tmp_path / "p5.safetensors"), command="test")


def test_training_and_prediction_report_progress_within_epochs_and_row_blocks(monkeypatch, tmp_path, scene):
    steps: list[tuple[int, int]] = []
    options = tiny_options(epochs=2, batch_size=16, out=tmp_path / "p.safetensors")
    checkpoint = train(scene.path, options, command="t", on_progress=lambda done, total: steps.append((done, total))).path
    labelled = int(training_pixels(scene)[1].size)
    per_epoch = -(-labelled // 16)
    assert steps == [(done, 2 * per_epoch) for done in range(1, 2 * per_epoch + 1)]
    # 20 rows in one 64-row block: batches of 7 pixels still move the count row by row.
    rows: list[tuple[int, int]] = []
    predict(checkpoint, PredictOptions(device="cpu", batch_size=7, out=tmp_path / "p.zarr"), command="t",
            on_progress=lambda done, total: rows.append((done, total)))
    assert {total for _, total in rows} == {20}
    done = [d for d, _ in rows]
    assert done == sorted(done) and done[-1] == 20 and len(set(done)) >= 15
