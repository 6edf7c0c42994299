"""SpectralFormer: a transformer over band groups (Hong et al., IEEE TGRS 60, 2022).

Paper §III:
- Group-wise spectral embedding (GSE): token t is the linear embedding of the n
  neighbouring bands t-n//2 … t+n//2 (of the centre pixel, pixel-wise, or of the whole P×P
  patch, patch-wise), so each token sees local spectral detail. As in the authors' code the
  band neighbourhood wraps around the ends of the spectrum.
- A learnable class token, learnable position embeddings and a pre-norm transformer encoder
  (multi-head self-attention and a GELU MLP, each with a residual connection).
- Cross-layer adaptive fusion (CAF): from the third layer on, the input of layer l is
  fused with the input of layer l-2 by a learnable 1×2 convolution whose channels are the
  tokens (as in the authors' code), a soft skip connection across layers. That convolution
  is a learned token mixing W₀·z_l + W₁·z_(l-2) + b; it runs here as one 1×1 Conv1d over the
  concatenated tokens (same parameters, about twice as fast on CPU).
- The classifier is LayerNorm then a linear layer on the class token.

Paper §IV settings (the defaults): embedding 64, 5 layers, 4 heads, MLP width 8, dropout 0.1,
3 neighbouring bands per group, 7×7 patches for the patch-wise model (its best configuration).
`input_mode="pixel"` gives the pixel-wise model (the patch's centre spectrum);
`fusion="none"` removes CAF and `group_size=1` removes GSE, the paper's ablations.

Protocol (§IV and the authors' code): Adam, learning rate 5e-4, weight decay 5e-3 (L2, as
torch Adam applies it), batch 64, 300 epochs, learning rate ×0.9 every epochs/10 epochs
(schedule "step").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsicli.errors import HsiError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model


class GroupwiseSpectralEmbedding(nn.Module):
    """GSE: (B, T, P, P) -> (B, T, dim); token t embeds bands t-n//2 … t+n//2 (cyclic)."""

    def __init__(self, bands: int, group_size: int, pixels: int, dim: int) -> None:
        super().__init__()
        offsets = torch.arange(group_size) - group_size // 2
        # index[t, j] = band of the j-th member of token t's group; one gather per batch.
        self.register_buffer(
            "index", (torch.arange(bands)[:, None] + offsets[None, :]) % bands, persistent=False
        )
        self.proj = nn.Linear(group_size * pixels, dim)

    def group(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, S) spectra of S pixels -> (B, T, n·S) band groups, group member major."""
        return x[:, self.index].flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.group(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # scale (d/heads)^-1/2
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class _EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SpectralFormer(TorchModel):
    """SpectralFormer for P×P patches of `bands` bands.

    Args:
        bands: input bands T; one token per band, plus the class token.
        classes: number of classes C.
        patch: patch side P of the patch-wise model (paper: 7); unused pixel-wise.
        input_mode: "patch" (GSE over the whole patch) or "pixel" (centre spectrum only).
        group_size: neighbouring bands per GSE group, odd (paper: 3; 1 disables GSE).
        dim: token embedding width (paper: 64).
        depth: transformer layers (paper: 5).
        heads: attention heads (paper: 4).
        mlp_dim: hidden width of each layer's MLP (paper: 8).
        dropout: dropout in attention output and MLP (paper: 0.1).
        emb_dropout: dropout on the embedded tokens (paper: 0.1).
        fusion: "caf" (cross-layer adaptive fusion) or "none" (plain transformer).
    """

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        patch: int = 7,
        input_mode: str = "patch",
        group_size: int = 3,
        dim: int = 64,
        depth: int = 5,
        heads: int = 4,
        mlp_dim: int = 8,
        dropout: float = 0.1,
        emb_dropout: float = 0.1,
        fusion: str = "caf",
    ) -> None:
        super().__init__()
        if input_mode not in ("patch", "pixel"):
            raise HsiError(f"spectralformer: input_mode must be 'patch' or 'pixel'; got {input_mode!r}",
                           hint='e.g. {"input_mode": "pixel"} for the pixel-wise model')
        if fusion not in ("caf", "none"):
            raise HsiError(f"spectralformer: fusion must be 'caf' or 'none'; got {fusion!r}",
                           hint='"caf" is the paper\'s cross-layer adaptive fusion')
        if group_size < 1 or group_size % 2 == 0 or group_size > bands:
            raise HsiError(
                f"spectralformer: group_size must be odd and at most the {bands} bands; got {group_size}",
                hint="the paper groups 3 neighbouring bands",
            )
        if dim % heads:
            raise HsiError(f"spectralformer: dim {dim} is not divisible by heads {heads}",
                           hint="the paper uses dim 64 with 4 heads")
        self.input_mode = input_mode
        pixels = patch * patch if input_mode == "patch" else 1
        self.embed = GroupwiseSpectralEmbedding(bands, group_size, pixels, dim)
        # torch.randn initialisation of the class token and positions, as in the authors' code.
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, bands + 1, dim))
        self.emb_drop = nn.Dropout(emb_dropout)
        self.layers = nn.ModuleList(_EncoderLayer(dim, heads, mlp_dim, dropout) for _ in range(depth))
        # CAF for layers 2 … depth-1: the T+1 tokens of (layer input, input of layer l-2) mixed
        # into T+1 tokens.
        n_fuse = max(depth - 2, 0) if fusion == "caf" else 0
        self.fuse = nn.ModuleList(nn.Conv1d(2 * (bands + 1), bands + 1, 1) for _ in range(n_fuse))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.num_features = dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> (B, dim) normalised class token."""
        if self.input_mode == "pixel":
            c = x.shape[-1] // 2
            spectra = x[:, :, c, c].unsqueeze(-1)  # (B, T, 1)
        else:
            spectra = x.flatten(2)  # (B, T, P·P)
        tokens = self.embed(spectra)
        z = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        z = self.emb_drop(z + self.pos_embed)
        inputs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            inputs.append(z)
            if i >= 2 and self.fuse:
                z = self.fuse[i - 2](torch.cat([z, inputs[i - 2]], dim=1))
            z = layer(z)
        return self.norm(z[:, 0])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model(
    "spectralformer",
    arguments=SpectralFormer,
    kind=PATCH,
    paper="SpectralFormer (Hong et al., IEEE TGRS 2022)",
    activations_per_input=3,
    activations_per_pixel=10,
    defaults=TrainDefaults(
        patch=7,
        optimizer="adam",
        lr=5e-4,
        weight_decay=5e-3,
        batch_size=64,
        eval_batch_size=256,
        epochs=300,
        schedule="step",
    ),
)
def spectralformer(bands: int, classes: int, patch: int = 7, **args) -> nn.Module:
    """Transformer over band groups with cross-layer fusion; patch-wise 7×7 by default."""
    return SpectralFormer(bands, classes, patch=patch, **args)
