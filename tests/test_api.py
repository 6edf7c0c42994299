"""The Python API (hsicli.api): the example runs, engine calls need no command, loaders, plain zarr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_the_python_example_runs_prep_to_plot(synthetic_scene, tmp_path):
    scene = synthetic_scene(height=16, width=14, bands=12, classes=3)
    run = [sys.executable, "-W", "error::UserWarning", str(ROOT / "examples" / "python_api.py"), str(scene),
           "--out", str(tmp_path / "r")]
    result = subprocess.run(run, capture_output=True, text=True, env=ENV, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "training patches of shape (10, 5, 5)" in result.stdout and "rf: OA" in result.stdout
    assert (tmp_path / "r" / "map.png").stat().st_size > 0
    metrics = json.loads(next((tmp_path / "r").glob("*.metrics.json")).read_text())
    assert metrics["oa"] > 0.5


def test_engine_and_api_without_a_command_record_the_python_api(synthetic_scene, tmp_path):
    from hsicli import api
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import read_header

    store = api.prep(synthetic_scene(height=12, width=10, bands=6, classes=3), out=tmp_path / "s.zarr").path
    split = api.split(store, ratio=0.3, val=0.1).path
    checkpoint = train(split, TrainOptions(model="rf", out=tmp_path / "rf.safetensors")).path
    assert read_header(checkpoint)[1]["provenance"]["command"] == "python API"
    assert api.train(split, model="rf", out=tmp_path / "rf.safetensors").reused  # the same run, up to date

    # A store written to (split layers, under its lock) opens in plain zarr without a warning.
    import zarr

    assert (tmp_path / ".s.zarr.lock").exists() and not (store / ".lock").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "splits" in dict(zarr.open_group(store, mode="r").members())

    scene = api.load_scene(store)
    assert scene.cube.shape == (12, 10, 6) and scene.gt.shape == (12, 10) and list(scene.splits) == [split.name]
    patches = api.patch_dataset(split, "val", patch=3)
    rows, cols = np.nonzero((scene.splits[split.name] == 2) & (scene.gt > 0))
    assert len(patches) == rows.size > 0
    padded = np.pad(scene.cube, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    for i in (0, len(patches) - 1):
        patch, label = patches[i]
        r, c = rows[i], cols[i]
        assert np.array_equal(patch.numpy(), padded[r : r + 3, c : c + 3].transpose(2, 0, 1))
        assert label == scene.gt[r, c] - 1


def test_import_hsicli_stays_light():
    code = "import sys, hsicli; print([m for m in ('numpy', 'torch', 'zarr') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_sweep_runs_each_point_once_and_expands_to_a_slurm_array(synthetic_scene, tmp_path):
    from hsicli import api
    from hsicli.store.prediction import PredictionStore

    store = api.prep(synthetic_scene(height=12, width=10, bands=6, classes=3), out=tmp_path / "s.zarr").path
    grid = {"ratio": [0.2, 0.4], "model_args": [{"n_estimators": 5}]}
    test_only = {"pixels": "test"}  # a heavy model's sweep need not classify the whole scene
    predictions = api.sweep(store, grid, seeds=[0, 1], out=tmp_path / "runs", model="rf", val=0.1, threads=1,
                            predict_options=test_only)
    assert [p.name for p in predictions] == [
        f"rf-model_args_n_estimators_5-ratio{r}-val0.1-s{s}.pred.zarr" for r in (0.2, 0.4) for s in (0, 1)]
    ratios = [PredictionStore.open(p).attrs for p in predictions]
    assert len({json.dumps(a, sort_keys=True, default=str) for a in ratios}) == 4  # four distinct runs
    assert {a["pixel_set"] for a in ratios} == {"test"}
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    assert api.sweep(store, grid, seeds=[0, 1], out=tmp_path / "runs", model="rf", val=0.1,
                     predict_options=test_only) == predictions
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == written  # a rerun does nothing

    evaluation = api.evaluate(*predictions, out=tmp_path / "sweep.summary.json")  # not the working directory
    assert len(evaluation.groups) == 2 and all(len(g.runs) == 2 for g in evaluation.groups)  # per ratio, 2 seeds
    figure = api.plot("sweep", *predictions, x="params.ratio", out=tmp_path / "sweep.png")
    assert figure.stat().st_size > 0

    (point,) = api.sweep_points({"patch": [7]}, model="litec2anet")  # the window and the split's guard
    assert (point.split, point.train, point.label) == ({"patch": 7}, {"patch": 7, "model": "litec2anet"},
                                                       "litec2anet-patch7-s0")

    # The same grid as a SLURM array: task I runs point I, here run as the array would (without sbatch).
    args = [str(store), "--out", str(tmp_path / "array"), "--grid", "ratio=0.2,0.4", "--seeds", "0,1",
            "--set", "model=rf", "--set", "val=0.1", "--set", 'model_args={"n_estimators": 5}',
            "--predict", "pixels=test"]
    script = tmp_path / "sweep.sbatch"
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "sweep.py"), *args, "--slurm", str(script)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert made.returncode == 0, made.stderr
    text = script.read_text()
    assert "#SBATCH --array=0-3\n" in text and "--slurm" not in text
    task = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300,
                          env={**ENV, "SLURM_ARRAY_TASK_ID": "2"})
    assert task.returncode == 0, task.stderr
    assert task.stdout.strip() == str(tmp_path / "array" / "rf-model_args_n_estimators_5-ratio0.4-val0.1-s0.pred.zarr")
    assert PredictionStore.open(Path(task.stdout.strip())).attrs["pixel_set"] == "test"


def test_a_rounds_point_runs_the_pseudo_label_loop_once_and_pools_seeds_per_round(synthetic_scene, tmp_path):
    """HSIseg's rounds as sweep points: the trained model, then each round's checkpoint and prediction
    under the point's names; a rerun does nothing; `hsi evaluate` pools the seeds of each round; the
    driver's SLURM script lists the points and a task runs one."""
    from hsicli import api
    from hsicli.errors import UsageError
    from hsicli.store.checkpoint import read_header
    from hsicli.store.prediction import PredictionStore

    store = api.prep(synthetic_scene(height=14, width=12, bands=6, classes=3), out=tmp_path / "s.zarr").path
    fixed = {"model": "hsiseg", "model_args": {"dim": 8, "heads": 2, "grids": [3, 2], "dropout": 0.0},
             "patch": 9, "epochs": 2, "batch_size": 4, "ratio": 0.3, "val": 0, "rounds": 2, "tau": 0.4,
             "round_epochs": 1, "device": "cpu", "threads": 1}
    (point,) = api.sweep_points({}, seeds=[0], **fixed)
    assert point.pseudo == {"rounds": 2, "tau": 0.4, "round_epochs": 1} and "rounds" not in point.train
    with pytest.raises(UsageError, match="whole scene"):  # rounds label the pixels a test-only prediction skips
        api.run_point(store, point, tmp_path / "test-only", pixels="test")
    out = tmp_path / "runs"
    predictions = api.sweep(store, {}, seeds=[0, 1], out=out, **fixed)
    stem = "hsiseg-batch_size4-epochs2-model_args_dim_8_dropout_0.0_grids_3_2_heads_2-patch9-ratio0.3"
    assert [p.name for p in predictions] == [
        name for s in (0, 1) for name in (f"{stem}-val0-s{s}.pred.zarr", f"{stem}-round_epochs1-tau0.4-val0-s{s}-round1.pred.zarr",
                                          f"{stem}-round_epochs1-tau0.4-val0-s{s}-round2.pred.zarr")]
    added = {1: [], 2: []}
    for index, prediction in enumerate(predictions):
        checkpoint = Path(PredictionStore.open(prediction).attrs["checkpoint"]["path"])
        training = read_header(checkpoint)[1]["training"]
        assert checkpoint.parent == out and training["pseudo_round"] == index % 3
        if index % 3:
            assert training["pseudo_labels"]["added"] > 0 and training["hyper"]["epochs"] == 1
            added[index % 3].append(training["pseudo_labels"]["added"])
    written = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert api.sweep(store, {}, seeds=[0, 1], out=out, **fixed) == predictions
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == written  # a rerun does nothing

    # One column per round (the initial model's too), each the mean of both seeds.
    evaluation = api.evaluate(*predictions, out=tmp_path / "rounds.summary.json")
    assert sorted(len(group.runs) for group in evaluation.groups) == [2, 2, 2]
    assert [[run["setup"]["training"].get("pseudo_round", 0) for run in group.runs]
            for group in evaluation.groups] == [[0, 0], [1, 1], [2, 2]]
    figure = api.plot("sweep", *predictions[1:3], *predictions[4:], x="training.pseudo_round",
                      out=tmp_path / "rounds.png")
    assert figure.stat().st_size > 0
    # Pixels added per round, a recorded number as the sweep's y: one line over both seeds.
    from hsicli.plot.common import PlotOptions
    from hsicli.plot.metrics_figs import sweep_figure

    axes = sweep_figure([*predictions[1:3], *predictions[4:]],
                        PlotOptions(x="training.pseudo_round", metric="training.pseudo_labels.added")).axes[0]
    (line,) = axes.lines
    assert list(line.get_xdata()) == [1, 2] and axes.get_ylabel() == "training.pseudo_labels.added"
    assert np.allclose(line.get_ydata(), [np.mean(added[1]), np.mean(added[2])])
    assert sweep_figure(predictions, PlotOptions(x="training.pseudo_round")).axes[0].get_ylabel() == "OA (%)"

    args = [str(store), "--out", str(out), "--seeds", "0,1",
            *(f"--set={key}={json.dumps(value)}" for key, value in fixed.items())]
    script = tmp_path / "rounds.sbatch"
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "sweep.py"), *args, "--slurm", str(script)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert made.returncode == 0, made.stderr
    text = script.read_text()
    assert "#SBATCH --array=0-1\n" in text and f"{stem}-round_epochs1-rounds2-tau0.4-val0-s1" in text
    task = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300,
                          env={**ENV, "SLURM_ARRAY_TASK_ID": "1"})
    assert task.returncode == 0, task.stderr
    assert task.stdout.split() == [str(p) for p in predictions[3:]]  # done already: listed, not rerun
    assert {p: p.stat().st_mtime_ns for p in written} == written
