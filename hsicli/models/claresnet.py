"""CLAReSNet: convolution meets latent attention (Bandyopadhyay, Das Bhattacharjee, Das).

The paper's §IV-V architecture, with the details the paper leaves open or states two ways
settled by the authors' public reference implementation
(https://github.com/Bandyopadhyay-Asmit/CLAReSNet, `CLAReSNet.py`, read, not copied):

* Spatial pathway (§IV-1), shared by all bands, which are folded into the batch:
  stem of parallel 1/3/5/7 convolutions, 16 channels each (base 64), each with BN and GELU,
  then the enhanced SE block; four residual blocks
  `GELU(x + SE(BN(conv3_d(Dropout2d(GELU(BN(conv3(x))))))))` with dilations 1-4; the
  enhanced CBAM; `LayerNorm(Linear([GAP; GMP]))` to `dim` = 256 per band.
  The enhanced SE gate is `sigmoid(W2 Dropout(GELU(W1 [GAP; GMP])))` with bias-free linears,
  hidden size max(C/16, 8). CBAM's channel attention is such an SE block; its spatial
  attention maps [mean; max; std; min] over channels (std unbiased) through
  conv7(4->2), BN, GELU, conv7(2->1), sigmoid (the paper writes a single Conv7x7; the
  reference's two-convolution form is kept).
* Hybrid positional encoding (§IV-2): concatenated, not summed, halves: sinusoidal features
  of dimension dim/2 next to a learnable (max_bands, dim/2) table, the concatenation added
  to the sequence. As in the reference it lives inside every latent-attention module (one
  per encoder layer) and is applied to that module's input; its learnable table has
  max_bands = 5000 rows, which the published 17.33 M parameters (30 bands, 16 classes,
  3 layers) include (0.64 M per layer).
* Multi-scale spectral latent attention (§IV-3): L(T) = clamp(int(16 log2(max(T,16)/16)), 8, 64)
  latents sliced from a pool of 64 learnable tokens shared by the scales; each scale s in
  (1, 2, 4) has its own weights and reads the band sequence subsampled with stride s
  (`x[:, ::s]`, left whole when T < s): encode Z = LN(L + CrossAttn(L, x_s)), process
  Z' = LN(Z + SelfAttn(Z)), Z'' = Z' + FFN_x2(Z'), decode O = LN(x_s + CrossAttn(x_s, Z'')),
  then linear interpolation (align_corners=False) back to T. Fusion:
  LN(x + Dropout(FFN_x2([O_1; O_2; O_4]))), x being the position-encoded input. 8 heads,
  attention dropout 0.1. The reference's unused `scale_weights` parameter is left out.
* Encoder layer (§IV-4 versus §V; the reference follows §V): with h = x + BiLSTM(x),
  h = h + BiGRU(h) (hidden dim/2 per direction so the residuals add),
  y = LN(x + MSLA(h)), y = LN(y + FFN_x4(y)); the stack adds each layer's input back:
  H_l = layer(H_{l-1}) + H_{l-1}.
* Hierarchical fusion (§IV-5): f = LN(s_n + CrossAttn(s_n, [s_1..s_n])) over the
  mean-pooled layer outputs (with a single layer, f = s_1). Head (§IV-6): LN, Dropout 0.5,
  Linear(dim, 128), GELU, Dropout 0.25 (half the first), Linear(128, classes). Internal
  dropout 0.1 everywhere else (SE, Dropout2d in the residual blocks, attention, FFNs).
* Initialisation as in the reference: linear weights truncated normal (std 0.02) with zero
  bias, attention input projections Xavier-uniform, latent tokens and the learnable
  positional table N(0, 0.02^2), convolutions and RNNs at PyTorch's defaults.

Speed (the reference's function to float rounding, organised for CPU throughput): the
bands of a batch form one (B*T, 1, P, P) batch in channels-last layout; the four stem
branches are zero-padded to 7x7 and applied as one patch matrix product (a one-channel
convolution is slow in oneDNN); in eval every BatchNorm is folded into the convolution
before it; GAP is a sum over the (N, H*W, C) pixel view and GMP adaptive max pooling, and
the SE gate and residual add are one addcmul (these avoid fp32 copies and slow backward
passes of channels-last bf16 tensors); the three scales of the latent attention run
batched, with per-scale weights stacked on a leading axis: the subsampled sequences become
key masks (encode) and a (T x T) interpolation operator (decode), so no Python loop runs
over bands, scales or heads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from hsicli.errors import InputError, UsageError
from hsicli.models.contract import TorchModel
from hsicli.models.precision import run_recurrent
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model


def latent_token_count(
    bands: int, base_tokens: int = 16, base_length: int = 16, min_tokens: int = 8, max_tokens: int = 64
) -> int:
    """L(T) of §IV-3: logarithmic in the sequence length, clamped to [min_tokens, max_tokens]."""
    tokens = int(base_tokens * math.log2(max(bands, base_length) / base_length))
    return min(max(tokens, min_tokens), max_tokens)


@lru_cache(maxsize=64)
def _scale_operators(bands: int, scales: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-scale key mask (S, T) and interpolation operator (S, T, T).

    Scale s keeps positions 0, s, 2s, ... (all of them when T < s, as the reference does);
    row t of the operator linearly interpolates (align_corners=False) those kept positions
    back to position t, with zero weight on the positions the scale dropped.
    """
    masks, operators = [], []
    # Cached tensors must be ordinary ones even when first built under inference_mode.
    with torch.inference_mode(False):
        for scale in scales:
            stride = scale if bands >= scale else 1
            kept = torch.arange(0, bands, stride)
            eye = torch.eye(len(kept)).unsqueeze(0)
            # Interpolating each unit vector gives the columns of the linear map.
            columns = F.interpolate(eye, size=bands, mode="linear", align_corners=False)[0].T
            operator = torch.zeros(bands, bands)
            operator[:, kept] = columns
            mask = torch.zeros(bands, dtype=torch.bool)
            mask[kept] = True
            masks.append(mask)
            operators.append(operator)
        return torch.stack(masks), torch.stack(operators)


def _sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """PE(t, 2i) = sin(t / 10000^(2i/dim)), PE(t, 2i+1) = cos(...) (§IV-2)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


# --------------------------------------------------------------------------- spatial pathway


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as a per-channel (scale, shift)."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BN(conv(x)); in eval the BN is folded into the convolution (one pass fewer)."""
    if bn.training or not bn.track_running_stats:
        return bn(conv(x))
    scale, shift = _bn_affine(bn)
    weight = conv.weight * scale[:, None, None, None]
    return F.conv2d(x, weight, shift, conv.stride, conv.padding, conv.dilation, conv.groups)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W, C); a view for channels-last tensors."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _global_pools(x: torch.Tensor) -> torch.Tensor:
    """[GAP; GMP] of (N, C, H, W) as (N, 2C).

    Chosen for channels-last bf16 training on CPU, where mean/amax over (H, W) convert the
    tensor to fp32 and have slow backward passes: the mean is a sum over the pixel view and
    the max is adaptive max pooling, whose backward is a scatter.
    """
    pixels = _pixels(x)
    return torch.cat([pixels.sum(1) / pixels.shape[1], F.adaptive_max_pool2d(x, 1).flatten(1)], dim=1)


class EnhancedSE(nn.Module):
    """Enhanced squeeze-and-excitation (§IV-1): gate from concatenated average and max pooling."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, dropout: float = 0.1):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.fc1 = nn.Linear(2 * channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.dropout = nn.Dropout(dropout)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the (N, C, 1, 1) channel weights."""
        pooled = _global_pools(x)
        return torch.sigmoid(self.fc2(self.dropout(F.gelu(self.fc1(pooled)))))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MultiScaleStem(nn.Module):
    """Parallel k x k convolutions of one band (§IV-1 eq. 1), each with BN and GELU, then SE.

    Branch weights are kept per kernel size; the forward pass zero-pads them to the largest
    kernel and applies all branches as one matrix product over the band's patch matrix. One
    BatchNorm over the concatenated channels equals the per-branch BatchNorms (BN is per
    channel); in eval it is folded into that product.
    """

    def __init__(self, channels: int, kernels: Sequence[int], se: dict, dropout: float):
        super().__init__()
        if channels % len(kernels) or any(k % 2 == 0 for k in kernels):
            raise UsageError(
                f"claresnet: base_channels={channels} must split evenly over odd kernels {list(kernels)}",
                hint="use e.g. base_channels=64 with kernels [1, 3, 5, 7]",
            )
        branch = channels // len(kernels)
        self.size = max(kernels)
        self.branches = nn.ParameterList(nn.Parameter(torch.empty(branch, 1, k, k)) for k in kernels)
        for weight in self.branches:
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv2d's default
        self.bn = nn.BatchNorm2d(channels)
        self.se = EnhancedSE(channels, **se, dropout=dropout)

    def forward(self, bands: torch.Tensor) -> torch.Tensor:
        # bands: (N, H, W) -> (N, C, H, W) in channels-last layout.
        n, h, w = bands.shape
        k = self.size
        weight = torch.cat([F.pad(b, [(k - b.shape[-1]) // 2] * 4) for b in self.branches]).reshape(-1, k * k)
        patches = F.pad(bands, [k // 2] * 4).unfold(1, k, 1).unfold(2, k, 1).reshape(n * h * w, k * k)
        if self.bn.training or not self.bn.track_running_stats:
            out = self.bn((patches @ weight.T).view(n, h, w, -1).permute(0, 3, 1, 2))
        else:
            scale, shift = _bn_affine(self.bn)
            out = torch.addmm(shift, patches, (weight * scale[:, None]).T)
            out = out.view(n, h, w, -1).permute(0, 3, 1, 2)
        return self.se(F.gelu(out))


class ResidualBlock(nn.Module):
    """F_l = GELU(F_{l-1} + SE(BN(conv3_d(Dropout2d(GELU(BN(conv3(F_{l-1}))))))) (§IV-1)."""

    def __init__(self, channels: int, dilation: int, se: dict, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout2d(dropout)
        self.se = EnhancedSE(channels, **se, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.gelu(_conv_bn(x, self.conv1, self.bn1)))
        h = _conv_bn(h, self.conv2, self.bn2)
        # x + h * gate in one pass.
        return F.gelu(torch.addcmul(x, h, self.se.gate(h)))


class EnhancedCBAM(nn.Module):
    """Channel attention (SE on [GAP; GMP]) then spatial attention on [mean; max; std; min] (§IV-1)."""

    def __init__(self, channels: int, kernel: int, se: dict, dropout: float):
        super().__init__()
        self.channel = EnhancedSE(channels, **se, dropout=dropout)
        self.spatial = nn.Sequential(
            nn.Conv2d(4, 2, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(2),
            nn.GELU(),
            nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel(x)
        n, c, h, w = x.shape
        # Channel statistics over the pixel view (C innermost), several times faster than
        # reductions over dim 1 here; std is unbiased, as a norm of deviations.
        pixels = _pixels(x)
        mean = pixels.mean(-1, keepdim=True)
        std = torch.linalg.vector_norm(pixels - mean, dim=-1, keepdim=True) / math.sqrt(c - 1)
        if torch.is_grad_enabled() and pixels.requires_grad:
            # max/min with indices: slower forward, but a scatter as backward.
            high, low = pixels.max(-1, keepdim=True)[0], pixels.min(-1, keepdim=True)[0]
        else:
            high, low = pixels.amax(-1, keepdim=True), pixels.amin(-1, keepdim=True)
        stats = torch.cat([mean, high, std, low], dim=-1).transpose(1, 2).reshape(n, 4, h, w)
        attention = self.spatial(stats).reshape(n, h * w, 1)
        # Weighted in the pixel view, so the result stays channels-last.
        return (pixels * attention).view(n, h, w, c).permute(0, 3, 1, 2)


class SpatialEncoder(nn.Module):
    """Per-band CNN: (B, T, P, P) -> (B, T, dim) embeddings e_t (§IV-1, last equation)."""

    def __init__(
        self,
        dim: int,
        channels: int,
        kernels: Sequence[int],
        dilations: Sequence[int],
        cbam_kernel: int,
        se: dict,
        dropout: float,
    ):
        super().__init__()
        self.stem = MultiScaleStem(channels, kernels, se, dropout)
        self.blocks = nn.Sequential(*(ResidualBlock(channels, d, se, dropout) for d in dilations))
        self.cbam = EnhancedCBAM(channels, cbam_kernel, se, dropout)
        self.proj = nn.Linear(2 * channels, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, p, q = x.shape
        h = self.cbam(self.blocks(self.stem(x.reshape(b * t, p, q))))
        return self.norm(self.proj(_global_pools(h))).view(b, t, -1)


# --------------------------------------------------------------------------- spectral pathway


class ScaleStackedAttention(nn.Module):
    """One multi-head attention per scale, weights stacked on a leading scale axis.

    Holds the parameters of S `nn.MultiheadAttention(dim, heads)` modules, the input
    projection split into its query and key/value rows (so cross-attention never slices a
    parameter); tensors flow as (S, B, N, dim) and every projection is one batched product.
    """

    def __init__(self, scales: int, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_weight = nn.Parameter(torch.empty(scales, dim, dim))
        self.q_bias = nn.Parameter(torch.zeros(scales, dim))
        self.kv_weight = nn.Parameter(torch.empty(scales, 2 * dim, dim))
        self.kv_bias = nn.Parameter(torch.zeros(scales, 2 * dim))
        self.out_weight = nn.Parameter(torch.empty(scales, dim, dim))
        self.out_bias = nn.Parameter(torch.zeros(scales, dim))
        bound = math.sqrt(6.0 / (dim + 3 * dim))  # Xavier-uniform over each joint (3 dim, dim) block
        nn.init.uniform_(self.q_weight, -bound, bound)
        nn.init.uniform_(self.kv_weight, -bound, bound)
        nn.init.trunc_normal_(self.out_weight, std=0.02)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        return _stacked_linear(x, self.q_weight, self.q_bias)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _stacked_linear(x, self.kv_weight, self.kv_bias).chunk(2, dim=-1)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Multi-head attention of projected (S, B, N, dim) tensors, then the output projection."""
        s, b, n, dim = q.shape
        heads = self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(s * b, x.shape[2], heads, dim // heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(s, b, n, dim)
        return _grouped_linear(out, self.out_weight, self.out_bias)


def _stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-scale linear map of per-scale inputs (S, B, N, in), or of one input (B, N, in)
    shared by all scales (then a single matrix product); returns (S, B, N, out)."""
    if x.dim() == 4:
        return _grouped_linear(x, weight, bias)
    s, out, _ = weight.shape
    y = F.linear(x, weight.reshape(s * out, -1), bias.reshape(-1))
    return y.view(*x.shape[:2], s, out).permute(2, 0, 1, 3)


def _grouped_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-scale linear map: x (S, B, N, in), weight (S, out, in), bias (S, out)."""
    s, b, n, _ = x.shape
    y = torch.baddbmm(bias.unsqueeze(1), x.reshape(s, b * n, -1), weight.transpose(1, 2))
    return y.view(s, b, n, -1)


class ScaleStackedLayerNorm(nn.Module):
    """One LayerNorm per scale over (S, B, N, dim) tensors."""

    def __init__(self, scales: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(scales, dim))
        self.bias = nn.Parameter(torch.zeros(scales, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x, x.shape[-1:])
        return torch.addcmul(self.bias[:, None, None], normed, self.weight[:, None, None])


class ScaleStackedFFN(nn.Module):
    """Per-scale latent FFN: Linear(dim, mult dim), GELU, Dropout, Linear(mult dim, dim), Dropout."""

    def __init__(self, scales: int, dim: int, mult: int, dropout: float):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(scales, mult * dim, dim))
        self.b1 = nn.Parameter(torch.zeros(scales, mult * dim))
        self.w2 = nn.Parameter(torch.empty(scales, dim, mult * dim))
        self.b2 = nn.Parameter(torch.zeros(scales, dim))
        nn.init.trunc_normal_(self.w1, std=0.02)
        nn.init.trunc_normal_(self.w2, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.gelu(_grouped_linear(x, self.w1, self.b1)))
        return self.dropout(_grouped_linear(h, self.w2, self.b2))


def _ffn(dim: int, mult: int, dropout: float, in_dim: int | None = None) -> nn.Sequential:
    """Linear(in_dim, mult dim), GELU, Dropout, Linear(mult dim, dim)."""
    hidden = mult * dim
    return nn.Sequential(
        nn.Linear(in_dim or dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
    )


class HybridPositionalEncoding(nn.Module):
    """[PE_sin(t); PE_learn(t)] added to the sequence (§IV-2; halves concatenated, see module doc)."""

    def __init__(self, dim: int, max_bands: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("sinusoidal", _sinusoidal_table(max_bands, half), persistent=False)
        self.learnable = nn.Parameter(torch.randn(max_bands, dim - half) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        return x + torch.cat([self.sinusoidal[:t], self.learnable[:t]], dim=1)


class MultiScaleLatentAttention(nn.Module):
    """MSLA (§IV-3): encode / process / decode through L(T) latents at each scale, then fuse."""

    def __init__(
        self,
        dim: int,
        heads: int,
        scales: Sequence[int],
        base_tokens: int,
        base_length: int,
        min_tokens: int,
        max_tokens: int,
        max_bands: int,
        latent_ffn_mult: int,
        fusion_ffn_mult: int,
        dropout: float,
    ):
        super().__init__()
        self.scales = tuple(scales)
        self.token_rule = dict(
            base_tokens=base_tokens, base_length=base_length, min_tokens=min_tokens, max_tokens=max_tokens
        )
        n = len(self.scales)
        self.position = HybridPositionalEncoding(dim, max_bands)
        self.latents = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        self.encode = ScaleStackedAttention(n, dim, heads, dropout)
        self.process = ScaleStackedAttention(n, dim, heads, dropout)
        self.decode = ScaleStackedAttention(n, dim, heads, dropout)
        self.encode_norm = ScaleStackedLayerNorm(n, dim)
        self.process_norm = ScaleStackedLayerNorm(n, dim)
        self.decode_norm = ScaleStackedLayerNorm(n, dim)
        self.latent_ffn = ScaleStackedFFN(n, dim, latent_ffn_mult, dropout)
        self.fusion = _ffn(dim, fusion_ffn_mult, dropout, in_dim=n * dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        s = len(self.scales)
        x = self.position(x)
        masks, operators = _scale_operators(t, self.scales)
        masks = masks.to(x.device)
        operators = operators.to(device=x.device, dtype=x.dtype)

        # Encode: latents query the (subsampled) band sequence; subsampling = key mask.
        latents = self.latents[: latent_token_count(t, **self.token_rule)]
        lat = latents.expand(s, 1, *latents.shape)
        q = self.encode.queries(lat).expand(s, b, -1, d)
        k, v = self.encode.keys_values(x)
        key_mask = masks[:, None, None, None, :].expand(s, b, 1, 1, t).reshape(s * b, 1, 1, t)
        z = self.encode_norm(lat + self.encode.attend(q, k, v, key_mask))

        # Process: self-attention among latents, then the latent FFN.
        z = self.process_norm(z + self.process.attend(self.process.queries(z), *self.process.keys_values(z)))
        z = z + self.latent_ffn(z)

        # Decode at every position; the interpolation operator reads only the kept ones.
        q = self.decode.queries(x)
        out = self.decode_norm(x.unsqueeze(0) + self.decode.attend(q, *self.decode.keys_values(z)))
        out = torch.einsum("stu,sbud->btsd", operators, out).reshape(b, t, s * d)
        return self.norm(x + self.dropout(self.fusion(out)))


class SpectralEncoderLayer(nn.Module):
    """BiLSTM and BiGRU with residuals, MSLA, LN; FFN x4, LN (§IV-4 in the layout of §V)."""

    def __init__(self, dim: int, ffn_mult: int, dropout: float, msla: dict):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)
        self.msla = MultiScaleLatentAttention(dim, dropout=dropout, **msla)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = _ffn(dim, ffn_mult, dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + run_recurrent(self.lstm, x)
        h = h + run_recurrent(self.gru, h)
        y = self.norm1(x + self.msla(h))
        return self.norm2(y + self.ffn(y))


class CLAReSNet(TorchModel):
    """CLAReSNet for (B, T, P, P) patches; the layout is in the module docstring.

    Keyword arguments (paper values as defaults, so `--model-args` can shrink any part):
    dim (embedding, 256), base_channels (CNN width, 64, split over the stem kernels),
    layers (encoder layers, 3), kernels (stem, 1/3/5/7), dilations (residual blocks, 1-4),
    se_reduction / se_min_hidden (SE hidden size max(C/16, 8)), cbam_kernel (7), heads (8),
    scales (1/2/4), base_tokens / base_length / min_tokens / max_tokens (the L(T) rule:
    16, 16, 8, 64), max_bands (positional table rows, 5000), latent_ffn_mult /
    fusion_ffn_mult / ffn_mult (2, 2, 4), head_hidden (128), dropout (0.1), head_dropout (0.5).
    """

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        dim: int = 256,
        base_channels: int = 64,
        layers: int = 3,
        kernels: Sequence[int] = (1, 3, 5, 7),
        dilations: Sequence[int] = (1, 2, 3, 4),
        se_reduction: int = 16,
        se_min_hidden: int = 8,
        cbam_kernel: int = 7,
        heads: int = 8,
        scales: Sequence[int] = (1, 2, 4),
        base_tokens: int = 16,
        base_length: int = 16,
        min_tokens: int = 8,
        max_tokens: int = 64,
        max_bands: int = 5000,
        latent_ffn_mult: int = 2,
        fusion_ffn_mult: int = 2,
        ffn_mult: int = 4,
        head_hidden: int = 128,
        dropout: float = 0.1,
        head_dropout: float = 0.5,
    ):
        super().__init__()
        if dim % 2 or dim % heads:
            raise UsageError(
                f"claresnet: dim={dim} must be even and divisible by heads={heads}",
                hint="use e.g. dim=256 with heads=8, or dim=64 with heads=4",
            )
        if layers < 1:
            raise UsageError(f"claresnet: layers={layers}, need at least 1", hint="the paper uses layers=3")
        if not 1 <= min_tokens <= max_tokens:
            raise UsageError(
                f"claresnet: need 1 <= min_tokens <= max_tokens, got {min_tokens} and {max_tokens}",
                hint="the paper uses min_tokens=8, max_tokens=64",
            )
        if not 1 <= bands <= max_bands:
            raise InputError(
                f"claresnet: expected 1 to max_bands={max_bands} bands, found {bands}",
                hint="reduce the bands (e.g. `hsi prep --pca 30`) or raise max_bands in --model-args",
            )
        self.bands = bands
        se = dict(reduction=se_reduction, min_hidden=se_min_hidden)
        self.spatial = SpatialEncoder(dim, base_channels, kernels, dilations, cbam_kernel, se, dropout)
        msla = dict(
            heads=heads,
            scales=scales,
            base_tokens=base_tokens,
            base_length=base_length,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            max_bands=max_bands,
            latent_ffn_mult=latent_ffn_mult,
            fusion_ffn_mult=fusion_ffn_mult,
        )
        self.layers = nn.ModuleList(SpectralEncoderLayer(dim, ffn_mult, dropout, msla) for _ in range(layers))
        # Cross-layer fusion (§IV-5) needs at least two summaries, as in the reference.
        fuse = layers > 1
        self.fusion = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) if fuse else None
        self.fusion_norm = nn.LayerNorm(dim) if fuse else None
        self.head = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Dropout(head_dropout),
            nn.Linear(dim, head_hidden),
            nn.GELU(),
            nn.Dropout(head_dropout / 2),
            nn.Linear(head_hidden, classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> the fused (B, dim) embedding f_final of §IV-5."""
        if x.dim() != 4 or x.shape[1] != self.bands:
            raise InputError(
                f"claresnet: expected input (B, {self.bands}, P, P), found {tuple(x.shape)}",
                hint="the checkpoint was trained on a scene with a different number of bands",
            )
        h = self.spatial(x)
        summaries = []
        for layer in self.layers:
            h = layer(h) + h
            summaries.append(h.mean(1))
        last = summaries[-1]
        if self.fusion is None:
            return last
        stack = torch.stack(summaries, dim=1)
        attended = self.fusion(last.unsqueeze(1), stack, stack, need_weights=False)[0].squeeze(1)
        return self.fusion_norm(last + attended)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, classes) logits (§IV-6; softmax is left to the loss)."""
        return self.head(features)


@register_model(
    "claresnet",
    arguments=CLAReSNet,
    kind=PATCH,
    paper="CLAReSNet (Bandyopadhyay et al.)",
    activations_per_input=1000,
    defaults=TrainDefaults(
        patch=11,
        optimizer="adamw",
        lr=1e-4,
        weight_decay=1e-2,
        batch_size=16,
        eval_batch_size=32,
        epochs=40,
        augment=True,
    ),
    # The paper's 40 epochs at lr 1e-4 are 18,000 steps on its scenes (72 % of each) but a few
    # hundred on a small training set, where they end near chance: 200 synthetic pixels 50 % after
    # 520 steps, Indian Pines 10 per class 42 % after 120. lr 1e-3 (a 2-epoch warm-up, clip 1) is
    # past the stable rate: every gradient clipped (norm 2-40), the run stalls at 52-64 % running
    # accuracy from epoch 5 on. At 2e-4 the loss falls steadily; with the paper's augmentation
    # (rotations, flips, noise) more slowly, and 40 pixels take ~600 steps: Indian Pines subset 10
    # per class fitted at epoch 215, OA 94.0 % (without augmentation: fitted at 79, OA 79.8 %; the
    # SVM 82.0 %). Without it the model memorises its few windows' layout: on controlled splits
    # (one compact region per class) SalinasA 1 % scored 18.9 %, 76.4 % with it; Indian Pines
    # subset 47.6 against 70.2; Jasper Ridge 10 per class 62.0 against 93.1 (seed 0 each). Clipping
    # at 1 stays for the odd spike (norm 10). Batch 32 costs the same CPU an epoch as 16.
    adaptive={"lr": 2e-4, "clip_grad": 1.0},
)
def claresnet(bands: int, classes: int, **args) -> nn.Module:
    """CLAReSNet: multi-scale residual CNN per band, RNN + multi-scale latent attention over bands."""
    return CLAReSNet(bands, classes, **args)
