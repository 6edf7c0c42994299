"""`hsi train --resume`: a run killed mid-training continues to the uninterrupted run's weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from hsicli.data.splits import stratified
import hsicli.engine.train as train_module
from hsicli.engine.train import TrainOptions, resume_path, train
from hsicli.errors import HsiError, StoreError
from hsicli.store.checkpoint import load_arrays
from hsicli.store.scene import SceneStore

torch.set_num_threads(1)

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}
EPOCHS = 6
# Batches of 8 over ~400 pixels: a few tenths of a second per epoch, time enough to kill mid-run.
SETTINGS = dict(model="hybridsn", model_args=TINY, patch=5, epochs=EPOCHS, batch_size=8, augment=True, seed=0,
                split="s", device="cpu", threads=1)


class Interrupted(Exception):
    pass


def stop_after(last: int):
    """An `on_epoch` callback that interrupts training once epoch `last` has finished."""

    def callback(entry):
        if entry["epoch"] == last:
            raise Interrupted

    return callback


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneStore:
    """40×40×8, three class stripes; splits "s" and "s2" draw different pixels in the same numbers."""
    path = tmp_path_factory.mktemp("resume") / "r.zarr"
    rng = np.random.default_rng(0)
    gt = np.broadcast_to(np.arange(40) * 3 // 40 + 1, (40, 40)).astype(np.uint16)
    gt[rng.random(gt.shape) < 0.15] = 0
    cube = rng.normal(0.0, 1.0, (4, 8)).astype(np.float32)[gt] + 0.3 * rng.normal(size=(40, 40, 8)).astype(np.float32)
    store = SceneStore.create(
        path, cube=cube, gt=gt, rgb=np.zeros((40, 40, 3), np.uint8),
        attrs={"class_names": ["a", "b", "c"], "class_colors": ["#ff0000", "#00ff00", "#0000ff"]},
        transform={"offset": np.zeros(8, np.float32)}, transform_attrs={},
    )
    for name, seed in (("s", 0), ("s2", 1)):
        store.add_layer("splits", name, stratified(gt, train=0.3, val=0.1, seed=seed).astype(np.uint8), {})
    return SceneStore.open(path)


def options(out: Path, **overrides) -> TrainOptions:
    return TrainOptions(**{**SETTINGS, "model_args": dict(TINY), "out": out, **overrides})


@pytest.fixture(scope="module")
def uninterrupted(scene) -> Path:
    return train(scene.path, options(scene.path.parent / "whole.safetensors"), command="test").path


def cli_args(store: Path, out: Path) -> list[str]:
    """`hsi train` with SETTINGS."""
    return [str(BIN / "hsi"), "train", str(store), "--model", "hybridsn",
            "--model-args", json.dumps(TINY), "--patch", "5", "--epochs", str(EPOCHS), "--batch-size", "8",
            "--augment", "--seed", "0", "--split", "s", "--device", "cpu", "--threads", "1", "--out", str(out)]


def state_epoch(path: Path) -> int | None:
    """The last finished epoch recorded in a state file (read with safetensors alone), or None."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return int(json.loads(handle.metadata()["epoch"]))
    except (OSError, ValueError, KeyError):  # not written yet
        return None


def assert_same_run(checkpoint: Path, reference: Path) -> None:
    arrays, meta = load_arrays(checkpoint)
    expected, expected_meta = load_arrays(reference)
    assert arrays.keys() == expected.keys()
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)

    def record(m):  # the history without the timings
        return [{k: v for k, v in entry.items() if k != "seconds"} for entry in m["training"]["history"]]

    assert len(meta["training"]["history"]) == EPOCHS
    assert record(meta) == record(expected_meta)
    assert meta["training"]["best_epoch"] == expected_meta["training"]["best_epoch"]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, scene, uninterrupted, stop):
    out = tmp_path / "killed.safetensors"
    state = resume_path(out)
    command = cli_args(scene.path, out)
    # Python leaves SIGINT ignored when its parent ignored it (a background job): restore the default.
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    killed_after = None
    while time.monotonic() < deadline and run.poll() is None:
        epoch = state_epoch(state)
        if epoch is not None and epoch >= 2:
            os.kill(run.pid, stop)
            killed_after = epoch
            break
        time.sleep(0.01)
    stdout, stderr = run.communicate(timeout=60)
    assert killed_after is not None, f"training ended (rc {run.returncode}) before epoch 2 was seen: {stderr}"
    assert not out.exists()
    kept = state_epoch(state)
    assert 2 <= kept < EPOCHS
    if stop == signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL
    else:  # one line: what was interrupted, the state kept and how to continue
        assert run.returncode == 130 and stdout == "", stderr
        errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in stderr, stderr
        assert "training interrupted (Ctrl-C)" in errors[0] and f"after epoch {kept} is in {state}" in errors[0]
        assert "--resume" in errors[0]

    resumed = subprocess.run([*command, "--resume"], env=ENV, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(out)
    assert "resuming" in resumed.stderr
    assert_same_run(out, uninterrupted)
    assert not state.exists()  # a finished run leaves no state behind


def test_a_non_finite_loss_stops_training_and_keeps_the_state(monkeypatch, tmp_path, scene):
    out = tmp_path / "diverged.safetensors"
    state = resume_path(out)
    clean_inputs = train_module._Batches.inputs

    def diverging(self, *args, **kwargs):  # from epoch 3 on, every input (hence the loss) is NaN
        inputs = clean_inputs(self, *args, **kwargs)
        return inputs * float("nan") if state_epoch(state) == 2 else inputs

    monkeypatch.setattr(train_module._Batches, "inputs", diverging)
    with pytest.raises(HsiError) as error:
        train(scene.path, options(out), command="test")
    message = error.value.message
    assert "loss became nan during epoch 3" in message and f"after epoch 2 is in {state}" in message, message
    assert "--lr" in error.value.hint and not out.exists()
    assert state_epoch(state) == 2
    assert all(np.isfinite(array).all() for array in load_arrays(state)[0].values())


def test_resume_without_a_state_file_starts_fresh(tmp_path, scene, uninterrupted):
    out = tmp_path / "fresh.safetensors"
    assert not resume_path(out).exists()
    train(scene.path, options(out, resume=True), command="test")
    assert_same_run(out, uninterrupted)


def test_interrupted_in_process_and_resumed(tmp_path, scene, uninterrupted):
    out = tmp_path / "stop.safetensors"

    with pytest.raises(Interrupted):
        train(scene.path, options(out), command="test", on_epoch=stop_after(3))
    assert state_epoch(resume_path(out)) == 3 and not out.exists()
    messages = []
    train(scene.path, options(out, resume=True), command="test", on_message=messages.append)
    assert any("after epoch 3" in m for m in messages)
    assert_same_run(out, uninterrupted)


def test_interrupted_run_with_weight_averaging_resumes_to_the_same_average(tmp_path, scene):
    averaging = dict(ema=0.9)
    whole = train(scene.path, options(tmp_path / "whole-ema.safetensors", **averaging), command="test").path
    out = tmp_path / "ema.safetensors"
    with pytest.raises(Interrupted):
        train(scene.path, options(out, **averaging), command="test", on_epoch=stop_after(3))
    train(scene.path, options(out, resume=True, **averaging), command="test")
    assert_same_run(out, whole)


def test_resume_after_the_early_stopping_epoch_stops(tmp_path, scene):
    # lr 0: no improvement after epoch 1 (epoch 2 ties, which keeps epoch 2 as the best but is no
    # improvement), so patience 1 stops after epoch 2. A run killed after epoch 2's state was
    # written, but before the checkpoint, must not train a third epoch.
    early = dict(lr=0.0, patience=1, epochs=10, batch_size=64)
    whole = train(scene.path, options(tmp_path / "whole.safetensors", **early), command="test").path
    out = tmp_path / "early.safetensors"

    with pytest.raises(Interrupted):
        train(scene.path, options(out, **early), command="test", on_epoch=stop_after(2))
    train(scene.path, options(out, resume=True, **early), command="test")
    for checkpoint in (out, whole):
        training = load_arrays(checkpoint)[1]["training"]
        assert [entry["epoch"] for entry in training["history"]] == [1, 2]
        assert training["best_epoch"] == 2 and training["stop"]["reason"] == "patience"


def test_resume_between_tied_epochs_keeps_the_tie_rule(monkeypatch, tmp_path, scene):
    """Best epoch and patience survive the state file: ties keep the later epoch without resetting
    patience, whether or not the run was interrupted between them."""
    accuracies = [0.5, 0.8, 0.8, 0.8, 0.9, 0.9]  # patience 2 stops after epoch 4; best is epoch 4
    tied = dict(patience=2, batch_size=64)

    def scripted() -> None:
        values = iter(accuracies)
        monkeypatch.setattr(train_module, "evaluate_pixels", lambda *args, **kwargs: (next(values), None))

    scripted()
    whole = train(scene.path, options(tmp_path / "whole.safetensors", **tied), command="test").path
    out = tmp_path / "tied.safetensors"

    scripted()
    with pytest.raises(Interrupted):
        train(scene.path, options(out, **tied), command="test", on_epoch=stop_after(3))
    accuracies[:3] = []  # the resumed run validates epochs 4 onwards
    scripted()
    train(scene.path, options(out, resume=True, **tied), command="test")
    for checkpoint in (out, whole):
        training = load_arrays(checkpoint)[1]["training"]
        assert [entry["val_accuracy"] for entry in training["history"]] == [0.5, 0.8, 0.8, 0.8]
        assert training["best_epoch"] == 4
    resumed, uninterrupted = load_arrays(out)[0], load_arrays(whole)[0]
    assert all(np.array_equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def _interrupt(scene: SceneStore, out: Path) -> Path:
    def stop(entry):
        if entry["epoch"] == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(scene.path, options(out), command="test", on_epoch=stop)
    return resume_path(out)


@pytest.mark.parametrize(
    "change",
    [{"lr": 0.01}, {"seed": 1}, {"batch_size": 16}, {"model_args": {**TINY, "conv2d_channels": 6}},
     {"split": "s2"}],
    ids=["lr", "seed", "batch", "architecture", "split-of-same-size"],
)
def test_state_file_from_other_settings_is_a_clear_error(tmp_path, scene, change):
    out = tmp_path / "other.safetensors"
    state = _interrupt(scene, out)
    before = state.read_bytes()
    with pytest.raises(StoreError, match="other settings") as error:
        train(scene.path, options(out, resume=True, **change), command="test")
    assert str(state) in error.value.message
    assert state.read_bytes() == before and not out.exists()
