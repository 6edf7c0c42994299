"""hsicli.models.complexity: parameter and multiply-accumulate counts against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hsicli.models.complexity import count_macs, count_parameters


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
    ],
)
def test_single_layers(layer: nn.Module, shape: tuple[int, ...], expected: int) -> None:
    assert count_macs(layer, shape) == expected


def test_sequential_sums_only_conv_and_linear() -> None:
    model = nn.Sequential(
        nn.Conv2d(5, 12, 3, padding=1, bias=False),  # 12*64*5*9 = 34,560
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 12, 3, groups=12),  # 8x8 -> 6x6: 12*36*9 = 3,888
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 3),  # 36
    )
    assert count_macs(model, (5, 8, 8)) == 34_560 + 3_888 + 36


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, value=x)[0]


class _Sdpa(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.view(1, 2, 5, 8)  # (batch, heads, tokens, head dim)
        return F.scaled_dot_product_attention(q, q, q)


class _Sdpa(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.view(1, 2, 5, 8)  # (batch, heads, tokens, head dim)
        return F.scaled_dot_product_attention(q, q, q)


class _CrossAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=8)  # sequence-first

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.attn(x, memory, memory, need_weights=False)[0]


class _CrossAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=8, batch_first=True)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.attn(x, memory, memory, need_weights=False)[0]


def test_attention() -> None:
    # 5 tokens of 16: q/k/v/out projections 4*5*16*16, QK^T and AV 5*5*16 each.
    assert count_macs(_SelfAttention(), (5, 16)) == 4 * 5 * 16 * 16 + 2 * 5 * 5 * 16
    # 3 queries of 16 against 7 keys/values of 8.
    projections = 3 * 16 * 16 + 2 * 7 * 8 * 16 + 3 * 16 * 16
    assert count_macs(_CrossAttention(), (3, 16), extra_inputs=[(7, 8)]) == projections + 2 * 3 * 7 * 16
    # Bare SDPA, 2 heads of 8: 2 heads * 5 * 5 * (8 + 8).
    assert count_macs(_Sdpa(), (2, 5, 8)) == 2 * 5 * 5 * 16


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Conv1d(2, 3, 1)

    def forward(self, x: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(aux).mean(-1)


def test_extra_inputs() -> None:
    assert count_macs(_TwoInputs(), (4,), extra_inputs=[(2, 6)]) == 12 + 3 * 6 * 2


def test_restores_mode_and_removes_hooks() -> None:
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Dropout(0.5), nn.Linear(3, 1))
    model.train()
    count_macs(model, (2, 3, 3))
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    model.eval()
    count_macs(model, (2, 3, 3))
    assert not model.training


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 2))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) == 3 * 4 * 9 + 4 + 8 + 12
    model[0].weight.requires_grad_(False)  # frozen weights are not trainable parameters
    assert count_parameters(model) == 4 + 8 + 12
