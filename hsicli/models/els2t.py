"""ELS2T: efficient lightweight spectral-spatial transformer (Zhang, Zhang, Wang, Wang, Wu, IEEE
TGRS 61, 2023), the ultra-light peer of Lite-C2ANet in its Tables 3-7.

The authors publish no code; the public implementation that Lite-C2ANet's figures match is the
one in DelonKong/ULite_FDRNet (models/ELS2T.py, class `overall`, 6 kernels per branch,
2 encoder layers, MLP width 1): at 9×9 windows it has 11,847 parameters for Pavia University
(103 bands, 9 classes), 14,344 for Salinas (204, 16) and 15,837 for WHU-Hi-LongKou (270, 9),
Lite-C2ANet's Table 7 11.85 K, 14.34 K and 15.84 K; 6.83 M MACs for a 9×9 Pavia window
(Table 7: 6.92 M "FLOPs").
Architecture read from that code; this is our implementation. With k = 6 kernels:

1. Spatial branch: a 1×1 convolution over all bands to k maps (the code's T×1×1 3-D kernel),
   then three residual blocks of 3×3 convolutions (conv-BN-ReLU-conv-BN, + x, ReLU).
2. Spectral branch: a 7-band convolution with spectral stride 2 to k maps per pixel, three
   residual blocks of 7-band convolutions (padding 3), and a convolution spanning the remaining
   T' = floor((T - 7) / 2) + 1 bands to k maps (the 3-D kernels 7×1×1 and T'×1×1); no activation
   after the first and the last convolution, as in the code.
3. Interaction: F = spatial + spectral; two 3×3 convolutions of F (one per branch), each added
   to its multi-scale coordinate attention (MCAM) and then to its branch's features.
   MCAM(y): three 3×3 convolutions with dilations 1, 3, 5 (BN + ReLU each), merged by a 1×1
   convolution (BN + ReLU), times two coordinate gates: max + mean pooled strips along H and
   along W, a shared 1×1 convolution to k // 4 channels (BN + GELU), then per direction a 1×1
   convolution back to k and a sigmoid.
4. Fusion (AFF) of the 2 k concatenated maps: channel weights s = sigmoid(W1 W2 [avg; max])
   from global average and max pooling (a 2×1 kernel over the pair, then 1×1), out = x + x s.
5. Tokens: the P² pixels plus a class token, learnable position embeddings (P² + 1, so the
   weights depend on the window), dropout 0.1; two pre-norm encoder layers with the code's
   linear attention: a = softmax over tokens of a scalar score per token, g = Σ a·K,
   out = W_o (g ⊙ ReLU(V) ⊙ mean of the tokens), and a gated MLP W3 (W1 x ⊙ GELU(W2 x)) with
   hidden width 1. The class token (`forward_features`, 2 k values) -> Linear -> logits.

Two biases of the code are left out because nothing can move them: the attention score's (it
shifts every token's score alike, which the softmax ignores) and that of the strips' 1×1
convolution (a single channel for k = 6, which the batch norm after it centres): 4 parameters
fewer than the code (11,843 and 14,340), -0.03 %. The outputs are the code's for its weights.

Protocol: the code holds none and the paper's is not at hand; the defaults are Lite-C2ANet's
common protocol for its comparison (9×9 windows of all bands, Adam 1e-3, batch 64, 100 epochs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hsicli.errors import HsiError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model

_SPECTRAL_EXTENT = 7
_DILATIONS = (1, 3, 5)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, conv: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(), nn.BatchNorm2d(channels), nn.ReLU(), conv(), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class CoordinateAttention(nn.Module):
    """MCAM: dilated 3×3 convolutions merged, gated by row and column strips."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.BatchNorm2d(channels), nn.ReLU())
            for d in _DILATIONS)
        self.merge = nn.Sequential(
            nn.Conv2d(len(_DILATIONS) * channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU())
        reduced = max(channels // 4, 1)
        self.strips = nn.Sequential(nn.Conv2d(channels, reduced, 1, bias=False), nn.BatchNorm2d(reduced), nn.GELU())
        self.gate_rows = nn.Conv2d(reduced, channels, 1)
        self.gate_cols = nn.Conv2d(reduced, channels, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        width = y.shape[3]
        along_w = y.amax(2, keepdim=True) + y.mean(2, keepdim=True)  # (B, C, 1, W)
        along_h = (y.amax(3, keepdim=True) + y.mean(3, keepdim=True)).transpose(2, 3)  # (B, C, 1, H)
        strips = self.strips(torch.cat([along_w, along_h], 3))
        gate_w = torch.sigmoid(self.gate_rows(strips[..., :width]))  # varies along W
        gate_h = torch.sigmoid(self.gate_cols(strips[..., width:].transpose(2, 3)))  # varies along H
        merged = self.merge(torch.cat([conv(y) for conv in self.dilated], 1))
        return merged * gate_w * gate_h


class ChannelFusion(nn.Module):
    """AFF: x + x ⊙ sigmoid(1×1(2×1 conv over the [average; max] pooled pair))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pair = nn.Conv2d(channels, channels, (2, 1), bias=False)
        self.mix = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.stack([x.mean((2, 3)), x.amax((2, 3))], 2).unsqueeze(3)  # (B, C, 2, 1)
        return x + x * torch.sigmoid(self.mix(self.pair(pooled)))


class _EncoderLayer(nn.Module):
    """Pre-norm linear attention (a global context vector) and a gated MLP, each residual."""

    def __init__(self, dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1, bias=False)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, mlp_dim)
        self.gate = nn.Linear(dim, mlp_dim)
        self.back = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        context = (torch.softmax(self.score(y), dim=1) * self.key(y)).sum(1, keepdim=True)  # (B, 1, D)
        x = x + self.out(context * F.relu(self.value(y)) * y.mean(1, keepdim=True))
        y = self.norm2(x)
        return x + self.back(self.linear(y) * F.gelu(self.gate(y)))


class ELS2T(TorchModel):
    """ELS2T for P×P windows of `bands` bands.

    Args:
        bands: input bands T, at least 7 (Lite-C2ANet's comparison: all bands).
        classes: number of classes C.
        patch: window side P; the position embeddings have P² + 1 rows (Lite-C2ANet: 9).
        kernels: maps per branch k (code: 6); the tokens have 2 k values.
        depth: encoder layers (code: 2).
        mlp_dim: hidden width of the gated MLP (code: 1).
        dropout: dropout on the embedded tokens (code: 0.1).
    """

    def __init__(self, bands: int, classes: int, *, patch: int = 9, kernels: int = 6, depth: int = 2,
                 mlp_dim: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if bands < _SPECTRAL_EXTENT or patch < 1:
            raise HsiError(f"els2t needs at least {_SPECTRAL_EXTENT} bands (its 7-band kernels); got {bands}",
                           hint="the comparison in Lite-C2ANet uses all bands of the scene")
        d = _SPECTRAL_EXTENT
        remaining = (bands - d) // 2 + 1
        dim = 2 * kernels
        self.patch = patch
        spatial_conv = lambda: nn.Conv2d(kernels, kernels, 3, padding=1)  # noqa: E731
        spectral_conv = lambda: nn.Conv2d(kernels, kernels, (d, 1), padding=(d // 2, 0))  # noqa: E731
        self.spatial = nn.Sequential(nn.Conv2d(bands, kernels, 1), *(_ResidualBlock(kernels, spatial_conv)
                                                                     for _ in range(3)))
        self.spectral = nn.Sequential(nn.Conv2d(1, kernels, (d, 1), stride=(2, 1)),
                                      *(_ResidualBlock(kernels, spectral_conv) for _ in range(3)),
                                      nn.Conv2d(kernels, kernels, (remaining, 1)))
        self.spatial_conv = nn.Conv2d(kernels, kernels, 3, padding=1)
        self.spectral_conv = nn.Conv2d(kernels, kernels, 3, padding=1)
        self.spatial_attention = CoordinateAttention(kernels)
        self.spectral_attention = CoordinateAttention(kernels)
        self.fusion = ChannelFusion(dim)
        self.positions = nn.Parameter(torch.empty(1, patch * patch + 1, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.embedding_drop = nn.Dropout(dropout)
        self.encoder = nn.Sequential(*(_EncoderLayer(dim, mlp_dim) for _ in range(depth)))
        self.head = nn.Linear(dim, classes)
        self.num_features = dim
        nn.init.normal_(self.positions, std=0.02)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.normal_(self.head.bias, std=1e-6)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> (B, 2 kernels): the class token after the encoder."""
        if x.shape[-2:] != (self.patch, self.patch):
            raise HsiError(f"els2t was built for {self.patch}×{self.patch} windows, got {x.shape[-2]}×{x.shape[-1]}",
                           hint="its position embeddings fix the window: train and predict with one --patch")
        spatial = self.spatial(x)
        spectral = self.spectral(x.flatten(2).unsqueeze(1)).unflatten(3, x.shape[2:]).squeeze(2)
        joint = spatial + spectral
        y_spatial, y_spectral = self.spatial_conv(joint), self.spectral_conv(joint)
        spatial = spatial + y_spatial + self.spatial_attention(y_spatial)
        spectral = spectral + y_spectral + self.spectral_attention(y_spectral)
        fused = self.fusion(torch.cat([spatial, spectral], 1)).flatten(2).transpose(1, 2)  # (B, P², 2k)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), fused], 1) + self.positions
        return self.encoder(self.embedding_drop(tokens))[:, 0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model(
    "els2t",
    arguments=ELS2T,
    kind=PATCH,
    paper="ELS2T (Zhang et al., IEEE TGRS 2023)",
    defaults=TrainDefaults(
        patch=9,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=64,
        eval_batch_size=256,
        epochs=100,
    ),
)
def els2t(bands: int, classes: int, patch: int = 9, **args) -> nn.Module:
    """Two-branch CNN, coordinate attention, linear-attention encoder; 11.8 K parameters at 103 bands, 9 classes."""
    return ELS2T(bands, classes, patch=patch, **args)
