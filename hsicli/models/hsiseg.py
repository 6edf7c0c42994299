"""HSIseg (Zhou et al.): HSI classification as segmentation of large windows.

Paper: ../shared/papers/002_e54cedfdb6e864cf.txt, §3.3 (single branch), §3.4 (auxiliary branch),
§4.3.3 and Table 3 (settings). Built from the paper, not from the authors' public code, which
departs from it (146 M parameters, 49×49 resize, batch-quantile thresholds).

Input (B, T + K, S, S): the T reduced bands, then K auxiliary bands when `aux_bands` = K > 0.
Output (B, C, S, S) logits for every pixel of the window. In training mode the forward pass also
keeps what `training_loss` needs (DFS probabilities, the auxiliary reconstruction).

Levels: level 0 is the (optionally resized, §4.3.3) R×R window; level l = 1..L is a g_l×g_l map,
g = `grids` (12, 10, 8, 6, 4 in §4.3.3: "144 (12×12) → 100 (10×10) → …", so L = 5 stages).

- Stem: a point-wise conv T → d at level 0 ("initialising the dimensionality from C1 to d").
- Encoder stage l (eq. 6): E^l = Norm(SE(DSRT(ReLU(CNN(E↓))))) + E↓) where E↓ is E^{l−1}
  average-pooled to g_l, CNN = depth-wise 3×3 (local aggregation) then point-wise 1×1
  (positional embedding), Norm a LayerNorm over channels. DSRT works on the g_l×g_l tokens.
- Decoder stage l = L..1 (eqs. 17-20): CFI(E^{l−1}, D^l) (eqs. 7-16), D interpolated to E's size,
  E through a point-wise conv, both concatenated (2d) and merged back to d by a point-wise conv
  — the merge is ours: eq. 20's residual + D̂ would otherwise double the width at every stage —
  then the eq. 6 stage. The level-0 decoder stage runs at R×R; its DSRT (and CFI) pools the map to
  g_1 tokens and adds the interpolated change back, as DSRT's "patchifying" (§4.3.3) implies.
- DSRT block (eqs. 28-38): pre-norm; four region tokens per query from window attention over the
  closed quadrants through the query (R1 top-left … R4 bottom-right, `quadrant_masks`), a region
  aggregator (attention of each query over its four region tokens), then an MLP. The window
  attention of eq. 30 is one ViT layer whose only output read is the region token, so only the
  region token's query row is needed: a masked softmax over the quadrant. Its sums over closed
  quadrants are 2-D cumulative sums (`quadrant_sums`), exact and O(N) per query grid instead of
  O(N²) per query. Tokens get a learnable position embedding and a point-wise ("1-D CNN")
  embedding before attention (eq. 30); each region index g has its own learnable region token.
- DFS (eqs. 21-27): O^L = Up(Norm(CNN(Pool(E^L)))) + E^L, then the same step to every larger
  level (Pool: PSP-style adaptive average pooling to half the side; CNN: point-wise conv). At each
  level a point-wise classifier (shared by all scales, so all of DFS is trained by the Dice loss)
  gives class probabilities Õ^l (eq. 22), their per-pixel maximum P^l (eq. 23), T1 = max(τ1,
  μ1 + σ1) per window (eqs. 24-25, `adaptive_threshold`) and the mask M^l = [P^l ≥ T1] (eq. 26).
  The mask amplifies the decoder feature: D^l ← D^l ⊙ (1 + M^l). A bare D ⊙ M, as printed, would
  zero ≈ 84 % of the positions whenever T1 = μ1 + σ1 and cut the decoder off from the encoder;
  "enhancing salient regions" is what the paper says the mask is for.
- Losses: cross-entropy of the logits at the training pixels (every other pixel is ignored) and
  the Dice loss of the finest DFS scale's soft probabilities Õ^0 at the training pixels (the
  thresholded mask has no gradient); with the auxiliary branch, MSE and SSIM (1 − SSIM) between the
  reconstruction and the auxiliary input (eq. 45). The weights α, β, γ, δ = softmax(θ) (eq. 46),
  θ learnable. Minimising Σ w_i L_i over θ drives the weight onto the smallest loss (with a
  KL(w ‖ uniform) guard, to w ∝ exp(−L_i / λ)): the auxiliary SSIM term, the smallest, would rank
  first and the classification loss last, the reverse of the paper's Fig. 14 (α highest, then γ
  and β, δ lowest). Its ranking is what weights that *ascend* the weighted loss reach: θ maximises
  Σ w_i L_i − λ KL(w ‖ uniform) (λ = the mean loss, detached) while the network minimises Σ w_i L_i,
  so w ∝ exp(L_i / λ): the loss furthest from solved gets the most weight, no weight collapses
  (λ scales with the losses), and the reported loss is Σ w_i L_i.
- CFI (eqs. 7-16): the high-resolution map E is max-pooled ("sharpening"), the low-resolution map
  D average-pooled ("smoothing"), both to the same n×n tokens, n = the grid of the lower
  resolution level; Q, K, V by point-wise convs d → 3d; A_e = softmax(Q_e K_dᵀ/√d), Ē = A_e V_e,
  A_d = softmax(Q_d K_eᵀ/√d), D̄ = A_d V_d, as eqs. 11-14 print them (the shared token count makes
  A_e V_e defined); Ē and D̄ are interpolated back to each input's size for the residuals
  Ê = GELU(Ē) + E, D̂ = GELU(D̄) + D (eqs. 15-16).
- Auxiliary branch (§3.4, `sources="both"`): a second U-shaped branch on the K auxiliary bands
  with the same stages, no DFS and a point-wise reconstruction head. Before every encoder stage
  Ê_hsi, Ê_aux = CFI(E_hsi, E_aux) and each branch encodes Ê + E (eqs. 39-41); before every
  decoder stage the branches interact likewise (eqs. 42-44), by CFI or, for Fig. 23's ablation,
  `fusion` = "sum" (each branch gets the other's map), "concat" (a point-wise conv of both) or
  "none".

Arguments (`--model-args`): `dim`, `heads`, `grids`, `depth` (DSRT blocks per stage: Table 3's
"number of layers in encoder and decoder", since §4.3.3 fixes the stages at five), `mixer`
("dsrt" or "vit": Table 11's plain ViT blocks over the same tokens), `skip_fusion` ("cfi", "sum",
"concat": CFI or the conventional fusions it replaces, §3.3), `fusion` (branch interaction in the
decoder, Fig. 23), `resize` (R, or null to keep the window), `tau1`, `dropout`, `mlp_ratio`,
`aux_bands` (K), `sources` ("hsi", "aux", "both"; Table 10; default "both" when aux_bands > 0).

Registered names: `hsiseg` is the default for an unknown scene and a CPU: it keeps the paper's
smallest window (33 px, IP/AG) and τ1 = 0.8 (IP/MG), but not the 144×144 resize with five stages
at d = 64 and four DSRT blocks a stage, which costs about 50× the multiply-accumulates per window
(977 M vs 20 M for 30 bands) and 20× the parameters (3.36 M vs 0.17 M); at the native 33 px it
uses three stages (8 → 6 → 4 tokens a side, about 4 px per token in the first), d = 32, two
heads, one DSRT block per stage — an epoch of SalinasA's 60 training windows takes about a
second on one CPU core. `hsiseg-ip`, `-pu`, `-mg`, `-ag`, `-hu` are §4.3.3 + Table 3
per dataset (window, d, layers, heads, τ1, epochs, batch, lr, dropout); their PCA bands, τ2 and
pseudo-label iterations are in `PAPER_SETTINGS` for the pipeline (examples/hsiseg.mk).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsicli.models.thresholds import adaptive_threshold
from hsicli.errors import UsageError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import IGNORE, SEGMENTER
from hsicli.models.registry import TrainDefaults, keyword_defaults, register_model

_PAPER_GRIDS = (12, 10, 8, 6, 4)
_MIXERS = ("dsrt", "vit")
_FUSIONS = ("cfi", "sum", "concat")
_SOURCES = ("hsi", "aux", "both")


# -- regions (eq. 28) ---------------------------------------------------------------------------


def quadrant_masks(height: int, width: int) -> torch.Tensor:
    """(4, H, W, H, W) bool: [g, h, w, i, j] is True when token (i, j) lies in region g of query (h, w).

    The closed quadrants through the query: R1 rows ≤ h, cols ≤ w; R2 rows ≤ h, cols ≥ w;
    R3 rows ≥ h, cols ≤ w; R4 rows ≥ h, cols ≥ w (eq. 28, its index typos corrected). The explicit
    definition that `quadrant_sums` computes without materialising it.
    """
    rows = torch.arange(height)
    cols = torch.arange(width)
    up = (rows[None, :] <= rows[:, None])[:, None, :, None]  # [h, ·, i, ·]
    down = (rows[None, :] >= rows[:, None])[:, None, :, None]
    left = (cols[None, :] <= cols[:, None])[None, :, None, :]  # [·, w, ·, j]
    right = (cols[None, :] >= cols[:, None])[None, :, None, :]
    return torch.stack([up & left, up & right, down & left, down & right])


def quadrant_sums(values: torch.Tensor, region_dim: int) -> torch.Tensor:
    """Sums over the four closed quadrants through every position, by 2-D cumulative sums.

    `values` has a region axis of size 4 at `region_dim` (negative), followed by the grid's rows
    and columns; region g of the output at (h, w) sums region g of the input over quadrant g of
    (h, w), as `quadrant_masks` defines it (top regions: prefix sums over rows, bottom: suffix
    sums; left: prefix over columns, right: suffix).
    """
    # Negative dims after the region axis keep their index once the region axis is selected away.
    rows, cols = region_dim + 1, region_dim + 2
    out = []
    for region in range(4):
        part = values.select(region_dim, region)
        flips = [d for d, flipped in ((rows, region >= 2), (cols, region % 2 == 1)) if flipped]
        part = part.flip(flips) if flips else part
        part = part.cumsum(rows).cumsum(cols)
        out.append(part.flip(flips) if flips else part)
    return torch.stack(out, dim=region_dim)


# -- building blocks ----------------------------------------------------------------------------


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, pixel by pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """SE channel attention (Hu et al., 2018), reduction 4."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(dim, max(4, dim // 4))
        self.expand = nn.Linear(max(4, dim // 4), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3))))))
        return x * scale[:, :, None, None]


def _mlp(dim: int, ratio: float, dropout: float) -> nn.Sequential:
    hidden = max(1, int(dim * ratio))
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))


class RegionTokens(nn.Module):
    """Eqs. 29-30: one token per query and region g, from window attention over the region."""

    def __init__(self, dim: int, grid: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.pos = nn.Parameter(torch.zeros(grid * grid, dim))
        self.cls = nn.Parameter(torch.zeros(4, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.embed = nn.Linear(dim, dim)  # the point-wise "1-D CNN" of eq. 30
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, mlp_ratio, dropout)

    def forward(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        """(B, N, d) tokens of a grid×grid map → (B, N, 4, d) region tokens of every query."""
        b, n, d = tokens.shape
        h, dh = self.heads, d // self.heads
        keys, values = self.key_value(self.norm(self.embed(tokens + self.pos))).chunk(2, -1)
        cls = self.embed(self.cls)  # (4, d)
        cls_norm = self.norm(cls)
        q = self.query(cls_norm).view(4, h, dh)
        cls_k, cls_v = self.key_value(cls_norm).view(4, 2, h, dh).unbind(1)
        # Cumulative sums need at least float32 (bf16 under --amp would lose the small terms).
        acc = torch.promote_types(keys.dtype, torch.float32)
        keys = keys.view(b, n, h, dh).to(acc)
        values = values.view(b, grid, grid, h, dh).permute(0, 3, 1, 2, 4).to(acc)  # (B, h, g, g, dh)
        scale = 1.0 / math.sqrt(dh)
        scores = torch.einsum("bnhe,ghe->bhgn", keys, q.to(acc)) * scale  # (B, h, 4, N)
        cls_scores = (q * cls_k).sum(-1).to(acc).T * scale  # (h, 4): each region token attends to itself too
        # One shift per (sample, head, region) keeps exp() in range; the quadrant sums then need
        # no per-query maximum (a softmax is invariant to the shift).
        shift = torch.maximum(scores.amax(-1), cls_scores).detach()
        weights = torch.exp(scores - shift[..., None]).view(b, h, 4, grid, grid)
        cls_weight = torch.exp(cls_scores - shift)  # (B, h, 4)
        numerator = quadrant_sums(weights[..., None] * values[:, :, None], region_dim=-4)  # (B, h, 4, g, g, dh)
        numerator = numerator + (cls_weight[..., None] * cls_v.to(acc).permute(1, 0, 2))[:, :, :, None, None]
        denominator = quadrant_sums(weights, region_dim=-3) + cls_weight[..., None, None]
        attended = (numerator / denominator[..., None].clamp_min(1e-30)).to(tokens.dtype)
        attended = attended.permute(0, 3, 4, 2, 1, 5).reshape(b, n, 4, d)  # heads merged
        region = cls + self.drop(self.out(attended))
        return region + self.mlp(self.mlp_norm(region))


class DSRTBlock(nn.Module):
    """Dynamic shifted regional transformer block (§3.3.5, eqs. 28-38), pre-norm."""

    def __init__(self, dim: int, grid: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.grid, self.heads = grid, heads
        self.norm = nn.LayerNorm(dim)
        self.regions = RegionTokens(dim, grid, heads, mlp_ratio, dropout)
        self.query = nn.Linear(dim, dim)  # eq. 33
        self.key = nn.Linear(dim, dim)  # eq. 34
        self.value = nn.Linear(dim, dim)  # eq. 35
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h, dh = self.heads, d // self.heads
        z = self.norm(x)
        regions = self.regions(z, self.grid)  # (B, N, 4, d)
        q = self.query(z).view(b, n, h, dh)
        k = self.key(regions).view(b, n, 4, h, dh)
        v = self.value(regions).view(b, n, 4, h, dh)
        attention = torch.softmax(torch.einsum("bnhe,bnrhe->bnhr", q, k) / math.sqrt(dh), dim=-1)  # eqs. 36-37
        aggregated = torch.einsum("bnhr,bnrhe->bnhe", attention, v).reshape(b, n, d)  # eq. 38
        x = x + self.drop(self.out(aggregated))
        return x + self.mlp(self.mlp_norm(x))


class ViTBlock(nn.Module):
    """Plain pre-norm ViT block over the same tokens (Table 11's "original ViT")."""

    def __init__(self, dim: int, grid: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(grid * grid, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x) + self.pos
        x = x + self.attention(z, z, z, need_weights=False)[0]
        return x + self.mlp(self.mlp_norm(x))


class Stage(nn.Module):
    """Eqs. 6 / 20: Norm(SE(mixer(ReLU(CNN(x)))) + x); the mixer sees a grid×grid token map."""

    def __init__(self, dim: int, grid: int, depth: int, heads: int, mixer: str, mlp_ratio: float,
                 dropout: float) -> None:
        super().__init__()
        self.grid = grid
        self.local = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, dim, 1))
        block = DSRTBlock if mixer == "dsrt" else ViTBlock
        self.blocks = nn.Sequential(*(block(dim, grid, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.se = SqueezeExcite(dim)
        self.norm = ChannelNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.local(x))
        b, d, height, width = y.shape
        g = self.grid
        native = (height, width) == (g, g)
        tokens = (y if native else F.adaptive_avg_pool2d(y, g)).flatten(2).transpose(1, 2)
        change = (self.blocks(tokens) - tokens).transpose(1, 2).reshape(b, d, g, g)
        if not native:  # patchified: the context the mixer adds, brought back to the map's size
            change = F.interpolate(change, size=(height, width), mode="bilinear", align_corners=False)
        return self.norm(self.se(y + change) + x)


class CFI(nn.Module):
    """Cross feature interaction (eqs. 7-16) between a high- and a low-resolution map."""

    def __init__(self, dim: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.qkv_high = nn.Conv2d(dim, 3 * dim, 1)
        self.qkv_low = nn.Conv2d(dim, 3 * dim, 1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.side
        sharp = F.adaptive_max_pool2d(high, n)  # eq. 8
        smooth = F.adaptive_avg_pool2d(low, n)  # eq. 7
        q_e, k_e, v_e = self.qkv_high(sharp).flatten(2).transpose(1, 2).chunk(3, -1)  # eq. 9
        q_d, k_d, v_d = self.qkv_low(smooth).flatten(2).transpose(1, 2).chunk(3, -1)  # eq. 10
        e_bar = F.scaled_dot_product_attention(q_e, k_d, v_e)  # eqs. 11, 13
        d_bar = F.scaled_dot_product_attention(q_d, k_e, v_d)  # eqs. 12, 14
        return self._back(e_bar, high), self._back(d_bar, low)

    def _back(self, tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Eqs. 15-16: GELU of the interacted tokens at the input's size, plus the input."""
        n = self.side
        mapped = tokens.transpose(1, 2).reshape(like.shape[0], like.shape[1], n, n)
        if mapped.shape[-2:] != like.shape[-2:]:
            mapped = F.interpolate(mapped, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return F.gelu(mapped) + like


class DecoderStage(nn.Module):
    """Eqs. 17-20: fuse the low-resolution decoder map with the skip map, then an eq. 6 stage."""

    def __init__(self, dim: int, low_grid: int, grid: int, fusion: str, depth: int, heads: int, mixer: str,
                 mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.cfi = CFI(dim, low_grid) if fusion == "cfi" else None
        self.skip = nn.Conv2d(dim, dim, 1)  # eq. 18
        self.merge = nn.Conv2d(2 * dim, dim, 1) if fusion != "sum" else None
        self.stage = Stage(dim, grid, depth, heads, mixer, mlp_ratio, dropout)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.cfi is not None:
            skip, low = self.cfi(skip, low)
        low = F.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=False)  # eq. 17
        skip = self.skip(skip)
        fused = low + skip if self.merge is None else self.merge(torch.cat([low, skip], 1))  # eq. 19
        return self.stage(fused)


class Branch(nn.Module):
    """One U-shaped branch: stem, encoder stages 1..L, decoder stages L..1 (no head)."""

    def __init__(self, in_channels: int, dim: int, grids: tuple[int, ...], skip_fusion: str, depth: int,
                 heads: int, mixer: str, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.grids = grids
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dim, 1), ChannelNorm(dim))
        self.encoders = nn.ModuleList(Stage(dim, g, depth, heads, mixer, mlp_ratio, dropout) for g in grids)
        # decoders[l - 1] takes level l to level l - 1; level 0 is patchified at g_1.
        levels = (grids[0], *grids)
        self.decoders = nn.ModuleList(
            DecoderStage(dim, levels[l], levels[l - 1], skip_fusion, depth, heads, mixer, mlp_ratio, dropout)
            for l in range(1, len(grids) + 1)
        )

    def encode(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """Encoder stage `level` (1..L) on the previous level's map."""
        g = self.grids[level - 1]
        return self.encoders[level - 1](F.adaptive_avg_pool2d(x, g))


class BranchInteraction(nn.Module):
    """Eqs. 39-44: what each branch adds to its own map before the next stage."""

    def __init__(self, dim: int, side: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.cfi = CFI(dim, side) if mode == "cfi" else None
        self.merge = nn.ModuleList(nn.Conv2d(2 * dim, dim, 1) for _ in range(2)) if mode == "concat" else None

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "cfi":
            a_hat, b_hat = self.cfi(a, b)
            return a_hat + a, b_hat + b
        if self.mode == "sum":
            return a + b, b + a
        if self.mode == "concat":
            return a + self.merge[0](torch.cat([a, b], 1)), b + self.merge[1](torch.cat([b, a], 1))
        return a, b


class DFS(nn.Module):
    """Discriminative feature selection (§3.3.4, eqs. 21-27) from the bottleneck to level 0."""

    def __init__(self, dim: int, classes: int, levels: int, tau: float) -> None:
        super().__init__()
        self.tau = tau
        self.refine = nn.ModuleList(nn.Sequential(nn.Conv2d(dim, dim, 1), ChannelNorm(dim)) for _ in range(levels))
        self.classify = nn.Conv2d(dim, classes, 1)

    def forward(self, bottleneck: torch.Tensor,
                sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(probabilities Õ^l, mask M^l) for the levels whose map sizes are `sizes` (L first)."""
        o = bottleneck
        out = []
        for refine, size in zip(self.refine, sizes):
            pooled = F.adaptive_avg_pool2d(o, max(1, min(o.shape[-2:]) // 2))
            o = _resize(refine(pooled), size) + _resize(o, size)  # eqs. 21, 27
            probabilities = torch.softmax(self.classify(o).float(), dim=1)  # eq. 22
            confidence = probabilities.amax(1, keepdim=True)  # eq. 23
            threshold = adaptive_threshold(confidence, self.tau, axis=(2, 3))  # eqs. 24-25
            out.append((probabilities, (confidence >= threshold).to(o.dtype).detach()))  # eq. 26
        return out


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LossWeights(nn.Module):
    """Eqs. 45-46: Σ w_i L_i with w = softmax(θ); θ ascends Σ w_i L_i − λ KL(w ‖ uniform), λ = mean loss."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.logits = nn.Parameter(torch.zeros(len(names)))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        log_weights = torch.log_softmax(self.logits, 0)
        weights = log_weights.exp()
        divergence = (weights * log_weights).sum() + math.log(len(self.names))
        fixed = losses.detach()
        # θ's objective enters with its gradient reversed and its value cancelled: the network
        # descends Σ w L at the current weights, θ ascends Σ w L − λ KL.
        adversary = (weights * fixed).sum() - fixed.mean() * divergence
        return (weights.detach() * losses).sum() - adversary + adversary.detach()

    def values(self) -> dict[str, float]:
        weights = torch.softmax(self.logits.detach().float(), 0)
        return {name: round(float(w), 6) for name, w in zip(self.names, weights)}


def soft_dice(probabilities: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Multi-class soft Dice loss (mean over classes) at the pixels whose target is not IGNORE."""
    valid = (target != IGNORE).unsqueeze(1).to(probabilities.dtype)
    onehot = F.one_hot(target.clamp_min(0), probabilities.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    p, y = probabilities * valid, onehot * valid
    intersection = (p * y).sum((0, 2, 3))
    total = p.sum((0, 2, 3)) + y.sum((0, 2, 3))
    return (1 - (2 * intersection + smooth) / (total + smooth)).mean()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al., 2004) per channel with a Gaussian window; data range from `y`."""
    channels = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    ramp = torch.arange(window, dtype=x.dtype, device=x.device) - (window - 1) / 2
    g = torch.exp(-(ramp**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    data_range = (y.amax() - y.amin()).clamp_min(1e-6)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.mean()


class HSIseg(TorchModel):
    """HSIseg: U-shaped segmenter with DSRT, CFI and DFS, optionally with an auxiliary branch."""

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        dim: int = 32,
        heads: int = 2,
        grids: tuple[int, ...] | list[int] = (8, 6, 4),
        depth: int = 1,
        mixer: str = "dsrt",
        skip_fusion: str = "cfi",
        fusion: str = "cfi",
        resize: int | None = None,
        tau1: float = 0.8,
        dropout: float = 0.1,
        mlp_ratio: float = 2.0,
        aux_bands: int = 0,
        sources: str | None = None,
    ) -> None:
        super().__init__()
        grids = tuple(int(g) for g in grids)
        sources = sources or ("both" if aux_bands else "hsi")
        _check(bands, classes, dim, heads, grids, depth, mixer, skip_fusion, fusion, resize, tau1, dropout,
               aux_bands, sources)
        self.bands, self.classes, self.aux_bands, self.sources = bands, classes, aux_bands, sources
        self.input_channels = bands + aux_bands
        self.resize = resize
        self.grids = grids
        common = dict(dim=dim, grids=grids, skip_fusion=skip_fusion, depth=depth, heads=heads, mixer=mixer,
                      mlp_ratio=mlp_ratio, dropout=dropout)
        # The classifying branch reads the HSI, or the auxiliary bands alone (Table 10).
        self.main = Branch(bands if sources != "aux" else aux_bands, **common)
        self.dfs = DFS(dim, classes, len(grids) + 1, tau1)
        self.head = nn.Conv2d(dim, classes, 1)
        if sources == "both":
            self.aux = Branch(aux_bands, **common)
            self.reconstruct = nn.Conv2d(dim, aux_bands, 1)
            sides = (grids[0], *grids)  # the token grid of each level
            self.encoder_links = nn.ModuleList(BranchInteraction(dim, sides[l], "cfi") for l in range(len(grids)))
            self.decoder_links = nn.ModuleList(
                BranchInteraction(dim, sides[l], fusion) for l in range(1, len(grids) + 1)
            )
        names = ("alpha", "beta", "gamma", "delta") if sources == "both" else ("alpha", "beta")
        self.loss_weights = LossWeights(names)
        self._train_outputs: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        hsi, aux = x[:, : self.bands], x[:, self.bands : self.input_channels]
        both = self.sources == "both"
        main_input = aux if self.sources == "aux" else hsi
        aux_input = aux
        if self.resize:  # §4.3.3: windows resized to R×R, logits resized back
            main_input = _resize(main_input, (self.resize, self.resize))
            aux_input = _resize(aux, (self.resize, self.resize)) if both else aux
        levels = len(self.grids)
        encoded = [self.main.stem(main_input)]
        encoded_aux = [self.aux.stem(aux_input)] if both else []
        for level in range(1, levels + 1):
            a = encoded[-1]
            if both:
                a, b = self.encoder_links[level - 1](a, encoded_aux[-1])
                encoded_aux.append(self.aux.encode(level, b))
            encoded.append(self.main.encode(level, a))
        dfs = self.dfs(encoded[-1], [tuple(e.shape[-2:]) for e in reversed(encoded)])
        decoded, decoded_aux = encoded[-1], encoded_aux[-1] if both else None
        for level in range(levels, 0, -1):
            decoded = decoded * (1 + dfs[levels - level][1])  # DFS mask of this level
            if both:
                decoded, decoded_aux = self.decoder_links[level - 1](decoded, decoded_aux)
                decoded_aux = self.aux.decoders[level - 1](decoded_aux, encoded_aux[level - 1])
            decoded = self.main.decoders[level - 1](decoded, encoded[level - 1])
        decoded = decoded * (1 + dfs[-1][1])
        logits = _resize(self.head(decoded), size)
        if self.training:
            self._train_outputs = {"dice_probabilities": _resize(dfs[-1][0], size)}
            if both:
                self._train_outputs.update(reconstruction=_resize(self.reconstruct(decoded_aux), size), aux=aux)
        return logits

    def training_loss(self, logits: torch.Tensor, target: torch.Tensor,
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 45 for the batch whose forward pass just ran: CE + Dice (+ MSE + SSIM), weighted by
        the learned loss weights; the paper's terms weigh every class alike, so `class_weights`
        (--class-weights) is not used."""
        outputs = self._train_outputs
        losses = [F.cross_entropy(logits.float(), target, ignore_index=IGNORE),
                  soft_dice(outputs["dice_probabilities"].float(), target)]
        if self.sources == "both":
            reconstruction, aux = outputs["reconstruction"].float(), outputs["aux"].float()
            losses += [F.mse_loss(reconstruction, aux), 1 - ssim(reconstruction, aux)]
        return self.loss_weights(torch.stack(losses))

    def history_extras(self) -> dict[str, Any]:
        """Per-epoch record for the training history: the learned loss weights α, β (, γ, δ)."""
        return {"loss_weights": self.loss_weights.values()}


def _check(bands, classes, dim, heads, grids, depth, mixer, skip_fusion, fusion, resize, tau1, dropout,
           aux_bands, sources) -> None:
    problems = []
    if mixer not in _MIXERS:
        problems.append(f"mixer must be one of {', '.join(_MIXERS)}, got {mixer!r}")
    if skip_fusion not in _FUSIONS:
        problems.append(f"skip_fusion must be one of {', '.join(_FUSIONS)}, got {skip_fusion!r}")
    if fusion not in (*_FUSIONS, "none"):
        problems.append(f"fusion must be one of {', '.join(_FUSIONS)} or none, got {fusion!r}")
    if sources not in _SOURCES:
        problems.append(f"sources must be one of {', '.join(_SOURCES)}, got {sources!r}")
    elif sources != "hsi" and aux_bands < 1:
        problems.append(f"sources {sources!r} needs auxiliary bands (aux_bands >= 1), got aux_bands={aux_bands}")
    if dim < 1 or heads < 1 or dim % heads:
        problems.append(f"dim ({dim}) must be a positive multiple of heads ({heads})")
    if not grids or min(grids) < 1 or depth < 1:
        problems.append(f"grids must be positive sizes and depth >= 1, got grids={list(grids)}, depth={depth}")
    if resize is not None and resize < 1:
        problems.append(f"resize must be a positive size or null, got {resize}")
    if not 0.0 <= tau1 <= 1.0 or not 0.0 <= dropout < 1.0:
        problems.append(f"tau1 must lie in [0, 1] and dropout in [0, 1), got {tau1} and {dropout}")
    if bands < 1 or classes < 2 or aux_bands < 0:
        problems.append(f"need bands >= 1, classes >= 2, aux_bands >= 0; got {bands}, {classes}, {aux_bands}")
    if problems:
        raise UsageError("hsiseg: " + "; ".join(problems), hint="see `hsi models hsiseg` and hsicli/models/hsiseg.py")


# -- presets and registration -------------------------------------------------------------------

# Table 3 beyond the model: PCA bands, window, τ2 and pseudo-label iterations, per dataset.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "ip": {"scene": "indian_pines", "pca": 30, "window": 33, "tau2": 0.7, "iterations": 14},
    "pu": {"scene": "paviaU", "pca": 15, "window": 49, "tau2": 0.9, "iterations": 8},
    "mg": {"scene": "muufl", "pca": 30, "window": 41, "tau2": 0.7, "iterations": 10},
    "ag": {"scene": "augsburg", "pca": 15, "window": 33, "tau2": 0.7, "iterations": 10},
    "hu": {"scene": "houston2013", "pca": 30, "window": 57, "tau2": 0.8, "iterations": 8},
}

# §4.3.3 (144 resize, five stages) + Table 3 (d, layers, heads, τ1, dropout) per dataset.
PRESETS: dict[str, dict[str, Any]] = {
    "ip": {"dim": 64, "depth": 4, "heads": 2, "tau1": 0.8, "dropout": 0.1},
    "pu": {"dim": 32, "depth": 2, "heads": 2, "tau1": 0.9, "dropout": 0.15},
    "mg": {"dim": 64, "depth": 4, "heads": 4, "tau1": 0.8, "dropout": 0.1},
    "ag": {"dim": 64, "depth": 4, "heads": 4, "tau1": 0.6, "dropout": 0.1},
    "hu": {"dim": 32, "depth": 3, "heads": 2, "tau1": 0.9, "dropout": 0.15},
}

# Table 3: epochs, batch, learning rate (the optimiser is not stated; Adam).
_TABLE3_TRAINING = {
    "ip": (300, 32, 0.0015),
    "pu": (200, 64, 0.001),
    "mg": (300, 32, 0.0015),
    "ag": (300, 32, 0.0015),
    "hu": (200, 64, 0.001),
}
_TITLES = {"ip": "Indian Pines", "pu": "Pavia University", "mg": "MUUFL Gulfport", "ag": "Augsburg",
           "hu": "Houston 2013"}
_PAPER = "HSIseg (Zhou et al.)"


@register_model(
    "hsiseg",
    arguments=HSIseg,
    kind=SEGMENTER,
    paper=_PAPER,
    defaults=TrainDefaults(patch=33, optimizer="adam", lr=1e-3, batch_size=16, eval_batch_size=16, epochs=100),
    activations_per_input=1,
    activations_per_pixel=400,
)
def hsiseg(bands: int, classes: int, **args: Any) -> nn.Module:
    """HSIseg segmenter, CPU-sized default: 33 px windows, d 32, stages 8→6→4, no 144 resize."""
    return HSIseg(bands, classes, **args)


def _register_preset(key: str) -> None:
    epochs, batch, lr = _TABLE3_TRAINING[key]
    preset = {**PRESETS[key], "grids": _PAPER_GRIDS, "resize": 144}

    def build(bands: int, classes: int, **args: Any) -> nn.Module:
        return HSIseg(bands, classes, **{**preset, **args})

    build.__doc__ = (f"HSIseg, paper settings for {_TITLES[key]}: {PAPER_SETTINGS[key]['window']} px windows "
                     f"resized to 144, five stages, d {preset['dim']}, {preset['depth']} DSRT blocks per stage.")
    register_model(
        f"hsiseg-{key}",
        arguments={**keyword_defaults(HSIseg), **preset},
        kind=SEGMENTER,
        paper=_PAPER,
        defaults=TrainDefaults(patch=PAPER_SETTINGS[key]["window"], optimizer="adam", lr=lr, batch_size=batch,
                               eval_batch_size=batch, epochs=epochs),
    )(build)


for _key in PRESETS:
    _register_preset(_key)
