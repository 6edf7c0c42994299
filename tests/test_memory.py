"""Bounded memory (issue 17 §1): sizes that drive memory (--patch, --batch-size, the bands, patch
and batch a checkpoint records, the scene's shape) are checked against the memory available before
anything is allocated (hsicli.engine.memory); a run that cannot fit is refused in one line.
Checkpoints whose record contradicts their tensors are refused before a model is built.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import pytest

from harness import BIN, CHILD_ENV, Run, Runner, _limits, assert_one_line_error, build_workspace, snapshot

LIMIT = 2 << 30  # RLIMIT_AS of the console-script runs: room for the interpreter and torch, no more


def _edited(source, target, **changes):
    """A copy of checkpoint `source` whose metadata says otherwise (input__patch=2: input.patch)."""
    from hsicli.store.checkpoint import load_arrays, save_arrays

    arrays, metadata = load_arrays(source)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = metadata
        for key in path:
            node = node[key]
        node[last] = value
    save_arrays(target, arrays, metadata, overwrite=True)
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """harness.build_workspace (scene store s.zarr with split a, SVM checkpoint m.safetensors) plus
    a one-epoch Lite-C2ANet checkpoint and checkpoints that lie about themselves."""
    runner = Runner(tmp_path_factory.mktemp("runner"))
    folder = build_workspace(runner, tmp_path_factory.mktemp("work"), {"prep", "split", "train"})
    trained = runner.run(["train", "s.zarr", "--split", "a", "--model", "litec2anet", "--epochs", "1",
                          "--device", "cpu", "--out", "lite.safetensors", "-q"], folder)
    assert trained.code == 0, trained.describe()
    lite = folder / "lite.safetensors"
    _edited(lite, folder / "huge.safetensors", input__bands=10**12, input__patch=10**6)
    _edited(lite, folder / "even.safetensors", input__patch=2)
    _edited(lite, folder / "svm-name.safetensors", model="svm")
    _edited(folder / "m.safetensors", folder / "torch-name.safetensors", model="litec2anet")
    return folder


REFUSALS = {
    "train --patch 999": (["train", "s.zarr", "--split", "a", "--model", "litec2anet", "--epochs", "1",
                           "--patch", "999", "--out", "new.safetensors"],
                          "a 999×999 patch of 5 bands at batch 64 (litec2anet, 70×20 scene) needs ~"),
    "predict, 10^12 bands and patch 10^6": (["predict", "huge.safetensors", "--out", "new.zarr"],
                                            "a 1000000×1000000 patch of 1000000000000 bands at batch 64 needs ~"),
    "train --init, 10^12 bands": (["train", "s.zarr", "--split", "a", "--model", "litec2anet", "--init",
                                   "huge.safetensors", "--out", "new.safetensors"],
                                  "holds litec2anet weights for 1000000000000 bands and 3 classes"),
    "predict, patch 2": (["predict", "even.safetensors", "--out", "new.zarr"], "records an even patch size, 2"),
    "predict, SVM name on torch weights": (["predict", "svm-name.safetensors", "--out", "new.zarr"],
                                           "names the spectral model svm but holds model tensors"),
    "predict, torch name on SVM arrays": (["predict", "torch-name.safetensors", "--out", "new.zarr"],
                                          "names the patch model litec2anet but holds est tensors"),
    "models --bands 10^9": (["models", "litec2anet", "--bands", "1000000000"],
                            "litec2anet for 1000000000 bands, 16 classes and a 9×9 patch needs ~"),
    "train --init, SVM name on torch weights": (["train", "s.zarr", "--split", "a", "--model", "litec2anet",
                                                 "--init", "svm-name.safetensors", "--out", "new.safetensors"],
                                                "holds svm weights for 5 bands and 3 classes"),
}


# Runs the command as its child and reports that child's exit status and rusage. Measuring a
# child forked from pytest itself would be wrong: Linux carries the forking process's peak RSS
# across execve into ru_maxrss, so late in a test session every child "peaked" at pytest's size.
_MEASURE = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
report = [os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime]
os.write(int(sys.argv[1]), json.dumps(report).encode())
"""


def run_limited(args: list[str], cwd) -> tuple[Run, float, float, set[str]]:
    """The `hsi` console script under RLIMIT_AS = LIMIT: (how it ended, its peak resident memory in
    bytes, its CPU seconds, from the kernel's accounting of that one process, and the top-level
    packages it imported, from Python's -X importtime lines, which are taken out of its stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "HSI_DEBUG"} | CHILD_ENV | {"PYTHONPROFILEIMPORTTIME": "1"}
    started = time.monotonic()
    report_read, report_write = os.pipe()
    with tempfile.TemporaryFile("w+") as errors:  # a file: the import lines may fill a pipe
        process = subprocess.Popen([sys.executable, "-c", _MEASURE, str(report_write), str(BIN / "hsi"), *args],
                                   cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                   text=True, pass_fds=(report_write,), preexec_fn=_limits(None, LIMIT))
        os.close(report_write)
        stdout = process.stdout.read()  # ends when the process does
        process.wait()
        process.stdout.close()
        with os.fdopen(report_read) as report:
            code, peak, cpu = json.loads(report.read())
        errors.seek(0)
        stderr = errors.read()
    lines = stderr.splitlines(keepends=True)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    stderr = "".join(line for line in lines if not line.startswith("import time:"))
    run = Run(args, code, stdout, stderr, time.monotonic() - started)
    return run, peak, cpu, imported


@pytest.mark.parametrize(("args", "phrase"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_in_one_line_under_an_address_space_limit(workspace, args, phrase):
    """One line, exit 1, nothing written, and the process's peak memory under 500 MB (the run it
    refused would have needed gigabytes to petabytes). Train and predict refuse before torch is
    imported (the model's facts are stored in catalogue.json, a checkpoint's header is JSON), so
    in well under a second of CPU; `hsi models` counts the weights with torch's meta device."""
    before = snapshot(workspace)
    run, peak, cpu, imported = run_limited(args, workspace)
    assert_one_line_error(run, phrase)
    assert snapshot(workspace) == before
    assert peak < 500e6, f"peaked at {peak / 1e6:.0f} MB"
    if args[0] != "models":
        assert "torch" not in imported, "torch was imported before the refusal"
        assert cpu < 1.5, f"{cpu:.2f} s of CPU"  # importing torch alone takes about 2 s


def test_refusal_names_the_memory_available_and_its_limit(workspace):
    """Under a limit the error says so; without one, the machine's available memory is the bound."""
    args, _ = REFUSALS["train --patch 999"]
    limited, _, _, _ = run_limited(args, workspace)
    assert "left under the address-space limit (ulimit -v)" in limited.stderr, limited.describe()
    needed = float(limited.stderr.split("needs ~")[1].split(" GB")[0])
    assert 20 < needed < 40  # 64 windows of 999² pixels, 90 floats each kept by Lite-C2ANet: 23 GB
    from hsicli.engine.memory import available_memory

    free = available_memory()
    if free[1] == "available" and free[0] < 20e9:  # this machine: the same refusal without a limit
        unlimited = subprocess.run([str(BIN / "hsi"), *args], cwd=workspace, capture_output=True, text=True,
                                   env=os.environ | CHILD_ENV, timeout=120)
        assert unlimited.returncode == 1 and " GB available" in unlimited.stderr, unlimited.stderr


def test_available_memory_follows_the_address_space_limit():
    script = ("import resource; from hsicli.engine.memory import available_memory; "
              "free = available_memory(); resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
              "limited = available_memory(); print(free[0], limited[0], limited[1], sep=';')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split(";")
    free, limited = int(out[0]), int(out[1])
    assert 0 < limited < 3 << 30 and limited <= free and out[2].strip() == "left under the address-space limit (ulimit -v)"


def test_a_run_that_fits_is_not_refused():
    from hsicli.engine.memory import require_training_fits
    from hsicli.models.registry import get_model_spec

    for name in ("litec2anet", "hsiseg", "ssrn", "svm"):
        spec = get_model_spec(name)
        require_training_fits(spec, shape=(610, 340, 103), patch=spec.defaults.patch, batch=spec.defaults.batch_size,
                              amp=False)  # Pavia University at the paper's settings: well under 1 GB


def test_predicting_a_scene_whose_row_blocks_cannot_fit_is_refused():
    from pathlib import Path

    from hsicli.engine.memory import require_scene_prediction_fits
    from hsicli.errors import HsiError

    source = Path("run.safetensors")
    require_scene_prediction_fits(source, shape=(610, 340, 103), patch=9, classes=9)  # Pavia University
    with pytest.raises(HsiError, match="predicting a 1000000×1000000×30 scene with run.safetensors"):
        require_scene_prediction_fits(source, shape=(10**6, 10**6, 30), patch=9, classes=9)


def _saved_floats(name: str, bands: int, patch: int, batch: int = 2) -> float:
    """Floats autograd saves for the backward pass per sample, measured on the meta device."""
    import torch

    from hsicli.models.registry import architecture_args, create_model, get_model_spec

    spec = get_model_spec(name)
    with torch.device("meta"):
        model = create_model(name, bands, 7, **architecture_args(spec, patch, {})).train()
        inputs = torch.empty(batch, bands, patch, patch)
    saved = {}

    def pack(tensor):
        saved[id(tensor)] = tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(inputs)
    weights = {id(p) for p in model.parameters()}
    return sum(n for key, n in saved.items() if key not in weights) / batch


def _models_declaring_bounds() -> list:
    from hsicli.models.registry import get_model_spec, list_models

    slow = pytest.mark.slow
    declared = [name for name in list_models()
                if get_model_spec(name).activations_per_input or get_model_spec(name).activations_per_pixel]
    return [pytest.param(name, marks=slow) if name == "claresnet" else name for name in declared]


@pytest.mark.parametrize("name", _models_declaring_bounds())
def test_declared_activation_bounds_are_lower_bounds(name):
    """ModelSpec.activations_per_input / _per_pixel never exceed what the model really keeps, so a
    refused run could not have fitted (bands 13 and 200, patches 9, 45 and 99)."""
    from hsicli.models.registry import get_model_spec

    spec = get_model_spec(name)
    patches = (9, 45) if name in ("claresnet", "hsiseg") else (9, 45, 99)  # their meta traces take seconds
    for bands in (13, 200):
        for patch in patches:
            bound = max(spec.activations_per_input * bands, spec.activations_per_pixel) * patch * patch
            measured = _saved_floats(name, bands, patch)
            assert measured >= bound, (name, bands, patch, measured / patch**2, bound / patch**2)
