"""Checkpoints (DESIGN.md §3): plain safetensors with JSON metadata, clear errors, no pickle."""

from __future__ import annotations

import ast
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

import hsicli
from hsicli.cli import main
from hsicli.data.splits import stratified
from hsicli.engine.train import TrainOptions, train
from hsicli.store.scene import SceneStore

torch.set_num_threads(1)

PACKAGE = Path(hsicli.__file__).resolve().parent
TINY = {"patch": 5, "conv3d_channels": [2], "conv3d_depths": [3], "conv2d_channels": 4, "hidden": [8]}
EPOCHS = 2


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny HybridSN trained for 2 epochs on a 16×16×8 three-class scene."""
    folder = tmp_path_factory.mktemp("ckpt")
    rng = np.random.default_rng(0)
    gt = np.broadcast_to(np.arange(16) * 3 // 16 + 1, (16, 16)).astype(np.uint16)
    cube = rng.normal(0.0, 1.0, (4, 8)).astype(np.float32)[gt] + 0.3 * rng.normal(size=(16, 16, 8)).astype(np.float32)
    store = SceneStore.create(
        folder / "c.zarr", cube=cube, gt=gt, rgb=np.zeros((16, 16, 3), np.uint8),
        attrs={"class_names": ["a", "b", "c"], "class_colors": ["#ff0000", "#00ff00", "#0000ff"]},
        transform={"offset": np.zeros(8, np.float32)}, transform_attrs={},
    )
    store.add_layer("splits", "s", stratified(gt, train=0.3, val=0.1, seed=0).astype(np.uint8), {})
    options = TrainOptions(model="hybridsn", model_args=dict(TINY), patch=5, epochs=EPOCHS, device="cpu")
    return train(store.path, options, command="hsi train c.zarr --model hybridsn").path


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`hsi ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["hsi", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err


def assert_one_line_error(code: int, out: str, err: str, path: Path, *phrases: str) -> None:
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert code == 1 and out == "", (code, out, err)
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "internal error" not in errors[0] and path.name in errors[0], errors[0]
    assert all(phrase in errors[0] for phrase in phrases), errors[0]
    assert any(line.startswith("Hint:") for line in lines), err


# -- metadata readable without hsicli ------------------------------------------------------------

READER = """
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as handle:
    metadata = {key: json.loads(value) for key, value in handle.metadata().items()}
    shapes = {key: list(handle.get_tensor(key).shape) for key in handle.keys()}
assert not any(name.split(".")[0] in ("hsicli", "torch") for name in sys.modules), "imported hsicli or torch"
print(json.dumps({"metadata": metadata, "shapes": shapes}))
"""


def test_metadata_reads_with_safe_open_alone(checkpoint):
    done = subprocess.run([sys.executable, "-c", READER, str(checkpoint)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    metadata, shapes = read["metadata"], read["shapes"]
    assert metadata["model"] == "hybridsn"
    # Every architecture argument is stored, those left at their default too (issue 18).
    assert metadata["model_args"] == {**TINY, "dropout": 0.4}
    assert metadata["class_names"] == ["a", "b", "c"]
    assert metadata["input"]["bands"] == 8 and metadata["input"]["patch"] == 5
    training = metadata["training"]
    assert [entry["epoch"] for entry in training["history"]] == list(range(1, EPOCHS + 1))
    assert all({"loss", "train_accuracy", "val_accuracy", "seconds"} <= entry.keys() for entry in training["history"])
    assert training["seed"] == 0 and training["split"] == "s" and training["best_epoch"] in (1, 2)
    assert training["seconds"] > 0 and training["hyper"]["epochs"] == EPOCHS
    store = metadata["source_store"]
    assert store["path"] == str(checkpoint.parent / "c.zarr") and len(store["fingerprint"]) >= 16
    assert metadata["hsicli_version"] == hsicli.__version__
    assert metadata["provenance"]["command"].startswith("hsi train")
    # The weights are plain tensors named after the model's state dict.
    assert shapes["model.head.weight"] == [3, TINY["hidden"][-1]]


def test_info_describes_a_checkpoint(monkeypatch, capsys, checkpoint):
    code, out, _ = run_cli(monkeypatch, capsys, "info", checkpoint, "--json")
    described = json.loads(out)
    assert code == 0 and described["model"] == "hybridsn" and described["epochs_run"] == EPOCHS
    assert described["parameters"] == sum(p.numel() for p in _tiny_model().parameters())


def _tiny_model():
    from hsicli.models.registry import create_model

    return create_model("hybridsn", 8, 3, **TINY)


# -- damaged and foreign files ----------------------------------------------------------------------


def _damaged(kind: str, good: bytes, path: Path) -> None:
    (header_length,) = struct.unpack("<Q", good[:8])
    if kind == "zero-length":
        path.write_bytes(b"")
    elif kind == "truncated-header":
        path.write_bytes(good[: 8 + header_length // 2])
    elif kind == "truncated-tensors":
        data_start = 8 + header_length
        path.write_bytes(good[: data_start + (len(good) - data_start) // 2])
    elif kind == "foreign":  # a valid safetensors file from elsewhere (e.g. a PyTorch model)
        save_file({"weight": np.zeros((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "huge-header":
        path.write_bytes(struct.pack("<Q", 2**60) + b"{" * 64)
    elif kind == "garbage-header":
        path.write_bytes(struct.pack("<Q", 16) + b"\xff" * 16 + b"\0" * 16)
    else:  # hand-made headers that parse as JSON but break the safetensors format
        tensor = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        header = {
            "metadata-not-a-map": {"w": tensor, "__metadata__": ["hsi_schema"]},
            "metadata-not-strings": {"w": tensor, "__metadata__": {"hsi_schema": 1}},
            "offsets-too-short": {"w": {**tensor, "data_offsets": [0]}, "__metadata__": {"hsi_schema": "1"}},
            "offsets-not-numbers": {"w": {**tensor, "data_offsets": ["a", "b"]}, "__metadata__": {"hsi_schema": "1"}},
        }[kind]
        encoded = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"\0" * 4)


DAMAGE = ["zero-length", "truncated-header", "truncated-tensors", "foreign", "random-bytes", "huge-header",
          "garbage-header", "metadata-not-a-map", "metadata-not-strings", "offsets-too-short", "offsets-not-numbers"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_or_foreign_file_is_a_one_line_error(monkeypatch, capsys, tmp_path, checkpoint, kind):
    bad = tmp_path / f"{kind}.safetensors"
    _damaged(kind, checkpoint.read_bytes(), bad)
    for command in ("predict", "info"):
        code, out, err = run_cli(monkeypatch, capsys, command, bad)
        assert_one_line_error(code, out, err, bad)
    assert not any(p.name.endswith(".zarr") for p in tmp_path.iterdir())  # predict wrote nothing


def _rewrite(checkpoint: Path, path: Path, *, drop: str | None = None, model_args=None,
             delete: str | None = None) -> Path:
    """A copy of `checkpoint` without tensor `drop` or metadata field `delete`, or with other model_args."""
    with safe_open(str(checkpoint), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys() if key != drop}
    if model_args is not None:
        metadata["model_args"] = json.dumps(model_args)
    metadata.pop(delete, None)
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        ({"model_args": {**TINY, "conv2d_channels": 6}}, ("do not fit", "conv2d")),  # other widths
        ({"model_args": {**TINY, "hidden": [8, 8]}}, ("do not fit",)),  # another layer count
        ({"drop": "model.head.bias"}, ("do not fit", "head.bias")),
        ({"model_args": {**TINY, "depth_of_field": 3}}, ("depth_of_field",)),
        ({"model_args": [5, 2]}, ("model_args",)),
        ({"delete": "input"}, ("input",)),
    ],
    ids=["widths", "layers", "missing-tensor", "unknown-argument", "args-not-a-map", "no-input-record"],
)
def test_tensors_disagreeing_with_model_args_are_a_clear_error(monkeypatch, capsys, tmp_path, checkpoint, change,
                                                             phrases):
    bad = _rewrite(checkpoint, tmp_path / "bad.safetensors", **change)
    code, out, err = run_cli(monkeypatch, capsys, "predict", bad, "--device", "cpu")
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and out == "" and len(lines) == 1 and "internal error" not in lines[0], err
    assert all(phrase in lines[0] for phrase in phrases), lines[0]


# -- no pickle anywhere ---------------------------------------------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {("torch", "load"), ("torch", "save")}


def _unsafe_uses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            found += [f"torch.{a.name}" for a in node.names if a.name in ("load", "save")]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in UNSAFE_CALLS:
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append("allow_pickle")
    return found


def test_the_scan_finds_unsafe_loading():
    # Built from pieces so that repository-wide greps for unsafe loading do not flag this test.
    pickle, load = "pick" + "le", "torch." + "load("
    unsafe = f"import {pickle}\nfrom joblib import load\nx = {load}f)\nnp.load(f, allow_pickle=True)"
    assert sorted(_unsafe_uses(unsafe)) == ["allow_pickle", "joblib", "pickle", "torch.load"]
    assert _unsafe_uses("np.load(f)\nnp.load(f, allow_pickle=False)") == []
    assert _unsafe_uses(f'"""never {load}) or {pickle}"""\n# import {pickle}') == []


def test_no_pickle_or_torch_load_in_the_package():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    offenders = {str(path.relative_to(PACKAGE)): uses for path in sources if (uses := _unsafe_uses(path.read_text()))}
    assert offenders == {}


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_checkpoints_get_the_mode_of_every_other_file(tmp_path, umask):
    """safetensors creates its file 0600: a checkpoint on a shared cluster would be unreadable to the group."""
    import os

    from hsicli.store.checkpoint import save_arrays

    previous = os.umask(umask)
    try:
        written = save_arrays(tmp_path / "w.safetensors", {"x": np.zeros(3, np.float32)}, {"note": "mode"})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    assert written.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o666 & ~umask
