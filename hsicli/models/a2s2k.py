"""A2S2K-ResNet: attention-based adaptive spectral-spatial kernel ResNet (Roy, Manna, Song,
Bruzzone, IEEE TGRS 59(9), 2021). Architecture read from the paper and the authors' code
(suvojit-0x55aa/A2S2K-ResNet, A2S2KResNet/A2S2KResNet.py, class S3KAIResNet); this is our
implementation.

Input (B, T, P, P), bands first (the paper: 9×9 windows of all bands, PCA-rotated and
standardised). With k = 24 kernels and T' = floor((T - 7) / 2) + 1:
1. Adaptive spectral-spatial kernel (selective kernel unit): two 3-D convolutions with k
   kernels and spectral stride 2, 1×1×7 and 3×3×7 (spatial padding 1), each with BN + ReLU;
   U = their sum; s = U averaged over bands and pixels; z = ReLU(W_s s) with T // 2 units;
   per branch an excitation W_a z, W_b z, softmaxed across the two branches per channel;
   V = a ⊙ U_1×1 + b ⊙ U_3×3.
2. Two spectral residual blocks of 1×1×7 convolutions (padding 3), each block's output
   re-weighted by efficient channel attention (ECA: a 3-tap convolution across the
   channel-wise means, sigmoid) before the identity shortcut.
3. A 1×1×T' convolution to 128 spectral maps (BN + ReLU), which become the channels of a
   valid 3×3 convolution with k kernels (BN + ReLU): (k, P-2, P-2).
4. Two spatial residual blocks of 3×3 convolutions (padding 1) with ECA; BN + ReLU close the
   second.
5. Average pooling (`forward_features`, k values) and one Linear.
Blocks are the authors' pre-activation units: the first (start) block conv-ReLU-BN-ReLU-conv-BN,
the others BN-ReLU-conv-ReLU-BN-ReLU-conv (the authors' conv1 carries its own ReLU).

Where we depart from the authors' code, and why:
- The code computes one excitation W_a z and uses it for both branches, so the softmax is
  0.5 / 0.5 whatever the input and the attention never learns (its weights get zero gradient).
  The paper's selective kernel gives each branch its own excitation, as here: +24 (T // 2) + 24
  parameters (+0.65 % at Indian Pines' 200 bands, before the two savings below).
- The code's ECA is a 3×3 2-D convolution over a 1-pixel-high strip, whose outer rows only ever
  meet zero padding; here it is the 3-tap 1-D convolution those rows leave (-6 per block), and
  its unused BatchNorms of the middle blocks (2 × 48) are not built.
- The code pools a fixed 5×5 window (the top-left 25 of the 7×7 map for 9×9 inputs); here the
  whole map is averaged, so other window sizes work.
Parameters at the paper's Indian Pines setting (200 bands, 16 classes): 373,160 here,
370,856 in the authors' code (+0.62 %); MACs for 9×9 windows 166,432,848 here, 166,433,424
in the code (its 3×3 ECA taps, -576). For Pavia University (103 bands, 9 classes) the code
gives 220,824 parameters, Lite-C2ANet's Table 7 220.82 K (here 221,952, +0.51 %).

The 1×1×7 and 1×1×T' kernels act along bands only and run as 2-D convolutions over
(bands, pixels); the 3×3×1 kernels and the 3×3×128 one (one input map of 128 bands) as
2-D convolutions over the window: the same weights and outputs as the 3-D layers, faster on a CPU.

Protocol (authors' code): 9×9 windows, Adam learning rate 1e-3 without weight decay, batch 32,
up to 200 epochs, early stopping after 20 epochs without a better validation loss (here:
validation accuracy, the engine's criterion). Its cosine schedule is rebuilt every epoch, so the
rate stays at 1e-3 apart from a 1 % dip after each epoch: a constant rate here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hsicli.errors import HsiError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model

_SPECTRAL_EXTENT = 7
_SPECTRAL_MAPS = 128


class ChannelAttention(nn.Module):
    """ECA: channels re-weighted by sigmoid(3-tap conv across the channel means)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.conv(x.mean(dim=(2, 3)).unsqueeze(1)))  # (B, 1, C)
        return x * weights.squeeze(1)[:, :, None, None]


class ResidualBlock(nn.Module):
    """The authors' residual unit with ECA before the shortcut; `position` is start, middle or end."""

    def __init__(self, channels: int, conv: Callable[[], nn.Module], position: str) -> None:
        super().__init__()
        bn_relu = lambda: (nn.BatchNorm2d(channels), nn.ReLU())  # noqa: E731
        pre = () if position == "start" else bn_relu()
        post_conv = (nn.BatchNorm2d(channels),) if position == "start" else ()
        self.body = nn.Sequential(*pre, conv(), nn.ReLU(), *bn_relu(), conv(), *post_conv, ChannelAttention())
        self.close = nn.Sequential(*bn_relu()) if position == "end" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.close(x + self.body(x))


class A2S2KResNet(TorchModel):
    """A2S2K-ResNet for P×P windows of `bands` bands.

    Args:
        bands: input bands T, at least 7 (the paper: all bands, PCA-rotated).
        classes: number of classes C.
        kernels: kernels k of every convolution but the 128-map one (paper: 24).
        reduction: the attention's squeeze width is T // reduction (authors' code: 2).
    """

    def __init__(self, bands: int, classes: int, *, kernels: int = 24, reduction: int = 2) -> None:
        super().__init__()
        if bands < _SPECTRAL_EXTENT or bands // reduction < 1:
            raise HsiError(
                f"a2s2k needs at least {_SPECTRAL_EXTENT} bands (its 1×1×7 kernels) and bands // reduction "
                f">= 1; got {bands} bands, reduction {reduction}",
                hint="the paper uses all bands of the scene (prepare the store without --pca, or --pca 30)",
            )
        d = _SPECTRAL_EXTENT
        remaining = (bands - d) // 2 + 1
        self.kernels = kernels
        self.narrow = nn.Sequential(  # 1×1×7
            nn.Conv2d(1, kernels, (d, 1), stride=(2, 1)), nn.BatchNorm2d(kernels, eps=1e-3), nn.ReLU())
        self.wide = nn.Sequential(  # 3×3×7
            nn.Conv3d(1, kernels, (d, 3, 3), stride=(2, 1, 1), padding=(0, 1, 1)),
            nn.BatchNorm3d(kernels, eps=1e-3), nn.ReLU())
        self.squeeze = nn.Sequential(nn.Linear(kernels, bands // reduction), nn.ReLU())
        self.excite = nn.Linear(bands // reduction, 2 * kernels)  # one excitation per branch
        spectral_conv = lambda: nn.Conv2d(kernels, kernels, (d, 1), padding=(d // 2, 0))  # noqa: E731
        spatial_conv = lambda: nn.Conv2d(kernels, kernels, 3, padding=1)  # noqa: E731
        self.spectral = nn.Sequential(
            ResidualBlock(kernels, spectral_conv, "start"), ResidualBlock(kernels, spectral_conv, "middle"))
        self.collapse = nn.Sequential(
            nn.Conv2d(kernels, _SPECTRAL_MAPS, (remaining, 1)), nn.BatchNorm2d(_SPECTRAL_MAPS, eps=1e-3), nn.ReLU())
        self.spatial_stem = nn.Sequential(
            nn.Conv2d(_SPECTRAL_MAPS, kernels, 3), nn.BatchNorm2d(kernels, eps=1e-3), nn.ReLU())
        self.spatial = nn.Sequential(
            ResidualBlock(kernels, spatial_conv, "middle"), ResidualBlock(kernels, spatial_conv, "end"))
        self.head = nn.Linear(kernels, classes)
        self.num_features = kernels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> (B, kernels) pooled spatial features."""
        if min(x.shape[-2:]) < 3:
            raise HsiError(f"a2s2k needs windows of at least 3×3, got {x.shape[-2]}×{x.shape[-1]}",
                           hint="train with --patch 9, the paper's size")
        narrow = self.narrow(x.flatten(2).unsqueeze(1))  # (B, k, T', P·P)
        wide = self.wide(x.unsqueeze(1)).flatten(3)
        pooled = (narrow + wide).mean(dim=(2, 3))
        attention = self.excite(self.squeeze(pooled)).unflatten(1, (2, self.kernels)).softmax(dim=1)
        v = narrow * attention[:, 0, :, None, None] + wide * attention[:, 1, :, None, None]
        z = self.collapse(self.spectral(v)).unflatten(3, x.shape[2:]).squeeze(2)  # (B, 128, P, P)
        z = self.spatial(self.spatial_stem(z))  # (B, k, P-2, P-2)
        return z.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model(
    "a2s2k",
    arguments=A2S2KResNet,
    kind=PATCH,
    paper="A2S2K-ResNet (Roy et al., IEEE TGRS 2021)",
    defaults=TrainDefaults(
        patch=9,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=32,
        eval_batch_size=256,
        epochs=200,
        patience=20,
    ),
)
def a2s2k(bands: int, classes: int, **args) -> nn.Module:
    """Selective spectral-spatial kernels, ECA residual blocks; 373 K parameters at 200 bands, 16 classes."""
    return A2S2KResNet(bands, classes, **args)
