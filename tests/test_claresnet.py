"""CLAReSNet (issue 4): shapes, the latent-token rule, the published parameter count, the
fast formulations of §IV against direct per-branch / per-scale re-implementations of the
paper's equations, and gradient flow. Small configurations except where a figure of the
full model is checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hsicli.errors import HsiError, InputError, UsageError
from hsicli.models import create_model, get_model_spec
from hsicli.models.claresnet import (
    CLAReSNet,
    EnhancedCBAM,
    EnhancedSE,
    MultiScaleLatentAttention,
    MultiScaleStem,
    ResidualBlock,
    _scale_operators,
    latent_token_count,
)
from hsicli.models.kinds import PATCH

# Same shape logic as the paper's model, a fraction of the cost.
SMALL = dict(dim=32, base_channels=8, layers=2, heads=4, head_hidden=16)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _randomise_bn(module: torch.nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode BN folding is actually exercised."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)


# ------------------------------------------------------------------ shapes and sizes


@pytest.mark.parametrize("patch", [11, 7])
@pytest.mark.parametrize("bands", [15, 30, 103, 200])
def test_output_shapes(bands: int, patch: int) -> None:
    model = create_model("claresnet", bands, 9, **SMALL).eval()
    x = torch.randn(3, bands, patch, patch)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (3, 32)
    assert logits.shape == (3, 9)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(model.forward_head(features), logits)


def test_defaults_embedding_is_256_wide() -> None:
    model = create_model("claresnet", 30, 16).eval()
    x = torch.randn(2, 30, 11, 11)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, 256)
    assert logits.shape == (2, 16)
    # Features come out of the fusion LayerNorm (unit scale, zero bias at initialisation).
    torch.testing.assert_close(features.mean(1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(features.std(1, unbiased=False), torch.ones(2), atol=1e-3, rtol=0)


def test_published_parameter_count() -> None:
    # The authors' code: 17.33 M for 30 bands, 16 classes, 3 encoder layers.
    model = create_model("claresnet", 30, 16)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(17.33e6, rel=0.005)
    assert len(model.layers) == 3
    # The positional tables of §IV-2 make up 0.64 M per layer (5000 x 128 learnable rows).
    assert model.layers[0].msla.position.learnable.shape == (5000, 128)
    # Stem: 16 channels per branch, kernels 1/3/5/7.
    shapes = [tuple(w.shape) for w in model.spatial.stem.branches]
    assert shapes == [(16, 1, 1, 1), (16, 1, 3, 3), (16, 1, 5, 5), (16, 1, 7, 7)]
    assert [b.conv2.dilation for b in model.spatial.blocks] == [(1, 1), (2, 2), (3, 3), (4, 4)]


@pytest.mark.parametrize(
    ("bands", "tokens"),
    [(30, 14), (16, 8), (2, 8), (20, 8), (32, 16), (64, 32), (100, 42), (200, 58), (256, 64), (5000, 64)],
)
def test_latent_token_rule(bands: int, tokens: int) -> None:
    assert latent_token_count(bands) == tokens


class _RecordAttention(torch.overrides.TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.queries: list[tuple[int, ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            self.queries.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def test_model_uses_14_latents_at_30_bands() -> None:
    model = create_model("claresnet", 30, 4, **dict(SMALL, layers=1)).eval()
    recorder = _RecordAttention()
    with torch.no_grad(), recorder:
        model(torch.randn(2, 30, 5, 5))
    # Encode (latents query bands), process (latents), decode (bands query latents);
    # 3 scales x batch 2 in the leading axis, 4 heads, 8 channels per head.
    assert recorder.queries == [(6, 4, 14, 8), (6, 4, 14, 8), (6, 4, 30, 8)]


# ------------------------------------------------------------------ fast forms against the equations


def test_stem_equals_separate_branches() -> None:
    stem = MultiScaleStem(8, (1, 3, 5, 7), dict(reduction=16, min_hidden=8), dropout=0.0)
    _randomise_bn(stem)
    bands = torch.randn(6, 9, 9)

    def direct(train: bool) -> torch.Tensor:
        x = bands.unsqueeze(1)
        # Eq. 1: concatenated k x k convolutions, each branch with its own BN (per channel).
        out = torch.cat([F.conv2d(x, w, padding=w.shape[-1] // 2) for w in stem.branches], dim=1)
        bn = stem.bn
        out = F.batch_norm(out, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, train)
        return stem.se(F.gelu(out))

    with torch.no_grad():
        for train in (True, False):
            stem.train(train)
            expected = direct(train)
            torch.testing.assert_close(stem(bands), expected, atol=1e-5, rtol=1e-5)


def test_se_gate_pools_average_and_max() -> None:
    se = EnhancedSE(16, reduction=4, min_hidden=2, dropout=0.0)
    x = torch.randn(5, 16, 7, 7).contiguous(memory_format=torch.channels_last)
    pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)
    gate = torch.sigmoid(se.fc2(F.gelu(se.fc1(pooled))))
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])
    assert se.fc1.in_features == 32 and se.fc1.out_features == 4


def test_residual_block_equation_with_folded_bn() -> None:
    block = ResidualBlock(8, dilation=3, se=dict(reduction=16, min_hidden=8), dropout=0.1)
    _randomise_bn(block)
    block.eval()
    x = torch.randn(4, 8, 9, 9)
    with torch.no_grad():
        h = block.bn2(block.conv2(F.gelu(block.bn1(block.conv1(x)))))
        expected = F.gelu(x + block.se(h))
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_cbam_channel_then_spatial_statistics() -> None:
    cbam = EnhancedCBAM(8, kernel=7, se=dict(reduction=16, min_hidden=8), dropout=0.0).eval()
    _randomise_bn(cbam)
    x = torch.randn(3, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = cbam.channel(x)
        stats = [y.mean(1, keepdim=True), y.amax(1, keepdim=True), y.std(1, keepdim=True), y.amin(1, keepdim=True)]
        stats = torch.cat(stats, dim=1)
        expected = y * cbam.spatial(stats)
        torch.testing.assert_close(cbam(x), expected, atol=1e-5, rtol=1e-5)
    # With autograd on, the extremes come from max/min with indices: same values.
    out = cbam(x.clone().requires_grad_())
    torch.testing.assert_close(out.detach(), expected, atol=1e-5, rtol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def _msla_by_scale(msla: MultiScaleLatentAttention, x: torch.Tensor) -> torch.Tensor:
    """§IV-3 written out: one scale at a time, nn.MultiheadAttention's own function."""
    b, t, d = x.shape
    heads = msla.encode.heads
    x = msla.position(x)
    latents = msla.latents[: latent_token_count(t)].expand(b, -1, -1)
    outputs = []
    for i, scale in enumerate(msla.scales):
        xs = x[:, ::scale] if t >= scale else x

        def attend(att, q, kv):
            out = F.multi_head_attention_forward(
                q.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1), d, heads,
                torch.cat([att.q_weight[i], att.kv_weight[i]]), torch.cat([att.q_bias[i], att.kv_bias[i]]),
                None, None, False, 0.0,
                att.out_weight[i], att.out_bias[i], training=False, need_weights=False,
            )[0]
            return out.transpose(0, 1)

        def norm(ln, y):
            return F.layer_norm(y, (d,), ln.weight[i], ln.bias[i])

        ffn = msla.latent_ffn
        z = norm(msla.encode_norm, latents + attend(msla.encode, latents, xs))
        z = norm(msla.process_norm, z + attend(msla.process, z, z))
        z = z + F.linear(F.gelu(F.linear(z, ffn.w1[i], ffn.b1[i])), ffn.w2[i], ffn.b2[i])
        out = norm(msla.decode_norm, xs + attend(msla.decode, xs, z))
        if out.shape[1] != t:
            out = F.interpolate(out.transpose(1, 2), size=t, mode="linear", align_corners=False)
            out = out.transpose(1, 2)
        outputs.append(out)
    return msla.norm(x + msla.fusion(torch.cat(outputs, dim=-1)))


@pytest.mark.parametrize("bands", [30, 7, 3, 2])
def test_batched_scales_equal_per_scale_attention(bands: int) -> None:
    model = create_model("claresnet", bands, 4, **SMALL).eval()
    msla = model.layers[0].msla
    with torch.no_grad():
        for p in msla.parameters():  # away from the initial near-zero biases
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(3, bands, 32)
        torch.testing.assert_close(msla(x), _msla_by_scale(msla, x), atol=2e-5, rtol=1e-4)


def test_scale_operators_subsample_and_interpolate() -> None:
    masks, operators = _scale_operators(10, (1, 2, 4))
    assert masks[1].nonzero().flatten().tolist() == [0, 2, 4, 6, 8]
    assert masks[2].nonzero().flatten().tolist() == [0, 4, 8]
    torch.testing.assert_close(operators[0], torch.eye(10))
    seq = torch.randn(10, 5)
    expected = F.interpolate(seq[::4].T.unsqueeze(0), size=10, mode="linear", align_corners=False)[0].T
    torch.testing.assert_close(operators[2] @ seq, expected)
    # Rows are convex combinations of the kept positions only.
    torch.testing.assert_close(operators.sum(-1), torch.ones(3, 10))
    assert (operators[2][:, ~masks[2]] == 0).all()


def test_encoder_stack_adds_layer_inputs_back() -> None:
    # §V: H_l = layer(H_{l-1}) + H_{l-1}; features fuse the mean-pooled H_l by cross-attention.
    model = create_model("claresnet", 12, 4, **SMALL).eval()
    x = torch.randn(2, 12, 5, 5)
    with torch.no_grad():
        h = model.spatial(x)
        summaries = []
        for layer in model.layers:
            h = layer(h) + h
            summaries.append(h.mean(1))
        stack = torch.stack(summaries, 1)
        attended = model.fusion(stack[:, -1:], stack, stack)[0][:, 0]
        expected = model.fusion_norm(summaries[-1] + attended)
        torch.testing.assert_close(model.forward_features(x), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ training behaviour


def test_gradients_reach_every_parameter() -> None:
    model = create_model("claresnet", 9, 5, **SMALL).train()
    x = torch.randn(4, 9, 5, 5)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_bf16_autocast_matches_fp32_and_trains() -> None:
    model = create_model("claresnet", 20, 4, **SMALL).eval()
    x = torch.randn(4, 20, 7, 7)
    with torch.no_grad():
        exact = model.forward_features(x)
        with torch.autocast("cpu", torch.bfloat16):
            approx = model.forward_features(x)
    assert F.cosine_similarity(exact, approx.float(), dim=1).min() > 0.98
    model.train()
    with torch.autocast("cpu", torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_training_after_inference_mode() -> None:
    # Cached scale operators built under inference_mode must stay usable by autograd.
    _scale_operators.cache_clear()
    model = create_model("claresnet", 11, 3, **dict(SMALL, layers=1))
    x = torch.randn(2, 11, 5, 5)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert model.layers[0].msla.latents.grad is not None


# ------------------------------------------------------------------ registry, protocol, errors


def test_registry_entry_carries_the_paper_protocol() -> None:
    spec = get_model_spec("claresnet")
    assert spec.kind is PATCH
    d = spec.defaults
    protocol = (d.patch, d.optimizer, d.lr, d.weight_decay, d.batch_size, d.eval_batch_size, d.epochs, d.augment)
    assert protocol == (11, "adamw", 1e-4, 1e-2, 16, 32, 40, True)
    assert isinstance(create_model("claresnet", 10, 3, **SMALL), CLAReSNet)


def test_clear_errors() -> None:
    with pytest.raises(HsiError, match="unknown argument"):
        create_model("claresnet", 30, 16, depth=3)
    with pytest.raises(UsageError, match="base_channels"):
        create_model("claresnet", 30, 16, base_channels=30)
    with pytest.raises(UsageError, match="heads"):
        create_model("claresnet", 30, 16, dim=36, heads=8)
    with pytest.raises(UsageError, match="layers"):
        create_model("claresnet", 30, 16, layers=0)
    with pytest.raises(InputError, match="max_bands"):
        create_model("claresnet", 300, 16, **SMALL, max_bands=256)
    model = create_model("claresnet", 30, 16, **SMALL)
    with pytest.raises(InputError, match=r"\(B, 30, P, P\)"):
        model(torch.randn(2, 29, 5, 5))


def test_small_config_is_cheap_to_build() -> None:
    # --model-args sizes reach every part: a small model is tiny.
    model = create_model("claresnet", 30, 16, **SMALL, max_bands=64, max_tokens=16)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    assert model.layers[0].msla.latents.shape == (16, 32)
    assert model.layers[0].lstm.hidden_size == 16
