"""`hsi pseudolabel` (issue 6, HSIseg §3.5, eqs. 47-53): the threshold rule on hand-made maps, the
empty mask, τ2 + ζ per round, training labels kept, evaluation pixels never given their true label,
the stored layer and its record; and the SalinasA pipe end to end once the engine is wired.
"""

from __future__ import annotations

import inspect
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hsicli.data.splits import TEST, TRAIN, UNUSED, VAL
from hsicli.engine.segmentation import pseudo_layer, pseudo_threshold, round_tau
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore

CLASS_NAMES = ["a", "b", "c"]


# -- the rule on hand-made maps -----------------------------------------------------------------


def one_hot_map(confidence: np.ndarray, predicted: np.ndarray, classes: int = 3) -> np.ndarray:
    """(H, W, C) probabilities whose maximum is `confidence` at class index `predicted`."""
    rest = (1 - confidence) / (classes - 1)
    p = np.repeat(rest[..., None], classes, axis=2)
    np.put_along_axis(p, predicted[..., None], confidence[..., None], axis=2)
    return p.astype(np.float32)


def map_statistic(probabilities: np.ndarray) -> float:
    """μ + σ over every class probability of every pixel, written out: μ = 1/C, σ² = E[p²] − μ²."""
    mean = 1 / probabilities.shape[2]
    return mean + math.sqrt(float((probabilities.astype(np.float64) ** 2).mean()) - mean**2)


def test_threshold_is_tau_when_tau_exceeds_mean_plus_std():
    # Over the 12 probabilities: μ = 1/3, E[p²] = 1.8046875 / 12, μ + σ ≈ 0.5315 < τ = 0.7: T = τ.
    probabilities = one_hot_map(np.array([[0.5, 0.5], [0.625, 0.75]]), np.array([[0, 1], [2, 1]]))
    assert math.isclose(map_statistic(probabilities), 1 / 3 + math.sqrt(1.8046875 / 12 - 1 / 9), rel_tol=1e-6)
    threshold, statistic = pseudo_threshold(probabilities, 0.7)
    assert threshold == 0.7 and math.isclose(statistic, 0.5315, abs_tol=1e-4)
    layer = pseudo_layer(probabilities, np.zeros((2, 2), int), np.zeros((2, 2), bool), tau=0.7)
    assert layer.record["threshold"] == 0.7 and layer.record["tau"] == 0.7
    assert math.isclose(layer.record["mean_plus_std"], map_statistic(probabilities), rel_tol=1e-6)
    assert layer.labels.tolist() == [[0, 0], [0, 2]], "class ids (1..C), not indices"


def test_threshold_is_mean_plus_std_when_that_exceeds_tau():
    # The same map with τ = 0.3: T = μ + σ ≈ 0.5315, so the 0.625 and 0.75 pixels.
    predicted = np.array([[0, 1], [2, 1]])
    probabilities = one_hot_map(np.array([[0.5, 0.5], [0.625, 0.75]]), predicted)
    layer = pseudo_layer(probabilities, np.zeros((2, 2), int), np.zeros((2, 2), bool), tau=0.3)
    assert math.isclose(layer.record["threshold"], map_statistic(probabilities), rel_tol=1e-6)
    assert layer.labels.tolist() == [[0, 0], [3, 2]]
    assert layer.record["added_per_class"] == [0, 1, 1]
    # With τ = 0.75 the 0.75 pixel is kept: pixels at or above T are selected.
    at_tau = pseudo_layer(probabilities, np.zeros((2, 2), int), np.zeros((2, 2), bool), tau=0.75)
    assert at_tau.record["threshold"] == 0.75 and at_tau.labels.tolist() == [[0, 0], [0, 2]]


def test_a_confident_map_labels_its_confident_pixels():
    """Nine pixels at 0.99 and one at 0.5. The statistic of the maxima, μ + σ = 0.941 + 0.147 > 0.99,
    would admit nothing (SalinasA's 1.05); over the probability map it stays under 0.81 for 3 classes."""
    conf = np.array([[0.99] * 5, [0.99] * 4 + [0.5]])
    layer = pseudo_layer(one_hot_map(conf, np.ones((2, 5), int)), np.zeros((2, 5), int),
                         np.zeros((2, 5), bool), tau=0.7)
    assert layer.record["confidence_mean"] + layer.record["confidence_std"] > 0.99
    assert 0.7 < layer.record["mean_plus_std"] == layer.record["threshold"] < 0.8  # (1 + √2)/3 at most
    assert layer.record["added"] == 9 and layer.record["added_per_class"] == [0, 9, 0]
    assert layer.labels.tolist() == [[2] * 5, [2] * 4 + [0]]


def test_the_statistic_is_bounded_below_one_for_three_or_more_classes():
    """μ + σ ≤ (1 + √(C − 1)) / C, reached by a one-hot map: τ decides on a confident map."""
    rng = np.random.default_rng(0)
    for classes in (3, 4, 6, 16):
        one_hot = np.eye(classes)[rng.integers(0, classes, (7, 5))]
        bound = (1 + math.sqrt(classes - 1)) / classes
        assert math.isclose(pseudo_threshold(one_hot, 0.0)[1], bound, rel_tol=1e-9) and bound < 0.81
        diffuse = rng.dirichlet(np.ones(classes), (7, 5))
        assert pseudo_threshold(diffuse, 0.0)[1] < bound


def test_tau_grows_by_zeta_each_round():
    assert round_tau(0.7, 0.005, 1) == 0.7
    assert math.isclose(round_tau(0.7, 0.005, 3), 0.71)
    assert math.isclose(round_tau(0.7, 0.005, 14), 0.765)
    with pytest.raises(Exception, match="round"):
        round_tau(0.7, 0.005, 0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("include_eval", [False, True])
def test_training_labels_are_kept_and_evaluation_pixels_never_get_their_truth(seed, include_eval):
    rng = np.random.default_rng(seed)
    height, width, classes = 12, 9, 3
    gt = rng.integers(0, classes + 1, (height, width))
    split = np.where(gt > 0, rng.choice([TRAIN, VAL, TEST], (height, width), p=[0.2, 0.2, 0.6]), UNUSED)
    # The model predicts a wrong class at every labelled pixel, confidently at half of them.
    predicted = np.where(gt > 0, gt % classes, rng.integers(0, classes, (height, width)))  # index ≠ gt − 1
    confidence = np.where(rng.random((height, width)) < 0.3, 0.99, rng.uniform(0.34, 0.6, (height, width)))
    train_labels = np.where(split == TRAIN, gt, 0)
    evaluation = (split == VAL) | (split == TEST)
    layer = pseudo_layer(one_hot_map(confidence, predicted), train_labels, evaluation, tau=0.5,
                         include_eval=include_eval)
    labels = layer.labels
    train = split == TRAIN
    assert np.array_equal(labels[train], gt[train]), "original training labels always kept"
    assert not (labels[evaluation] == gt[evaluation]).any() if evaluation.any() else True
    if include_eval:
        chosen = evaluation & (labels > 0)
        assert chosen.any() and np.array_equal(labels[chosen], predicted[chosen] + 1)
    else:
        assert not labels[evaluation].any()
    new = (labels > 0) & ~train
    assert np.array_equal(labels[new], predicted[new] + 1)
    assert (confidence[new] >= layer.record["threshold"] - 1e-6).all()
    assert layer.record["added"] == int(new.sum()) == sum(layer.record["added_per_class"])
    assert layer.record["training_pixels"] == int(train.sum())


# -- the command --------------------------------------------------------------------------------


def make_scene(path: Path, *, height: int = 10, width: int = 8, cube_noise: float | None = None) -> SceneStore:
    """Three vertical class stripes, a few unlabelled pixels; split "s": 2 train per class, 1 val, rest test.

    The cube is zero unless `cube_noise` is given: then each class has its own spectrum plus noise.
    """
    gt = np.broadcast_to(np.arange(width) * 3 // width + 1, (height, width)).astype(np.uint16).copy()
    gt[::4, ::3] = 0
    split = np.where(gt > 0, TEST, UNUSED).astype(np.uint8)
    for cls in (1, 2, 3):
        rows, cols = np.nonzero(gt == cls)
        split[rows[:2], cols[:2]] = TRAIN
        split[rows[2], cols[2]] = VAL
    rng = np.random.default_rng(0)
    cube = np.zeros((height, width, 4), np.float32)
    if cube_noise is not None:
        stripes = np.broadcast_to(np.arange(width) * 3 // width, (height, width))
        cube = (np.eye(4, dtype=np.float32)[stripes] + cube_noise * rng.normal(size=cube.shape)).astype(np.float32)
    store = SceneStore.create(
        path, cube=cube, gt=gt, rgb=np.zeros((height, width, 3), np.uint8),
        attrs={"class_names": CLASS_NAMES, "class_colors": ["#ff0000", "#00ff00", "#0000ff"]},
        transform={"offset": np.zeros(4, np.float32)}, transform_attrs={},
    )
    store.add_layer("splits", "s", split, {})
    return SceneStore.open(path)


def make_prediction(path: Path, store: SceneStore, probabilities: np.ndarray, checkpoint_sha: str = "ab" * 32) -> Path:
    """A prediction store as `hsi predict` writes it (the attributes pseudolabel reads)."""
    height, width, classes = probabilities.shape
    attrs = {"model": "hsiseg", "class_names": CLASS_NAMES, "split": "s", "scene_store": store.describe(),
             "checkpoint": {"path": str(path.parent / "model.safetensors"), "sha256": checkpoint_sha}}
    with PredictionStore.build(path, height=height, width=width, n_classes=classes, probabilities=True,
                               attrs=attrs) as writer:
        writer.write_rows(0, probabilities.argmax(2).astype(np.uint16) + 1, probabilities,
                          np.zeros((height, width), np.float32))
    return path


@pytest.fixture
def run(cli, monkeypatch):
    """`hsi pseudolabel …` in-process through the real entry point (registered here until the lead
    lists it in hsicli/cli/commands.py; the registration is undone after the test)."""
    from hsicli.cli import app, commands
    from hsicli.cli.pseudolabel import pseudolabel

    if "pseudolabel" not in dict(commands.COMMANDS):
        monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
        app.command("pseudolabel")(pseudolabel)

    def invoke(*args, input: str = ""):
        return cli("pseudolabel", *args, input=input)

    return invoke


@pytest.fixture
def scene(tmp_path):
    store = make_scene(tmp_path / "scene.zarr")
    rng = np.random.default_rng(0)
    predicted = (store.gt().astype(int) + 1) % 3  # wrong everywhere labelled: class index ≠ gt − 1
    confidence = np.where(rng.random(predicted.shape) < 0.3, 0.97, rng.uniform(0.4, 0.8, predicted.shape))
    probabilities = one_hot_map(confidence, predicted)
    return store, make_prediction(tmp_path / "model.pred.zarr", store, probabilities), probabilities


def test_command_writes_a_layer_and_prints_its_path(run, scene):
    store, pred, probabilities = scene
    result = run(str(pred), "--tau", "0.7", "--round", "3", "--name", "r3")
    assert result.exit_code == 0, result.stderr
    assert result.lines == [str(store.path.absolute() / "labels" / "r3")]
    layer = SceneStore.open(store.path).read_layer("labels", "r3")
    split = store.read_layer("splits", "s").data
    gt = store.gt()
    confidence = probabilities.max(2)
    threshold = max(0.71, map_statistic(probabilities))
    expected = np.where((confidence >= threshold) & (split == UNUSED), probabilities.argmax(2) + 1, 0)
    expected = np.where(split == TRAIN, gt, expected)
    assert np.array_equal(layer.data, expected)
    attrs = layer.attrs
    assert math.isclose(attrs["tau"], 0.71) and attrs["round"] == 3 and attrs["tau_base"] == 0.7
    assert math.isclose(attrs["threshold"], threshold, rel_tol=1e-6)
    assert attrs["added"] == int(((expected > 0) & (split != TRAIN)).sum()) > 0
    assert attrs["added_per_class"] == [int(((expected == c) & (split != TRAIN)).sum()) for c in (1, 2, 3)]
    assert attrs["source_prediction"] == str(pred.absolute()) and attrs["split"] == "s"
    assert attrs["includes_eval_locations"] is False
    assert "labels/r3" in result.stderr and "added" in result.stderr


def test_default_name_and_rerun_is_a_no_op(run, scene):
    store, pred, _ = scene
    first = run(str(pred))
    assert first.exit_code == 0, first.stderr
    assert first.lines == [str(store.path.absolute() / "labels" / "pseudo1-abababab")]
    again = run(input=f"{pred}\n")
    assert again.exit_code == 0 and again.lines == first.lines
    other_rule = run(str(pred), "--tau", "0.99", "--zeta", "0.01", "--include-eval")  # its own default name
    assert other_rule.exit_code == 0, other_rule.stderr
    assert other_rule.lines == [str(store.path.absolute() / "labels" / "pseudo1-abababab-tau0.99-zeta0.01-eval")]
    clash = run(str(pred), "--tau", "0.99", "--name", "pseudo1-abababab")
    assert clash.exit_code == 1 and "already exists" in clash.stderr and clash.stdout == ""


def test_include_eval_labels_evaluation_pixels_with_predictions_only(run, scene):
    store, pred, probabilities = scene
    result = run(str(pred), "--tau", "0.5", "--include-eval", "--name", "all", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["includes_eval_locations"] is True and record["name"] == "all"
    labels = SceneStore.open(store.path).read_layer("labels", "all").data
    split = store.read_layer("splits", "s").data
    gt = store.gt()
    evaluation = (split == VAL) | (split == TEST)
    assert (labels[evaluation] > 0).any()
    assert not (labels[evaluation] == gt[evaluation]).any(), "a test pixel's true label never enters the layer"


def test_empty_mask_warns_and_records_zero_added(run, tmp_path):
    store = make_scene(tmp_path / "conf.zarr")
    confidence = np.full(store.shape[:2], 0.6)  # no pixel reaches τ = 0.7
    confidence[0, 0] = 0.5
    pred = make_prediction(tmp_path / "conf.pred.zarr", store, one_hot_map(confidence, np.zeros(store.shape[:2], int)))
    result = run(str(pred), "--name", "empty")
    assert result.exit_code == 0, result.stderr
    assert "Warning" in result.stderr and "0 added" in result.stderr
    layer = SceneStore.open(store.path).read_layer("labels", "empty")
    assert layer.attrs["added"] == 0 and layer.attrs["added_per_class"] == [0, 0, 0]
    split = store.read_layer("splits", "s").data
    assert np.array_equal(layer.data, np.where(split == TRAIN, store.gt(), 0))


def test_prediction_without_probabilities_is_an_error(run, tmp_path):
    store = make_scene(tmp_path / "np.zarr")
    path = tmp_path / "np.pred.zarr"
    attrs = {"class_names": CLASS_NAMES, "split": "s", "scene_store": store.describe(),
             "checkpoint": {"path": "x", "sha256": "0" * 64}}
    with PredictionStore.build(path, height=10, width=8, n_classes=3, probabilities=False, attrs=attrs) as writer:
        writer.write_rows(0, np.ones((10, 8), np.uint16), np.zeros((10, 8, 3), np.float32),
                          np.zeros((10, 8), np.float32))
    result = run(str(path))
    assert result.exit_code == 1 and "no class probabilities" in result.stderr and "Hint:" in result.stderr
    bad_tau = run(str(path), "--tau", "1.5")
    assert bad_tau.exit_code == 2 and "--tau 1.5 is outside its range 0<=x<=1" in bad_tau.stderr


def test_prediction_of_some_pixels_only_is_an_error(run, tmp_path):
    """`hsi predict --pixels labelled|test` leaves the other pixels' probabilities at 0."""
    store = make_scene(tmp_path / "some.zarr")
    path = tmp_path / "some.pred.zarr"
    attrs = {"class_names": CLASS_NAMES, "split": "s", "scene_store": store.describe(),
             "checkpoint": {"path": "x", "sha256": "0" * 64}, "pixel_set": "labelled"}
    with PredictionStore.build(path, height=10, width=8, n_classes=3, probabilities=True, attrs=attrs) as writer:
        writer.write_rows(0, np.ones((10, 8), np.uint16), np.full((10, 8, 3), 1 / 3, np.float32),
                          np.zeros((10, 8), np.float32))
    result = run(str(path))
    assert result.exit_code == 1 and "labelled pixels" in result.stderr and "--pixels all" in result.stderr
    assert not [layer for layer in (tmp_path / "some.zarr").glob("labels/*") if layer.is_dir()]


def test_iterations_run_the_loop_and_keep_every_round(run, tmp_path):
    """--iterations 2: pseudolabel → train from the previous weights → predict, twice; prints the
    last prediction; τ2 grows by ζ; every round's layer, checkpoint and prediction stay on disk."""
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import read_header

    store = make_scene(tmp_path / "loop.zarr", height=14, width=12, cube_noise=0.3)
    args = {"dim": 8, "heads": 2, "grids": [3, 2], "dropout": 0.0}
    first = train(store.path, TrainOptions(model="hsiseg", model_args=args, split="s", patch=9, epochs=2,
                                           batch_size=4, device="cpu", threads=1), command="test")
    pred = predict(first.path, PredictOptions(device="cpu", threads=1), command="test").path
    result = run(str(pred), "--iterations", "2", "--epochs", "1", "--tau", "0.4", "--zeta", "0.05",
                 "--device", "cpu", "--threads", "1", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and summary["path"] == rounds[-1]["prediction"]
    store = SceneStore.open(store.path)
    previous = first.path
    for entry, tau in zip(rounds, (0.4, 0.45)):
        name = Path(entry["labels"]).name
        layer = store.read_layer("labels", name)
        assert math.isclose(layer.attrs["tau"], tau)
        _, meta = read_header(Path(entry["checkpoint"]))
        assert meta["training"]["labels"] == name and meta["training"]["hyper"]["epochs"] == 1
        # The per-round record: in the JSON summary and, for `hsi plot sweep`, in the checkpoint.
        assert meta["training"]["pseudo_round"] == entry["round"]
        assert meta["training"]["pseudo_labels"] == {key: entry[key] for key in meta["training"]["pseudo_labels"]}
        assert math.isclose(entry["tau"], tau) and entry["threshold"] == max(entry["tau"], entry["mean_plus_std"])
        assert sum(entry["added_per_class"]) == entry["added"] and 0 <= entry["oa"] <= 1
        assert meta["provenance"]["inputs"]["init"]["path"] == str(Path(previous).absolute())
        assert Path(entry["prediction"]).is_dir()
        previous = entry["checkpoint"]
    assert rounds[1]["labels"] != rounds[0]["labels"]
    assert 0 <= summary["initial_oa"] <= 1 and read_header(first.path)[1]["training"]["pseudo_round"] == 0
    # Re-running reuses every round.
    again = run(str(pred), "--iterations", "2", "--epochs", "1", "--tau", "0.4", "--zeta", "0.05",
                "--device", "cpu", "--threads", "1")
    assert again.exit_code == 0, again.stderr
    assert again.lines == [rounds[-1]["prediction"]] and "up to date" in again.stderr


def test_rounds_that_label_nothing_keep_the_previous_model(run, tmp_path):
    store = make_scene(tmp_path / "sure.zarr")
    confidence = np.full(store.shape[:2], 0.6)  # no pixel reaches τ = 0.7
    confidence[0, 0] = 0.5
    pred = make_prediction(tmp_path / "sure.pred.zarr", store, one_hot_map(confidence, np.zeros(store.shape[:2], int)))
    result = run(str(pred), "--iterations", "2", "--name", "sure", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["path"] == str(pred.absolute())
    assert [(r["round"], r["added"], r["trained"]) for r in summary["rounds"]] == [(1, 0, False), (2, 0, False)]
    assert [Path(r["labels"]).name for r in summary["rounds"]] == ["sure-1", "sure-2"]
    assert all(r["checkpoint"] == str(tmp_path / "model.safetensors") for r in summary["rounds"])
    assert result.stderr.count("0 added") == 2 and "keeping model.safetensors" in result.stderr


def test_command_is_registered():
    from hsicli.cli import commands

    if "pseudolabel" not in dict(commands.COMMANDS):
        pytest.skip("`pseudolabel` is not yet listed in hsicli/cli/commands.py (the lead's file)")
    from hsicli.cli.pseudolabel import pseudolabel

    assert dict(commands.COMMANDS)["pseudolabel"] is pseudolabel


# -- end to end on SalinasA ---------------------------------------------------------------------


def _segmenter_path_wired() -> bool:
    """The prediction engine blends windows for segmenters (`predict_windows`) instead of one
    window per pixel, and the command is registered."""
    import hsicli.engine.predict as predict_module
    from hsicli.cli import commands

    return "predict_windows" in inspect.getsource(predict_module) and "pseudolabel" in dict(commands.COMMANDS)


NOT_WIRED = pytest.mark.skipif(
    not _segmenter_path_wired(),
    reason="the lead has not wired the segmenter path yet: hsicli/engine/predict.py does not call "
           "hsicli.engine.windows.predict_windows, or `pseudolabel` is not in the command table",
)


@NOT_WIRED
def test_salinas_a_pipe_end_to_end(salinas_a, shell, tmp_path):
    cube, gt = salinas_a
    pipe = (
        f"hsi prep {cube} --gt {gt} --pca 30 | hsi split --per-class 10 --val 0 "
        "| hsi train --model hsiseg --epochs 2 --threads 1 "
        "--model-args '{\"dim\": 16, \"grids\": [6, 4], \"heads\": 2}' "
        "| hsi predict --threads 1 | hsi pseudolabel --tau 0.3 --round 1"
    )
    result = shell(pipe, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    layer_path = Path(line)
    assert layer_path.parent.name == "labels" and layer_path.name.startswith("pseudo1-")
    store = SceneStore.open(layer_path.parent.parent)
    layer = store.read_layer("labels", layer_path.name)
    split = store.read_layer("splits", "perclass10-val0-seed0").data
    assert np.array_equal(layer.data[split == TRAIN], store.gt()[split == TRAIN])
    assert not layer.data[split == TEST].any()
    assert layer.attrs["added"] == sum(layer.attrs["added_per_class"]) > 0


# -- examples/hsiseg.mk -------------------------------------------------------------------------

MAKEFILE = Path(__file__).resolve().parents[1] / "examples" / "hsiseg.mk"


def test_makefile_runs_the_papers_loops():
    from hsicli.models.hsiseg import PAPER_SETTINGS

    for target, key in (("hsiseg-ip", "ip"), ("hsiseg-pu", "pu")):
        dry = subprocess.run(["make", "-n", "-f", str(MAKEFILE), target, "HSISEG_SEEDS=0"],
                             capture_output=True, text=True, check=True).stdout
        settings = PAPER_SETTINGS[key]
        for expected in (f"fetch {settings['scene']}", f"--pca {settings['pca']}", f"--model {target}",
                         "--per-class 10 --val 0", f"--tau {settings['tau2']}", "--zeta 0.005",
                         f"--iterations {settings['iterations']}", "hsi evaluate"):
            assert expected in dry, (target, expected)
    assert PAPER_SETTINGS["ip"]["iterations"] == 14 and PAPER_SETTINGS["pu"]["iterations"] == 8


@pytest.mark.slow
@NOT_WIRED
def test_makefile_salinas_a_loop_runs(salinas_a, shell, tmp_path):
    """The CPU target with tiny settings: one seed, one round; prints the initial and final metrics."""
    result = shell(
        f"make -s -f {MAKEFILE} hsiseg-salinasA HSISEG_SEEDS=0 HSISEG_SALINASA_EPOCHS=1 "
        "HSISEG_SALINASA_ROUND_EPOCHS=1 HSISEG_SALINASA_ROUNDS=1 HSISEG_THREADS=1 "
        "HSISEG_SALINASA_MODEL_ARGS='{\"dim\": 8, \"grids\": [4], \"heads\": 2}'",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    initial, final = result.stdout.splitlines()  # the metrics of the initial and the final predictions
    for path in (initial, final):
        assert json.loads(Path(path).read_text())["split"] == "perclass10-val0-seed0"
    assert "initial stage:" in result.stderr and "after 1 pseudo-label rounds:" in result.stderr
