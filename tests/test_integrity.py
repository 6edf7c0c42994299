"""Store and checkpoint integrity (issue 9): what each artifact records about its content and its
inputs is checked where it matters, and a disagreement is one clear error naming what differs.

- Scene stores: the recorded fingerprint is a fingerprint of the content (cube, ground truth,
  fitted transform); a change to any of them must be refused by what reads them (bug report:
  nothing verifies them today). Layers are fingerprinted on their own, so adding layers
  invalidates nothing (checkpoints and predictions stay up to date), and a changed layer is refused.
- Checkpoints: metadata that disagrees with the tensors or is malformed, schemas from a newer
  hsicli, headers of any shape, metadata that looks like code: an error, never an internal one.
- Predictions: a scene store or split layer changed since the prediction is refused.
- Paths recorded in artifacts are only read: predict, evaluate and pseudolabel never write where
  a checkpoint or prediction points.
- No eval / exec of anything in the package (pickle and torch.load: tests/test_checkpoint.py).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

import hsicli
from harness import snapshot
from hsicli.errors import HsiError
from hsicli.store.provenance import arrays_fingerprint
from hsicli.store.scene import SceneStore

PACKAGE = Path(hsicli.__file__).resolve().parent


def assert_error(result, *phrases: str, code: int = 1) -> str:
    """Exit `code`, nothing on stdout, one `Error:` line (not internal) naming `phrases`, a `Hint:`."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert result.exit_code == code and result.stdout == "", (result.exit_code, result.stdout, result.stderr)
    assert len(errors) == 1 and "internal error" not in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert any(line.startswith("Hint: ") for line in result.stderr.splitlines()), result.stderr
    for phrase in phrases:
        assert phrase in errors[0], (phrase, errors[0])
    return errors[0]


def ok(result) -> str:
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def build_pipeline(folder: Path) -> Path:
    """prep → split a → train (SVM) → predict in `folder`: s.zarr, m.safetensors, p.zarr."""
    import scipy.io

    from conftest import synthetic_arrays
    from hsicli.data.prepare import PrepRequest, prepare_scene
    from hsicli.data.splitting import SplitRequest, make_split
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.engine.train import TrainOptions, train

    folder.mkdir(parents=True, exist_ok=True)
    cube, gt = synthetic_arrays(height=24, width=20, bands=16, classes=3)
    scipy.io.savemat(folder / "ip.mat", {"cube": cube, "gt": gt})
    prepare_scene(PrepRequest(source=folder / "ip.mat", pca=5), out=folder / "s.zarr", command="hsi prep")
    make_split(folder / "s.zarr", SplitRequest(ratio=0.5, name="a"), command="hsi split")
    train(folder / "s.zarr", TrainOptions(model="svm", split="a", out=folder / "m.safetensors"), command="hsi train")
    predict(folder / "m.safetensors", PredictOptions(out=folder / "p.zarr"), command="hsi predict")
    return folder


@pytest.fixture
def pipeline(tmp_path) -> Path:
    """A pipeline of this test's own, in its working directory (for tests that change it)."""
    return build_pipeline(tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """One pipeline for the tests that only read it (they write into their own tmp_path)."""
    return build_pipeline(tmp_path_factory.mktemp("shared"))


# -- scene stores: the immutable parts -----------------------------------------------------------


PARTS = ["cube", "gt", "transform"]
NAMES = {"cube": ("cube",), "gt": ("gt", "ground truth"), "transform": ("transform", "preprocessing")}


def names_part(line: str, part: str) -> bool:
    return any(word in line for word in NAMES[part])


def test_recorded_fingerprints_are_content_fingerprints(shared):
    store = SceneStore.open(shared / "s.zarr")
    arrays, _ = store.transform()
    transform = [arrays[k] for k in sorted(arrays)]
    assert store.fingerprint == arrays_fingerprint([store.cube(), store.gt(), *transform])
    assert store.attrs["transform_fingerprint"] == arrays_fingerprint(transform)
    layer = store.read_layer("splits", "a")
    assert layer.attrs["fingerprint"] == arrays_fingerprint([layer.data])


@contextlib.contextmanager
def tampered(store: Path, part: str):
    """`part` of the store changed by one value (bit rot, a stray script) while the block runs."""
    if part == "transform":
        array, index = zarr.open_array(str(store / "transform" / "offset"), mode="r+"), (0,)
    else:
        array = zarr.open_array(str(store / part), mode="r+")
        index = (-1,) * array.ndim
    original = array[index]
    array[index] = original + 1
    try:
        yield
    finally:
        array[index] = original


def test_train_refuses_a_changed_store(pipeline, cli):
    for part in PARTS:
        with tampered(pipeline / "s.zarr", part):
            line = assert_error(cli("train", "s.zarr", "--model", "svm", "--split", "a", "--out", "m2.safetensors"),
                                "s.zarr")
        assert names_part(line, part), line
        assert not (pipeline / "m2.safetensors").exists()


def test_predict_refuses_a_changed_store(pipeline, cli):
    for part in PARTS:
        with tampered(pipeline / "s.zarr", part):
            line = assert_error(cli("predict", "m.safetensors", "--out", "p2.zarr"), "s.zarr")
        assert names_part(line, part), line
        assert not (pipeline / "p2.zarr").exists()


def test_info_verify_names_the_changed_part(pipeline, cli):
    ok(cli("info", "--verify", "s.zarr"))  # an intact store verifies
    for part in PARTS:
        with tampered(pipeline / "s.zarr", part):
            line = assert_error(cli("info", "--verify", "s.zarr"), "s.zarr")
        assert names_part(line, part), line


# -- layers -------------------------------------------------------------------------------------


def test_adding_layers_invalidates_nothing(pipeline, cli):
    """A new split and a new label layer leave the store's identity, the checkpoint and the
    prediction as they were: re-running train and predict is a no-op."""
    store = SceneStore.open(pipeline / "s.zarr")
    fingerprint = store.fingerprint
    before = {name: snapshot(pipeline / name) if (pipeline / name).is_dir() else (pipeline / name).read_bytes()
              for name in ("m.safetensors", "p.zarr")}
    ok(cli("split", "s.zarr", "--ratio", "0.3", "--seed", "7", "--name", "b"))
    store.add_layer("labels", "extra", store.gt(), {"kind": "test"})
    assert SceneStore.open(pipeline / "s.zarr").fingerprint == fingerprint
    again = cli("train", "s.zarr", "--model", "svm", "--split", "a", "--out", "m.safetensors")
    assert ok(again) == str(pipeline / "m.safetensors") and "up to date" in again.stderr
    again = cli("predict", "m.safetensors", "--out", "p.zarr")
    assert ok(again) == str(pipeline / "p.zarr") and "up to date" in again.stderr
    after = {name: snapshot(pipeline / name) if (pipeline / name).is_dir() else (pipeline / name).read_bytes()
             for name in ("m.safetensors", "p.zarr")}
    assert after == before
    assert json.loads(ok(cli("evaluate", "p.zarr", "--json")))["oa"] > 0.5


def test_a_changed_split_is_refused(pipeline, cli):
    array = zarr.open_array(str(pipeline / "s.zarr" / "splits" / "a"), mode="r+")
    array[0, 0] = 3 if array[0, 0] != 3 else 1
    assert_error(cli("train", "s.zarr", "--model", "svm", "--split", "a", "--out", "m2.safetensors"), "'a'")
    assert_error(cli("evaluate", "p.zarr"), "'a'")


def test_a_split_replaced_since_the_prediction_is_refused(pipeline, cli):
    """Layers are written once; one deleted by hand and written again under its name is another
    split, whose test pixels may be the model's training pixels."""
    shutil.rmtree(pipeline / "s.zarr" / "splits" / "a")
    ok(cli("split", "s.zarr", "--ratio", "0.3", "--seed", "4", "--name", "a"))
    assert_error(cli("evaluate", "p.zarr"), "'a'", "written again")
    # Nor are its test pixels predicted as the model's test pixels.
    assert_error(cli("predict", "m.safetensors", "--pixels", "test", "--out", "p2.zarr"), "'a'", "written again")
    assert not (pipeline / "p2.zarr").exists()


def test_a_store_prepared_again_since_the_prediction_is_refused(pipeline, cli):
    ok(cli("prep", "ip.mat", "--pca", "4", "--out", "s.zarr", "--overwrite"))
    ok(cli("split", "s.zarr", "--ratio", "0.5", "--name", "a"))
    assert_error(cli("evaluate", "p.zarr"), str(pipeline / "s.zarr"), "changed")
    assert_error(cli("predict", "m.safetensors", "--out", "p2.zarr"), str(pipeline / "s.zarr"), "changed")


# -- checkpoints ----------------------------------------------------------------------------------


def rewrite(checkpoint: Path, out: Path, **changes: str) -> Path:
    """A copy of `checkpoint` whose metadata entries are replaced: `key=json` or `key__sub=json`
    (one level down), values as the raw JSON text stored in the header."""
    with safe_open(str(checkpoint), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    for key, value in changes.items():
        field, _, sub = key.partition("__")
        if sub:
            document = json.loads(metadata[field])
            document[sub] = json.loads(value)
            value = json.dumps(document)
        metadata[field] = value
    save_file(tensors, str(out), metadata=metadata)
    return out


DEEP = "[" * 100_000 + "]" * 100_000
CHECKPOINT_CASES = [
    # (id, metadata changes, phrases the error names, commands that must refuse it ("info?": describe it
    # or refuse it, as long as it is no internal error))
    ("bands", {"input__bands": "6"}, ("5 bands", "expects 6"), ("predict",)),
    ("newer-schema", {"hsi_schema": "2"}, ("schema 2",), ("predict", "info")),
    ("schema-as-a-string", {"hsi_schema": '"1"'}, ("invalid checkpoint schema '1'",), ("predict", "info")),
    ("resume-state", {"kind": '"resume-state"'}, ("not a checkpoint",), ("predict",)),
    ("code-as-model", {"model": json.dumps("__import__('os').system('touch pwned')")}, ("unknown model",),
     ("predict",)),
    ("path-elsewhere", {"source_store__path": '"/nonexistent/folder/s.zarr"'}, ("/nonexistent/folder/s.zarr",),
     ("predict",)),
    ("training-not-a-map", {"training": "5"}, ("training",), ("info?", "predict")),
    ("hyper-not-a-map", {"training__hyper": "[1]"}, ("hyper",), ("predict",)),
    ("store-without-path", {"source_store": "{}"}, ("source_store",), ("predict",)),
    ("fewer-class-names", {"class_names": '["a", "b"]', "class_colors": '["#000000", "#ffffff"]'},
     ("class",), ("predict",)),
    ("deep-metadata", {"model_args": DEEP}, ("model_args",), ("predict",)),
]


@pytest.mark.parametrize(
    "changes, phrases, commands",
    [pytest.param(c, p, m, id=i) for i, c, p, m in CHECKPOINT_CASES],
)
def test_checkpoint_metadata_is_checked(shared, cli, tmp_path, changes, phrases, commands):
    bad = rewrite(shared / "m.safetensors", tmp_path / "bad.safetensors", **changes)
    for command in commands:
        args = ("predict", bad, "--out", "bad.pred.zarr") if command == "predict" else ("info", bad)
        result = cli(*args)
        if command != "info?" or result.exit_code != 0:
            assert_error(result, *phrases)
    assert not (tmp_path / "bad.pred.zarr").exists() and not (tmp_path / "pwned").exists()


def test_deeply_nested_header_is_one_line(cli, tmp_path):
    header = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    for command in ("info", "predict"):
        assert_error(cli(command, path), "deep.safetensors")


def test_info_on_a_store_with_deeply_nested_metadata(shared, cli, tmp_path):
    shutil.copytree(shared / "s.zarr", tmp_path / "s.zarr")
    meta = tmp_path / "s.zarr" / "zarr.json"
    meta.write_text(meta.read_text().rstrip().removesuffix("}") + ', "x": ' + DEEP + "}")
    assert_error(cli("info", "s.zarr"), "s.zarr")


def test_classical_model_missing_a_class_predicts_with_every_class(pipeline, cli):
    """A split that leaves a class without training pixels (tiny classes at 1 % training) gives
    an estimator that knows fewer classes than the store: its probabilities fill their columns."""
    store = SceneStore.open(pipeline / "s.zarr")
    gt = store.gt()
    layer = np.where(gt > 0, 3, 0).astype(np.uint8)
    layer[(gt == 1) | (gt == 2)] = 1
    store.add_layer("splits", "no3", layer, {})
    ok(cli("train", "s.zarr", "--model", "svm", "--split", "no3", "--out", "n.safetensors"))
    ok(cli("predict", "n.safetensors", "--out", "n.zarr"))
    from hsicli.store.prediction import PredictionStore

    probabilities = PredictionStore.open(pipeline / "n.zarr").probabilities()
    assert probabilities.shape == (24, 20, 3) and np.allclose(probabilities[:, :, 2], 0)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                             max_size=4))
def test_damaged_checkpoint_bytes(shared, cut, flips):
    """Bytes of a real checkpoint cut and flipped: `hsi info` and loading give an HsiError or work."""
    from hsicli.engine.predict import Classifier, PredictOptions
    from hsicli.store.inspect import describe

    folder = shared / "damaged"
    folder.mkdir(exist_ok=True)
    data = bytearray((shared / "m.safetensors").read_bytes())
    for where, value in flips:
        data[int(where * len(data))] = value
    bad = folder / "bad.safetensors"
    bad.write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    for load in (describe, lambda p: Classifier(p, PredictOptions(device="cpu"))):
        try:
            load(bad)
        except HsiError as error:
            assert "\n" not in error.message and error.hint


# -- non-finite weights ----------------------------------------------------------------------------

TINY_HYBRIDSN = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}


def poisoned(checkpoint: Path, out: Path, tensor: str | None = None) -> tuple[Path, str]:
    """A copy of `checkpoint` whose tensor `tensor` (default: its first) holds a NaN."""
    with safe_open(str(checkpoint), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    tensor = tensor or next(k for k in sorted(tensors) if tensors[k].dtype.kind == "f" and tensors[k].size > 1)
    tensors[tensor] = tensors[tensor].copy()
    tensors[tensor].reshape(-1)[1] = np.nan
    save_file(tensors, str(out), metadata=metadata)
    return out, tensor


def test_non_finite_weights_are_refused_by_every_loader(shared, cli, tmp_path):
    """A NaN checkpoint went through the whole pipe with exit 0 (issue 17): predict wrote NaN
    probabilities, pseudolabel a layer at T = nan, train --init a checkpoint of NaN tensors."""
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.engine.train import TrainOptions, train

    shutil.copytree(shared / "s.zarr", tmp_path / "s.zarr")
    torch_model = train(tmp_path / "s.zarr", TrainOptions(model="hybridsn", model_args=TINY_HYBRIDSN, patch=5,
                                                          epochs=1, split="a", device="cpu", threads=1,
                                                          out=tmp_path / "t.safetensors"), command="test").path
    bad, tensor = poisoned(torch_model, tmp_path / "nan.safetensors")
    bad_svm, svm_tensor = poisoned(shared / "m.safetensors", tmp_path / "nan-svm.safetensors")
    before = snapshot(tmp_path)
    assert_error(cli("predict", bad, "--out", "x.pred.zarr"), "nan.safetensors", tensor, "NaN")
    assert_error(cli("predict", bad_svm, "--out", "x.pred.zarr"), svm_tensor, "NaN")
    assert_error(cli("train", "s.zarr", "--split", "a", "--model", "hybridsn", "--patch", "5", "--epochs", "1",
                     "--model-args", json.dumps(TINY_HYBRIDSN), "--init", bad, "--out", "x.safetensors"),
                 "nan.safetensors", tensor)
    assert snapshot(tmp_path) == before

    # pseudolabel --iterations fine-tunes (or, labelling nothing, keeps) the checkpoint a prediction names.
    prediction = predict(torch_model, PredictOptions(out=tmp_path / "p.zarr", device="cpu"), command="test").path
    pointing = tmp_path / "p-nan.zarr"
    shutil.copytree(prediction, pointing)
    document = json.loads((pointing / "zarr.json").read_text())
    document["attributes"]["checkpoint"] = {"path": str(bad), "sha256": hashlib.sha256(bad.read_bytes()).hexdigest()}
    (pointing / "zarr.json").write_text(json.dumps(document))
    before = snapshot(tmp_path)
    assert_error(cli("pseudolabel", pointing, "--iterations", "1", "--epochs", "1", "--device", "cpu"),
                 "nan.safetensors", tensor)
    assert snapshot(tmp_path) == before  # refused before any layer was written
    # A prediction made from such weights before this check existed is refused by pseudolabel.
    probabilities = zarr.open_array(str(prediction / "probabilities"), mode="r+")
    probabilities[0, 0, :] = np.nan
    before = snapshot(tmp_path)
    assert_error(cli("pseudolabel", prediction), "p.zarr", "non-finite")
    assert snapshot(tmp_path) == before


# -- schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema, phrase", [(99, "schema 99, newer"), ("1", "invalid store schema '1'")])
def test_prediction_from_a_newer_schema(shared, cli, tmp_path, schema, phrase):
    shutil.copytree(shared / "p.zarr", tmp_path / "p.zarr")
    meta = tmp_path / "p.zarr" / "zarr.json"
    document = json.loads(meta.read_text())
    document["attributes"]["hsi_schema"] = schema
    meta.write_text(json.dumps(document))
    for command in ("info", "evaluate"):
        assert_error(cli(command, "p.zarr"), "p.zarr", phrase)


# -- recorded paths are only read ------------------------------------------------------------------


def test_predict_never_writes_where_the_checkpoint_points(shared, cli, tmp_path, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(shared / "s.zarr", elsewhere / "s.zarr")
    before = snapshot(elsewhere)
    moved = rewrite(shared / "m.safetensors", tmp_path / "moved.safetensors",
                    source_store__path=json.dumps(str(elsewhere / "s.zarr")))
    out = ok(cli("predict", moved))
    assert Path(out).parent == tmp_path  # beside the checkpoint, not beside the store it read
    assert json.loads((Path(out) / "zarr.json").read_text())["attributes"]["scene_store"]["path"] == str(
        elsewhere / "s.zarr")
    ok(cli("evaluate", out))
    assert snapshot(elsewhere) == before

    missing = rewrite(shared / "m.safetensors", tmp_path / "missing.safetensors",
                      source_store__path=json.dumps(str(elsewhere / "gone" / "s.zarr")))
    assert_error(cli("predict", missing), str(elsewhere / "gone" / "s.zarr"))
    assert snapshot(elsewhere) == before  # no folder made for it either


def test_evaluate_never_writes_where_the_prediction_points(shared, cli, tmp_path, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(shared / "s.zarr", elsewhere / "s.zarr")
    before = snapshot(elsewhere)
    pointing(shared / "p.zarr", tmp_path / "p.zarr", elsewhere / "s.zarr")
    assert Path(ok(cli("evaluate", "p.zarr"))).parent == tmp_path
    assert snapshot(elsewhere) == before


def pointing(prediction: Path, copy: Path, store: Path) -> None:
    """A copy of `prediction` whose record names `store` as the scene it predicted."""
    shutil.copytree(prediction, copy)
    document = json.loads((copy / "zarr.json").read_text())
    document["attributes"]["scene_store"]["path"] = str(store)
    (copy / "zarr.json").write_text(json.dumps(document))


def test_pseudolabel_never_writes_into_another_store(shared, cli, tmp_path, tmp_path_factory):
    """pseudolabel adds its layer to the store the prediction names, and only if that store is the
    one predicted (same fingerprint): a prediction pointing at another store is refused."""
    from hsicli.cli.commands import COMMANDS

    if "pseudolabel" not in dict(COMMANDS):
        pytest.skip("`hsi pseudolabel` is not registered")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    rng = np.random.default_rng(3)
    other = SceneStore.open(shared / "s.zarr")
    SceneStore.create(elsewhere / "s.zarr", cube=other.cube() + rng.normal(size=other.shape).astype(np.float32),
                      gt=other.gt(), rgb=other.rgb(), attrs=dict(other.attrs), transform=other.transform()[0],
                      transform_attrs=other.transform()[1])
    SceneStore.open(elsewhere / "s.zarr").add_layer("splits", "a", other.read_layer("splits", "a").data, {})
    before = snapshot(elsewhere)
    pointing(shared / "p.zarr", tmp_path / "p.zarr", elsewhere / "s.zarr")
    assert_error(cli("pseudolabel", "p.zarr", "--name", "q"), str(elsewhere / "s.zarr"))
    assert snapshot(elsewhere) == before


def test_evaluate_never_overwrites_silently(shared, cli, tmp_path):
    (tmp_path / "mine.json").write_text("precious")
    assert_error(cli("evaluate", shared / "p.zarr", "--out", "mine.json"), "mine.json")
    assert (tmp_path / "mine.json").read_text() == "precious"


# -- provenance -------------------------------------------------------------------------------------


def provenance_of(folder: Path, artifact: str) -> dict:
    from hsicli.store.checkpoint import read_header

    if artifact == "checkpoint":
        return read_header(folder / "m.safetensors")[1]["provenance"]
    if artifact == "metrics":
        return json.loads((folder / "p.metrics.json").read_text())["provenance"]
    where = {"scene": "s.zarr", "split": "s.zarr/splits/a", "labels": "s.zarr/labels/q", "prediction": "p.zarr"}
    return json.loads((folder / where[artifact] / "zarr.json").read_text())["attributes"]["provenance"]


ARTIFACTS = {"scene": "prep", "split": "split", "checkpoint": "train", "prediction": "predict",
             "labels": "pseudolabel", "metrics": "evaluate"}


def test_every_artifact_records_its_provenance(pipeline, cli):
    """DESIGN.md §1: command line, hsicli version, inputs (path and content fingerprint), time."""
    import datetime

    ok(cli("pseudolabel", "p.zarr", "--name", "q"))
    ok(cli("evaluate", "p.zarr"))
    for artifact, command in ARTIFACTS.items():
        record = provenance_of(pipeline, artifact)
        assert record["command"].startswith(f"hsi {command}") and record["hsicli_version"] == hsicli.__version__
        assert datetime.datetime.fromisoformat(record["time"]).tzinfo is not None
        inputs = record["inputs"]
        assert inputs and all(entry.get("path") and (entry.get("sha256") or entry.get("fingerprint"))
                              for entry in inputs.values()), (artifact, inputs)


# -- metadata is data --------------------------------------------------------------------------------

DYNAMIC = {"eval", "exec", "compile", "execfile"}


def dynamic_code(source: str) -> list[str]:
    """Calls that run text as code: eval/exec/compile, and __import__ of a computed name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in DYNAMIC:
                found.append(node.func.id)
            elif node.func.id == "__import__" and not (node.args and isinstance(node.args[0], ast.Constant)):
                found.append("__import__")
    return found


def test_the_scan_finds_dynamic_code():
    assert dynamic_code("eval(x)\nexec('y')\ncompile(s, 'f', 'exec')\n__import__(name)") == [
        "eval", "exec", "compile", "__import__"]
    assert dynamic_code("model.eval()\n__import__('hsicli')\n'eval(x)'\n# exec(y)") == []


def test_no_eval_or_exec_in_the_package():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    offenders = {str(p.relative_to(PACKAGE)): found for p in sources if (found := dynamic_code(p.read_text()))}
    assert offenders == {}
