"""hsicli.models.complexity: parameter and multiply-accumulate counts against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.overrides import TorchFunctionMode

from hsicli.models import create_model, get_model_spec, list_models
from hsicli.models.catalogue import describe_models
from hsicli.models.complexity import count_macs, count_parameters, measure_macs, recurrent_macs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The model forwards below are small; one thread avoids spinning on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Functional(nn.Module):
    """Wraps a function of the input, so that bare operators can be counted."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return self.fn(*x)


_W = torch.randn(10, 7)
_KERNEL = torch.randn(8, 3, 3, 3)


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        # Conv2d 3->8, 3x3, padding 1: 10x10 outputs, each 3*9 MACs (padding zeros included).
        (nn.Conv2d(3, 8, 3, padding=1), (3, 10, 10), 8 * 10 * 10 * 3 * 9),
        # stride 2, no padding: 11x11 -> 5x5.
        (nn.Conv2d(3, 8, 3, stride=2), (3, 11, 11), 8 * 5 * 5 * 3 * 9),
        # grouped: 4 groups of 2 inputs -> 4 outputs.
        (nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False), (8, 6, 6), 16 * 6 * 6 * 2 * 9),
        # depth-wise 5x5.
        (nn.Conv2d(8, 8, 5, padding=2, groups=8), (8, 7, 7), 8 * 7 * 7 * 25),
        # dilation 2 with padding 2 keeps 9x9.
        (nn.Conv2d(4, 4, 3, padding=2, dilation=2, bias=False), (4, 9, 9), 4 * 81 * 4 * 9),
        # Conv1d 4->6, kernel 3, no padding: length 20 -> 18.
        (nn.Conv1d(4, 6, 3), (4, 20), 6 * 18 * 4 * 3),
        # depth-wise Conv1d with padding.
        (nn.Conv1d(6, 6, 7, padding=3, groups=6), (6, 9), 6 * 9 * 7),
        # Conv3d 1->4, 3x3x3: 5x6x7 -> 3x4x5.
        (nn.Conv3d(1, 4, 3), (1, 5, 6, 7), 4 * 3 * 4 * 5 * 27),
        # transposed conv: every input element scatters to out_channels/groups * 9 outputs.
        (nn.ConvTranspose2d(4, 2, 3, stride=2), (4, 5, 5), 4 * 5 * 5 * 2 * 9),
        (nn.Linear(10, 7), (10,), 70),
        # Linear on a token sequence: every token.
        (nn.Linear(10, 7, bias=False), (5, 10), 5 * 70),
        # Bare operators, which module hooks never saw.
        (_Functional(lambda x: F.conv2d(x, _KERNEL, padding=1)), (3, 10, 10), 8 * 10 * 10 * 3 * 9),
        (_Functional(lambda x: F.linear(x, _W.T)), (5, 10), 5 * 70),
        (_Functional(lambda x: torch.matmul(x, _W)), (5, 10), 5 * 70),
        # batched matmul broadcasting the weight over 3 x 5 rows.
        (_Functional(lambda x: x @ _W), (3, 5, 10), 3 * 5 * 70),
        # (4 x 6) @ (6 x 4) for each of 3 slices.
        (_Functional(lambda x: torch.einsum("...ij,...kj->...ik", x, x)), (3, 4, 6), 3 * 4 * 4 * 6),
    ],
)
def test_single_operators(layer: nn.Module, shape: tuple[int, ...], expected: int) -> None:
    assert count_macs(layer, shape) == expected


def test_sequential_skips_norms_activations_pooling() -> None:
    model = nn.Sequential(
        nn.Conv2d(5, 12, 3, padding=1, bias=False),  # 12*64*5*9 = 34,560
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 12, 3, groups=12),  # 8x8 -> 6x6: 12*36*9 = 3,888
        nn.Upsample(scale_factor=2, mode="bilinear"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 3),  # 36
        nn.Softmax(-1),
    )
    assert count_macs(model, (5, 8, 8)) == 34_560 + 3_888 + 36


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x)[0]  # eligible for the fused inference fast path


class _CrossAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=8, batch_first=True)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.attn(x, memory, memory, need_weights=False)[0]


def _sdpa_masked(x: torch.Tensor) -> torch.Tensor:
    q = x.view(1, 2, 5, 8)
    keep = torch.ones(5, 5, dtype=torch.bool).tril()
    return F.scaled_dot_product_attention(q, q, q, attn_mask=keep)


def _sdpa_gqa(x: torch.Tensor) -> torch.Tensor:
    q = x.view(1, 4, 3, 8)  # 4 query heads share 2 key/value heads of 6 tokens
    kv = torch.ones(1, 2, 6, 8)
    return F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)


def test_attention() -> None:
    # 5 tokens of 16: q/k/v/out projections 4*5*16*16, QK^T and AV 5*5*16 each.
    assert count_macs(_SelfAttention(), (5, 16)) == 4 * 5 * 16 * 16 + 2 * 5 * 5 * 16
    # 3 queries of 16 against 7 keys/values of 8.
    projections = 3 * 16 * 16 + 2 * 7 * 8 * 16 + 3 * 16 * 16
    assert count_macs(_CrossAttention(), (3, 16), extra_inputs=[(7, 8)]) == projections + 2 * 3 * 7 * 16
    # Bare SDPA, 2 heads of 8 over 5 tokens: 2 heads * 5 * 5 * (8 + 8); a mask changes nothing.
    assert count_macs(_Functional(lambda x: F.scaled_dot_product_attention(x, x, x)), (2, 5, 8)) == 2 * 5 * 5 * 16
    assert count_macs(_Functional(_sdpa_masked), (80,)) == 2 * 5 * 5 * 16
    # Without a head axis (3-D tensors take another kernel).
    assert count_macs(_Functional(lambda x: F.scaled_dot_product_attention(x, x, x)), (5, 8)) == 5 * 5 * 16
    # Grouped-query: every query head attends, 4 * 3 * 6 * (8 + 8).
    assert count_macs(_Functional(_sdpa_gqa), (96,)) == 4 * 3 * 6 * 16


class _Recurrent(nn.Module):
    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


@pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")
@pytest.mark.parametrize(
    ("module", "shape", "per_token"),
    [
        # LSTM: 4 gates * hidden 4 * (input 8 + hidden 4).
        (nn.LSTM(8, 4, batch_first=True), (5, 8), 4 * 4 * 12),
        # GRU: 3 gates (on CPU it runs step by step as addmm; must not count twice).
        (nn.GRU(8, 4, batch_first=True), (5, 8), 3 * 4 * 12),
        (nn.RNN(8, 4, batch_first=True), (5, 8), 1 * 4 * 12),
        # sequence-first: (1, 5, 8) is 1 step of a batch of 5; still 5 tokens.
        (nn.LSTM(8, 4), (5, 8), 4 * 4 * 12),
        # bidirectional: both directions.
        (nn.LSTM(8, 4, batch_first=True, bidirectional=True), (5, 8), 2 * 4 * 4 * 12),
        (nn.GRU(8, 4, batch_first=True, bidirectional=True), (5, 8), 2 * 3 * 4 * 12),
        # two bidirectional layers: the second reads both directions (2 * 4 inputs).
        (nn.GRU(8, 4, num_layers=2, bidirectional=True), (5, 8), 2 * 3 * 4 * 12 + 2 * 3 * 4 * (8 + 4)),
        # projected LSTM: recurrent input is proj_size 3, plus the 5 -> 3 projection.
        (nn.LSTM(6, 5, proj_size=3, batch_first=True), (7, 6), 4 * 5 * (6 + 3) + 5 * 3),
    ],
)
def test_recurrent_layers(module: nn.RNNBase, shape: tuple[int, ...], per_token: int) -> None:
    tokens = shape[0]
    assert recurrent_macs(module, tokens) == tokens * per_token
    assert count_macs(_Recurrent(module), shape) == tokens * per_token


def test_packed_sequence_counts_real_steps() -> None:
    class Packed(_Recurrent):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(pack_padded_sequence(x, torch.tensor([4]), batch_first=True))[0].data

    # 6 padded steps, 4 real ones.
    assert count_macs(Packed(nn.LSTM(8, 4, batch_first=True)), (6, 8)) == 4 * 4 * 4 * 12


class _Nested(nn.Linear):
    """A Linear subclass that calls another Linear: its products count once in `layers`."""

    def __init__(self) -> None:
        super().__init__(6, 6)
        self.inner = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.inner(x))


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 8)
        self.gru = nn.GRU(8, 8, batch_first=True)
        self.nested = _Nested()
        self.weight = nn.Parameter(torch.randn(8, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(self.proj(x))[0]
        return self.nested(h @ self.weight)


def test_layer_view_counts_only_conv_and_linear_modules() -> None:
    # 4 tokens: proj 6*8, GRU 3*8*16, matmul 8*6, nested 2*6*6.
    counts = measure_macs(_Mixed(), (4, 6))
    assert counts.layers == 4 * (6 * 8 + 2 * 36)
    assert counts.total == 4 * (6 * 8 + 3 * 8 * 16 + 8 * 6 + 2 * 36)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Conv1d(2, 3, 1)

    def forward(self, x: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(aux).mean(-1)


def test_extra_inputs() -> None:
    assert count_macs(_TwoInputs(), (4,), extra_inputs=[(2, 6)]) == 12 + 3 * 6 * 2


def test_restores_mode_fast_path_and_removes_hooks() -> None:
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Dropout(0.5), nn.Linear(3, 1))
    model.train()
    count_macs(model, (2, 3, 3))
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.backends.mha.get_fastpath_enabled()
    model.eval()
    count_macs(model, (2, 3, 3))
    assert not model.training


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 2))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) == 3 * 4 * 9 + 4 + 8 + 12
    model[0].weight.requires_grad_(False)  # frozen weights are not trainable parameters
    assert count_parameters(model) == 4 + 8 + 12


def _claresnet_macs(*, as_run: bool) -> int:
    """Layer-wise MACs of CLAReSNet for 30 bands, 11 x 11 patches, 16 classes, paper sizes.

    Spatial CNN, per band on P^2 = 121 pixels, C = 64 channels, SE hidden 8:
    stem 16 * (1 + 9 + 25 + 49) per pixel (as run: the four kernels zero-padded to 7 x 7,
    64 * 49); four residual blocks of two 3 x 3 convs, 64 * 64 * 9 each; an SE block after
    the stem, in each block and in CBAM (128 * 8 + 8 * 64); CBAM's spatial convs 7 x 7,
    4 -> 2 -> 1; the projection 128 -> d = 256.
    Each of the 3 encoder layers, on T = 30 bands: BiLSTM and BiGRU, 2 directions *
    (4 + 3) gates * 128 * (256 + 128) per band; the latent attention at scales 1, 2, 4 with
    L = 14 latents: per scale reading t bands, 12 L d^2 (encode q and out, process q/k/v/out,
    latent FFN x2, decode k/v) + 2 L^2 d (process attention) + 4 t d^2 (encode k/v, decode
    q and out) + 4 L t d (encode and decode attention); in the paper's layout t = 30, 15, 8
    (the subsampled sequence); as run every scale reads all 30 (a key mask drops the others)
    and decodes all 30 positions, then interpolates by a (30 x 30) operator, T^2 d; fusion
    FFN 768 -> 512 -> 256 and FFN x4 (256 -> 1024 -> 256): 16 T d^2.
    Cross-layer fusion attention (1 query, 3 summaries): 2 d^2 + 2 * 3 d^2 + 2 * 3 d.
    Head 256 -> 128 -> 16.
    """
    t_bands, pixels, c, d, layers, latents = 30, 121, 64, 256, 3, 14
    se = 2 * c * 8 + 8 * c
    stem = c * 49 * pixels if as_run else (c // 4) * (1 + 9 + 25 + 49) * pixels
    spatial = t_bands * (stem + 4 * 2 * c * c * 9 * pixels + 6 * se + (4 * 2 + 2 * 1) * 49 * pixels + 2 * c * d)
    rnn = t_bands * 2 * (4 + 3) * (d // 2) * (d + d // 2)
    lengths = (30, 30, 30) if as_run else (30, 15, 8)
    msla = sum(
        12 * latents * d * d + 2 * latents**2 * d + 4 * t * d * d + 4 * latents * t * d + as_run * t_bands**2 * d
        for t in lengths
    )
    encoder = layers * (rnn + msla + 16 * t_bands * d * d)
    return spatial + encoder + 2 * d * d + 2 * layers * d * d + 2 * layers * d + d * 128 + 128 * 16


def test_claresnet_matches_layerwise_formula() -> None:
    """CLAReSNet counts exactly its layer-wise formula as run (1.4185 G MACs, 2.84 GFLOP).

    The paper's layout (subsampled scales, per-branch stem kernels) is 1.3793 G; the
    implementation does 2.8 % more arithmetic (the key-mask scales and padded stem kernels
    that keep it loop-free). The earlier "1.34 G / 2.69 GFLOP" is the paper layout without
    the BiLSTM (1.3439 G): FlopCounterMode alone does not see a CPU LSTM's fused kernel.
    """
    model = create_model("claresnet", 30, 16)
    counts = measure_macs(model, (30, 11, 11))
    assert counts.total == _claresnet_macs(as_run=True) == 1_418_533_260
    assert counts.total == pytest.approx(_claresnet_macs(as_run=False), rel=0.03)
    # The module-hook view sees only its nn.Linear/nn.Conv2d calls, about 7 %.
    assert counts.layers < 0.1 * counts.total


class _OldHookCount(TorchFunctionMode):
    """The counter operator-level counting replaced, for one sample: forward hooks on
    nn.Conv*/nn.Linear (output elements x fan-in), nn.MultiheadAttention by formula, and
    F.scaled_dot_product_attention called outside it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.layers = self.attention = self.inside = 0
        self.handles = []
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                self.handles.append(m.register_forward_hook(self._layer))
            elif isinstance(m, nn.MultiheadAttention):
                self.handles.append(m.register_forward_pre_hook(self._enter, with_kwargs=True))
                self.handles.append(m.register_forward_hook(self._leave))

    def _layer(self, m: nn.Module, args, out: torch.Tensor) -> None:
        if isinstance(m, nn.Linear):
            self.layers += out.numel() * m.in_features
            return
        # By the declared output channels: a conv module may sum them before returning
        # (Lite-C2ANet's NeighbourConv returns one third of its 3 D channels, summed).
        positions = out.numel() // out.shape[1]
        self.layers += positions * m.out_channels * (m.in_channels // m.groups * math.prod(m.kernel_size))

    def _enter(self, m: nn.MultiheadAttention, args, kwargs) -> None:
        self.inside += 1
        q, k, v = [*args, *kwargs.values()][:3]
        lq, lk, e = q.numel() // q.shape[-1], k.numel() // k.shape[-1], m.embed_dim
        self.attention += 2 * lq * e * e + lk * (k.shape[-1] + v.shape[-1]) * e + 2 * lq * lk * e

    def _leave(self, m: nn.Module, args, out) -> None:
        self.inside -= 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention and not self.inside:
            q, k, v = args[:3]
            self.attention += q.numel() // q.shape[-1] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", [n for n in list_models() if get_model_spec(n).kind.torch])
def test_every_model_counts_at_least_the_old_hooks(name: str) -> None:
    spec = get_model_spec(name)
    model = create_model(name, 30, 16).eval()
    shape = (30 + model.aux_bands, spec.defaults.patch, spec.defaults.patch)
    old = _OldHookCount(model)
    with old:  # both counters watch the same forward pass
        counts = measure_macs(model, shape)
    for handle in old.handles:
        handle.remove()
    assert counts.layers == old.layers
    assert counts.total >= old.layers + old.attention
    # `hsi models` lists these counts from the stored catalogue, without loading torch.
    (stored,) = describe_models([name])
    assert (stored["parameters"], stored["macs"], stored["layer_macs"]) == (
        count_parameters(model), counts.total, counts.layers), "stale: run `python -m hsicli.models.catalogue`"


def test_litec2anet_views() -> None:
    """The layer view is Lite-C2ANet's Table 7 convention; the total adds ACSG's token-centre
    products, one per position of the 7 x 7 map and channel."""
    model = create_model("litec2anet", 204, 16)
    counts = measure_macs(model, (204, 9, 9))
    assert counts.total - counts.layers == 49 * model.width
    assert counts.layers == pytest.approx(0.61e6, rel=0.25)
