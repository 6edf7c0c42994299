"""The cross-scene benchmark's Jasper Ridge labels: argmax of the abundances where the largest is ≥ 0.8,
in MATLAB's column-major pixel order, named tree, water, soil, road (benchmarks/bench_cross_scene.py)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling `common`
    spec = importlib.util.spec_from_file_location("bench_cross_scene", BENCHMARKS / "bench_cross_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_abundance_labels_threshold_and_column_major_order(bench):
    # 3 endmembers × 6 pixels of a 2 × 3 scene; pixel p lies at row p % 2, column p // 2.
    abundances = np.array([
        [0.90, 0.10, 0.80, 0.50, 0.00, 0.20],
        [0.05, 0.85, 0.10, 0.30, 0.21, 0.79],
        [0.05, 0.05, 0.10, 0.20, 0.79, 0.01],
    ])
    labels = bench.abundance_labels(abundances, n_row=2, n_col=3)
    # pixel 0: endmember 0 (0.9); 1: endmember 1; 2: exactly 0.8 counts; 3: no endmember dominates;
    # 4: 0.79 is below the threshold; 5: likewise.
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [[1, 1, 0], [2, 0, 0]])


def test_abundance_labels_threshold_is_a_parameter_and_shape_is_checked(bench):
    abundances = np.array([[0.6, 0.3], [0.4, 0.7]])
    np.testing.assert_array_equal(bench.abundance_labels(abundances, 1, 2, threshold=0.5), [[1, 2]])
    with pytest.raises(ValueError, match="do not cover"):
        bench.abundance_labels(abundances, 2, 2)


def test_jasper_ridge_store_names_the_endmembers(bench, cli, tmp_path):
    if not (bench.JASPER / "_EndJasperRidge2_R198.mat").is_file():
        pytest.skip(f"{bench.JASPER} is not present")
    from hsicli.store.scene import SceneStore

    result = cli("prep", *bench.prep_arguments("jasper-ridge", tmp_path), "--out", tmp_path / "j.zarr")
    assert result.exit_code == 0, result.stderr
    store = SceneStore.open(tmp_path / "j.zarr")
    assert store.class_names == ["tree", "water", "soil", "road"] and store.attrs["class_ids"] == [1, 2, 3, 4]


def cell_models(claresnet: dict[int, float], svm: dict[int, float], stops: dict | None = None) -> dict:
    return {"svm": {"oa_per_seed": svm, "stops": {}},
            "claresnet": {"oa_per_seed": claresnet, "stops": stops or {}}}


def test_against_reference_pairs_only_the_shared_seeds(bench):
    # SVM on seeds 0-4, CLAReSNet on 0-2: seeds 3 and 4 are left out of the pairing and of both means.
    models = cell_models({0: 0.875, 1: 0.978, 2: 0.919}, {0: 0.971, 1: 0.973, 2: 0.967, 3: 0.10, 4: 0.10})
    paired = bench.against_reference(models, "svm")
    assert list(paired) == ["claresnet"]
    record = paired["claresnet"]
    assert record["seeds"] == [0, 1, 2] and record["oa"] == [0.875, 0.978, 0.919]
    assert record["reference_oa"] == [0.971, 0.973, 0.967]
    assert record["runs_won"] == 1 and record["mean_reached"] is False
    assert record["mean_difference"] == pytest.approx((0.875 + 0.978 + 0.919 - 0.971 - 0.973 - 0.967) / 3)
    # A tie counts as reaching the reference, run by run and on the mean.
    tie = bench.against_reference(cell_models({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8}), "svm")["claresnet"]
    assert tie["runs_won"] == 2 and tie["mean_reached"] is True
    assert bench.against_reference(models, "rf") == {}  # no reference run in the cell


def test_paired_markdown_rows_totals_and_unfitted_mark(bench):
    first = cell_models({0: 0.95, 1: 0.90}, {0: 0.90, 1: 0.92}, stops={1: {"reason": "unfitted"}})
    second = cell_models({0: 0.60}, {0: 0.70, 1: 0.70})
    cells = [{"scene": scene, "protocol": "5 %", "models": models,
              "against_reference": bench.against_reference(models, "svm")}
             for scene, models in (("salinasA", first), ("jasper-ridge", second))]
    document = {"settings": {"reference": "svm", "seeds": [0, 1]}, "cells": cells}
    lines = bench.paired_markdown(document, ["svm", "claresnet"])
    assert "| salinasA | 5 % | **95.0 / 90.0** | 90.0 / 92.0 † | 1 of 2 | +1.5 |" in lines
    assert "| jasper-ridge | 5 % | 60.0 / 70.0 | — | 0 of 1 | -10.0 |" in lines
    assert lines[-1].startswith("claresnet reaches svm in 1 of 2 cells") and "in 1 of 3 runs" in lines[-1]
    assert "unfitted" in lines[-1]
    assert not any(line.startswith("### svm against") for line in lines)


def bench_run(model, seed, train_seconds, inference_seconds, stop=None):
    return {"model": model, "seed": seed, "prediction": f"{model}-seed{seed}.pred.zarr", "stop": stop,
            "train_seconds": train_seconds, "inference_seconds": inference_seconds,
            "final_train_accuracy": None if model == "svm" else 1.0}


def test_per_model_keeps_oa_and_seconds_per_seed(bench):
    # Two models × two seeds, grouped as `hsi evaluate` groups them; the SVM records no inference time.
    runs = [bench_run("claresnet", 0, 700.0, 120.0, {"reason": "fitted"}), bench_run("claresnet", 1, 900.0, 100.0),
            bench_run("svm", 0, 2.0, None), bench_run("svm", 1, 4.0, None)]
    oa = {"claresnet-seed0.pred.zarr": 0.9, "claresnet-seed1.pred.zarr": 0.8,
          "svm-seed0.pred.zarr": 0.95, "svm-seed1.pred.zarr": 0.85}
    statistic = {"mean": 0.5, "std": 0.1}
    summary = {"run_metrics": [{"prediction": path, "oa": value} for path, value in oa.items()],
               "groups": [{"label": model, "predictions": [f"{model}-seed{s}.pred.zarr" for s in (0, 1)],
                           "oa": statistic, "aa": statistic, "kappa": statistic} for model in ("claresnet", "svm")]}
    result = bench.per_model(summary, runs, ["svm", "claresnet"])
    assert list(result) == ["svm", "claresnet"]  # the order asked for, not the summary's
    clares = result["claresnet"]
    assert clares["oa_per_seed"] == {0: 0.9, 1: 0.8}
    assert clares["seconds_per_seed"] == {0: 820.0, 1: 1000.0} and clares["seconds_per_run"] == 910.0
    assert clares["stops"] == {0: {"reason": "fitted"}}
    assert result["svm"]["seconds_per_seed"] == {0: 2.0, 1: 4.0} and result["svm"]["final_train_accuracy_mean"] is None
    # One prediction: `hsi evaluate` wrote that run's metrics, not a summary.
    single = bench.per_model({"prediction": "svm-seed1.pred.zarr", "oa": 0.85, "aa": 0.8, "kappa": 0.7},
                             [bench_run("svm", 1, 4.0, 0.5)], ["svm"])
    assert single["svm"]["oa_per_seed"] == {1: 0.85} and single["svm"]["seconds_per_seed"] == {1: 4.5}
