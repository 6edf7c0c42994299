"""The SLURM examples on a real single-node cluster (issue 8): the slow tier, run by `make test-all`.

CI installs and starts the cluster with .ci/install-slurm.sh (Debian packages, then
../shared/tools/start-local-slurm.sh); as root this module starts it itself when SLURM is installed
but no controller answers. Everything skips with a reason where `sbatch` is absent.

Each test submits the scripts of examples/slurm/ unchanged, with small settings (1 CPU per task,
tiny models on synthetic scenes), waits for the jobs and checks their outputs against the same
work done in this process: the 2-task `srun` and the torchrun trainings give the weights of one
process, the 4-shard prediction gives the unsharded store, and an interrupted job requeues itself
and resumes to the uninterrupted run's weights.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "examples" / "slurm"
BIN = Path(sys.executable).parent
TINY = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8],
        "dropout": 0.0}
SMALL = ["--cpus-per-task=1", "--time=00:20:00"]


def _wired() -> bool:
    from hsicli.engine.predict import PredictOptions
    from hsicli.engine.train import TrainResult

    return "main" in TrainResult.__dataclass_fields__ and "shard" in PredictOptions.__dataclass_fields__


wired = pytest.mark.skipif(not _wired(), reason="needs the scale-out wiring")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sbatch") is None,
                       reason="SLURM is not installed (no sbatch); .ci/install-slurm.sh installs and starts it"),
]


def _controller_up() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "UP" in ping.stdout


@pytest.fixture(scope="module")
def cluster() -> None:
    if _controller_up():
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM controller answers `scontrol ping`; start one with .ci/install-slurm.sh (as root)")
    started = subprocess.run(["bash", str(REPO / ".ci" / "install-slurm.sh")], capture_output=True, text=True,
                             timeout=600)
    assert started.returncode == 0 and _controller_up(), started.stderr[-3000:]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """What the jobs inherit (sbatch exports the submitting environment)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HSI": str(BIN / "hsi"),
            "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _submit(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["sbatch", "--parsable", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def _job_records(job: str) -> list[dict[str, str]]:
    """`scontrol show job` as dicts, one per job (or array task)."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.stdout.splitlines() if line.strip()]


def _wait(jobs: list[str], timeout: float = 900) -> None:
    """Wait until the jobs left the queue, then require every one (and array task) COMPLETED, exit 0."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, subprocess.run(["squeue"], capture_output=True, text=True).stdout
        time.sleep(1)
    for job in jobs:
        records = _job_records(job)
        assert records, f"job {job} is unknown to scontrol"
        for record in records:
            assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), record


def _make_store(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """A learnable synthetic scene (three column stripes) with split "s": 6 % train, 3 % validation."""
    from hsicli.data.splits import stratified
    from hsicli.store.scene import SceneStore

    rng = np.random.default_rng(seed)
    bands = 8
    gt = (np.arange(width) * 3 // width + 1)[None, :].repeat(height, 0).astype(np.uint16)
    gt[rng.random(gt.shape) < 0.2] = 0
    means = rng.normal(0.0, 1.0, (4, bands)).astype(np.float32)
    cube = means[gt] + 0.6 * rng.normal(0.0, 1.0, (height, width, bands)).astype(np.float32)
    store = SceneStore.create(path, cube=cube, gt=gt, rgb=np.zeros((height, width, 3), np.uint8),
                              attrs={"class_names": ["a", "b", "c"], "class_colors": ["#f00", "#0f0", "#00f"]},
                              transform={"offset": np.zeros(bands, np.float32)}, transform_attrs={})
    store.add_layer("splits", "s", stratified(gt, train=0.06, val=0.03, seed=seed).astype(np.uint8), {})
    return store.path


def _tiny_args(epochs: int) -> list[str]:
    return ["--model-args", json.dumps(TINY), "--patch", "5", "--epochs", str(epochs), "--batch-size", "16",
            "--lr", "0.01", "--device", "cpu"]


def _train_here(store: Path, out: Path, epochs: int) -> Path:
    """The same training in this process, on one process."""
    import torch

    from hsicli.engine.train import TrainOptions, train

    torch.set_num_threads(1)
    options = TrainOptions(model="hybridsn", model_args=dict(TINY), patch=5, epochs=epochs, batch_size=16, lr=0.01,
                           device="cpu", threads=1, out=out)
    return train(store, options, command="test").path


def _weights(checkpoint: Path) -> dict[str, np.ndarray]:
    from hsicli.store.checkpoint import load_arrays

    return {k: v for k, v in load_arrays(checkpoint)[0].items() if k.startswith("model.")}


def _assert_same_weights(a: Path, b: Path, exact: bool) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        if exact:
            assert np.array_equal(wa[key], wb[key]), key
        else:
            np.testing.assert_allclose(wa[key], wb[key], rtol=1e-4, atol=1e-5, err_msg=key)


def _epoch_lines(log: Path) -> list[int]:
    return [int(m) for m in re.findall(r" epoch (\d+): loss", log.read_text())]


# -- the tests ---------------------------------------------------------------------------------------


def test_seed_sweep_array_and_summary(cluster, env, tmp_path):
    store = _make_store(tmp_path / "scene.zarr", 40, 30)
    runs = tmp_path / "runs"
    done = subprocess.run([str(SLURM / "submit-sweep.sh"), str(store), "svm", "3"], cwd=tmp_path,
                          env={**env, "RUNS": str(runs), "RATIO": "0.1", "SBATCH_ARGS": " ".join(SMALL)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sweep, summary = done.stdout.split()
    _wait([sweep, summary])
    assert len(_job_records(sweep)) == 3, "one array task per seed"
    for seed in range(3):
        metrics = json.loads((runs / f"svm-s{seed}.metrics.json").read_text())
        assert metrics["split"] == f"r0.1-s{seed}" and metrics["oa"] > 0.9
    result = json.loads((runs / "svm.summary.json").read_text())
    assert result["runs"] == 3 and result["oa"]["mean"] > 0.9
    assert result["oa"]["std"] >= 0.0 and sorted(result["predictions"]) == [
        str(runs / f"svm-s{seed}.pred.zarr") for seed in range(3)]
    assert "3 run(s)" in (tmp_path / f"hsi-summary-{summary}.out").read_text(), "the table is in the job's output"



def test_python_sweep_driver_as_an_array(cluster, env, tmp_path):
    """examples/sweep.py --slurm: the grid's array runs one point per task; the driver rerun after
    it finds every point done and rewrites nothing."""
    store = _make_store(tmp_path / "scene.zarr", 40, 30)
    args = [str(REPO / "examples" / "sweep.py"), str(store), "--out", str(tmp_path / "runs"), "--grid",
            "ratio=0.1,0.2", "--seeds", "0,1", "--set", "model=svm", "--set", "val=0.05"]
    made = subprocess.run([sys.executable, *args, "--slurm", str(tmp_path / "sweep.sbatch")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    array = _submit([*SMALL, str(tmp_path / "sweep.sbatch")], tmp_path, env)
    _wait([array])
    assert len(_job_records(array)) == 4, "one array task per grid point and seed"
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    rerun = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(rerun.stdout.split()) == sorted(str(p) for p in written if p.name.endswith(".pred.zarr"))
    assert len(rerun.stdout.split()) == 4
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == written

@wired
def test_two_task_srun_training_equals_one_process(cluster, env, tmp_path):
    store = _make_store(tmp_path / "scene.zarr", 40, 30)
    checkpoint = tmp_path / "srun.safetensors"
    job = _submit(["--ntasks=2", *SMALL, str(SLURM / "train-srun.sbatch"), f"{store}/splits/s", "hybridsn",
                   str(checkpoint), *_tiny_args(4)], tmp_path, env)
    _wait([job])
    log = tmp_path / f"hsi-train-{job}.out"
    assert _epoch_lines(log) == [1, 2, 3, 4], "only rank 0 reports"
    assert log.read_text().count(str(checkpoint)) == 1, "one path printed, by rank 0"
    _assert_same_weights(checkpoint, _train_here(store, tmp_path / "one.safetensors", 4), exact=False)


@wired
def test_torchrun_training_in_a_job(cluster, env, tmp_path):
    store = _make_store(tmp_path / "scene.zarr", 40, 30)
    checkpoint = tmp_path / "torchrun.safetensors"
    job = _submit(["--gpus-per-node=0", "--cpus-per-task=2", "--time=00:20:00", str(SLURM / "train-torchrun.sbatch"),
                   f"{store}/splits/s", "hybridsn", str(checkpoint), *_tiny_args(3)], tmp_path,
                  {**env, "NPROC_PER_NODE": "2"})
    _wait([job])
    assert _epoch_lines(tmp_path / f"hsi-torchrun-{job}.out") == [1, 2, 3]
    _assert_same_weights(checkpoint, _train_here(store, tmp_path / "one.safetensors", 3), exact=False)


@wired
def test_sharded_prediction_array_and_finalize(cluster, env, tmp_path):
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.store.prediction import PredictionStore

    store = _make_store(tmp_path / "tall.zarr", 300, 30)  # five row blocks of 64
    checkpoint = _train_here(store, tmp_path / "tiny.safetensors", 2)
    out = tmp_path / "sharded.pred.zarr"
    done = subprocess.run([str(SLURM / "submit-predict.sh"), str(checkpoint), "4", "--out", str(out), "--device",
                           "cpu"], cwd=tmp_path, env={**env, "SBATCH_ARGS": " ".join(SMALL)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path, shards, final = done.stdout.split()
    assert path == str(out)
    _wait([shards, final])
    assert len(_job_records(shards)) == 4
    sharded = PredictionStore.open(out)
    assert [s["slurm_job"].split("_")[1] for s in sharded.attrs["shards"]] == ["0", "1", "2", "3"]
    whole = PredictionStore.open(predict(checkpoint, PredictOptions(device="cpu", threads=1,
                                                                    out=tmp_path / "whole.pred.zarr"),
                                         command="test").path)
    assert np.array_equal(sharded.classes(), whole.classes())
    np.testing.assert_allclose(sharded.probabilities(), whole.probabilities(), rtol=0, atol=1e-6)
    assert (tmp_path / "sharded.metrics.json").is_file(), "the finalize job evaluated the store"


@wired
def test_interrupted_training_requeues_and_resumes(cluster, env, tmp_path):
    store = _make_store(tmp_path / "scene.zarr", 40, 30)
    checkpoint = tmp_path / "long.safetensors"
    epochs = 60
    job = _submit(["--ntasks=1", *SMALL, str(SLURM / "train-srun.sbatch"), f"{store}/splits/s", "hybridsn",
                   str(checkpoint), *_tiny_args(epochs)], tmp_path, env)
    log = tmp_path / f"hsi-train-{job}.out"
    deadline = time.monotonic() + 300
    while not (log.exists() and _epoch_lines(log)):
        assert time.monotonic() < deadline and _job_records(job)[0]["JobState"] in ("PENDING", "RUNNING"), \
            log.read_text() if log.exists() else "no output"
        time.sleep(0.2)
    # What SLURM does before the time limit with --signal=B:USR1@120: signal the batch shell.
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    while not (_job_records(job)[0]["JobState"] == "PENDING" and _job_records(job)[0]["Restarts"] == "1"):
        assert time.monotonic() < deadline, _job_records(job)
        time.sleep(0.2)
    # A requeued job waits two minutes before it may start again; release it sooner, but not within
    # the second of the requeue (slurmd refuses the new start as a revoked credential then).
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    _wait([job])
    text = log.read_text()
    assert "Error: training stopped by SIGUSR1 during epoch" in text and "requeueing job" in text
    resumed_after = int(re.search(r"resuming from long\.resume\.safetensors after epoch (\d+)", text)[1])
    assert 1 <= resumed_after < epochs
    assert _epoch_lines(log) == list(range(1, epochs + 1)), "each epoch once: before and after the requeue"
    _assert_same_weights(checkpoint, _train_here(store, tmp_path / "straight.safetensors", epochs), exact=True)
