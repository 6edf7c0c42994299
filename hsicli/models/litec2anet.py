"""Lite-C2ANet (Shi, Zhang): lightweight central pixel-guided coordinate attention network.

Paper: ../shared/papers/001_54861e01b06d8d24.txt, §3 (model) and §4 (protocol, Tables 6-7).
No public code exists; the layer widths below are our reading of §3, held to the paper's
Table 7 budgets (5.85 K / 11.13 K / 14.71 K parameters and 0.27 / 0.61 / 0.89 M MACs for
103 bands / 9 classes, 204 / 16 and 270 / 9 on 9x9 patches).

Pipeline (eqs. 1-3, 4-21), with C bands, g_c = `group_channels`, G^ = ceil(C / g_c) spectral
groups and D = G^ * g_c / 2 channels:

1. SGRI, group reduction (eqs. 4-6): the first floor(C / g_c) * g_c bands in adjacent groups
   of g_c, each reduced to g_c/2 by a 1x1 convolution inside the group (one grouped conv); the
   remaining C mod g_c bands by their own 1x1 conv to g_c/2. BN + ReLU. Eq. 22 fixes this as
   g_c x g_c/2 weights per group, i.e. about 8 C parameters.
2. SGRI, spatial supplement (eq. 7): a 3x3 conv (padding 1) on the reduced features, grouped
   in groups of 4 channels, so every filter stays inside one spectral group. BN + ReLU.
3. SGRI, group interaction (eqs. 8-9): the channels are regrouped so that new group i holds
   the i-th reduced channel of every spectral group (Q^ in R^{g_c/2 x G^ x H x W}); inside each
   new group a 3x3 convolution (no padding, 9x9 -> 7x7) whose output for spectral group j
   reads groups j-1, j, j+1 (edge groups repeated). BN + ReLU. Output order is Q^'s. It runs
   as three depth-wise convs, over X_r and over X_r shifted one group up and down (the same
   weights and MACs as a grouped conv with 3 inputs per output, several times faster, or one
   depth-wise conv over the three stacked maps, twice as fast).
4. CPCA (eqs. 10-18): average pooling along W and along H; the D channels split in four
   sub-features with depth-wise 1-D kernels 1/3/5/7 (with bias) shared by both directions;
   GroupNorm(4, D); sigmoid; A_spa = A_h * A_w * F_spe.
5. Central pixel (§3.3): the centre vector of F_spe refined by a Conv1d(1, 1, 3) along D.
6. ACSG (eqs. 19-21): Euclidean and cosine similarity of every position to the refined
   centre, each softmaxed over positions, mixed by lambda = sigmoid(one learnable scalar),
   F_spa = A_spa * S + A_spa.
7. Classifier (eq. 3): global average pooling (`forward_features`, D values) and one Linear.

Readings where the paper is ambiguous, and why:
- Eq. 9's "3x3 convolution on each new group" cannot mix all G^ channels of the group: that
  costs 72 G^^2 weights (12,168 for Salinas, more than its whole 11.13 K budget) and grows
  quadratically, while Table 7 grows linearly with C (+53 per band). Since G^ is prime for all
  three scenes (7, 13, 17) no grouped conv can split it either, hence the banded reading:
  each output mixes its own and the two spectrally adjacent groups (27 D weights).
- Eq. 7's conv on X_r likewise cannot be dense (9 D^2). With one group per spectral group
  (8 -> 8 channels, 72 D) the model would cost 8 C + 112 D + (D + 1) K: +30 % / +34 % / +27 %
  over the three budgets and +39 % over the PU-to-SV increase. Groups of 4 channels (36 D)
  bring every parameter figure within 9 % (table below); they still never mix two spectral
  groups, which is eq. 9's job.
- Eq. 9 without padding is what keeps the MACs at Table 7's level: with padding 1 the PU model
  needs 0.36 M MACs (+32 %). CPCA, the centre and ACSG then work on the 7x7 map, whose centre
  is still the labelled pixel.

Parameters (exact, from `count_parameters`) and MACs per 9x9 sample (`count_macs`):

| layer                                   | formula        | PU 103/9 | SV 204/16 | LK 270/9 |
|-----------------------------------------|----------------|---------:|----------:|---------:|
| 1x1 group reduction (+ remainder group) | ~ g_c/2 * C    |      824 |     1,632 |    2,160 |
| BN (reduction)                          | 2 D            |      112 |       208 |      272 |
| 3x3 spatial supplement, 4-ch groups     | 36 D           |    2,016 |     3,744 |    4,896 |
| BN (supplement)                         | 2 D            |      112 |       208 |      272 |
| 3x3 group interaction, 3 neighbours     | 27 D           |    1,512 |     2,808 |    3,672 |
| BN (interaction)                        | 2 D            |      112 |       208 |      272 |
| CPCA depth-wise Conv1d k=1/3/5/7 + bias | 5 D            |      280 |       520 |      680 |
| CPCA GroupNorm(4, D)                    | 2 D            |      112 |       208 |      272 |
| central Conv1d(1, 1, 3)                 | 4              |        4 |         4 |        4 |
| ACSG lambda                             | 1              |        1 |         1 |        1 |
| classifier Linear(D, K)                 | (D + 1) K      |      513 |     1,680 |    1,233 |
| total (paper)                           |                | 5,598 (5,850) | 11,221 (11,130) | 13,734 (14,710) |
| MACs (paper)                            |                | 0.307 M (0.27) | 0.581 M (0.61) | 0.759 M (0.89) |

(D = 56 / 104 / 136.) MACs count conv and linear multiply-accumulates over all output
positions, zero padding included, as thop and ptflops do (see `hsicli.models.complexity`).

Speed (the model is tiny, so per-operator overheads and memory layout decide): the map stays
channels-last from the patch sampler to the classifier, channel shuffles run on its contiguous
(B, H, W, D) view, and the layers match a plain formulation of the equations (tests). In
`hsi predict` the 1x1 reductions run once per scene pixel (`pixel_stage`), not once per patch.
Validation and prediction batches of 64 beat larger ones on a CPU (the activations stay in cache).

Ablations (Table 6), as keyword arguments of the builder (`--model-args`):
- `sgri=False`: SGRI replaced by one standard 3x3 conv C -> D (no padding, so the map is
  7x7 as with SGRI) + BN + ReLU.
- `cpca="vit"`: CPCA replaced by a pre-norm ViT block over the H*W tokens (4 heads,
  MLP hidden D/2, GELU; no position embedding, since the builder does not know the patch
  size).
- `acsg=False`: ACSG and the central-pixel Conv1d removed (F_spa = A_spa).
- `group_channels`: g_c (Fig. 4 sweeps 8-40); a multiple of 8 so that D splits into CPCA's
  four sub-features, GroupNorm's four groups and eq. 7's 4-channel groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsicli.errors import HsiError, UsageError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model

_CPCA_KERNELS = (1, 3, 5, 7)
_SUPPLEMENT_GROUP = 4  # channels per group of the eq. 7 spatial conv
_VIT_HEADS = 4


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class NeighbourConv(nn.Conv2d):
    """Eq. 9's per-group 3x3 convolutions as three depth-wise convs, one per neighbour offset.

    The weight is that of a depth-wise conv over 3 D channels, offset-major (spectral group
    j-1, j, j+1; then the target channel in group-major order). `forward` takes the three
    (B, D, H, W) maps whose channel (j, i) holds channel i of group j-1, j and j+1 and sums
    their depth-wise convs: the same weights and MACs as one conv over the 3 D stacked maps,
    which takes about twice as long, forward and backward.
    """

    def __init__(self, width: int) -> None:
        super().__init__(3 * width, 3 * width, 3, groups=3 * width, bias=False)
        self.width = width

    def forward(self, neighbours: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        previous, own, following = (
            F.conv2d(x, weight, groups=self.width) for x, weight in zip(neighbours, self.weight.chunk(3))
        )
        return previous + own + following


class SpectralGroupReduction(nn.Module):
    """SGRI (§3.2): group reduction (eqs. 4-7) and group interaction (eqs. 8-9).

    Works channels-last throughout; returns (B, D, H-2, W-2) in eq. 8's regrouped order.
    Channel shuffles run on the contiguous (B, H, W, D) view: `torch.cat` and slicing along
    its last axis are plain copies, along dim 1 of the channels-last (B, D, H, W) view strided
    gathers 2-3 times slower.
    """

    def __init__(self, bands: int, group_channels: int) -> None:
        super().__init__()
        full, rest = divmod(bands, group_channels)
        self.half = group_channels // 2
        self.groups = full + (rest > 0)
        self.width = self.groups * self.half
        self.full_bands = full * group_channels
        self.reduce_full = (
            nn.Conv2d(self.full_bands, full * self.half, 1, groups=full, bias=False) if full else None
        )
        self.reduce_rest = nn.Conv2d(rest, self.half, 1, bias=False) if rest else None
        self.reduce_act = _bn_relu(self.width)
        self.supplement = nn.Sequential(
            nn.Conv2d(self.width, self.width, 3, padding=1, groups=self.width // _SUPPLEMENT_GROUP, bias=False),
            _bn_relu(self.width),
        )
        self.neighbour_conv = NeighbourConv(self.width)
        self.interact_act = _bn_relu(self.width)

    def pointwise(self, x: torch.Tensor) -> torch.Tensor:
        """Eqs. 4-6 with BN + ReLU, each pixel on its own (1x1 convs): (B, D, H, W), group-major."""
        parts = []
        groups = ((self.reduce_full, slice(0, self.full_bands)), (self.reduce_rest, slice(self.full_bands, None)))
        for conv, bands in groups:
            if conv is not None:
                # Channel slices of a channels-last map are strided; copied here once, the copies are
                # what autograd keeps for the weight gradients (the conv would copy again in backward).
                parts.append(conv(x[:, bands].contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1))
        return self.reduce_act((torch.cat(parts, 3) if len(parts) > 1 else parts[0]).permute(0, 3, 1, 2))

    def interact(self, y: torch.Tensor) -> torch.Tensor:
        """Eqs. 8-9: output channel i * G^ + j mixes channel i of spectral groups j-1, j, j+1."""
        # In group-major order the neighbouring groups are shifts by g_c/2 channels; the edge
        # groups are repeated so that every weight sees data.
        h = self.half
        yl = y.permute(0, 2, 3, 1)
        previous = torch.cat([yl[..., :h], yl[..., :-h]], 3).permute(0, 3, 1, 2)
        following = torch.cat([yl[..., h:], yl[..., -h:]], 3).permute(0, 3, 1, 2)
        z = self.neighbour_conv([previous, y, following]).permute(0, 2, 3, 1)
        z = z.unflatten(3, (self.groups, h)).transpose(3, 4).flatten(3)  # eq. 8's order (i, j)
        return self.interact_act(z.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor, *, staged: bool = False) -> torch.Tensor:
        """X -> eq. 9's map; `staged`: x is `pointwise`'s output already."""
        return self.interact(self.supplement(x if staged else self.pointwise(x)))


class RowConv(nn.Conv1d):
    """A Conv1d applied to a (N, C, 1, L) channels-last map as the equivalent (1, k) conv2d.

    CPCA's pooled strips come channels-last; a Conv1d on (N, C, L) would first copy them to
    channel-major order and back, which costs more than the convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, padding=(0, self.padding[0]), groups=self.groups)


class CoordinateAttention(nn.Module):
    """CPCA (§3.3, eqs. 10-18) on a square (B, H, W, D) map; both directions share one pass."""

    def __init__(self, width: int) -> None:
        super().__init__()
        split = width // len(_CPCA_KERNELS)
        self.convs = nn.ModuleList(RowConv(split, split, k, padding=k // 2, groups=split) for k in _CPCA_KERNELS)
        self.norm = nn.GroupNorm(4, width)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        # (2b, D, 1, n) channels-last: the strips pooled along W (eq. 10) and along H (eq. 11).
        pooled = torch.cat([t.mean(2), t.mean(1)], 0).transpose(1, 2).unsqueeze(2)
        parts = pooled.chunk(len(self.convs), 1)  # eqs. 12-13
        mixed = torch.cat([conv(p).permute(0, 2, 3, 1) for conv, p in zip(self.convs, parts)], 3)  # eqs. 14-15
        att = torch.sigmoid(self.norm(mixed.squeeze(1).transpose(1, 2)))  # eqs. 16-17: (2b, d, n)
        # Contiguous along D again: with a strided inner axis the products below run unvectorised,
        # 2-4 times slower forward and backward than with this copy of the small strips.
        att = att.transpose(1, 2).contiguous()
        return t * att[:b].unsqueeze(2) * att[b:].unsqueeze(1)  # eq. 18


class ViTBlock(nn.Module):
    """Table 6, case 2: a pre-norm transformer block over the H*W tokens in place of CPCA."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, _VIT_HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width // 2), nn.GELU(), nn.Linear(width // 2, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        tokens = t.flatten(1, 2)
        y = self.norm1(tokens)
        tokens = tokens + self.attn(y, y, y, need_weights=False)[0]
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.view_as(t)


class CentralSimilarityGuidance(nn.Module):
    """ACSG (§3.4, eqs. 19-21): similarity to the centre pixel re-weights the (B, N, D) tokens."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.mix = nn.Parameter(torch.zeros(()))  # lambda before its sigmoid

    @property
    def lam(self) -> torch.Tensor:
        return torch.sigmoid(self.mix)

    def forward(self, tokens: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        # Both similarities from three reductions (|a|^2, |c|^2, a.c): a third of the time of
        # torch's norm and cosine_similarity, forward and backward. Clamps keep sqrt's gradient finite.
        dot = torch.bmm(tokens, centre.unsqueeze(2)).squeeze(2)  # (b, n)
        sq_tokens = tokens.square().sum(2)
        sq_centre = centre.square().sum(1, keepdim=True)
        distance = (sq_tokens - 2 * dot + sq_centre).clamp_min(1e-12).sqrt()
        euclidean = 1.0 / (1.0 + distance + self.eps)  # eq. 19
        cosine = dot / (sq_tokens * sq_centre).clamp_min(self.eps**2).sqrt()  # eq. 20
        lam = self.lam
        s = lam * euclidean.softmax(1) + (1 - lam) * cosine.softmax(1)
        return tokens * (1 + s.unsqueeze(2))  # eq. 21: A * S + A


class LiteC2ANet(TorchModel):
    """Lite-C2ANet; see the module docstring for the layers and the ablation switches."""

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        group_channels: int = 16,
        sgri: bool = True,
        cpca: str = "cpca",
        acsg: bool = True,
    ) -> None:
        super().__init__()
        _check_args(bands, classes, group_channels, sgri, cpca, acsg)
        width = -(-bands // group_channels) * (group_channels // 2)
        self.width = width
        self.spectral: nn.Module = (
            SpectralGroupReduction(bands, group_channels)
            if sgri
            else nn.Sequential(nn.Conv2d(bands, width, 3, bias=False), _bn_relu(width))
        )
        self.spatial: nn.Module = CoordinateAttention(width) if cpca == "cpca" else ViTBlock(width)
        self.centre = nn.Conv1d(1, 1, 3, padding=1) if acsg else None
        self.guidance = CentralSimilarityGuidance() if acsg else None
        self.head = nn.Linear(width, classes)

    @property
    def pixel_stage(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The leading layers that see one pixel at a time (SGRI's 1x1 reductions with BN and
        ReLU), as a map (N, C, H, W) -> (N, D, H, W); None for the `sgri=False` ablation.

        In eval mode, patches cut from the stage's output over a whole scene, passed with
        `staged=True`, give what the raw patches give, and each pixel is reduced once
        instead of once per patch that contains it (81 times for 9x9 patches).
        """
        return self.spectral.pointwise if isinstance(self.spectral, SpectralGroupReduction) else None

    def forward_features(self, x: torch.Tensor, *, staged: bool = False) -> torch.Tensor:
        """(B, C, P, P) patches -> (B, D) features; `staged`: (B, D, P, P) from `pixel_stage`."""
        if x.shape[-1] != x.shape[-2] or x.shape[-1] < 3:
            raise HsiError(
                f"litec2anet needs square patches of at least 3x3, got {x.shape[-2]}x{x.shape[-1]}",
                hint="train with --patch 9, the paper's size (eq. 9 trims one pixel on each side)",
            )
        # Patches arrive channels-last (hsicli.data.patches), so this is free; from here on
        # the map is handled as (B, H, W, D).
        x = x.contiguous(memory_format=torch.channels_last)
        f_spe = (self.spectral(x, staged=True) if staged else self.spectral(x)).permute(0, 2, 3, 1)
        tokens = self.spatial(f_spe).flatten(1, 2)
        if self.centre is not None and self.guidance is not None:
            centre = f_spe[:, f_spe.shape[1] // 2, f_spe.shape[2] // 2].unsqueeze(1)
            tokens = self.guidance(tokens, self.centre(centre).squeeze(1))
        return tokens.mean(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor, *, staged: bool = False) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, staged=staged))


def _check_args(bands: int, classes: int, group_channels: int, sgri: Any, cpca: Any, acsg: Any) -> None:
    if bands < 1 or classes < 1:
        raise UsageError(
            f"litec2anet needs at least one band and one class, got bands={bands}, classes={classes}",
            hint="check the scene store's band count and label layer",
        )
    if not isinstance(group_channels, int) or group_channels < 8 or group_channels % 8:
        raise UsageError(
            f"litec2anet: group_channels must be a positive multiple of 8, got {group_channels!r}",
            hint='e.g. --model-args \'{"group_channels": 16}\' (the paper uses 16; Fig. 4 tries 8-40)',
        )
    if cpca not in ("cpca", "vit"):
        raise UsageError(
            f"litec2anet: cpca must be 'cpca' or 'vit', got {cpca!r}",
            hint="'vit' is Table 6's ablation that replaces CPCA by a transformer block",
        )
    for name, value in (("sgri", sgri), ("acsg", acsg)):
        if not isinstance(value, bool):
            raise UsageError(
                f"litec2anet: {name} must be true or false, got {value!r}",
                hint=f'e.g. --model-args \'{{"{name}": false}}\'',
            )


@register_model(
    "litec2anet",
    arguments=LiteC2ANet,
    kind=PATCH,
    paper="Lite-C2ANet (Shi, Zhang)",
    activations_per_input=6,
    activations_per_pixel=90,
    defaults=TrainDefaults(
        patch=9,
        optimizer="adam",
        lr=1e-3,
        betas=(0.9, 0.999),
        weight_decay=0.0,
        batch_size=64,
        eval_batch_size=64,  # see "Speed" above
        epochs=100,
        augment=True,  # §4.1: "we also use the data augmentation technique [14]" (flips, rotations, noise)
    ),
)
def litec2anet(bands: int, classes: int, **args: Any) -> nn.Module:
    """Lite-C2ANet: SGRI + CPCA + ACSG, about 11 K parameters for 204 bands (Shi, Zhang)."""
    return LiteC2ANet(bands, classes, **args)
