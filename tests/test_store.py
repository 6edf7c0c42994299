"""Scene stores: round trip, fingerprints, write-once layers, tamper detection, schema and kind
checks, atomic creation and concurrent layer writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from pathlib import Path

import numpy as np
import pytest

from hsicli.errors import OutputExistsError, StoreError
from hsicli.store.atomic import atomic_path, is_temporary, temporary_sibling
from hsicli.store.scene import SCHEMA, SceneStore

H, W, T = 70, 9, 5  # taller than one 64-row tile, so arrays span several chunks


def scene_arrays(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "cube": rng.normal(size=(H, W, T)).astype(np.float32),
        "gt": rng.integers(0, 4, size=(H, W)).astype(np.uint16),
        "rgb": rng.integers(0, 256, size=(H, W, 3)).astype(np.uint8),
        "aux": rng.normal(size=(H, W, 2)).astype(np.float32),
        "transform": {
            "kept_bands": np.array([0, 2, 3, 5, 6], dtype=np.int64),
            "offset": rng.normal(size=5).astype(np.float32),
            "scale": rng.uniform(1, 2, size=5).astype(np.float32),
            "pca_components": rng.normal(size=(3, 5)).astype(np.float32),
        },
    }


ATTRS = {
    "name": "toy",
    "class_names": ["water", "soil", "trees"],
    "class_colors": ["#0000ff", "#a52a2a", "#00ff00"],
    "class_ids": [1, 5, 7],
    "preprocessing": {"normalisation": "zscore", "pca": 3, "dropped_bands_1based": [2, 5]},
    "provenance": {"command": "hsi prep toy.mat", "inputs": {"scene": {"path": "/x/toy.mat", "sha256": "ab"}}},
}
SETTINGS = {"n_raw_bands": 7, "fill": "error", "normalisation": "zscore", "pca": 3, "whiten": False}


def create(path: Path, seed: int = 0, **changes) -> SceneStore:
    arrays = {**scene_arrays(seed), **changes}
    return SceneStore.create(
        path,
        cube=arrays["cube"],
        gt=arrays["gt"],
        rgb=arrays["rgb"],
        attrs=ATTRS,
        transform=arrays["transform"],
        transform_attrs=SETTINGS,
        aux=arrays["aux"],
    )


@pytest.fixture
def store(tmp_path) -> SceneStore:
    return create(tmp_path / "toy.zarr")


def test_round_trip(store, tmp_path):
    expected = scene_arrays()
    reopened = SceneStore.open(tmp_path / "toy.zarr")
    np.testing.assert_array_equal(reopened.cube(), expected["cube"])
    np.testing.assert_array_equal(reopened.cube(slice(60, 68)), expected["cube"][60:68])  # across a tile edge
    np.testing.assert_array_equal(reopened.gt(), expected["gt"])
    np.testing.assert_array_equal(reopened.rgb(), expected["rgb"])
    np.testing.assert_array_equal(reopened.aux(), expected["aux"])
    assert reopened.cube().dtype == np.float32 and reopened.gt().dtype == np.uint16 and reopened.rgb().dtype == np.uint8
    arrays, settings = reopened.transform()
    assert sorted(arrays) == sorted(expected["transform"]) and settings == SETTINGS
    for name, value in expected["transform"].items():
        np.testing.assert_array_equal(arrays[name], value)
        assert arrays[name].dtype == value.dtype
    for key, value in ATTRS.items():
        assert reopened.attrs[key] == value
    assert reopened.attrs["hsi_schema"] == SCHEMA and reopened.attrs["kind"] == "scene"
    assert reopened.shape == (H, W, T) and reopened.n_classes == 3 and reopened.name == "toy"
    assert reopened.describe() == {"path": str(tmp_path / "toy.zarr"), "fingerprint": store.fingerprint}
    # Chunked in spatial tiles holding all bands (DESIGN.md §3).
    assert reopened.cube_array().chunks == (64, W, T)


def test_fingerprint_is_stable_and_content_addressed(store, tmp_path):
    assert SceneStore.open(store.path).fingerprint == store.fingerprint
    assert create(tmp_path / "copy.zarr").fingerprint == store.fingerprint  # same content, other path
    cube = scene_arrays()["cube"]
    cube[69, 8, 4] += 1
    assert create(tmp_path / "changed.zarr", cube=cube).fingerprint != store.fingerprint
    transform = scene_arrays()["transform"]
    transform["scale"][0] *= 2
    changed = create(tmp_path / "retransformed.zarr", transform=transform)
    assert changed.fingerprint != store.fingerprint
    assert changed.attrs["transform_fingerprint"] != store.attrs["transform_fingerprint"]
    # Adding layers never changes the scene's identity.
    store.add_layer("splits", "a", np.ones((H, W), dtype=np.uint8), {})
    assert SceneStore.open(store.path).fingerprint == store.fingerprint


def test_layers_are_written_once(store):
    first = np.random.default_rng(1).integers(0, 4, size=(H, W)).astype(np.uint8)
    path = store.add_layer("splits", "a", first, {"strategy": "stratified"})
    assert path == store.path / "splits" / "a"
    layer = store.read_layer("splits", "a")
    np.testing.assert_array_equal(layer.data, first)
    assert layer.attrs["strategy"] == "stratified" and layer.attrs["fingerprint"] and layer.attrs["created"]

    mtimes = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    assert store.add_layer("splits", "a", first.copy(), {"strategy": "other words"}) == path  # same content: no-op
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == mtimes
    assert store.read_layer("splits", "a").attrs["strategy"] == "stratified"

    second = first.copy()
    second[0, 0] = (second[0, 0] + 1) % 4
    with pytest.raises(OutputExistsError, match="already exists"):
        store.add_layer("splits", "a", second, {})
    np.testing.assert_array_equal(store.read_layer("splits", "a").data, first)

    store.add_layer("splits", "b", second, {})
    store.add_layer("labels", "a", first.astype(np.uint16), {})  # another kind, same name
    assert sorted(store.layer_names("splits")) == ["a", "b"]
    np.testing.assert_array_equal(store.read_layer("splits", "b").data, second)
    np.testing.assert_array_equal(store.read_layer("labels", "a").data, first)
    with pytest.raises(StoreError, match="no split named 'c'"):
        store.read_layer("splits", "c")
    for bad in ("", "x/y", ".hidden", "a\nb", "a b", "tab\there", "nul\x00", "é", "x" * 101, "..", "a;rm"):
        with pytest.raises(StoreError, match="invalid layer name") as raised:
            store.add_layer("splits", bad, first, {})
        assert "\n" not in raised.value.message
    for good in ("ratio0.72-val0.08-seed0", "A_b-1.2", "x" * 100, "-dash-first"):
        store.add_layer("labels", good, first.astype(np.uint16), {})
    assert set(store.layer_names("labels")) >= {"ratio0.72-val0.08-seed0", "A_b-1.2", "x" * 100, "-dash-first"}


def test_a_layer_name_on_disk_outside_the_allowlist_is_refused(store):
    """A layer directory made by something else than hsi (a newline in its name would split the
    stdout line that names it) is refused when the layers are listed, named with its escapes."""
    layer = store.add_layer("splits", "a", np.zeros((H, W), dtype=np.uint8), {})
    layer.rename(layer.with_name("a\nb"))
    with pytest.raises(StoreError, match=re.escape("layer named 'a\\nb', which hsi does not accept")) as raised:
        store.layer_names("splits")
    assert "\n" not in raised.value.message and "rename or remove" in raised.value.hint


def _rewrite_layer_value(path: Path) -> None:
    import zarr

    array = zarr.open_array(str(path), mode="r+")
    array[0, 0] = array[0, 0] + 1


GARBLED = pytest.param("garble a chunk")


@pytest.mark.parametrize("tamper", ["rewrite a value", "delete a chunk", GARBLED])
def test_tampered_layer_is_detected(store, tamper):
    data = np.random.default_rng(2).integers(1, 4, size=(H, W)).astype(np.uint8)
    path = store.add_layer("splits", "a", data, {})
    chunk = path / "c" / "0" / "0"
    assert chunk.is_file()
    if tamper == "rewrite a value":
        _rewrite_layer_value(path)
    elif tamper == "delete a chunk":
        chunk.unlink()  # zarr reads a missing chunk as fill values
    else:
        chunk.write_bytes(b"\x00garbage" * 8)
    with pytest.raises(StoreError) as raised:
        SceneStore.open(store.path).read_layer("splits", "a")
    assert "'a'" in raised.value.message and str(store.path) in raised.value.message


def _edit_root_attributes(path: Path, **changes) -> None:
    meta = path / "zarr.json"
    document = json.loads(meta.read_text())
    document["attributes"].update(changes)
    meta.write_text(json.dumps(document))


def test_newer_schema_is_a_clear_error(store, cli):
    _edit_root_attributes(store.path, hsi_schema=SCHEMA + 1)
    with pytest.raises(StoreError, match=f"schema {SCHEMA + 1}, newer than this hsicli understands") as raised:
        SceneStore.open(store.path)
    assert "upgrade" in raised.value.hint
    result = cli("info", store.path)
    assert result.exit_code == 1 and "newer" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("schema", ["1", 1.5, True, 0, [1]])
def test_a_schema_that_is_no_whole_number_is_damage_not_a_newer_version(store, schema):
    _edit_root_attributes(store.path, hsi_schema=schema)
    with pytest.raises(StoreError, match=re.escape(f"invalid store schema {schema!r}")) as raised:
        SceneStore.open(store.path)
    assert "newer" not in raised.value.message and "upgrade" not in raised.value.hint


def test_store_of_another_kind_is_a_clear_error(store, tmp_path):
    from hsicli.store.prediction import PredictionStore

    with PredictionStore.build(tmp_path / "p.zarr", height=H, width=W, n_classes=3, probabilities=False, attrs={}):
        pass
    with pytest.raises(StoreError, match="is a prediction store, expected a scene store"):
        SceneStore.open(tmp_path / "p.zarr")
    with pytest.raises(StoreError, match="is a scene store, expected a prediction store"):
        PredictionStore.open(store.path)
    _edit_root_attributes(tmp_path / "p.zarr", hsi_schema=None)
    with pytest.raises(StoreError, match="not an hsi store"):
        SceneStore.open(tmp_path / "p.zarr")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.zarr"
    seen = []
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(final) as tmp:
            seen.append(tmp)
            assert tmp.parent == tmp_path and is_temporary(tmp) and not is_temporary(final)
            tmp.mkdir()
            (tmp / "zarr.json").write_text("{}")
            raise RuntimeError("killed")
    assert not final.exists() and not seen[0].exists()
    assert list(tmp_path.iterdir()) == []

    # A failure while replacing (--overwrite) keeps the old artifact.
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(OutputExistsError):
        with atomic_path(final):
            pytest.fail("atomic_path yielded although the output exists")
    with pytest.raises(RuntimeError):
        with atomic_path(final, overwrite=True) as tmp:
            tmp.mkdir()
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"] and (final / "old").read_text() == "old"
    with atomic_path(final, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_failed_store_creation_leaves_nothing(tmp_path, monkeypatch):
    import hsicli.store.scene as scene

    original = scene._create_array

    def failing(group, name, data, *args, **kwargs):
        if name == "rgb":
            raise OSError(28, "No space left on device")
        return original(group, name, data, *args, **kwargs)

    monkeypatch.setattr(scene, "_create_array", failing)
    with pytest.raises(StoreError, match="could not write .*toy.zarr: No space left"):
        create(tmp_path / "toy.zarr")
    assert list(tmp_path.iterdir()) == []


def test_info_reports_a_leftover_temporary_store(store, cli, tmp_path):
    leftover = temporary_sibling(tmp_path / "toy.zarr")
    os.rename(store.path, leftover)  # as if killed just before the final rename
    result = cli("info", leftover)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{leftover}\n"
    assert "incomplete" in result.stderr
    described = cli("info", "--json", leftover)
    assert json.loads(described.stdout)["kind"] == "incomplete"


def test_temporary_layers_are_not_listed(store):
    store.add_layer("splits", "a", np.zeros((H, W), dtype=np.uint8), {})
    leftover = temporary_sibling(store.path / "splits" / "b")
    (store.path / "splits" / "a").rename(leftover)
    store.add_layer("splits", "a", np.zeros((H, W), dtype=np.uint8), {})
    assert store.layer_names("splits") == ["a"]


# -- concurrent writers --------------------------------------------------------------------


def _layer(writer: int, index: int) -> np.ndarray:
    return np.random.default_rng(100 * writer + index).integers(0, 4, size=(H, W)).astype(np.uint8)


def _write_layers(path: str, writer: int, barrier, report: str) -> None:
    """Worker: add 6 layers of its own and race for one shared name."""
    store = SceneStore.open(Path(path))
    barrier.wait()
    outcome = {}
    for index in range(6):
        store.add_layer("splits", f"w{writer}-{index}", _layer(writer, index), {"writer": writer})
        if index == 2:
            try:
                store.add_layer("splits", "contested", _layer(writer, 99), {"writer": writer})
                outcome["contested"] = "won"
            except OutputExistsError:
                outcome["contested"] = "lost"
    Path(report).write_text(json.dumps(outcome))


def test_concurrent_layer_writers(store, tmp_path):
    context = multiprocessing.get_context("spawn")  # no inherited threads or locks
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_write_layers, args=(str(store.path), w, barrier, str(tmp_path / f"w{w}.json")))
        for w in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    outcomes = sorted(json.loads((tmp_path / f"w{w}.json").read_text())["contested"] for w in (1, 2))
    assert outcomes == ["lost", "won"]

    reopened = SceneStore.open(store.path)
    names = reopened.layer_names("splits")
    assert sorted(names) == sorted(["contested"] + [f"w{w}-{i}" for w in (1, 2) for i in range(6)])
    for writer in (1, 2):
        for index in range(6):
            layer = reopened.read_layer("splits", f"w{writer}-{index}")
            np.testing.assert_array_equal(layer.data, _layer(writer, index))
            assert layer.attrs["writer"] == writer
    contested = reopened.read_layer("splits", "contested")
    np.testing.assert_array_equal(contested.data, _layer(contested.attrs["writer"], 99))
    assert not any(".tmp-" in p.name for p in (store.path / "splits").iterdir())



# -- prediction stores --------------------------------------------------------------------------

# Every attribute `hsi predict` writes (whole scene, `--pixels`, the sharded steps), each read back
# through the PredictionStore property of its name: (how the stored JSON value reads back).
PREDICTION_FIELDS = {
    "shape": tuple, "class_names": list, "class_colors": list, "model": None, "checkpoint": None,
    "scene_store": None, "split": None, "split_fingerprint": None, "labels": None, "training_setup": None,
    "pixel_set": None, "request_key": None, "inference_seconds": None, "pixels": None, "shards": None,
    "provenance": None, "complete": None,
}


def test_the_prediction_reader_reads_back_every_field_predict_writes(runner, base):
    from hsicli.store.prediction import PredictionStore
    from hsicli.store.provenance import file_sha256

    folder = base
    steps = [("predict", "m.safetensors", "--pixels", "labelled", "--out", "l.zarr")]
    steps += [("predict", "m.safetensors", *step, "--out", "sharded.zarr")
              for step in (["--init-shards"], ["--shard", "0/2"], ["--shard", "1/2"], ["--finalize"])]
    for step in steps:
        run = runner.run(step, folder)
        assert run.code == 0, run.describe()
    written = set()
    for name in ("p.zarr", "l.zarr", "sharded.zarr"):
        raw = json.loads((folder / name / "zarr.json").read_text())["attributes"]
        prediction = PredictionStore.open(folder / name)
        unread = set(raw) - set(PREDICTION_FIELDS) - {"hsi_schema", "kind"}
        assert not unread, f"{name}: no typed property reads {sorted(unread)}"
        for key, value in raw.items():
            if key in PREDICTION_FIELDS:
                convert = PREDICTION_FIELDS[key]
                assert getattr(prediction, key) == (convert(value) if convert else value), key
        written |= set(raw)
        assert prediction.checkpoint_path == folder / "m.safetensors"
        assert prediction.checkpoint_sha256 == file_sha256(folder / "m.safetensors")
        assert prediction.scene_path == folder / "s.zarr"
        assert prediction.scene_fingerprint == SceneStore.open(folder / "s.zarr").fingerprint
        assert prediction.split == "a" and prediction.model == "svm" and prediction.complete
        assert isinstance(prediction.training_setup, dict) and prediction.training_setup["model"] == "svm"
    assert written - {"hsi_schema", "kind"} == set(PREDICTION_FIELDS)  # every field is written by one of them
    assert PredictionStore.open(folder / "l.zarr").pixel_set == "labelled"
    assert [shard["index"] for shard in PredictionStore.open(folder / "sharded.zarr").shards] == [0, 1]
