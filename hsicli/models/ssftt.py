"""SSFTT: spectral-spatial feature tokenization transformer (Sun, Zhao, Zheng, Wu, IEEE TGRS 60,
2022, art. 5522214). Architecture read from the paper and the authors' code (zgr6010/HSI_SSFTT,
cls_SSFTT_IP/SSFTTnet.py); this is our implementation.

Input (B, T, P, P), bands first (the paper: 13×13 windows of 30 PCA components, whitened).
1. Shallow spectral-spatial features: a valid 3×3×3 3-D convolution with 8 kernels over
   (bands, rows, cols) -> (8, T-2, P-2, P-2); BN + ReLU. Its channel and spectral axes merge
   into 8 (T-2) maps, then a valid 3×3 2-D convolution with 64 kernels; BN + ReLU
   -> (64, P-4, P-4), i.e. N = (P-4)² pixel vectors of 64 values.
2. Gaussian-weighted feature tokenizer: attention A = softmax over the N pixels of X W_a
   (W_a: 64 × L, L = 4 tokens), values X W_v (W_v: 64 × 64); tokens T = Aᵀ (X W_v), L × 64.
3. A learnable class token joins the L tokens, plus learnable position embeddings (L + 1).
4. One pre-norm transformer encoder layer: 8-head self-attention (the authors scale the dot
   products by 1/√64, the token width, not by 1/√8 per head; kept, it is part of the
   trained behaviour) and an MLP 64 -> 8 -> 64 with GELU; dropout 0.1 throughout.
5. The class token after the encoder (`forward_features`, 64 values) -> Linear -> logits.

The authors' code fixes the 2-D convolution's input at 8 × 28 maps (30 PCA bands); here it
follows the band count, so any T >= 3 works. Nothing depends on P beyond P >= 7.

Size at the paper's setting (30 bands, 16 classes; any window): 153,224 parameters, the
authors' code's count (reasoned layer by layer in tests/test_baseline_models.py). MACs for
13×13 windows: 11,647,264 (the 2-D convolution is 90 % of them).

Protocol (authors' code, IP_train.py): PCA to 30 components, 13×13 windows, Adam learning
rate 1e-3 without weight decay, batch 64, 100 epochs, cross-entropy; no scheduler, no early
stopping. The paper trains on 10 % of Indian Pines (OA 98.62 %).
"""

from __future__ import annotations

import torch
from torch import nn

from hsicli.errors import HsiError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim**-0.5  # the authors' scaling: token width, not head width
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unflatten(2, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        attended = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1) @ v  # (B, h, n, d)
        x = x + self.drop(self.proj(attended.transpose(1, 2).flatten(2)))
        return x + self.mlp(self.norm2(x))


class SSFTT(TorchModel):
    """SSFTT for P×P windows of `bands` bands.

    Args:
        bands: input bands T, at least 3 (the paper: 30 PCA components).
        classes: number of classes C.
        conv3d_kernels: kernels of the 3×3×3 convolution (paper: 8).
        conv2d_kernels: kernels of the 3×3 convolution, the token width (paper: 64).
        tokens: semantic tokens L from the tokenizer (paper: 4).
        depth: transformer encoder layers (paper: 1).
        heads: attention heads (paper: 8).
        mlp_dim: hidden width of the encoder's MLP (paper: 8).
        dropout: dropout in the encoder and after the embeddings (paper: 0.1).
    """

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        conv3d_kernels: int = 8,
        conv2d_kernels: int = 64,
        tokens: int = 4,
        depth: int = 1,
        heads: int = 8,
        mlp_dim: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if bands < 3:
            raise HsiError(f"ssftt needs at least 3 bands (its 3×3×3 convolution); got {bands}",
                           hint="prepare the store with more PCA components (the paper uses 30)")
        if conv2d_kernels % heads:
            raise HsiError(f"ssftt: conv2d_kernels {conv2d_kernels} must split into {heads} heads",
                           hint='e.g. --model-args \'{"conv2d_kernels": 64, "heads": 8}\'')
        dim = conv2d_kernels
        self.conv3d = nn.Sequential(nn.Conv3d(1, conv3d_kernels, 3), nn.BatchNorm3d(conv3d_kernels), nn.ReLU())
        self.conv2d = nn.Sequential(nn.Conv2d(conv3d_kernels * (bands - 2), dim, 3), nn.BatchNorm2d(dim), nn.ReLU())
        self.token_attention = nn.Parameter(torch.empty(dim, tokens))  # W_a
        self.token_values = nn.Parameter(torch.empty(dim, dim))  # W_v
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.positions = nn.Parameter(torch.empty(1, tokens + 1, dim))
        self.embedding_drop = nn.Dropout(dropout)
        self.encoder = nn.Sequential(*(_EncoderLayer(dim, heads, mlp_dim, dropout) for _ in range(depth)))
        self.head = nn.Linear(dim, classes)
        self.num_features = dim
        # The authors' initialisation: He-normal convolution and linear kernels, Xavier-normal
        # tokenizer weights, N(0, 0.02) positions, Xavier-uniform classifier.
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
        # Xavier on the authors' (1, L, 64) and (1, 64, 64) shapes, whose fans count the leading 1.
        nn.init.xavier_normal_(self.token_attention.T.unsqueeze(0))
        nn.init.xavier_normal_(self.token_values.unsqueeze(0))
        nn.init.normal_(self.positions, std=0.02)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.normal_(self.head.bias, std=1e-6)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> (B, conv2d_kernels): the class token after the encoder."""
        # From 7×7 on the tokenizer sees at least 3×3 pixels (and batch norm more than one value
        # per channel, even in a batch of one).
        if min(x.shape[-2:]) < 7:
            raise HsiError(f"ssftt needs windows of at least 7×7, got {x.shape[-2]}×{x.shape[-1]}",
                           hint="train with --patch 13, the paper's size")
        z = self.conv3d(x.unsqueeze(1)).flatten(1, 2)  # (B, 8 (T-2), P-2, P-2)
        pixels = self.conv2d(z).flatten(2).transpose(1, 2)  # (B, N, 64)
        weights = torch.softmax(pixels @ self.token_attention, dim=1)  # over the N pixels
        tokens = weights.transpose(1, 2) @ (pixels @ self.token_values)  # (B, L, 64)
        cls = self.cls_token.expand(len(x), -1, -1)
        sequence = self.embedding_drop(torch.cat([cls, tokens], 1) + self.positions)
        return self.encoder(sequence)[:, 0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model(
    "ssftt",
    arguments=SSFTT,
    kind=PATCH,
    paper="SSFTT (Sun et al., IEEE TGRS 2022)",
    defaults=TrainDefaults(
        patch=13,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=64,
        eval_batch_size=256,
        epochs=100,
    ),
)
def ssftt(bands: int, classes: int, **args) -> nn.Module:
    """3-D/2-D conv, Gaussian tokenizer, 1-layer transformer; 153 K parameters at 30 bands, 16 classes."""
    return SSFTT(bands, classes, **args)
