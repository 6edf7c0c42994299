"""The run record (issue 18): every setting of a training run declared once, stored whole in the
checkpoint, replayed by `hsi train --like` and by every pseudo-label round, and a checkpoint that
predicts the same whatever the registry's defaults say today."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hsicli.engine.predict import PredictOptions, predict
from hsicli.engine.train import TrainOptions, resume_path, train
from hsicli.models import registry
from hsicli.store.checkpoint import Checkpoint
from hsicli.store.prediction import PredictionStore
from hsicli.store.record import RunRecord, TrainDefaults, flagged
from hsicli.store.scene import SceneStore
from test_pseudolabel import make_scene  # noqa: E402  (tests/ is on the path)

HSISEG = {"dim": 8, "heads": 2, "grids": [3, 2], "dropout": 0.0}
HYBRIDSN = {"conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}
BASE = dict(split="s", device="cpu", threads=1)

# A value other than every model's default for each declared option of `hsi train`. A setting added
# to the record without a value here fails `test_every_declared_option_has_a_non_default_value`.
NON_DEFAULT = {
    "model": "hsiseg", "model_args": {**HSISEG, "tau1": 0.6},
    "split": "s", "seed": 3, "class_weights": "balanced", "amp": True, "protocol": "paper", "step_budget": 8,
    "patch": 9, "lr": 0.002, "weight_decay": 0.01, "batch_size": 4, "epochs": 2, "patience": 5,
    "schedule": "cosine", "warmup": 1, "clip_grad": 1.0, "ema": 0.9,
}
# Settings a pseudo-label round changes on purpose: its labels and the weights it starts from.
PER_ROUND = {"labels", "init"}
# --augment turns windows but not their targets, so segmenters refuse it; a patch model shows it
# lands in the record, together with --labels and --init.
PATCH_MODEL_ONLY = {"augment", "labels", "init"}


def declared() -> list[str]:
    return [f.name for owner in (RunRecord, TrainDefaults) for f in flagged(owner)]


def recorded(record: RunRecord, name: str):
    return getattr(record.hyper if hasattr(record.hyper, name) else record, name)


def test_every_declared_option_has_a_non_default_value():
    assert set(declared()) == set(NON_DEFAULT) | PATCH_MODEL_ONLY


def test_hsi_train_options_are_the_declared_settings():
    import inspect

    from hsicli.cli.train import train as command

    parameters = inspect.signature(command).parameters
    for owner in (RunRecord, TrainDefaults):
        for f in flagged(owner):
            assert f.name in parameters, f"--{f.name} is declared but not an option of hsi train"
            assert parameters[f.name].default is None  # not given: --like's or the paper's value


@pytest.fixture
def loop_scene(tmp_path):
    return make_scene(tmp_path / "loop.zarr", height=14, width=12, cube_noise=0.3)


def test_non_default_values_land_in_every_round_checkpoint(loop_scene, cli):
    """The property of issue 18: each setting given lands in the checkpoint's record, and every
    pseudo-label round (`--iterations 2`) trains with the same record but its labels and init."""
    first = train(loop_scene.path, TrainOptions(**{**NON_DEFAULT, **BASE}), command="test")
    record = Checkpoint.open(first.path).record
    for name, value in NON_DEFAULT.items():
        if name == "model_args":
            assert value.items() <= record.model_args.items()
        else:
            assert recorded(record, name) == value, name
    pred = predict(first.path, PredictOptions(device="cpu", threads=1), command="test").path
    result = cli("pseudolabel", str(pred), "--iterations", "2", "--tau", "0.4", "--zeta", "0.05",
                 "--device", "cpu", "--threads", "1", "--json")
    assert result.exit_code == 0, result.stderr
    rounds = json.loads(result.stdout)["rounds"]
    previous = first.path
    for entry in rounds:
        assert entry["trained"]
        round_record = Checkpoint.open(Path(entry["checkpoint"])).record
        assert replace(round_record, labels=None, init=None) == replace(record, labels=None, init=None)
        assert round_record.labels == Path(entry["labels"]).name
        assert round_record.init == str(previous)
        previous = Path(entry["checkpoint"])
        # What the round's threshold and labels were, beside its outcome.
        assert entry["tau"] > 0 and entry["threshold"] == pytest.approx(max(entry["tau"], entry["mean_plus_std"]), rel=1e-6)
        assert sum(entry["added_per_class"]) == entry["added"] > 0
        assert "oa" in entry


def test_patch_model_records_augment_labels_and_init(tmp_path):
    store = make_scene(tmp_path / "p.zarr", height=14, width=12, cube_noise=0.3)
    store.add_layer("labels", "pl", store.gt().astype(np.uint16), {})
    base = train(store.path, TrainOptions(model="hybridsn", model_args=HYBRIDSN, patch=5, epochs=1, **BASE),
                 command="test").path
    tuned = train(store.path, TrainOptions(model="hybridsn", model_args=HYBRIDSN, patch=5, epochs=1, augment=True,
                                           labels="pl", init=base, out=tmp_path / "t.safetensors", **BASE),
                  command="test").path
    record = Checkpoint.open(tuned).record
    assert record.hyper.augment is True and record.labels == "pl" and record.init == str(base)


def test_like_repeats_a_run_exactly_and_given_options_override_it(tmp_path, cli):
    store = make_scene(tmp_path / "l.zarr", height=14, width=12, cube_noise=0.3)
    first = train(store.path, TrainOptions(model="hybridsn", model_args=HYBRIDSN, patch=5, epochs=2, lr=0.01,
                                           seed=4, class_weights="balanced", **BASE), command="test").path
    again = cli("train", str(store.path), "--like", str(first), "--device", "cpu", "--threads", "1",
                "--out", str(tmp_path / "again.safetensors"))
    assert again.exit_code == 0, again.stderr
    original, repeated = Checkpoint.open(first), Checkpoint.open(Path(again.lines[0]))
    assert repeated.record == original.record
    assert all(np.array_equal(a, repeated.arrays()[k]) for k, a in original.arrays().items())
    longer = cli("train", str(store.path), "--like", str(first), "--epochs", "3", "--device", "cpu",
                 "--out", str(tmp_path / "longer.safetensors"))
    assert longer.exit_code == 0, longer.stderr
    assert Checkpoint.open(Path(longer.lines[0])).record == replace(
        original.record, hyper=replace(original.record.hyper, epochs=3))
    # `hsi info` shows the record as the options that repeat it.
    info = cli("info", str(first))
    assert info.exit_code == 0
    assert "--model hybridsn" in info.stderr and "--lr 0.01" in info.stderr and "--seed 4" in info.stderr
    assert "--class-weights balanced" in info.stderr and '"conv2d_channels": 4' in info.stderr


def test_a_changed_registry_default_does_not_change_an_existing_checkpoint(tmp_path, monkeypatch):
    """The checkpoint stores every architecture argument, so predicting it ignores today's defaults."""
    from hsicli.models.hsiseg import HSIseg

    store = make_scene(tmp_path / "d.zarr", height=14, width=12, cube_noise=0.3)
    checkpoint = train(store.path, TrainOptions(model="hsiseg", model_args=HSISEG, patch=9, epochs=1, batch_size=4,
                                                **BASE), command="test").path
    assert Checkpoint.open(checkpoint).record.model_args["tau1"] == 0.8  # the default of the day, stored

    def probabilities(name: str) -> np.ndarray:
        out = predict(checkpoint, PredictOptions(device="cpu", threads=1, out=tmp_path / name), command="test").path
        return PredictionStore.open(out).probabilities()

    before = probabilities("before.pred.zarr")
    spec = registry.get_model_spec("hsiseg")
    edited = {**spec.arguments, "tau1": 0.2}
    monkeypatch.setitem(registry._REGISTRY, "hsiseg", replace(
        spec, arguments=edited, builder=lambda bands, classes, **args: HSIseg(bands, classes, **{**edited, **args})))
    # The edit matters to a model built from today's defaults: it predicts differently.
    monkeypatch.setattr(Checkpoint, "open", staticmethod(_without_argument(Checkpoint.open, "tau1")))
    assert not np.allclose(probabilities("today.pred.zarr"), before, atol=1e-6)
    monkeypatch.undo()
    monkeypatch.setitem(registry._REGISTRY, "hsiseg", replace(
        spec, arguments=edited, builder=lambda bands, classes, **args: HSIseg(bands, classes, **{**edited, **args})))
    np.testing.assert_array_equal(probabilities("after.pred.zarr"), before)


def _without_argument(open_checkpoint, name: str):
    """`Checkpoint.open` as if the checkpoint had not stored argument `name` (as before issue 18)."""

    def opened(path):
        checkpoint = open_checkpoint(path)
        args = {k: v for k, v in checkpoint.record.model_args.items() if k != name}
        return replace(checkpoint, record=replace(checkpoint.record, model_args=args))

    return opened


def test_pseudolabel_rounds_killed_mid_round_resume_to_the_uninterrupted_result(tmp_path_factory, cli):
    """`--iterations 3` SIGKILLed while round 2 trains, then run again, reaches the labels and the
    checkpoint of a run that was never interrupted."""
    from harness import Runner

    runner = Runner(tmp_path_factory.mktemp("runner"))
    args = ["--iterations", "3", "--epochs", "4", "--tau", "0.4", "--zeta", "0.05", "--device", "cpu",
            "--threads", "1", "--json"]

    def start(folder: Path) -> Path:
        store = make_scene(folder / "k.zarr", height=14, width=12, cube_noise=0.3)
        first = train(store.path, TrainOptions(model="hsiseg", model_args=HSISEG, patch=9, epochs=1, batch_size=2,
                                               **BASE), command="test")
        return predict(first.path, PredictOptions(device="cpu", threads=1), command="test").path

    whole_pred = start(tmp_path_factory.mktemp("whole"))
    whole = cli("pseudolabel", str(whole_pred), *args)
    assert whole.exit_code == 0, whole.stderr

    folder = tmp_path_factory.mktemp("killed")
    pred = start(folder)
    handle = runner.start(["pseudolabel", str(pred), *args], folder)
    deadline, killed = time.monotonic() + 120, False
    while time.monotonic() < deadline and handle.process.exitcode is None:
        states = list(folder.glob("*pseudo2-*.resume.safetensors"))
        if states and _state_epoch(states[0]) is not None:
            handle.process.kill()
            killed = True
            break
        time.sleep(0.005)
    assert killed and handle.wait().killed, "round 2 ended before it could be killed"
    again = cli("pseudolabel", str(pred), *args)
    assert again.exit_code == 0, again.stderr
    assert "resuming" in again.stderr

    for one, two in zip(json.loads(whole.stdout)["rounds"], json.loads(again.stdout)["rounds"]):
        assert one["round"] == two["round"] and one["added_per_class"] == two["added_per_class"]
        assert np.array_equal(_layer(one["labels"]), _layer(two["labels"]))
        a, b = Checkpoint.open(Path(one["checkpoint"])), Checkpoint.open(Path(two["checkpoint"]))
        assert a.arrays().keys() == b.arrays().keys()
        assert all(np.array_equal(v, b.arrays()[k]) for k, v in a.arrays().items())
        assert [{k: v for k, v in e.items() if k != "seconds"} for e in a.history] == \
               [{k: v for k, v in e.items() if k != "seconds"} for e in b.history]
        assert not resume_path(Path(two["checkpoint"])).exists()


def _state_epoch(path: Path) -> int | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return int(json.loads(handle.metadata()["epoch"]))
    except (OSError, ValueError, KeyError):  # being written
        return None


def _layer(path: str) -> np.ndarray:
    layer = Path(path)
    return SceneStore.open(layer.parent.parent).read_layer("labels", layer.name).data


def test_a_store_with_auxiliary_rasters_feeds_a_model_that_reads_them(tmp_path):
    """A store prepared with --aux trains HSIseg with its rasters by default, saying so; --no-aux
    leaves them out; a model that cannot read them says that it does not."""
    store = make_scene(tmp_path / "x.zarr", height=14, width=12, cube_noise=0.3)
    arrays, attrs = store.transform()
    aux = np.random.default_rng(0).normal(size=(*store.shape[:2], 2)).astype(np.float32)
    with_aux = SceneStore.create(tmp_path / "aux.zarr", cube=store.cube(), gt=store.gt(),
                                 rgb=np.zeros((*store.shape[:2], 3), np.uint8),
                                 attrs={"class_names": store.class_names, "class_colors": store.class_colors},
                                 transform=arrays, transform_attrs=attrs, aux=aux)
    with_aux.add_layer("splits", "s", store.read_layer("splits", "s").data, {})

    def trained(model: str, args: dict, **options) -> tuple[RunRecord, list[str]]:
        messages: list[str] = []
        result = train(with_aux.path, TrainOptions(model=model, model_args=args, epochs=1, batch_size=4, **BASE,
                                                   **options), command="test", on_message=messages.append)
        return Checkpoint.open(result.path).record, messages

    record, messages = trained("hsiseg", HSISEG, patch=9)
    assert record.model_args["aux_bands"] == 2 and any("2 auxiliary raster(s)" in m for m in messages)
    left_out, messages = trained("hsiseg", HSISEG, patch=9, no_aux=True, out=tmp_path / "n.safetensors")
    assert left_out.model_args["aux_bands"] == 0 and any("--no-aux" in m for m in messages)
    _, messages = trained("svm", {})
    assert any("svm reads the spectral bands only" in m for m in messages)
