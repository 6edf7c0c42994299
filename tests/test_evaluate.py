"""`hsi evaluate`: metrics on the split's test pixels only, saved beside the prediction; runs summarised.

Prediction stores are written directly with chosen class maps, so the expected metrics are known.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from hsicli.cli import main
from hsicli.data.splits import TEST, TRAIN, VAL, stratified
from hsicli.engine.evaluate import evaluate
from hsicli.engine.metrics import format_table
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore

CLASSES = ["a", "b", "c", "d"]
# What differs between evaluations of the same class map: where it was read from and when.
RUN_FIELDS = {"prediction", "provenance", "inference_seconds"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneStore:
    """24×24, four class stripes, split "s" (30 % train, 10 % val, the rest test)."""
    path = tmp_path_factory.mktemp("evaluate") / "e.zarr"
    rng = np.random.default_rng(0)
    gt = np.broadcast_to(np.arange(24) * 4 // 24 + 1, (24, 24)).astype(np.uint16)
    gt[rng.random(gt.shape) < 0.2] = 0
    store = SceneStore.create(
        path, cube=rng.normal(size=(24, 24, 3)).astype(np.float32), gt=gt, rgb=np.zeros((24, 24, 3), np.uint8),
        attrs={"class_names": CLASSES, "class_colors": ["#000000"] * 4},
        transform={"offset": np.zeros(3, np.float32)}, transform_attrs={},
    )
    store.add_layer("splits", "s", stratified(gt, train=0.3, val=0.1, seed=0).astype(np.uint8), {})
    return SceneStore.open(path)


def sets(scene: SceneStore) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth, split layer)."""
    return scene.gt().astype(np.int64), scene.read_layer("splits", "s").data


def noisy_map(scene: SceneStore, error_rate: float, seed: int) -> np.ndarray:
    """The ground truth with a fraction of pixels set to another class (and random background)."""
    gt, _ = sets(scene)
    rng = np.random.default_rng(seed)
    classes = np.where(gt > 0, gt, rng.integers(1, 5, gt.shape))
    wrong = rng.random(gt.shape) < error_rate
    return np.where(wrong, classes % 4 + 1, classes).astype(np.uint16)


def write_prediction(path: Path, scene: SceneStore, classes: np.ndarray) -> Path:
    """A prediction store of `classes` with one-hot probabilities, attributed to split "s"."""
    height, width = classes.shape
    attrs = {"model": "handmade", "class_names": CLASSES, "class_colors": ["#000000"] * 4,
             "scene_store": scene.describe(), "split": "s"}
    with PredictionStore.build(path, height=height, width=width, n_classes=4, probabilities=True,
                               attrs=attrs) as writer:
        probabilities = np.eye(4, dtype=np.float32)[classes.astype(np.int64) - 1]
        writer.write_rows(0, classes, probabilities, np.zeros((height, width), np.float32))
    return path


def test_only_the_splits_test_pixels_count(tmp_path, scene):
    gt, split = sets(scene)
    test = (split == TEST) & (gt > 0)
    classes = noisy_map(scene, 0.2, seed=1)
    original = evaluate([write_prediction(tmp_path / "a.pred.zarr", scene, classes)], split=None, out=None,
                        command="test").result
    assert original["n"] == test.sum()
    assert original["oa"] == pytest.approx((classes[test] == gt[test]).mean(), abs=1e-12)

    # Every pixel outside the test set wrong: nothing changes.
    outside = np.where(test, classes, gt % 4 + 1).astype(np.uint16)
    assert ((outside != gt) & (split == TRAIN)).any() and ((outside != gt) & (split == VAL)).any()
    corrupted = evaluate([write_prediction(tmp_path / "b.pred.zarr", scene, outside)], split=None, out=None,
                         command="test").result
    assert {k: v for k, v in corrupted.items() if k not in RUN_FIELDS} == {
        k: v for k, v in original.items() if k not in RUN_FIELDS
    }
    # One more wrong test pixel does change them.
    row, col = np.argwhere(test & (classes == gt))[0]
    outside[row, col] = gt[row, col] % 4 + 1
    changed = evaluate([write_prediction(tmp_path / "c.pred.zarr", scene, outside)], split=None, out=None,
                       command="test").result
    assert changed["oa"] == pytest.approx(original["oa"] - 1 / test.sum(), abs=1e-12)


def test_metrics_json_is_saved_beside_the_prediction(tmp_path, scene):
    prediction = write_prediction(tmp_path / "run.pred.zarr", scene, noisy_map(scene, 0.1, seed=2))
    result = evaluate([prediction], split=None, out=None, command="test")
    assert result.path == tmp_path / "run.metrics.json"
    saved = json.loads(result.path.read_text())
    assert saved["oa"] == result.result["oa"] and saved["prediction"] == str(prediction)
    assert saved["split"] == "s" and saved["model"] == "handmade"


def test_several_runs_give_mean_and_std(tmp_path, scene):
    gt, split = sets(scene)
    test = (split == TEST) & (gt > 0)
    maps = [noisy_map(scene, rate, seed) for seed, rate in enumerate((0.05, 0.15, 0.3))]
    paths = [write_prediction(tmp_path / f"r{i}.pred.zarr", scene, m) for i, m in enumerate(maps)]
    result = evaluate(paths, split=None, out=tmp_path / "summary.json", command="test")
    oas = np.array([(m[test] == gt[test]).mean() for m in maps])
    assert result.result["runs"] == 3
    assert result.result["oa"]["mean"] == pytest.approx(oas.mean(), abs=1e-12)
    assert result.result["oa"]["std"] == pytest.approx(oas.std(ddof=1), abs=1e-12)
    kappas = [cohen_kappa_score(gt[test], m[test]) for m in maps]
    assert result.result["kappa"]["mean"] == pytest.approx(np.mean(kappas), abs=1e-12)
    per_class_a = [(m[test & (gt == 1)] == 1).mean() for m in maps]
    assert result.result["per_class"][0]["accuracy"]["mean"] == pytest.approx(np.mean(per_class_a), abs=1e-12)
    # Each run's metrics beside its prediction, the summary where asked.
    assert [json.loads((tmp_path / f"r{i}.metrics.json").read_text())["oa"] for i in range(3)] == pytest.approx(oas)
    assert json.loads((tmp_path / "summary.json").read_text())["oa"]["mean"] == pytest.approx(oas.mean())


def test_dropped_classes_are_left_out_and_marked(tmp_path, scene):
    # A split made with --min-pixels that dropped class 4 ("d"): its pixels are no test pixels,
    # the metrics cover classes 1-3 only, and the tables mark the class as dropped.
    gt, _ = sets(scene)
    layer = stratified(np.where(gt == 4, 0, gt), train=0.3, val=0.1, seed=1).astype(np.uint8)
    scene.add_layer("splits", "min", layer, {"dropped": [{"class": 4, "name": "d", "pixels": int((gt == 4).sum())}]})
    test = (layer == TEST) & (gt > 0)
    maps = [noisy_map(scene, rate, seed) for seed, rate in enumerate((0.1, 0.2))]
    paths = [write_prediction(tmp_path / f"m{i}.pred.zarr", scene, m) for i, m in enumerate(maps)]
    one = evaluate(paths[:1], split="min", out=None, command="test").result
    assert one["n"] == int(test.sum()) and not (test & (gt == 4)).any()
    assert one["oa"] == pytest.approx((maps[0][test] == gt[test]).mean(), abs=1e-12)
    assert one["per_class"][3]["dropped"] is True and one["per_class"][3]["accuracy"] is None
    assert not any(row.get("dropped") for row in one["per_class"][:3])
    assert [row[0] for row in format_table(one)[1:5]] == ["a", "b", "c", "d (dropped)"]
    summary = evaluate(paths, split="min", out=tmp_path / "min.json", command="test").result
    assert [row[0] for row in format_table(summary)[1:5]] == ["a", "b", "c", "d (dropped)"]
    # On the split that kept class 4, nothing is marked.
    assert not any(row.get("dropped") for row in evaluate(paths[:1], split="s", out=None, command="test").result["per_class"])


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["hsi", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err


def test_cli_json_csv_and_latex(monkeypatch, capsys, tmp_path, scene):
    gt, split = sets(scene)
    test = (split == TEST) & (gt > 0)
    classes = noisy_map(scene, 0.2, seed=3)
    prediction = write_prediction(tmp_path / "x.pred.zarr", scene, classes)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", prediction, "--json", "--csv", tmp_path / "t.csv",
                             "--latex", tmp_path / "t.tex")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["path"] == str(tmp_path / "x.metrics.json")
    assert metrics["oa"] == pytest.approx((classes[test] == gt[test]).mean(), abs=1e-12)
    assert metrics["aa"] == pytest.approx(balanced_accuracy_score(gt[test], classes[test]), abs=1e-12)
    assert metrics["kappa"] == pytest.approx(cohen_kappa_score(gt[test], classes[test]), abs=1e-12)

    rows = list(csv.reader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert rows[0][0] == "class" and [r[0] for r in rows[1:5]] == CLASSES
    accuracy = rows[0].index("accuracy")
    oa_row = next(r for r in rows if r[0] == "oa")
    assert float(oa_row[accuracy]) == pytest.approx(metrics["oa"])
    assert float(rows[1][accuracy]) == pytest.approx((classes[test & (gt == 1)] == 1).mean())

    latex = (tmp_path / "t.tex").read_text()
    assert latex.startswith(r"\begin{tabular}") and r"\end{tabular}" in latex
    assert f"{100 * metrics['oa']:.2f}" in latex and f"{100 * metrics['kappa']:.2f}" in latex


def test_cli_several_runs(monkeypatch, capsys, tmp_path, scene):
    paths = [write_prediction(tmp_path / f"m{i}.pred.zarr", scene, noisy_map(scene, 0.1 * (i + 1), seed=i))
             for i in range(2)]
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", *paths, "--csv", tmp_path / "s.csv", "-q")
    assert code == 0, err
    summary = Path(out.strip())
    assert summary.parent == tmp_path and summary.name.endswith(".metrics.json")
    runs = [json.loads((tmp_path / f"m{i}.metrics.json").read_text())["oa"] for i in range(2)]
    assert json.loads(summary.read_text())["oa"]["mean"] == pytest.approx(np.mean(runs))
    rows = list(csv.reader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert rows[0] == ["class", "accuracy_mean", "accuracy_std", "runs"]
    oa_row = next(r for r in rows if r[0] == "oa")
    assert float(oa_row[1]) == pytest.approx(np.mean(runs)) and float(oa_row[2]) == pytest.approx(np.std(runs, ddof=1))
