"""Model complexity: trainable parameters and multiply-accumulates (MACs) per sample.

`count_macs` is what papers usually report as "FLOPs" (thop, ptflops and fvcore count one
multiply-accumulate as one "FLOP"). It runs the model once on a batch of 1 in eval mode under
`torch.no_grad` and adds up, from forward hooks and one `TorchFunctionMode`:

- `nn.Conv1d/2d/3d` (grouped and depth-wise included): output elements x in_channels/groups x
  kernel volume. MACs are counted over every output position, so zero padding counts as
  ordinary input (as thop and ptflops do); bias additions are not MACs and are left out.
- `nn.ConvTranspose1d/2d/3d`: input elements x out_channels/groups x kernel volume.
- `nn.Linear` and its subclasses: output elements x in_features.
- `nn.MultiheadAttention`: the query/key/value and output projections plus the two attention
  matmuls (QK^T and the weighted sum of values), Lq·Lk·E each.
- `F.scaled_dot_product_attention` called outside an `nn.MultiheadAttention`: its two matmuls,
  Lq·Lk·E and Lq·Lk·Ev per batch-and-head slice.

Not counted: normalisation, activations, pooling, softmax, element-wise arithmetic, and
convolutions, linear maps or matmuls called as bare functions (`F.conv2d`, `torch.matmul`)
rather than through the modules above. Models that want their figures to be complete build
their heavy operators from these modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (those with `requires_grad`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _first_tensor(args: tuple[Any, ...]) -> torch.Tensor:
    return next(a for a in args if isinstance(a, torch.Tensor))


def _layer_macs(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> int:
    if isinstance(module, _CONV):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output.numel() * per_output
    if isinstance(module, _CONV_TRANSPOSE):
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return _first_tensor(inputs).numel() * per_input
    # nn.Linear: every output element is a dot product over in_features.
    return output.numel() * module.in_features


def _attention_macs(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    names = ("query", "key", "value")
    q, k, v = (args[i] if i < len(args) else kwargs[name] for i, name in enumerate(names))
    seq_dim = 1 if module.batch_first and q.dim() == 3 else 0
    batch = q.numel() // (q.shape[seq_dim] * q.shape[-1])
    lq, lk = q.shape[seq_dim], k.shape[seq_dim]
    e = module.embed_dim
    projections = lq * e * e + lk * k.shape[-1] * e + lk * v.shape[-1] * e + lq * e * e
    return batch * (projections + 2 * lq * lk * e)


class _SdpaCounter(TorchFunctionMode):
    """Counts `F.scaled_dot_product_attention` calls not already covered by an MHA hook."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.inside_mha = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and not self.inside_mha:
            q, k, v = (args[i] if i < len(args) else kwargs[n] for i, n in enumerate(("query", "key", "value")))
            slices = q.numel() // (q.shape[-2] * q.shape[-1])
            self.macs += slices * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return func(*args, **kwargs)


def count_macs(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    extra_inputs: Sequence[tuple[int, ...]] | None = None,
) -> int:
    """Multiply-accumulates of one forward pass for one sample (see the module docstring).

    `input_shape` is the shape of one sample without the batch dimension, e.g. (204, 9, 9)
    for a patch model; `extra_inputs` are the per-sample shapes of further positional inputs
    (e.g. auxiliary rasters). Inputs are random, on the model's device and dtype; the model's
    train/eval mode is restored afterwards.
    """
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    shapes = [tuple(input_shape), *(tuple(s) for s in extra_inputs or ())]
    inputs = [torch.randn((1, *s), generator=generator, dtype=dtype).to(device) for s in shapes]

    counter = _SdpaCounter()
    total = 0

    def on_layer(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, args, output)

    def enter_mha(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        nonlocal total
        counter.inside_mha += 1
        total += _attention_macs(module, args, kwargs)  # type: ignore[arg-type]

    def leave_mha(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        counter.inside_mha -= 1

    handles = []
    for module in model.modules():
        if isinstance(module, (*_CONV, *_CONV_TRANSPOSE, nn.Linear)):
            handles.append(module.register_forward_hook(on_layer))
        elif isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_pre_hook(enter_mha, with_kwargs=True))
            handles.append(module.register_forward_hook(leave_mha))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total + counter.macs
