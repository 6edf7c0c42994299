"""Model complexity: trainable parameters and multiply-accumulates (MACs) per sample.

MACs are counted at the operator level: the model runs once on a batch of 1 (eval mode,
`torch.no_grad`) under `torch.utils.flop_counter.FlopCounterMode`, which sees every aten
operator whichever way the model calls it (module, `F.conv2d`, `torch.matmul`, `einsum`,
`@`, `baddbmm`, ...) and counts FLOPs = 2 x MACs for

- matrix products (`mm`, `addmm`, `bmm`, `baddbmm`; `einsum`, `matmul` and `F.linear` run as
  these): M x N x K per product, bias additions left out;
- convolutions, plain, grouped, dilated and transposed: output elements x in_channels/groups
  x kernel volume (transposed: input elements x out_channels/groups x kernel volume). Every
  output position counts, so zero padding counts as ordinary input, as thop and ptflops do;
- scaled dot-product attention: Lq x Lk x (E + Ev) per batch-and-head slice (Q K^T and the
  weighted sum of values; a causal mask is not discounted). The CUDA kernels are in torch's
  table; the CPU kernel (`_scaled_dot_product_flash_attention_for_cpu`) is added here.

Two things are added on top of what the operators show:

- `nn.MultiheadAttention` and `nn.TransformerEncoderLayer` have fused inference fast paths
  (`_native_multi_head_attention`, `_transformer_encoder_layer_fwd`) that no counter sees
  into; the fast path is switched off while counting, so they run as the linear maps and
  attention products above (the same arithmetic).
- Recurrent layers run as fused kernels (`mkldnn_rnn_layer` for a CPU LSTM, cuDNN on GPU)
  or step by step, depending on device and type, so what the operators show is replaced by
  the gate formula for every `nn.LSTM` / `nn.GRU` / `nn.RNN` call: per token, layer and
  direction, gates x hidden x (layer input + recurrent input), with 4 gates (LSTM), 3 (GRU),
  1 (RNN); layer input = input_size for the first layer and directions x recurrent size
  after; recurrent size = proj_size if set (then + hidden x proj_size for the projection),
  else hidden. Gate non-linearities, the element-wise cell update and biases are left out,
  as they are everywhere else.

Not counted, by the usual convention: normalisation, activations, softmax, pooling,
interpolation and element-wise arithmetic.

Two views come from the one run (`measure_macs`): `total`, everything above, which
`count_macs` returns; and `layers`, only the operators run inside `nn.Conv*`,
`nn.ConvTranspose*` and `nn.Linear` modules. `layers` is what module-hook counters (thop,
ptflops) report as "FLOPs" and what papers such as Lite-C2ANet (Table 7) quote; it misses
functional convolutions, matmuls, attention and recurrent layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one sample's forward pass (see the module docstring).

    total: every counted operator, recurrent layers by the gate formula.
    layers: only what runs inside nn.Conv*/nn.ConvTranspose*/nn.Linear modules (the
    module-hook convention of thop and ptflops, which papers quote as "FLOPs").
    """

    total: int
    layers: int


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (those with `requires_grad`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _sdpa_flops(query: torch.Size, key: torch.Size, value: torch.Size, *args: Any, **kwargs: Any) -> int:
    """FLOPs of Q K^T and A V over every leading (batch, head) slice; grouped K/V heads
    are broadcast to the query heads, so the query's slices count."""
    slices = query.numel() // (query[-2] * query[-1])
    return 2 * slices * query[-2] * key[-2] * (query[-1] + value[-1])


def recurrent_macs(module: nn.RNNBase, tokens: int) -> int:
    """MACs of an nn.LSTM / nn.GRU / nn.RNN over `tokens` (time steps x batch), by the gate
    formula of the module docstring."""
    gates = _GATES[module.mode]
    hidden = module.hidden_size
    recurrent = module.proj_size or hidden
    directions = 2 if module.bidirectional else 1
    inputs = [module.input_size] + [directions * recurrent] * (module.num_layers - 1)
    per_direction = sum(gates * hidden * (size + recurrent) + module.proj_size * hidden for size in inputs)
    return tokens * directions * per_direction


def _tokens(sequence: torch.Tensor | PackedSequence) -> int:
    """Time steps x batch of a recurrent layer's input (batched, unbatched or packed)."""
    data = sequence.data if isinstance(sequence, PackedSequence) else sequence
    return data.numel() // data.shape[-1]


def measure_macs(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    extra_inputs: Sequence[tuple[int, ...]] | None = None,
) -> MacCount:
    """Multiply-accumulates of one forward pass for one sample, both views of one run.

    `input_shape` is the shape of one sample without the batch dimension, e.g. (204, 9, 9)
    for a patch model; `extra_inputs` are the per-sample shapes of further positional inputs
    (e.g. auxiliary rasters). Inputs are random, on the model's device and dtype; the model's
    train/eval mode and the attention fast-path setting are restored afterwards.
    """
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    shapes = [tuple(input_shape), *(tuple(s) for s in extra_inputs or ())]
    inputs = [torch.randn((1, *s), generator=generator, dtype=dtype).to(device) for s in shapes]

    counter = FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    )
    starts: list[int] = []  # FLOP totals on entry to the layer / recurrent calls in progress
    layer_depth = 0  # a layer called inside another layer counts once
    layer_flops = 0
    recurrent_flops = 0  # what the operators showed inside recurrent layers, to be replaced
    recurrent_formula = 0

    def enter(module: nn.Module, args: tuple[Any, ...]) -> None:
        starts.append(counter.get_total_flops())

    def enter_layer(module: nn.Module, args: tuple[Any, ...]) -> None:
        nonlocal layer_depth
        layer_depth += 1
        enter(module, args)

    def leave_layer(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal layer_depth, layer_flops
        layer_depth -= 1
        inside = counter.get_total_flops() - starts.pop()
        if layer_depth == 0:
            layer_flops += inside

    def leave_recurrent(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal recurrent_flops, recurrent_formula
        recurrent_flops += counter.get_total_flops() - starts.pop()
        recurrent_formula += recurrent_macs(module, _tokens(args[0]))  # type: ignore[arg-type]

    handles = []
    for module in model.modules():
        if isinstance(module, _LAYERS):
            handles.append(module.register_forward_pre_hook(enter_layer))
            handles.append(module.register_forward_hook(leave_layer))
        elif isinstance(module, nn.RNNBase):
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave_recurrent))
    was_training = model.training
    fast_path = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        for handle in handles:
            handle.remove()
        model.train(was_training)
    # Every FLOP formula is 2 x MACs.
    total = (counter.get_total_flops() - recurrent_flops) // 2 + recurrent_formula
    return MacCount(total=total, layers=layer_flops // 2)


def count_macs(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    extra_inputs: Sequence[tuple[int, ...]] | None = None,
) -> int:
    """Operator-level multiply-accumulates of one sample's forward pass (`measure_macs(...).total`)."""
    return measure_macs(model, input_shape, extra_inputs=extra_inputs).total
