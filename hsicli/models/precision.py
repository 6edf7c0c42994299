"""Mixed precision (`--amp`): the one policy training, prediction and segmentation run under.

`--amp` runs the model under bf16 autocast on its device. CPUs differ in what they run in bf16:
oneDNN has bf16 kernels from AVX-512 on (native instructions with avx512_bf16 / AMX). On an AVX2-only
CPU (simulated with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2) convolutions, linear
layers, attention, norms and GRU / plain RNN layers still run under bf16 autocast, through
slower fallbacks, but an LSTM fed fp32 input fails: autocast hands oneDNN a bf16 LSTM it has no
kernel for ("could not create a primitive descriptor for the LSTM forward propagation
primitive"); fed bf16 input it takes ATen's path, 4.4x slower than fp32 there (BiLSTM 256 -> 2 x
128, 16 x 30 tokens, forward + backward: 612 ms against 140 ms; with AVX-512 bf16 29.5 ms
against 114 ms). Hence, on a CPU:
- LSTMs run in bf16 only where a probe LSTM does, else in fp32 (autocast off, input cast);
- GRUs and plain RNNs always run in fp32: ATen runs them step by step, and under autocast
  every step would cast the weights again (hundreds of copies per layer);
- everything else runs in bf16 as asked, even where that is slower than fp32 (the user asked
  for it); `describe` says so in the one line the CLI prints.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn


@functools.cache
def cpu_bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 and up, or AVX2-VNNI-2).

    oneDNN's own check, so it honours ONEDNN_MAX_CPU_ISA."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.cache
def cpu_bf16_lstm() -> bool:
    """Whether an LSTM runs under bf16 autocast on this CPU: probed once on a tiny one."""
    probe = nn.LSTM(2, 1)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            probe(torch.zeros(1, 1, 2))
    except RuntimeError:  # oneDNN: no primitive descriptor for a bf16 LSTM below AVX-512
        return False
    return True


def _recurrent_in_fp32(module: nn.RNNBase) -> bool:
    """Whether `module` runs in fp32 under bf16 autocast on a CPU (the rules above)."""
    return module.mode != "LSTM" or not cpu_bf16_lstm()


def autocast(device, amp: bool):
    """The context every forward pass of a run enters: bf16 autocast on `device` with `amp`."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def run_recurrent(module: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """The output sequence of the recurrent `module` for `x`, in the precision the policy sets."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and _recurrent_in_fp32(module):
        with torch.autocast("cpu", enabled=False):
            return module(x.float())[0]
    return module(x)[0]


def describe(model: nn.Module, device) -> str:
    """One line for the user: what runs in which precision under `--amp` for `model` on `device`."""
    device = torch.device(device)
    if device.type != "cpu":
        return f"--amp: bf16 autocast on {device}"
    capability = torch.backends.cpu.get_cpu_capability()
    fp32 = sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.RNNBase) and _recurrent_in_fp32(m)})
    line = f"--amp: bf16 autocast on the CPU ({capability}, "
    line += "oneDNN bf16 kernels" if cpu_bf16_kernels() else "no oneDNN bf16 kernels below AVX-512"
    line += f"){'; ' + ', '.join(fp32) + ' in fp32' if fp32 else ''}"
    if not cpu_bf16_kernels():
        line += "; bf16 runs emulated here, several times slower than fp32: drop --amp for speed"
    return line
