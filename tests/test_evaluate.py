"""`hsi evaluate`: metrics on the split's test pixels only, saved beside the prediction; runs of one
setup summarised, different setups never pooled; one table in every format.

Prediction stores are written directly with chosen class maps, so the expected metrics are known;
one test trains and predicts with a classical model to check the setup recorded on the way.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from sklearn import metrics as skm
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from hsicli.cli import main
from hsicli.data.splits import TEST, TRAIN, VAL, stratified
from hsicli.engine.evaluate import evaluate
from hsicli.engine.report import to_json
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore

CLASSES = ["a", "b", "c", "d"]
# What differs between evaluations of the same class map: where it was read from and when.
RUN_FIELDS = {"prediction", "provenance", "inference_seconds"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneStore:
    """24×24, four class stripes, split "s" (30 % train, 10 % val, the rest test) recording no protocol;
    splits "p0".."p2" of one stratified protocol (seeds 0..2) and "q0" of another (50 % train)."""
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
    for name, ratio, seed in (("p0", 0.3, 0), ("p1", 0.3, 1), ("p2", 0.3, 2), ("q0", 0.5, 0)):
        params = {"ratio": ratio, "val": 0.1, "per_class": None, "block": None, "patch": 11, "seed": seed}
        layer = stratified(gt, train=ratio, val=0.1, seed=seed).astype(np.uint8)
        store.add_layer("splits", name, layer, {"strategy": "stratified", "params": params})
    return SceneStore.open(path)


def sets(scene: SceneStore, split: str = "s") -> tuple[np.ndarray, np.ndarray]:
    """(ground truth, split layer)."""
    return scene.gt().astype(np.int64), scene.read_layer("splits", split).data


def noisy_map(scene: SceneStore, error_rate: float, seed: int) -> np.ndarray:
    """The ground truth with a fraction of pixels set to another class (and random background)."""
    gt, _ = sets(scene)
    rng = np.random.default_rng(seed)
    classes = np.where(gt > 0, gt, rng.integers(1, 5, gt.shape))
    wrong = rng.random(gt.shape) < error_rate
    return np.where(wrong, classes % 4 + 1, classes).astype(np.uint16)


def training(model: str, **model_args) -> dict:
    """A training setup as `hsi predict` records it from the checkpoint."""
    return {"model": model, "model_args": model_args, "hyper": {"epochs": 1, "patch": 11}, "class_weights": None,
            "amp": None, "labels": None, "init": None}


def write_prediction(path: Path, scene: SceneStore, classes: np.ndarray, *, split: str = "s",
                     model: str = "handmade", setup: dict | None = None) -> Path:
    """A prediction store of `classes` with one-hot probabilities, attributed to `split`; `setup`:
    the training setup it records (none by default, as a store predicted before setups were)."""
    height, width = classes.shape
    attrs = {"model": model, "class_names": CLASSES, "class_colors": ["#000000"] * 4,
             "scene_store": scene.describe(), "split": split}
    if setup is not None:
        attrs["training_setup"] = setup
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
    assert [row.label for row in evaluate(paths[:1], split="min", out=None, command="test").tables[0].rows] == [
        "a", "b", "c", "d (dropped)"]
    summary = evaluate(paths, split="min", out=tmp_path / "min.json", command="test")
    assert [row.label for row in summary.tables[0].rows[:4]] == ["a", "b", "c", "d (dropped)"]
    # On the split that kept class 4, nothing is marked.
    assert not any(row.get("dropped") for row in evaluate(paths[:1], split="s", out=None, command="test").result["per_class"])


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["hsi", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err



def test_cli_several_runs_print_the_summary_path(monkeypatch, capsys, tmp_path, scene):
    paths = [write_prediction(tmp_path / f"m{i}.pred.zarr", scene, noisy_map(scene, 0.1 * (i + 1), seed=i))
             for i in range(2)]
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", *paths, "-q")
    assert code == 0 and err == "", err
    summary = Path(out.strip())
    assert summary.parent == tmp_path and summary.name.startswith("summary-") and summary.name.endswith(".metrics.json")
    runs = [json.loads((tmp_path / f"m{i}.metrics.json").read_text())["oa"] for i in range(2)]
    saved = json.loads(summary.read_text())
    assert saved["runs"] == 2 and saved["oa"]["mean"] == pytest.approx(np.mean(runs))
    assert saved["label"] == "handmade" and len(saved["run_metrics"]) == 2


# -- two models × three seeds: grouped, checked against scikit-learn, one table in every format ------

MODELS = {"svm": 0.1, "rf": 0.3}  # model: share of wrong pixels in its class maps
SEEDS = (0, 1, 2)
SCORE_ROWS = {"OA (%)": "oa", "AA (%)": "aa", "κ × 100": "kappa", "MCC × 100": "mcc", "ARI × 100": "ari",
              "mAP (%)": "map"}


@pytest.fixture(scope="module")
def six_runs(tmp_path_factory, scene) -> dict[str, list[tuple[Path, np.ndarray, str]]]:
    """{model: [(prediction store, class map, split)] for seeds 0..2}, each seed on its own split of
    one protocol, as `hsi split --seed S` then `hsi train --seed S` give them."""
    folder = tmp_path_factory.mktemp("six")
    runs: dict[str, list[tuple[Path, np.ndarray, str]]] = {}
    for index, (model, rate) in enumerate(MODELS.items()):
        for seed in SEEDS:
            classes = noisy_map(scene, rate, seed=10 * index + seed)
            path = write_prediction(folder / f"{model}-s{seed}.pred.zarr", scene, classes, split=f"p{seed}",
                                    model=model, setup=training(model))
            runs.setdefault(model, []).append((path, classes, f"p{seed}"))
    return runs


def sklearn_scores(scene: SceneStore, classes: np.ndarray, split: str) -> dict[str, float]:
    """Every score of the comparison table for one run, from scikit-learn on its test pixels."""
    gt, layer = sets(scene, split)
    test = (layer == TEST) & (gt > 0)
    truth, predicted = gt[test], classes[test].astype(np.int64)
    one_hot = np.eye(4)[predicted - 1]
    recall = skm.recall_score(truth, predicted, labels=[1, 2, 3, 4], average=None, zero_division=0)
    assert all(np.any(truth == k) for k in (1, 2, 3, 4))
    return {
        "oa": skm.accuracy_score(truth, predicted), "aa": skm.balanced_accuracy_score(truth, predicted),
        "kappa": skm.cohen_kappa_score(truth, predicted), "mcc": skm.matthews_corrcoef(truth, predicted),
        "ari": skm.adjusted_rand_score(truth, predicted),
        "map": np.mean([skm.average_precision_score(truth == k + 1, one_hot[:, k]) for k in range(4)]),
        **dict(zip(CLASSES, recall)),
    }


def expected_cells(scene, six_runs) -> dict[str, dict[str, tuple[float, float]]]:
    """{model: {row key: (mean, sample std) over its seeds}} from scikit-learn."""
    expected = {}
    for model, runs in six_runs.items():
        scores = [sklearn_scores(scene, classes, split) for _, classes, split in runs]
        expected[model] = {key: (np.mean([s[key] for s in scores]), np.std([s[key] for s in scores], ddof=1))
                           for key in scores[0]}
    return expected


def test_two_models_three_seeds_give_two_columns_that_equal_sklearn(tmp_path, scene, six_runs):
    paths = [path for runs in six_runs.values() for path, _, _ in runs]
    result = evaluate(paths, split=None, out=tmp_path / "table.json", command="test")
    assert [group.label for group in result.groups] == ["svm", "rf"]
    assert [[run["prediction"] for run in group.runs] for group in result.groups] == [
        [str(path) for path, _, _ in six_runs[model]] for model in MODELS
    ]
    (table,) = result.tables
    assert table.columns == ("svm (3 runs)", "rf (3 runs)")
    assert [row.label for row in table.rows] == CLASSES + list(SCORE_ROWS)
    expected = expected_cells(scene, six_runs)
    pooled = expected_cells(scene, {"all": [run for runs in six_runs.values() for run in runs]})["all"]
    for row in table.rows:
        key = SCORE_ROWS.get(row.label, row.label)
        for model, cell in zip(MODELS, row.cells):
            mean, std = expected[model][key]
            assert (cell.value, cell.std, cell.runs) == (pytest.approx(mean, abs=1e-12),
                                                         pytest.approx(std, abs=1e-12), 3), (row.label, model)
            # No cell is a mean over both models (the check above would see it).
            assert abs(cell.value - pooled[key][0]) > 1e-3, (row.label, model)
        # svm's maps have a third of rf's errors: it is best on every row, and marked so.
        assert [cell.best for cell in row.cells] == [True, False], row.label
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["runs"] == 6 and [g["label"] for g in saved["groups"]] == ["svm", "rf"]
    assert saved["groups"][0]["oa"]["mean"] == pytest.approx(expected["svm"]["oa"][0], abs=1e-12)
    assert "oa" not in saved  # no figure over both models


def terminal_tables(stderr: str) -> list[tuple[list[str], list[list[str]]]]:
    """(headers, rows of cell texts) of each rich table printed on stderr; best marks (` *`: stderr is
    no terminal) dropped, as `best_marks` reads them."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    for line in stderr.splitlines():
        if line.startswith("┃"):
            tables.append(([cell.strip() for cell in line.strip("┃").split("┃")], []))
        elif line.startswith("│"):
            tables[-1][1].append([cell.strip().removesuffix(" *") for cell in line.strip("│").split("│")])
    return tables


def best_marks(stderr: str) -> list[list[bool]]:
    """Which value cells of the terminal's table rows are marked best."""
    return [[cell.strip().endswith(" *") for cell in line.strip("│").split("│")[1:]]
            for line in stderr.splitlines() if line.startswith("│")]


LATEX_BACK = ((r"$\pm$", "±"), (r"$\kappa$", "κ"), (r"$\times$", "×"), (r"\%", "%"), (r"\_", "_"), ("--", "–"))


def _untex(cell: str) -> str:
    cell = cell.removeprefix(r"\textbf{").removesuffix("}") if cell.startswith(r"\textbf{") else cell
    for tex, text in LATEX_BACK:
        cell = cell.replace(tex, text)
    return cell


def latex_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    tables = []
    for block in text.split(r"\begin{tabular}")[1:]:
        lines = [line.removesuffix(r" \\") for line in block.split(r"\end{tabular}")[0].splitlines()
                 if line.endswith(r" \\")]
        cells = [[_untex(cell) for cell in line.split(" & ")] for line in lines]
        tables.append((cells[0], cells[1:]))
    return tables


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    tables: list[tuple[list[str], list[list[str]]]] = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("| ")]
        if lines:
            cells = [[cell.strip().strip("*") for cell in line.strip("|").split(" | ")] for line in lines]
            tables.append((cells[0], cells[1:]))
    return tables


def csv_tables(text: str) -> list[list[list[str]]]:
    return [list(csv.reader(io.StringIO(block))) for block in text.split("\n\n")]


def json_tables(tables: list[dict]) -> list[tuple[list[str], list[list[str]]]]:
    return [([t["corner"], *t["columns"]], [[r["label"], *(c["text"] for c in r["cells"])] for r in t["rows"]])
            for t in tables]


def render_everywhere(monkeypatch, capsys, tmp_path, *inputs) -> tuple[dict, dict[str, list]]:
    """`hsi evaluate INPUTS --json --csv --latex --markdown`: (stdout JSON, tables of each format)."""
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps no cell
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", *inputs, "--json", "--csv", tmp_path / "t.csv",
                             "--latex", tmp_path / "t.tex", "--markdown", tmp_path / "t.md", "--overwrite")
    assert code == 0, err
    assert len(out.splitlines()) == 1
    printed = json.loads(out)
    return printed, {
        "terminal": terminal_tables(err), "terminal marks": best_marks(err), "json": json_tables(printed["tables"]),
        "latex": latex_tables((tmp_path / "t.tex").read_text()),
        "markdown": markdown_tables((tmp_path / "t.md").read_text()),
        "csv": csv_tables((tmp_path / "t.csv").read_text()),
    }


def test_terminal_csv_latex_markdown_and_json_hold_the_same_table(monkeypatch, capsys, tmp_path, scene, six_runs):
    paths = [path for runs in six_runs.values() for path, _, _ in runs]
    printed, tables = render_everywhere(monkeypatch, capsys, tmp_path, *paths)
    ((headers, rows),) = tables["json"]
    assert headers == ["Class", "svm (3 runs)", "rf (3 runs)"]
    for name in ("terminal", "latex", "markdown"):
        assert tables[name] == tables["json"], name
    expected = expected_cells(scene, six_runs)
    for row in rows:
        key = SCORE_ROWS.get(row[0], row[0])
        assert row[1:] == [f"{100 * expected[m][key][0]:.2f} ± {100 * expected[m][key][1]:.2f}" for m in MODELS]
    # CSV: the same headers, each followed by its std column; values at full precision; the best column.
    ((csv_header, *csv_rows),) = tables["csv"]
    assert csv_header == ["Class", "svm (3 runs)", "svm (3 runs) std", "rf (3 runs)", "rf (3 runs) std", "Best"]
    assert [r[0] for r in csv_rows] == [r[0] for r in rows]
    for csv_row, row in zip(csv_rows, rows):
        key = SCORE_ROWS.get(row[0], row[0])
        for column, model in enumerate(MODELS):
            mean, std = (float(v) for v in csv_row[1 + 2 * column: 3 + 2 * column])
            assert f"{mean:.2f} ± {std:.2f}" == row[1 + column]
            assert mean == pytest.approx(100 * expected[model][key][0], abs=1e-9)
        assert csv_row[-1] == "svm (3 runs)"
    assert tables["terminal marks"] == [[True, False]] * len(rows)  # svm is best on every row
    latex = (tmp_path / "t.tex").read_text()
    assert latex.count(r"\textbf{") == len(rows) and r"\toprule" in latex and r"\bottomrule" in latex
    assert printed["groups"][1]["label"] == "rf" and printed["path"].endswith(".metrics.json")


def test_one_run_table_puts_each_score_under_its_own_header(monkeypatch, capsys, tmp_path, scene):
    classes = noisy_map(scene, 0.2, seed=3)
    prediction = write_prediction(tmp_path / "x.pred.zarr", scene, classes, split="p0", model="rf",
                                  setup=training("rf"))
    printed, tables = render_everywhere(monkeypatch, capsys, tmp_path, prediction)
    assert printed["path"] == str(tmp_path / "x.metrics.json")
    reference = sklearn_scores(scene, classes, "p0")
    for key in ("oa", "aa", "kappa", "mcc", "ari", "map"):
        assert printed[key] == pytest.approx(reference[key], abs=1e-12)
    per_class, overall = tables["json"]
    assert per_class[0] == ["Class", "Support", "Precision (%)", "Recall (%)", "F1 (%)", "AP (%)"]
    assert [row[0] for row in per_class[1]] == CLASSES  # nothing but classes under "Support" … "AP (%)"
    assert overall == (["Metric", "rf"], [[label, f"{100 * reference[key]:.2f}"] for label, key in SCORE_ROWS.items()])
    gt, layer = sets(scene, "p0")
    test = (layer == TEST) & (gt > 0)
    precision, recall, f1, support = skm.precision_recall_fscore_support(gt[test], classes[test], labels=[1, 2, 3, 4])
    one_hot = np.eye(4)[classes[test].astype(np.int64) - 1]
    ap = [skm.average_precision_score(gt[test] == k + 1, one_hot[:, k]) for k in range(4)]
    assert per_class[1] == [[name, str(n), *(f"{100 * v:.2f}" for v in values)]
                            for name, n, *values in zip(CLASSES, support, precision, recall, f1, ap)]
    for name in ("terminal", "latex", "markdown"):
        assert tables[name] == tables["json"], name
    # CSV: the same two tables under the same headers (no extra column), values at full precision.
    assert [block[0] for block in tables["csv"]] == [table[0] for table in tables["json"]]
    assert [[row[0] for row in block[1:]] for block in tables["csv"]] == [[r[0] for r in t[1]] for t in tables["json"]]
    assert float(tables["csv"][1][1][1]) == pytest.approx(100 * reference["oa"], abs=1e-9)


def test_runs_differing_in_arguments_scene_setup_or_protocol_are_never_pooled(tmp_path, scene):
    def run(name: str, split: str, setup: dict | None, seed: int) -> Path:
        return write_prediction(tmp_path / f"{name}.pred.zarr", scene, noisy_map(scene, 0.2, seed=seed), split=split,
                                model="svm", setup=setup)

    paths = [
        run("a0", "p0", training("svm"), 0), run("a1", "p1", training("svm"), 1),  # one group: seeds differ
        run("c10", "p0", training("svm", C=10.0), 2),  # other arguments
        run("q", "q0", training("svm"), 3),  # another split protocol (50 % train)
        run("old", "s", None, 4),  # no recorded setup and no checkpoint: stands apart
    ]
    result = evaluate(paths, split=None, out=tmp_path / "t.json", command="test")
    assert [len(group.runs) for group in result.groups] == [2, 1, 1, 1]
    labels = [group.label for group in result.groups]
    # Each column says what tells it from its nearest neighbour; the store without a setup differs in
    # too much for a short label: a digest of its setup.
    assert labels[:3] == ["svm (C=–, ratio=0.3)", "svm (C=10.0)", "svm (ratio=0.5)"]
    assert re.fullmatch(r"svm #[0-9a-f]{6}", labels[3])
    (table,) = result.tables
    assert table.columns == (f"{labels[0]} (2 runs)", *labels[1:])
    oa = next(row for row in table.rows if row.label == "OA (%)")
    assert [cell.runs for cell in oa.cells] == [2, 1, 1, 1]
    first_two = [json.loads((tmp_path / f"a{i}.metrics.json").read_text())["oa"] for i in range(2)]
    assert oa.cells[0].value == pytest.approx(np.mean(first_two), abs=1e-12)
    assert oa.cells[1].text() == f"{100 * json.loads((tmp_path / 'c10.metrics.json').read_text())['oa']:.2f}"


def test_another_scene_is_another_column_without_per_class_rows(tmp_path, scene):
    other = SceneStore.create(
        tmp_path / "other.zarr", cube=np.zeros((24, 24, 3), np.float32), gt=scene.gt(),
        rgb=np.zeros((24, 24, 3), np.uint8), attrs={"class_names": ["w", "x", "y", "z"], "class_colors": ["#000000"] * 4},
        transform={"offset": np.ones(3, np.float32)}, transform_attrs={},
    )
    other.add_layer("splits", "p0", scene.read_layer("splits", "p0").data, scene.layer_attrs("splits", "p0"))
    other = SceneStore.open(other.path)
    paths = [write_prediction(tmp_path / f"{n}.pred.zarr", store, noisy_map(scene, 0.1, seed=1), split="p0", model="rf",
                              setup=training("rf")) for n, store in (("here", scene), ("there", other))]
    result = evaluate(paths, split=None, out=tmp_path / "t.json", command="test")
    assert [group.label for group in result.groups] == [
        f"rf (scene={scene.fingerprint[:8]})", f"rf (scene={other.fingerprint[:8]})"]
    (table,) = result.tables
    assert [row.label for row in table.rows][0] == "OA (%)" and table.notes


def test_metrics_files_and_summaries_rebuild_the_table(monkeypatch, capsys, tmp_path, six_runs):
    paths = [path for runs in six_runs.values() for path, _, _ in runs]
    from_stores = evaluate(paths, split=None, out=tmp_path / "summary.json", command="test")
    metrics = [path.with_name(path.name.replace(".pred.zarr", ".metrics.json")) for path in paths]
    from_files = evaluate(metrics, split=None, out=tmp_path / "again.json", command="test")
    from_summary = evaluate([tmp_path / "summary.json"], split=None, out=tmp_path / "third.json", command="test")
    assert to_json(from_files.tables) == to_json(from_stores.tables) == to_json(from_summary.tables)
    # One run's metrics file gives that run's tables; the file itself is the result.
    single = evaluate([metrics[0]], split=None, out=None, command="test")
    assert single.path == metrics[0] and [t.columns[0] for t in single.tables] == ["Support", "svm"]
    # The same run twice would weigh it twice in a mean: refused.
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "summary.json", metrics[0])
    assert code == 1 and out == "" and "given twice" in err and "Traceback" not in err


def test_plot_compare_reads_a_summary_of_several_groups(tmp_path, six_runs):
    from hsicli.plot.metrics_figs import load_runs

    paths = [path for runs in six_runs.values() for path, _, _ in runs]
    evaluate(paths, split=None, out=tmp_path / "summary.metrics.json", command="test")
    runs = load_runs([tmp_path / "summary.metrics.json"], "compare", None)
    assert [run.prediction_path for run in runs] == paths and [run.model for run in runs] == ["svm"] * 3 + ["rf"] * 3


HOSTILE = {
    "not JSON": b"{oa: 1",
    "a list": b"[1, 2, 3]",
    "NaN score": b'{"n": 3, "oa": NaN, "aa": 0, "kappa": 0, "mcc": 0, "ari": 0, "per_class": []}',
    "nested deep": b"[" * 100_000 + b"]" * 100_000,
    "score out of range": b'{"n": 3, "oa": 5, "aa": 0, "kappa": 0, "mcc": 0, "ari": 0, "per_class": []}',
    "no classes": b'{"n": 3, "oa": 1, "aa": 1, "kappa": 1, "mcc": 1, "ari": 1, "per_class": []}',
    "bad class": b'{"n": 3, "oa": 1, "aa": 1, "kappa": 1, "mcc": 1, "ari": 1, "per_class": [{"name": 7}]}',
    "bad support": (b'{"n": 3, "oa": 1, "aa": 1, "kappa": 1, "mcc": 1, "ari": 1, "per_class": '
                    b'[{"name": "a\\nb", "support": true, "precision": 1, "recall": 1, "f1": 1}]}'),
    "bad setup": (b'{"n": 3, "oa": 1, "aa": 1, "kappa": 1, "mcc": 1, "ari": 1, "setup": [], "per_class": '
                  b'[{"name": "a", "support": 3, "precision": 1, "recall": 1, "f1": 1, "accuracy": 1}]}'),
    "empty summary": b'{"run_metrics": [], "predictions": []}',
    "old summary": b'{"runs": 2, "oa": {"mean": 1, "std": 0, "runs": 2}, "predictions": ["a", "b"]}',
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_metrics_files_are_one_line_errors(monkeypatch, capsys, tmp_path, case):
    path = tmp_path / "m.metrics.json"
    path.write_bytes(HOSTILE[case])
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", path)
    lines = err.splitlines()
    assert code == 1 and out == "", err
    assert [line for line in lines if line.startswith("Error: ")] == [lines[0]] and lines[1].startswith("Hint: ")
    assert len(lines) == 2 and "internal error" not in err and str(path) in lines[0], err


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_predict_records_the_training_setup_that_groups_runs(tmp_path, scene):
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import read_header

    runs = [("p0", 0, {}), ("p1", 1, {}), ("p0", 0, {"C": 10.0})]
    predictions, checkpoints = [], []
    for split, seed, args in runs:
        checkpoint = train(scene.path, TrainOptions(model="svm", split=split, seed=seed, model_args=args,
                                                    out=tmp_path / f"svm-{split}-{args.get('C', 1)}.safetensors"),
                           command="test").path
        checkpoints.append(checkpoint)
        predictions.append(predict(checkpoint, PredictOptions(device="cpu"), command="test").path)
    setup = PredictionStore.open(predictions[2]).attrs["training_setup"]
    # Every architecture argument is recorded, the defaults too (issue 18).
    assert setup["model"] == "svm" and setup["model_args"] == {"C": 10.0, "gamma": "scale", "kernel": "rbf"}
    assert setup["hyper"] == read_header(checkpoints[2])[1]["training"]["hyper"] and setup["hyper"]["epochs"]
    result = evaluate(predictions, split=None, out=tmp_path / "t.json", command="test")
    assert [(group.label, len(group.runs)) for group in result.groups] == [("svm (C=100.0)", 2), ("svm (C=10.0)", 1)]
    # A store predicted before setups were recorded: read from its checkpoint while that is unchanged.
    group = zarr.open_group(str(predictions[1]), mode="r+")
    del group.attrs["training_setup"]
    again = evaluate(predictions, split=None, out=tmp_path / "t.json", command="test", overwrite=True)
    assert [len(group.runs) for group in again.groups] == [2, 1]
