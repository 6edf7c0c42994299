"""HybridSN: a 3-D then 2-D CNN (Roy, Krishna, Dubey, Chaudhuri, IEEE GRSL 17(2), 2020).

Paper §II and Table I: three valid 3-D convolutions with 8, 16 and 32 kernels of 3×3×7,
3×3×5 and 3×3×3 (spatial × spatial × spectral) learn joint spectral-spatial features; their
spectral and channel axes are then merged and a 3×3 2-D convolution with 64 kernels learns
spatial features; three dense layers (256, 128, classes) with dropout 0.4 after the first two
classify. Every layer but the last uses ReLU. For Indian Pines (25×25 windows of 30 PCA
components, 16 classes) this is the paper's 5,122,176 parameters.

Input (B, T, P, P), bands first. `forward_features` returns the 128-d activations of the
second dense layer (before its dropout), `forward_head` the logits.

Protocol (§III): Adam, learning rate 1e-3, batch 256, 100 epochs, 25×25 windows of 30 PCA
components for Indian Pines (15 for the other scenes). The reference Keras code's
`Adam(decay=1e-6)` is Keras's time-based learning-rate decay (lr / (1 + 1e-6·step)), a
change below 0.2 % over the paper's run, not weight decay; the defaults therefore use no
weight decay and no schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hsicli.errors import HsiError
from hsicli.models.contract import TorchModel
from hsicli.models.kinds import PATCH
from hsicli.models.registry import TrainDefaults, register_model


class HybridSN(TorchModel):
    """HybridSN for P×P windows of `bands` bands.

    Args:
        bands: input bands T (the paper: 30 PCA components for Indian Pines, 15 otherwise).
        classes: number of classes C.
        patch: window side P (the dense layer's width depends on it; paper: 25).
        conv3d_channels: kernels of the three 3-D convolutions (paper: 8, 16, 32).
        conv3d_depths: spectral extent of those kernels (paper: 7, 5, 3); all are 3×3 spatially.
        conv2d_channels: kernels of the 3×3 2-D convolution (paper: 64).
        hidden: widths of the two hidden dense layers (paper: 256, 128).
        dropout: dropout after each hidden dense layer (paper: 0.4).
    """

    def __init__(
        self,
        bands: int,
        classes: int,
        *,
        patch: int = 25,
        conv3d_channels: Sequence[int] = (8, 16, 32),
        conv3d_depths: Sequence[int] = (7, 5, 3),
        conv2d_channels: int = 64,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        if len(conv3d_channels) != len(conv3d_depths) or not conv3d_channels:
            raise HsiError(
                f"hybridsn: conv3d_channels {list(conv3d_channels)} and conv3d_depths "
                f"{list(conv3d_depths)} must be non-empty and of equal length",
                hint="give one spectral depth per 3-D convolution, e.g. "
                '{"conv3d_channels": [8, 16, 32], "conv3d_depths": [7, 5, 3]}',
            )
        if not hidden:
            raise HsiError("hybridsn: hidden must name at least one dense layer width",
                           hint='e.g. {"hidden": [256, 128]}')
        # Valid convolutions: each 3-D layer removes depth-1 bands and 2 pixels per side
        # pair; the 2-D layer removes 2 more pixels.
        out_bands = bands - sum(d - 1 for d in conv3d_depths)
        out_side = patch - 2 * len(conv3d_depths) - 2
        if out_bands < 1 or out_side < 1:
            raise HsiError(
                f"hybridsn needs at least {bands - out_bands + 1} bands and a window of at least "
                f"{patch - out_side + 1}×{patch - out_side + 1} pixels; got {bands} bands and "
                f"{patch}×{patch}",
                hint="prepare the store with more PCA components (the paper uses 30) or raise --patch "
                "(the paper uses 25)",
            )

        layers: list[nn.Module] = []
        in_ch = 1
        for ch, depth in zip(conv3d_channels, conv3d_depths):
            layers += [nn.Conv3d(in_ch, ch, kernel_size=(depth, 3, 3)), nn.ReLU(inplace=True)]
            in_ch = ch
        self.conv3d = nn.Sequential(*layers)
        # The 3-D output's channel and spectral axes become the 2-D convolution's channels.
        self.conv2d = nn.Sequential(
            nn.Conv2d(in_ch * out_bands, conv2d_channels, kernel_size=3), nn.ReLU(inplace=True)
        )
        dense: list[nn.Module] = []
        width = conv2d_channels * out_side * out_side
        for i, h in enumerate(hidden):
            if i > 0:
                dense.append(nn.Dropout(dropout))
            dense += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.dense = nn.Sequential(*dense)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, classes)
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P, P) -> (B, hidden[-1]) penultimate activations."""
        z = self.conv3d(x.unsqueeze(1))  # (B, 32, T', P', P')
        z = self.conv2d(z.flatten(1, 2))  # (B, 64, P'-2, P'-2)
        return self.dense(z.flatten(1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(features))


@register_model(
    "hybridsn",
    arguments=HybridSN,
    kind=PATCH,
    paper="HybridSN (Roy et al., IEEE GRSL 2020)",
    activations_per_input=18,
    activations_per_pixel=350,
    defaults=TrainDefaults(
        patch=25,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=256,
        eval_batch_size=256,
        epochs=100,
    ),
)
def hybridsn(bands: int, classes: int, patch: int = 25, **args) -> nn.Module:
    """3-D/2-D CNN hybrid; 5.12 M parameters at 25×25×30, 16 classes."""
    return HybridSN(bands, classes, patch=patch, **args)
