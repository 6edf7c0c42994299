"""The Python API (hsicli.api): the example runs, engine calls need no command, loaders, plain zarr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

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
