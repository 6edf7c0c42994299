"""`--amp` on every CPU (issue 16): one precision policy (hsicli.models.precision) for training,
prediction and the segmentation path.

On an AVX2-only CPU oneDNN has no bf16 LSTM, and `hsi train --model claresnet --amp` used to end
in "internal error" there while CI, on a CPU with avx512_bf16, stayed green. So these tests, and
the other amp tests in ELSEWHERE, run twice: on this CPU, and in a subprocess under a simulated
AVX2-only CPU (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2; both are read when torch loads).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hsicli.models import create_model, get_model_spec, list_models
from hsicli.models.precision import autocast, cpu_bf16_lstm, cpu_bf16_kernels, describe, run_recurrent
from hsicli.store.prediction import PredictionStore

REPO = Path(__file__).resolve().parents[1]
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
SIMULATED = all(os.environ.get(key) == value for key, value in AVX2_ONLY.items())
ELSEWHERE = ["tests/test_claresnet.py::test_bf16_autocast_matches_fp32_and_trains"]

# One registered name per torch architecture (its module), shrunk so an epoch takes milliseconds:
# (name, patch, --model-args). CLAReSNet keeps 2 layers: the second one's LSTM reads fp32 input,
# which autocast casts for oneDNN's bf16 LSTM (bf16 input takes ATen's own path and never failed).
TINY = {
    "claresnet": ("claresnet", 5, {"dim": 16, "base_channels": 8, "layers": 2, "heads": 2, "head_hidden": 8}),
    "hsiseg": ("hsiseg", 9, {"dim": 8, "heads": 2, "grids": [3, 2], "dropout": 0.0}),
    "hybridsn": ("hybridsn", 9, {"conv3d_channels": [2, 3, 4], "conv2d_channels": 6, "hidden": [12, 8]}),
    "litec2anet": ("litec2anet", 5, {}),
    "spectralformer": ("spectralformer", 3, {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 8}),
    "ssrn": ("ssrn", 5, {"spectral_kernels": 4, "spectral_maps": 8, "spatial_kernels": 4}),
    "ssftt": ("ssftt", 7, {"conv3d_kernels": 2, "conv2d_kernels": 16, "heads": 2}),
    "a2s2k": ("a2s2k", 5, {"kernels": 4}),
    "els2t": ("els2t", 5, {"kernels": 4}),
}


def test_every_torch_architecture_is_checked() -> None:
    specs = [get_model_spec(name) for name in list_models()]
    modules = {spec.builder.__module__.rsplit(".", 1)[1] for spec in specs if spec.kind.torch}
    assert modules == set(TINY)


@pytest.mark.parametrize("architecture", sorted(TINY))
def test_train_and_predict_with_amp(architecture: str, cli, synthetic_scene) -> None:
    name, patch, args = TINY[architecture]
    synthetic_scene("s.mat", height=14, width=12, bands=16, classes=3)
    store = cli("prep", "s.mat", "-o", "s.zarr", "-q").stdout.strip()
    split = cli("split", store, "--ratio", "0.4", "--seed", "0", "-q").stdout.strip()
    trained = cli("train", split, "--model", name, "--model-args", json.dumps(args), "--patch", str(patch),
                  "--epochs", "1", "--batch-size", "8", "--amp", "--threads", "1", "-o", "m.safetensors")
    assert trained.exit_code == 0, trained.stderr
    predicted = cli("predict", "m.safetensors", "--amp", "--threads", "1", "-o", "m.pred.zarr")
    assert predicted.exit_code == 0, predicted.stderr
    # Each command says once what runs in which precision.
    model = create_model(name, 16, 3, **args, **({"patch": patch} if get_model_spec(name).takes_patch else {}))
    for run in (trained, predicted):
        assert run.stderr.count(describe(model, "cpu")) == 1, run.stderr
    probabilities = PredictionStore.open(Path("m.pred.zarr")).probabilities()
    assert probabilities.shape == (14, 12, 3) and np.allclose(probabilities.sum(2), 1.0, atol=1e-3)


def test_recurrent_layers_run_where_the_cpu_has_kernels() -> None:
    if SIMULATED:  # the simulation took: without it the AVX2 run would prove nothing
        assert torch.backends.cpu.get_cpu_capability() == "AVX2" and not cpu_bf16_kernels() and not cpu_bf16_lstm()
    torch.manual_seed(0)
    x = torch.randn(3, 7, 8)
    for module in (nn.LSTM(8, 4, batch_first=True, bidirectional=True), nn.GRU(8, 4, batch_first=True)):
        exact = run_recurrent(module, x)
        assert exact.dtype == torch.float32 and torch.equal(exact, module(x)[0])  # no autocast: untouched
        with autocast("cpu", True):
            approx = run_recurrent(module, x)
        bf16 = module.mode == "LSTM" and cpu_bf16_lstm()
        assert approx.dtype == (torch.bfloat16 if bf16 else torch.float32)
        assert torch.allclose(approx.float(), exact, atol=2e-2 if bf16 else 1e-6)
        approx.float().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_describe_names_the_cpu_and_the_layers_kept_in_fp32() -> None:
    name, _, args = TINY["claresnet"]
    recurrent = describe(create_model(name, 16, 3, **args), "cpu")
    plain = describe(create_model("litec2anet", 16, 3), "cpu")
    assert torch.backends.cpu.get_cpu_capability() in plain and "GRU" not in plain and "LSTM" not in plain
    assert "GRU" in recurrent and ("LSTM" in recurrent) == (not cpu_bf16_lstm())
    assert ("slower than fp32" in plain) == (not cpu_bf16_kernels())
    assert "\n" not in recurrent


def test_autocast_off_without_amp() -> None:
    model = nn.Linear(4, 2)
    with autocast("cpu", False):
        assert model(torch.ones(1, 4)).dtype == torch.float32
    with autocast("cpu", True):
        assert model(torch.ones(1, 4)).dtype == torch.bfloat16


@pytest.mark.skipif(SIMULATED, reason="this run is the AVX2 simulation")
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="simulates an x86-64 CPU")
def test_amp_tests_pass_on_an_avx2_only_cpu() -> None:
    tests = [str(Path(__file__).relative_to(REPO)), *ELSEWHERE]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                         cwd=REPO, env={**os.environ, **AVX2_ONLY, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " failed" not in run.stdout and f"{len(TINY) + 4 + len(ELSEWHERE)} passed" in run.stdout, run.stdout
