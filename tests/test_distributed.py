"""Data-parallel training and preemption (issue 8): rank detection, the sampler, collectives, signals.

The unit tests need nothing; the end-to-end ones run `torchrun --nproc_per_node 2 -m hsicli train`
on CPU (gloo) with HybridSN shrunk to a few hundred parameters, and interrupt a real `hsi train`
with SIGTERM. Those need the scale-out wiring of train.py and skip without it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hsicli.engine import distributed, preempt
from hsicli.engine.distributed import World, detect_world, first_host, rank_batches, rendezvous
from hsicli.engine.train import TrainResult
from hsicli.errors import HsiError

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# Subprocesses: one thread each (2 shared cores) and the venv first on PATH.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_ID", "SLURM_PROCID"):
    ENV.pop(_name, None)
TINY = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}

wired = pytest.mark.skipif("main" not in TrainResult.__dataclass_fields__, reason="needs the scale-out wiring")


# -- who am I -------------------------------------------------------------------------------------


def test_torchrun_variables_win():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0",
           "SLURM_NTASKS": "1"}
    assert detect_world(env) == World(3, 4, 1, "torchrun")


def test_srun_step_variables():
    env = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2",
           "SLURM_LOCALID": "1"}
    assert detect_world(env) == World(1, 2, 1, "slurm")


def test_a_batch_script_is_not_a_step():
    # `hsi train` run directly in an `sbatch -n 2` script: SLURM_NTASKS is 2, but there is one process.
    assert detect_world({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}) == World()
    assert detect_world({}) == World() and World().is_main and not World().distributed


def test_one_process_worlds_are_single():
    assert detect_world({"RANK": "0", "WORLD_SIZE": "1"}) == World()
    assert detect_world({"SLURM_STEP_ID": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == World()


@pytest.mark.parametrize("env", [{"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}])
def test_inconsistent_ranks_are_errors(env):
    with pytest.raises(HsiError, match="RANK|rank 2"):
        detect_world(env)


@pytest.mark.parametrize("nodelist, host", [
    ("vm", "vm"),
    ("gpu[03-05,09],cpu1", "gpu03"),
    ("node[7]", "node7"),
    ("a-b12,c3", "a-b12"),
    ("rack1-n[010,002]", "rack1-n010"),
])
def test_first_host_of_a_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_rendezvous_from_slurm_and_from_the_launcher():
    world = World(1, 2, 1, "slurm")
    address, port = rendezvous(world, {"SLURM_STEP_NODELIST": "gpu[12-13]", "SLURM_JOB_ID": "123456"})
    assert (address, port) == ("gpu12", distributed.BASE_PORT + 123456 % distributed.PORT_SPAN)
    assert rendezvous(world, {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234", "SLURM_JOB_ID": "1"}) == (
        "10.0.0.1", 1234)
    with pytest.raises(HsiError, match="MASTER_PORT"):
        rendezvous(World(1, 2, 0, "torchrun"), {"MASTER_ADDR": "h"})


# -- the sampler ----------------------------------------------------------------------------------


def test_one_process_gets_the_plain_batches():
    order = np.random.default_rng(0).permutation(103)
    batches = rank_batches(order, 16, World())
    assert [b.tolist() for b in batches] == [order[i : i + 16].tolist() for i in range(0, 103, 16)]


@pytest.mark.parametrize("n, batch, size", [(200, 64, 1), (103, 16, 1), (103, 16, 2), (10, 4, 3), (5, 8, 4), (7, 1, 2)])
def test_balanced_batches_are_as_many_and_differ_by_one_at_most(n, batch, size):
    order = np.random.default_rng(n).permutation(n)
    worlds = [World(rank, size, rank, "torchrun") for rank in range(size)] if size > 1 else [World()]
    per_rank = [rank_batches(order, batch, world, balanced=True) for world in worlds]
    for world, balanced in zip(worlds, per_rank):
        plain = rank_batches(order, batch, world)
        assert len(balanced) == len(plain) and np.array_equal(np.concatenate(balanced), np.concatenate(plain))
        assert max(b.size for b in balanced) - min(b.size for b in balanced) <= 1
    assert len({tuple(b.size for b in batches) for batches in per_rank}) == 1, "every rank's steps alike"
    if (n, batch) == (200, 64):
        assert [b.size for b in per_rank[0]] == [50, 50, 50, 50]


@pytest.mark.parametrize("n, batch, size", [(103, 16, 2), (10, 4, 3), (5, 8, 4), (64, 64, 4), (7, 1, 2)])
def test_ranks_split_each_global_batch(n, batch, size):
    order = np.random.default_rng(n).permutation(n)
    per_rank = [rank_batches(order, batch, World(rank, size, rank, "torchrun")) for rank in range(size)]
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1, "every rank runs the same number of steps"
    padded = np.resize(order, -(-n // size) * size)
    seen = []
    for k in range(counts.pop()):
        shares = [per_rank[rank][k] for rank in range(size)]
        assert len({s.size for s in shares}) == 1 and shares[0].size > 0
        union = np.stack(shares, axis=1).ravel()  # rank r holds every size-th index from offset r
        start = k * -(-batch // size) * size
        assert np.array_equal(union, padded[start : start + union.size]), "a contiguous slice of the order"
        seen.extend(union.tolist())
    assert sorted(set(seen)) == list(range(n)) and len(seen) == padded.size


def test_rank_slices_partition_the_validation_pixels():
    parts = [np.arange(11)[distributed.rank_slice(11, World(r, 3, r, "slurm"))] for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(11))


# -- collectives in a real two-process gloo group ---------------------------------------------------

_COLLECTIVES = textwrap.dedent("""
    import json, sys, torch
    from hsicli.engine import distributed
    world = distributed.detect_world()
    with distributed.process_group(world, torch.device("cpu")):
        total = distributed.all_reduce_sum([world.rank + 1.0, 10.0], world).tolist()
        anyone = distributed.any_rank(world.rank == 1, world)
        nobody = distributed.any_rank(False, world)
        distributed.barrier(world)
    print(json.dumps({"rank": world.rank, "total": total, "any": anyone, "none": nobody,
                      "main": distributed.is_main(world)}))
""")


def test_collectives_across_two_processes(tmp_path):
    port = 20000 + os.getpid() % 5000
    procs = [subprocess.Popen([sys.executable, "-c", _COLLECTIVES], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**ENV, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r),
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    for rank, result in enumerate(results):
        assert result == {"rank": rank, "total": [3.0, 20.0], "any": True, "none": False, "main": rank == 0}


def test_one_process_collectives_are_identities():
    assert distributed.all_reduce_sum([1.5, 2], World()).tolist() == [1.5, 2.0]
    assert distributed.any_rank(True, World()) and not distributed.any_rank(False, World())
    distributed.barrier(World())


# -- preemption signals -----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_watch_turns_a_signal_into_a_flag(signum):
    before = signal.getsignal(signum)
    with preempt.watch() as flag:
        assert not flag
        os.kill(os.getpid(), signum)
        for _ in range(100):  # the handler runs between bytecodes of the main thread
            if flag:
                break
            time.sleep(0.01)
        assert flag and flag.signal == signum and flag.name == signal.Signals(signum).name
    assert signal.getsignal(signum) is before, "the previous handler is restored"


def test_preempted_has_the_tempfail_exit_code():
    assert preempt.EXIT_CODE == 75 and preempt.Preempted("x").exit_code == 75
    assert issubclass(preempt.Preempted, HsiError)


# -- end to end: torchrun and SIGTERM -----------------------------------------------------------------


def _scene(folder: Path) -> Path:
    """A 24 × 20 synthetic store with split "s": 120 training, 40 validation pixels, the rest test."""
    from hsicli.data.splits import TEST, TRAIN, VAL
    from hsicli.store.scene import SceneStore

    rng = np.random.default_rng(0)
    height, width, bands = 24, 20, 8
    gt = np.broadcast_to(np.arange(width) * 3 // width + 1, (height, width)).astype(np.uint16).copy()
    gt[rng.random((height, width)) < 0.15] = 0
    means = rng.normal(0.0, 1.0, (4, bands)).astype(np.float32)
    cube = means[gt] + 0.5 * rng.normal(0.0, 1.0, (height, width, bands)).astype(np.float32)
    store = SceneStore.create(folder / "d.zarr", cube=cube, gt=gt, rgb=np.zeros((height, width, 3), np.uint8),
                              attrs={"class_names": ["a", "b", "c"], "class_colors": ["#ff0000", "#00ff00", "#0000ff"]},
                              transform={"offset": np.zeros(bands, np.float32)}, transform_attrs={})
    labelled = rng.permutation(np.flatnonzero(gt.ravel()))
    split = np.zeros(gt.size, np.uint8)
    split[labelled] = TEST
    split[labelled[:120]], split[labelled[120:160]] = TRAIN, VAL
    store.add_layer("splits", "s", split.reshape(gt.shape), {})
    return store.path


def _train_args(store: Path, out: Path, epochs: int, **model_args) -> list[str]:
    return ["train", f"{store}/splits/s", "--model", "hybridsn", "--model-args", json.dumps({**TINY, **model_args}),
            "--patch", "5", "--epochs", str(epochs), "--batch-size", "16", "--lr", "0.01", "--device", "cpu",
            "--threads", "1", "--out", str(out)]


def _test_accuracy(checkpoint: Path, folder: Path) -> float:
    from hsicli.store.evaluation import evaluate_prediction
    from hsicli.engine.predict import PredictOptions, predict

    pred = predict(checkpoint, PredictOptions(device="cpu", threads=1, out=folder / (checkpoint.stem + ".pred.zarr")),
                   command="test").path
    return evaluate_prediction(pred)["oa"]


@wired
@pytest.mark.slow
def test_torchrun_two_processes_train_like_one(tmp_path):
    """Without dropout (and no batch norm in HybridSN), two ranks sharing each global batch of 16 take
    the same steps as one process: the gradient of a batch is the mean of the ranks' gradients."""
    from hsicli.store.checkpoint import load_arrays, read_header

    store = _scene(tmp_path)
    single = subprocess.run([str(BIN / "hsi"), *_train_args(store, tmp_path / "one.safetensors", 8, dropout=0.0)],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert single.returncode == 0, single.stderr
    # (torchrun's own parser would take `--log` for an abbreviation of its --log-dir: stderr it is.)
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hsicli",
         *_train_args(store, tmp_path / "two.safetensors", 8, dropout=0.0)],
        capture_output=True, text=True, env=ENV, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    # Only rank 0 writes and reports: one path on stdout, one line per epoch on stderr.
    assert ddp.stdout.splitlines() == [str(tmp_path / "two.safetensors")]
    assert [line.split(" epoch ")[1].split(":")[0] for line in ddp.stderr.splitlines() if " epoch " in line] == [
        str(e) for e in range(1, 9)]
    assert sorted(p.name for p in tmp_path.glob("two*")) == ["two.safetensors"], "no state file left behind"
    one, two = (load_arrays(tmp_path / f"{name}.safetensors")[0] for name in ("one", "two"))
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # Loss and accuracies are over all ranks' pixels, so the records agree too.
    h1, h2 = (read_header(tmp_path / f"{name}.safetensors")[1]["training"]["history"] for name in ("one", "two"))
    for a, b in zip(h1, h2, strict=True):
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"], abs=1 / 120)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1 / 40)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    accuracy = _test_accuracy(tmp_path / "one.safetensors", tmp_path)
    assert accuracy > 0.9 and _test_accuracy(tmp_path / "two.safetensors", tmp_path) == pytest.approx(accuracy,
                                                                                                       abs=0.01)


@wired
def test_sigterm_saves_state_exits_75_and_resume_repeats_the_run(tmp_path):
    import torch

    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import load_arrays

    store = _scene(tmp_path)
    epochs = 30  # a few seconds: the signal comes right after the first epoch, long before the end
    log = tmp_path / "cut.jsonl"
    proc = subprocess.Popen([str(BIN / "hsi"), *_train_args(store, tmp_path / "cut.safetensors", epochs),
                             "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before its first epoch was logged"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == preempt.EXIT_CODE, err
    assert out == "" and "Error: training stopped by SIGTERM during epoch" in err and "--resume" in err
    state = tmp_path / "cut.resume.safetensors"
    assert state.is_file() and not (tmp_path / "cut.safetensors").exists()
    finished = load_arrays(state)[1]["epoch"]
    assert 1 <= finished < epochs
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == list(range(1, finished + 1))

    # Resumed, the run ends exactly where an uninterrupted one does.
    torch.set_num_threads(1)
    settings = dict(model="hybridsn", model_args=dict(TINY), patch=5, epochs=epochs, batch_size=16, lr=0.01,
                    device="cpu", threads=1)
    messages: list[str] = []
    resumed = train(store / "splits" / "s", TrainOptions(**settings, resume=True, out=tmp_path / "cut.safetensors"),
                    command="test", on_message=messages.append)
    assert f"resuming from cut.resume.safetensors after epoch {finished}" in messages
    straight = train(store / "splits" / "s", TrainOptions(**settings, out=tmp_path / "straight.safetensors"),
                     command="test")
    a, b = load_arrays(resumed.path)[0], load_arrays(straight.path)[0]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
