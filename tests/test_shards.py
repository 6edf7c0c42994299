"""Sharded prediction (issue 8): shard specs, the row plan, markers, and init → shards → finalize.

The end-to-end tests predict a synthetic scene taller than four row blocks in 1, 3 and 4 shards and
compare with an unsharded prediction; they need the scale-out wiring of predict.py and skip
without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hsicli.engine import shards
from hsicli.engine.predict import PredictOptions
from hsicli.engine.shards import Shard, parse_shard
from hsicli.errors import StoreError, UsageError
from hsicli.store.atomic import write_lock

wired = pytest.mark.skipif("shard" not in PredictOptions.__dataclass_fields__, reason="needs the scale-out wiring")


# -- shard specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, shard", [("0/4", Shard(0, 4)), ("3/4", Shard(3, 4)), (" 1 / 2 ", Shard(1, 2)),
                                         ("0/1", Shard(0, 1))])
def test_parse_explicit_shards(spec, shard):
    assert parse_shard(spec, {}) == shard
    assert str(shard) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize("spec", ["4/4", "1/0", "-1/4", "a/b", "1", "1/2/3", ""])
def test_bad_shard_specs_are_usage_errors(spec):
    with pytest.raises(UsageError) as info:
        parse_shard(spec, {})
    assert info.value.exit_code == 2


@pytest.mark.parametrize("env, shard", [
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, Shard(2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}, Shard(2, 4)),  # 3-6
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, Shard(1, 3)),
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_STEP": "2"}, Shard(3, 4)),  # --array=0-7:2
])
def test_slurm_array_shards(env, shard):
    assert parse_shard("slurm", env) == shard
    assert parse_shard("SLURM", env) == shard


@pytest.mark.parametrize("env", [
    {},
    {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"},
    {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
     "SLURM_ARRAY_TASK_STEP": "2"},
    {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"},
])
def test_slurm_shards_outside_a_usable_array(env):
    with pytest.raises(UsageError, match="SLURM|array"):
        parse_shard("slurm", env)


# -- the row plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize("height, block, count", [(300, 64, 4), (256, 64, 4), (65, 64, 2), (10, 64, 3),
                                                  (1000, 64, 7), (64, 64, 1), (200, 16, 16)])
def test_shards_partition_the_rows_in_whole_blocks(height, block, count):
    spans = [Shard(i, count).rows(height, block) for i in range(count)]
    assert spans[0][0] == 0 and spans[-1][1] == height
    for (a, b), (c, _) in zip(spans, spans[1:]):
        assert b == c, "contiguous, no gap, no overlap"
    for start, stop in spans:
        assert start % block == 0 and (stop % block == 0 or stop == height), "chunk-aligned"
    blocks = [-(-(b - a) // block) for a, b in spans]
    assert max(blocks) - min(blocks) <= 1, "balanced to within one block"


# -- markers ----------------------------------------------------------------------------------------


def test_markers_gate_completion(tmp_path):
    store = tmp_path / "p.zarr"
    store.mkdir()
    height, block = 200, 64  # 4 blocks
    with pytest.raises(StoreError, match="no shard"):
        shards.check_complete(store, height, block)
    plan = [Shard(i, 3) for i in range(3)]
    for shard in plan[:2]:
        with write_lock(store):
            shards.begin(store, shard)
            shards.finish(store, shard, shard.rows(height, block), {"inference_seconds": 1.5})
    with pytest.raises(StoreError, match=r"1 of 3 shards have not finished: 2/3 \(rows 128-199\)"):
        shards.check_complete(store, height, block)
    shards.finish(store, plan[2], plan[2].rows(height, block), {"inference_seconds": 2.0})
    markers = shards.check_complete(store, height, block)
    assert [m["index"] for m in markers] == [0, 1, 2] and [m["rows"] for m in markers] == [[0, 64], [64, 128],
                                                                                          [128, 200]]
    # A shard that starts again withdraws its marker until it finishes.
    shards.begin(store, plan[1])
    with pytest.raises(StoreError, match="1/3"):
        shards.check_complete(store, height, block)
    # Another shard count is refused while markers of this one exist.
    with pytest.raises(StoreError, match="3 shards, not 4"):
        shards.begin(store, Shard(0, 4))
    assert not any(p.name.startswith(".") for p in (store / shards.MARKER_DIR).iterdir()), "no temporaries left"


def test_a_marker_with_another_row_plan_is_rejected(tmp_path):
    store = tmp_path / "p.zarr"
    store.mkdir()
    shards.finish(store, Shard(0, 1), (0, 100), {"inference_seconds": 1.0})
    with pytest.raises(StoreError, match="covered rows"):
        shards.check_complete(store, 128, 64)


# -- end to end -------------------------------------------------------------------------------------

HEIGHT, WIDTH, BANDS = 300, 24, 6  # 5 row blocks of 64: shards of unequal size, a short last block
TINY = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(scene store, checkpoint of a tiny HybridSN) on a tall synthetic scene."""
    import torch

    from hsicli.data.splits import stratified
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.scene import SceneStore

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(0)
    gt = (np.arange(WIDTH) * 3 // WIDTH + 1)[None, :].repeat(HEIGHT, 0).astype(np.uint16)
    gt[rng.random(gt.shape) < 0.2] = 0
    means = rng.normal(0.0, 1.0, (4, BANDS)).astype(np.float32)
    cube = means[gt] + 0.7 * rng.normal(0.0, 1.0, (HEIGHT, WIDTH, BANDS)).astype(np.float32)
    store = SceneStore.create(folder / "tall.zarr", cube=cube, gt=gt, rgb=np.zeros((HEIGHT, WIDTH, 3), np.uint8),
                              attrs={"class_names": ["a", "b", "c"], "class_colors": ["#f00", "#0f0", "#00f"]},
                              transform={"offset": np.zeros(BANDS, np.float32)}, transform_attrs={})
    store.add_layer("splits", "s", stratified(gt, train=0.05, val=0.02, seed=0).astype(np.uint8), {})
    options = TrainOptions(model="hybridsn", model_args=dict(TINY), patch=5, epochs=3, lr=0.01, batch_size=16,
                           device="cpu", threads=1, out=folder / "tiny.safetensors")
    return store.path, train(store.path, options, command="test").path


def _options(out: Path, **kwargs) -> PredictOptions:
    return PredictOptions(device="cpu", threads=1, out=out, **kwargs)


@pytest.fixture(scope="module")
def unsharded(trained, tmp_path_factory):
    from hsicli.engine.predict import predict
    from hsicli.store.prediction import PredictionStore

    _, checkpoint = trained
    out = tmp_path_factory.mktemp("whole") / "whole.pred.zarr"
    return PredictionStore.open(predict(checkpoint, _options(out), command="test").path)


def _sharded(checkpoint: Path, out: Path, count: int, order=None):
    from hsicli.engine.predict import predict

    init = predict(checkpoint, _options(out, init=True), command="hsi predict --init-shards")
    assert init.path == out
    for index in order or range(count):
        result = predict(checkpoint, _options(out, shard=f"{index}/{count}"), command="hsi predict --shard")
        assert result.summary["shard"] == f"{index}/{count}"
    return predict(checkpoint, _options(out, finalize=True), command="hsi predict --finalize")


@wired
@pytest.mark.parametrize("count, order", [(4, [2, 0, 3, 1]), (3, None), (1, None), (7, None)])
def test_sharded_prediction_equals_the_unsharded_one(trained, unsharded, tmp_path, count, order):
    from hsicli.store.prediction import PredictionStore

    _, checkpoint = trained
    result = _sharded(checkpoint, tmp_path / "sharded.pred.zarr", count, order)
    sharded = PredictionStore.open(result.path)
    assert np.array_equal(sharded.classes(), unsharded.classes())
    np.testing.assert_allclose(sharded.probabilities(), unsharded.probabilities(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sharded.entropy(), unsharded.entropy(), rtol=0, atol=1e-6)
    attrs = sharded.attrs
    assert attrs["complete"] is True and attrs["pixels"] == HEIGHT * WIDTH
    assert [s["index"] for s in attrs["shards"]] == list(range(count))
    assert attrs["inference_seconds"] == pytest.approx(sum(s["inference_seconds"] for s in attrs["shards"]), abs=1e-3)
    assert attrs["provenance"]["command"] == "hsi predict --finalize"
    for key in ("checkpoint", "scene_store", "split", "model", "class_names"):
        assert attrs[key] == unsharded.attrs[key]
    assert result.summary["shards"] == count


@wired
def test_sharded_segmenter_blends_like_the_whole_scene(trained, tmp_path):
    """HSIseg predicts overlapping windows blended together: each shard reads the halo of windows
    around its rows, so the rows at shard borders get the same blend as in one pass."""
    from hsicli.engine.predict import predict
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.prediction import PredictionStore

    store, _ = trained
    args = {"dim": 8, "heads": 2, "grids": [3, 2], "dropout": 0.0}
    checkpoint = train(store, TrainOptions(model="hsiseg", model_args=args, split="s", patch=9, epochs=1, batch_size=8,
                                           device="cpu", threads=1, out=tmp_path / "seg.safetensors"),
                       command="test").path
    whole = PredictionStore.open(predict(checkpoint, _options(tmp_path / "whole.zarr"), command="t").path)
    sharded = PredictionStore.open(_sharded(checkpoint, tmp_path / "sharded.zarr", 3).path)
    assert np.array_equal(sharded.classes(), whole.classes())
    np.testing.assert_allclose(sharded.probabilities(), whole.probabilities(), rtol=0, atol=1e-6)


@wired
def test_unfinished_store_is_refused_until_finalized(trained, tmp_path):
    from hsicli.store.evaluation import evaluate_prediction
    from hsicli.engine.predict import predict
    from hsicli.store.prediction import PredictionStore

    _, checkpoint = trained
    out = tmp_path / "p.pred.zarr"
    with pytest.raises(StoreError, match="does not exist"):
        predict(checkpoint, _options(out, shard="0/2"), command="t")
    predict(checkpoint, _options(out, init=True), command="t")
    predict(checkpoint, _options(out, init=True), command="t")  # a requeued init job: no-op
    predict(checkpoint, _options(out, shard="1/2"), command="t")
    for read in (PredictionStore.open, evaluate_prediction):
        with pytest.raises(StoreError, match="unfinished sharded prediction"):
            read(out)
    with pytest.raises(StoreError, match=r"1 of 2 shards have not finished: 0/2 \(rows 0-127\)"):
        predict(checkpoint, _options(out, finalize=True), command="t")
    with pytest.raises(StoreError, match="2 shards, not 3"):
        predict(checkpoint, _options(out, shard="0/3"), command="t")
    predict(checkpoint, _options(out, shard="0/2"), command="t")
    predict(checkpoint, _options(out, finalize=True), command="t")
    assert evaluate_prediction(out)["oa"] > 0.5
    # Requeued tasks after the end change nothing; other inputs are refused.
    before = (out / "zarr.json").read_text()
    assert predict(checkpoint, _options(out, shard="0/2"), command="t").summary == {"complete": True}
    assert predict(checkpoint, _options(out, finalize=True), command="t").summary == {"complete": True}
    assert predict(checkpoint, _options(out, init=True), command="t").summary == {"complete": True}
    assert (out / "zarr.json").read_text() == before
    with pytest.raises(StoreError, match="initialised for another checkpoint, scene or options"):
        predict(checkpoint, _options(out, shard="0/2", probabilities=False), command="t")


@wired
def test_rerunning_a_killed_shard_repairs_its_rows(trained, unsharded, tmp_path):
    import zarr

    from hsicli.engine.predict import predict
    from hsicli.store.prediction import PredictionStore

    _, checkpoint = trained
    out = tmp_path / "p.pred.zarr"
    predict(checkpoint, _options(out, init=True), command="t")
    for index in range(4):
        predict(checkpoint, _options(out, shard=f"{index}/4"), command="t")
    # Shard 1 "killed" half-way: its marker withdrawn at its start, one chunk row torn, one never written.
    start, stop = Shard(1, 4).rows(HEIGHT, 64)
    with write_lock(out):
        shards.begin(out, Shard(1, 4))
    group = zarr.open_group(str(out), mode="r+")
    group["classes"][start : start + 10] = 0
    group["probabilities"][start + 32 : stop] = np.nan
    with pytest.raises(StoreError, match="1/4"):
        predict(checkpoint, _options(out, finalize=True), command="t")
    predict(checkpoint, _options(out, shard="1/4"), command="t")
    predict(checkpoint, _options(out, finalize=True), command="t")
    repaired = PredictionStore.open(out)
    assert np.array_equal(repaired.classes(), unsharded.classes())
    np.testing.assert_allclose(repaired.probabilities(), unsharded.probabilities(), rtol=0, atol=1e-6)


@wired
def test_shard_steps_through_the_cli(trained, cli, tmp_path, monkeypatch):
    _, checkpoint = trained
    out = tmp_path / "c.pred.zarr"
    common = [str(checkpoint), "--out", str(out), "--device", "cpu", "--threads", "1", "-q"]
    assert cli("predict", *common, "--init-shards", "--shard", "0/2").exit_code == 2
    assert cli("predict", *common, "--shard", "0/2", "--embeddings").exit_code == 2
    init = cli("predict", *common, "--init-shards")
    assert init.exit_code == 0 and init.lines == [str(out)]
    for task in (0, 1):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(10 + task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        done = cli("predict", *common, "--shard", "slurm", "--json")
        assert done.exit_code == 0, done.stderr
        assert json.loads(done.stdout) | {"inference_seconds": 0} == {
            "path": str(out), "shard": f"{task}/2", "rows": list(Shard(task, 2).rows(HEIGHT, 64)),
            "inference_seconds": 0}
    final = cli("predict", *common, "--finalize")
    assert final.exit_code == 0 and final.lines == [str(out)]
    assert sorted(p.name for p in (out / shards.MARKER_DIR).iterdir()) == ["0-of-2.json", "1-of-2.json"]
