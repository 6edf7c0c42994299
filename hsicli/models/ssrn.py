"""SSRN: spectral-spatial residual network (Zhong, Li, Luo, Chapman, IEEE TGRS 56(2), 2018).

Paper §III (Fig. 6, Indian Pines: 7×7×200 input):
1. a 3-D convolution with 24 kernels of 1×1×7 and spectral stride 2 (200 -> 97 bands);
2. two spectral residual blocks, each two 1×1×7 convolutions with 24 kernels and padding that
   keeps the size, joined by an identity shortcut;
3. a 3-D convolution with 128 kernels spanning all remaining bands (1×1×97), giving 128
   spectral feature maps per pixel, reshaped into one 7×7×128 cube;
4. a 3-D convolution with 24 kernels of 3×3×128 (7×7 -> 5×5);
5. two spatial residual blocks of 3×3×1 convolutions with 24 kernels;
6. average pooling over the 5×5 window and a fully connected softmax layer.
Batch normalisation and ReLU accompany every convolution; dropout 0.5 precedes the
classifier. Residual blocks are pre-activation units as in the authors' code
(BN-ReLU-conv-BN-ReLU-conv + x), the first of a stage taking the already activated stem
output; one BN-ReLU closes each stage (the authors' code stacks two, a quirk we drop).

A 3-D kernel that spans one pixel (1×1×d) or one spectral map (3×3×1) is a lower-dimensional
convolution with the same parameters and outputs: the spectral part runs as Conv2d with d×1
kernels on (B, C, bands, pixels), the spatial part as 3×3 Conv2d on (B, C, P, P); torch's 2-D
convolutions run markedly faster on CPU than the equivalent Conv3d.

Parameters at the paper's Indian Pines setting (200 bands, 16 classes, the defaults): 364,168
(convolutions and dense 363,432, batch-norm scales and shifts 736); the paper gives no count
to hold it to, so the tests check this arithmetic.

Protocol (§IV): 7×7 patches of all bands, RMSprop with learning rate 3e-4, batch 16,
200 epochs; the reference code puts an L2 penalty of 1e-4 on every kernel, i.e. a gradient
term 2e-4·w, which the defaults give as weight decay 2e-4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hsicli.errors import HsiError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model


class _ResidualUnit(nn.Module):
    """x + conv(ReLU(BN(conv(act(x))))) with act = ReLU∘BN, or identity for a stage's first unit."""

    def __init__(self, channels: int, conv: Callable[[], nn.Module], *, preact: bool) -> None:
        super().__init__()
        pre: list[nn.Module] = [nn.BatchNorm2d(channels), nn.ReLU()] if preact else []
        self.body = nn.Sequential(*pre, conv(), nn.BatchNorm2d(channels), nn.ReLU(), conv())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _stage(channels: int, blocks: int, conv: Callable[[], nn.Module]) -> nn.Sequential:
    """`blocks` residual units closed by BN-ReLU; the stage input is already BN-ReLU activated."""
    units = [_ResidualUnit(channels, conv, preact=i > 0) for i in range(blocks)]
    return nn.Sequential(*units, nn.BatchNorm2d(channels), nn.ReLU())


class SSRN(TorchModel):
    """SSRN for P×P patches of `bands` bands.

    Args:
        bands: input bands T (the paper uses all bands: 200 for Indian Pines).
        classes: number of classes C.
        patch: patch side P, at least 3 (paper: 7); the network pools globally, so the
            weights do not depend on it.
        spectral_kernels: kernels of the first convolution and the spectral blocks (paper: 24).
        spectral_kernel_size: spectral extent of those kernels (paper: 7).
        spectral_stride: spectral stride of the first convolution (paper: 2).
        spectral_blocks: spectral residual blocks (paper: 2).
        spectral_maps: kernels of the convolution spanning the remaining bands (paper: 128).
        spatial_kernels: kernels of the 3×3 convolutions and spatial blocks (paper: 24).
        spatial_blocks: spatial residual blocks (paper: 2).
        dropout: dropout before the classifier (paper: 0.5).
    """

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        patch: int = 7,
        spectral_kernels: int = 24,
        spectral_kernel_size: int = 7,
        spectral_stride: int = 2,
        spectral_blocks: int = 2,
        spectral_maps: int = 128,
        spatial_kernels: int = 24,
        spatial_blocks: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if bands < spectral_kernel_size or patch < 3:
            raise HsiError(
                f"ssrn needs at least {spectral_kernel_size} bands and a 3×3 patch; got {bands} "
                f"bands and {patch}×{patch}",
                hint="use more bands or a larger --patch (the paper uses all bands and 7×7)",
            )
        if spectral_kernel_size % 2 == 0:
            raise HsiError(
                f"ssrn: spectral_kernel_size must be odd to keep the size in residual blocks; "
                f"got {spectral_kernel_size}",
                hint="the paper uses 7",
            )
        d = spectral_kernel_size
        remaining = (bands - d) // spectral_stride + 1
        self.stem = nn.Sequential(
            nn.Conv2d(1, spectral_kernels, (d, 1), stride=(spectral_stride, 1)),
            nn.BatchNorm2d(spectral_kernels),
            nn.ReLU(),
        )
        self.spectral = _stage(
            spectral_kernels,
            spectral_blocks,
            lambda: nn.Conv2d(spectral_kernels, spectral_kernels, (d, 1), padding=(d // 2, 0)),
        )
        self.collapse = nn.Sequential(
            nn.Conv2d(spectral_kernels, spectral_maps, (remaining, 1)),
            nn.BatchNorm2d(spectral_maps),
            nn.ReLU(),
        )
        self.spatial_stem = nn.Sequential(
            nn.Conv2d(spectral_maps, spatial_kernels, 3),
            nn.BatchNorm2d(spatial_kernels),
            nn.ReLU(),
        )
        self.spatial = _stage(
            spatial_kernels,
            spatial_blocks,
            lambda: nn.Conv2d(spatial_kernels, spatial_kernels, 3, padding=1),
        )
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(spatial_kernels, classes)
        self.num_features = spatial_kernels
        # He-normal kernels, as in the authors' code.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> (B, spatial_kernels) pooled spatial features."""
        z = self.spectral(self.stem(x.flatten(2).unsqueeze(1)))  # (B, 24, T', P·P)
        z = self.collapse(z).unflatten(3, x.shape[2:]).squeeze(2)  # (B, 128, P, P)
        z = self.spatial(self.spatial_stem(z))  # (B, 24, P-2, P-2)
        return z.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(features))


@register_model(
    "ssrn",
    arguments=SSRN,
    kind=PATCH,
    paper="SSRN (Zhong et al., IEEE TGRS 2018)",
    activations_per_input=110,
    activations_per_pixel=1500,
    defaults=TrainDefaults(
        patch=7,
        optimizer="rmsprop",
        lr=3e-4,
        weight_decay=2e-4,
        batch_size=16,
        eval_batch_size=256,
        epochs=200,
    ),
)
def ssrn(bands: int, classes: int, patch: int = 7, **args) -> nn.Module:
    """Spectral then spatial 3-D residual blocks; 364 K parameters at 7×7×200, 16 classes."""
    return SSRN(bands, classes, patch=patch, **args)
