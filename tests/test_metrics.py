"""hsicli.metrics against scikit-learn, brute force and numpy (issue 3, `hsi evaluate`); the
tables of hsicli.engine.report (issue 16)."""

from __future__ import annotations

import csv
import io
import json
import re
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from hsicli.metrics import classification_metrics, summarize_runs
from hsicli.engine.report import Cell, Row, Table, comparison_table, mark_best, run_tables, to_csv, to_latex, to_markdown
from hsicli.errors import InputError


def _labels(seed: int, n_classes: int, n: int = 300, *, gaps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Random truth and ~60 %-correct predictions; with gaps, class C−1 is never predicted and
    class C−2 never occurs in the truth (it is still predicted, as a false positive)."""
    rng = np.random.default_rng(seed)
    truth_classes = np.delete(np.arange(n_classes), n_classes - 2) if gaps else np.arange(n_classes)
    y_true = rng.choice(truth_classes, size=n)
    noise = rng.integers(0, n_classes - 1 if gaps else n_classes, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, noise)
    if gaps:
        y_pred[y_pred == n_classes - 1] = n_classes - 2
    return y_true, y_pred


def _quiet(*args, **kwargs) -> dict:
    """classification_metrics with every warning (numpy's included) turned into an error."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        return classification_metrics(*args, **kwargs)


SHAPES = ((3, True), (7, True), (16, True), (2, False), (9, False))  # (classes, with gaps)
CASES = [(seed, c, gaps) for seed in (0, 1, 2) for c, gaps in SHAPES]


@pytest.mark.parametrize(("seed", "n_classes", "gaps"), CASES)
def test_every_metric_equals_sklearn(seed: int, n_classes: int, gaps: bool) -> None:
    y_true, y_pred = _labels(seed, n_classes, gaps=gaps)
    if gaps:  # the fixture really has the gaps the conventions are about
        assert not np.any(y_pred == n_classes - 1) and not np.any(y_true == n_classes - 2)
    result = _quiet(y_true, y_pred, n_classes)
    labels = np.arange(n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes missing from y_true
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0
        )
    assert result["n"] == y_true.size
    assert result["oa"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert result["aa"] == pytest.approx(balanced, abs=1e-12)
    assert result["kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred), abs=1e-12)
    assert result["mcc"] == pytest.approx(skm.matthews_corrcoef(y_true, y_pred), abs=1e-12)
    assert result["ari"] == pytest.approx(skm.adjusted_rand_score(y_true, y_pred), abs=1e-12)
    assert result["confusion"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    rows = result["per_class"]
    assert [r["support"] for r in rows] == support.tolist()
    np.testing.assert_allclose([r["precision"] for r in rows], precision, atol=1e-12)
    np.testing.assert_allclose([r["recall"] for r in rows], recall, atol=1e-12)
    np.testing.assert_allclose([r["f1"] for r in rows], f1, atol=1e-12)
    # The metrics are not trivially 0 or 1 on these inputs.
    assert 0.1 < result["kappa"] < 0.9 and 0.0 < result["ari"] < 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aa_equals_balanced_accuracy_and_excludes_absent_classes(seed: int) -> None:
    """AA (mean per-class accuracy) is balanced accuracy; a class absent from y_true is left out."""
    y_true, y_pred = _labels(seed, 6)
    result = _quiet(y_true, y_pred, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert result["aa"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    accuracies = [row["accuracy"] for row in result["per_class"]]
    assert accuracies[4] is None  # class C−2 = 4 never occurs in y_true
    present = [a for a in accuracies if a is not None]
    assert len(present) == 5
    assert result["aa"] == pytest.approx(np.mean(present), abs=1e-12)
    # Per-class accuracy is the class's recall; the absent class keeps sklearn's recall of 0.
    assert result["per_class"][4]["recall"] == 0.0
    assert all(row["accuracy"] in (None, row["recall"]) for row in result["per_class"])


def test_a_perfect_ranking_scores_an_ap_of_exactly_one_that_a_metrics_file_accepts() -> None:
    """1327 positives ranked first: 1327 recall steps of 1/1327 add up to 1 + 9e-16 in floating
    point, which `hsi evaluate` then refused to read back from its own metrics file."""
    from hsicli.store.evaluation import _run_problem

    y_true = np.repeat([0, 1], [1327, 200])
    first = np.linspace(0.999, 0.6, y_true.size)  # distinct scores: one recall step per positive
    first[y_true == 1] = first[y_true == 1][::-1] - 0.5
    probabilities = np.stack([first, 1.0 - first], axis=1)
    result = _quiet(y_true, y_true, 2, probabilities=probabilities)
    assert [row["ap"] for row in result["per_class"]] == [1.0, 1.0]
    assert _run_problem(json.loads(json.dumps({**result, "n": int(y_true.size)}))) is None


@pytest.mark.parametrize(("seed", "n_classes"), [(0, 4), (1, 7), (2, 16)])
def test_average_precision_equals_sklearn(seed: int, n_classes: int) -> None:
    y_true, y_pred = _labels(seed, n_classes)
    rng = np.random.default_rng(seed + 100)
    logits = rng.standard_normal((y_true.size, n_classes)) + 2.0 * np.eye(n_classes)[y_true]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities = np.round(probabilities, 2).astype(np.float32)  # many tied scores
    result = _quiet(y_true, y_pred, n_classes, probabilities=probabilities)
    expected = [
        skm.average_precision_score(y_true == k, probabilities[:, k]) if np.any(y_true == k) else None
        for k in range(n_classes)
    ]
    got = [row["ap"] for row in result["per_class"]]
    assert [g is None for g in got] == [e is None for e in expected]
    np.testing.assert_allclose(
        [g for g in got if g is not None], [e for e in expected if e is not None], atol=1e-12
    )
    assert result["map"] == pytest.approx(np.mean([e for e in expected if e is not None]), abs=1e-12)


@pytest.mark.parametrize(("seed", "n_classes"), [(0, 3), (1, 5), (2, 16)])
def test_centroid_distance_equals_brute_force(seed: int, n_classes: int) -> None:
    y_true, y_pred = _labels(seed, n_classes)
    rng = np.random.default_rng(seed)
    embeddings = (rng.standard_normal((y_true.size, 8)) + 3.0 * rng.standard_normal((n_classes, 8))[y_true])
    result = _quiet(y_true, y_pred, n_classes, embeddings=embeddings.astype(np.float32))
    distances = []
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            if np.any(y_true == i) and np.any(y_true == j):
                ci = embeddings[y_true == i].astype(np.float32).astype(np.float64).mean(axis=0)
                cj = embeddings[y_true == j].astype(np.float32).astype(np.float64).mean(axis=0)
                distances.append(np.sqrt(np.sum((ci - cj) ** 2)))
    # The class absent from y_true is not a pair member: C−1 present classes, C(C−1)/2 pairs of them.
    assert len(distances) == (n_classes - 1) * (n_classes - 2) // 2
    assert result["centroid_distance"] == pytest.approx(np.mean(distances), rel=1e-12)


def test_centroid_distance_undefined_for_one_class() -> None:
    y = np.zeros(10, dtype=np.int64)
    result = _quiet(y, y, 3, embeddings=np.ones((10, 4)))
    assert result["centroid_distance"] is None


def test_degenerate_cases_have_documented_values_without_warnings() -> None:
    one = np.full(20, 2)
    # One class, perfect agreement: κ's and MCC's denominators are 0; all agreement scores are 1.
    perfect = _quiet(one, one, 4)
    assert (perfect["oa"], perfect["aa"], perfect["kappa"], perfect["mcc"], perfect["ari"]) == (1, 1, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert perfect["kappa"] == skm.cohen_kappa_score(one, one, replace_undefined_by=1.0)
        assert skm.matthews_corrcoef(one, one) == 0.0  # sklearn's value; ours is documented as 1.0
    # Constant truth, varied prediction: MCC 0 (as sklearn), κ = 0 (defined), ARI 0.
    varied = np.array([2] * 15 + [0] * 5)
    mixed = _quiet(one, varied, 4)
    assert mixed["oa"] == 0.75 and mixed["aa"] == 0.75
    assert mixed["mcc"] == 0.0 == skm.matthews_corrcoef(one, varied)
    assert mixed["kappa"] == 0.0 == pytest.approx(skm.cohen_kappa_score(one, varied))
    assert mixed["ari"] == pytest.approx(skm.adjusted_rand_score(one, varied), abs=1e-12)
    # Perfect agreement over several classes, and a single pixel.
    y = np.arange(5).repeat(3)
    many = _quiet(y, y, 5)
    assert (many["oa"], many["aa"], many["kappa"], many["mcc"], many["ari"]) == (1, 1, 1, 1, 1)
    single = _quiet(np.array([1]), np.array([0]), 2)
    assert (single["oa"], single["kappa"], single["mcc"], single["ari"]) == (0, 0, 0, 1.0)
    assert single["ari"] == skm.adjusted_rand_score([1], [0])
    # Every prediction wrong, two classes swapped: κ = MCC = −1, and ARI = 1 (same partition).
    swapped = _quiet(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]), 2)
    assert (swapped["kappa"], swapped["mcc"], swapped["ari"]) == (-1.0, -1.0, 1.0)


def test_result_is_plain_json_with_names_and_shapes() -> None:
    y_true, y_pred = _labels(3, 4)
    names = ["Asphalt", "Meadows", "Gravel", "Trees"]
    result = _quiet(y_true, y_pred, 4, class_names=names, embeddings=np.eye(4)[y_true])
    back = json.loads(json.dumps(result, allow_nan=False))
    assert back == result
    assert [row["name"] for row in result["per_class"]] == names
    assert np.asarray(result["confusion"]).shape == (4, 4)
    assert np.asarray(result["confusion"]).sum() == result["n"] == y_true.size
    default = _quiet(y_true, y_pred, 4)
    assert [row["name"] for row in default["per_class"]] == ["class 1", "class 2", "class 3", "class 4"]
    assert "centroid_distance" not in default and "map" not in default


@pytest.mark.parametrize(
    ("y_true", "y_pred", "kwargs", "message"),
    [
        (np.array([0, 1, 3]), np.array([0, 1, 1]), {}, r"y_true holds class index 3, expected 0\.\.2"),
        (np.array([0, 1, 1]), np.array([0, -1, 1]), {}, r"y_pred holds class index -1"),
        (np.array([0, 1, 1]), np.array([0, 1]), {}, r"differ in length"),
        (np.array([0.0, 1.0]), np.array([0, 1]), {}, r"integer class indices"),
        (np.array([], dtype=int), np.array([], dtype=int), {}, r"no pixels to evaluate"),
        (np.array([0, 1]), np.array([0, 1]), {"class_names": ["a"]}, r"expected 3 class names, found 1"),
        (np.array([0, 1]), np.array([0, 1]), {"embeddings": np.ones((3, 2))}, r"embeddings .* \(2, D\)"),
        (np.array([0, 1]), np.array([0, 1]), {"probabilities": np.ones((2, 2))}, r"\(2, 3\), found shape \(2, 2"),
        (np.array([0, 1]), np.array([0, 1]), {"probabilities": np.full((2, 3), np.nan)}, r"NaN"),
    ],
)
def test_bad_inputs_raise_input_error(y_true, y_pred, kwargs, message) -> None:
    with pytest.raises(InputError, match=message) as info:
        classification_metrics(y_true, y_pred, 3, **kwargs)
    assert info.value.hint


def _runs(n_runs: int, n_classes: int = 5) -> list[dict]:
    rng = np.random.default_rng(7)
    runs = []
    for seed in range(n_runs):
        y_true, y_pred = _labels(seed + 10, n_classes)
        embeddings = rng.standard_normal((y_true.size, 3)) + y_true[:, None]
        runs.append(classification_metrics(y_true, y_pred, n_classes, embeddings=embeddings))
    return runs


def test_summarize_runs_matches_numpy() -> None:
    runs = _runs(4)
    # Class 0 missing from the last run's evaluated pixels: its mean is over the other 3 runs.
    y_true, y_pred = _labels(99, 5)
    y_true[y_true == 0] = 1
    runs.append(classification_metrics(y_true, y_pred, 5))  # no embeddings in this run
    summary = summarize_runs(runs)
    assert summary["runs"] == 5
    for key in ("oa", "aa", "kappa", "mcc", "ari"):
        values = np.array([run[key] for run in runs])
        assert summary[key]["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert summary[key]["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert summary[key]["runs"] == 5
    distances = np.array([run["centroid_distance"] for run in runs[:4]])
    assert summary["centroid_distance"] == pytest.approx(
        {"mean": distances.mean(), "std": distances.std(ddof=1), "runs": 4}, abs=1e-12
    )
    for k in (0, 1, 2, 4):
        per_run = [r["per_class"][k]["accuracy"] for r in runs]
        values = np.array([a for a in per_run if a is not None])
        stats = summary["per_class"][k]["accuracy"]
        assert stats["runs"] == len(values)
        assert stats["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert stats["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
    assert summary["per_class"][0]["accuracy"]["runs"] == 4
    # Class C−2 = 3 is never in the truth of any run.
    assert summary["per_class"][3]["accuracy"] == {"mean": None, "std": None, "runs": 0}
    assert "map" not in summary
    json.dumps(summary, allow_nan=False)


def test_summarize_single_run_has_zero_std_and_rejects_mismatched_classes() -> None:
    (run,) = _runs(1)
    summary = summarize_runs([run])
    assert summary["oa"] == {"mean": run["oa"], "std": 0.0, "runs": 1}
    with pytest.raises(InputError, match="run 2 has classes"):
        summarize_runs([run, _runs(1, n_classes=4)[0]])
    with pytest.raises(InputError, match="no runs"):
        summarize_runs([])


def test_csv_parses_back_with_awkward_names() -> None:
    y_true, y_pred = _labels(5, 4)
    names = ["Corn, notill", 'Grass "pasture"', "Oats", "Woods"]
    rng = np.random.default_rng(5)
    result = classification_metrics(y_true, y_pred, 4, class_names=names, probabilities=rng.random((y_true.size, 4)))
    per_class, overall = to_csv(run_tables(result, "rf")).split("\n\n")
    rows = list(csv.DictReader(io.StringIO(per_class)))
    assert [r["Class"] for r in rows] == names
    for row, expected in zip(rows, result["per_class"]):
        assert int(row["Support"]) == expected["support"]
        for header, key in (("Precision (%)", "precision"), ("Recall (%)", "recall"), ("F1 (%)", "f1"), ("AP (%)", "ap")):
            if expected[key] is None:
                assert row[header] == ""
            else:
                assert float(row[header]) == pytest.approx(100 * expected[key], rel=1e-11)
    # The class absent from y_true has an empty AP cell (and a recall of 0, as scikit-learn).
    assert rows[2]["AP (%)"] == "" and result["per_class"][2]["support"] == 0
    overall_rows = list(csv.reader(io.StringIO(overall)))
    assert overall_rows[0] == ["Metric", "rf"]
    assert [r[0] for r in overall_rows[1:]] == ["OA (%)", "AA (%)", "κ × 100", "MCC × 100", "ARI × 100", "mAP (%)"]
    assert float(overall_rows[1][1]) == pytest.approx(100 * result["oa"], rel=1e-11)


def test_comparison_table_cells_are_each_groups_own_statistics() -> None:
    first, second = _runs(3), _runs(2, n_classes=5)[::-1]
    second[0] = classification_metrics(*_labels(40, 5), 5)  # a different run: the columns differ
    table = comparison_table([("a", first), ("b", second)])
    assert table.columns == ("a (3 runs)", "b (2 runs)") and table.marked
    assert [row.label for row in table.rows] == [f"class {k}" for k in range(1, 6)] + [
        "OA (%)", "AA (%)", "κ × 100", "MCC × 100", "ARI × 100", "Centroid distance"]
    oa = table.rows[5]
    for cell, runs in zip(oa.cells, (first, second)):
        values = [run["oa"] for run in runs]
        assert (cell.value, cell.std, cell.runs) == (pytest.approx(np.mean(values)), pytest.approx(np.std(values, ddof=1)),
                                                     len(runs))
        assert cell.text() == f"{100 * np.mean(values):.2f} ± {100 * np.std(values, ddof=1):.2f}"
    # Class 4 is never in the truth: undefined in both columns, marked in neither.
    assert [(cell.text(), cell.best) for cell in table.rows[3].cells] == [("–", False), ("–", False)]
    assert sum(cell.best for cell in oa.cells) == 1
    single = comparison_table([("a", first[:1])])
    assert single.columns == ("a",) and not single.marked and single.rows[5].cells[0].text() == f"{100 * first[0]['oa']:.2f}"


def test_best_marks_follow_the_displayed_values_and_ties() -> None:
    row = Row("OA (%)", (Cell(0.91234), Cell(0.91236), Cell(0.5), Cell(None)), "overall")
    marked = mark_best(Table("t", "Metric", ("a", "b", "c", "d"), (row,)))
    # 91.23 and 91.24 are shown: only b; a tie on the shown value marks both.
    assert [cell.best for cell in marked.rows[0].cells] == [False, True, False, False]
    tie = mark_best(Table("t", "Metric", ("a", "b"), (Row("x", (Cell(0.912341), Cell(0.912338)), "overall"),)))
    assert [cell.best for cell in tie.rows[0].cells] == [True, True]
    assert "Best" in to_csv([marked]).splitlines()[0] and to_csv([marked]).splitlines()[1].endswith(",b")


def test_latex_and_markdown_escape_names_and_mark_the_best() -> None:
    rows = (Row("Corn_notill & 50% #2", (Cell(0.9, 0.01, 3), Cell(0.8, 0.02, 3)), "class"),
            Row("κ × 100", (Cell(0.7, 0.0, 1), Cell(None)), "overall"))
    table = mark_best(Table("Accuracy", "Class", ("x|y", "z (3 runs)"), rows))
    latex = to_latex([table]).splitlines()
    assert latex[:5] == ["% Accuracy", r"\begin{tabular}{lrr}", r"\toprule", r"Class & x|y & z (3 runs) \\", r"\midrule"]
    assert latex[5] == r"Corn\_notill \& 50\% \#2 & \textbf{90.00 $\pm$ 1.00} & 80.00 $\pm$ 2.00 \\"
    assert latex[6] == r"\midrule" and latex[7] == r"$\kappa$ $\times$ 100 & \textbf{70.00} & -- \\"
    assert latex[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert re.search(r"^\| Class \| x\\\|y \| z \(3 runs\) \|$", to_markdown([table]), re.M)
    assert "| Corn_notill & 50% #2 | **90.00 ± 1.00** | 80.00 ± 2.00 |" in to_markdown([table])
