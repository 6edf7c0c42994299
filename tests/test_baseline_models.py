"""HybridSN, SSRN, SpectralFormer, SSFTT, A2S2K-ResNet and ELS2T: shapes, parameter budgets, wiring, gradients, registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hsicli.errors import HsiError
from hsicli.models import create_model, get_model_spec, list_models
from hsicli.models.complexity import measure_macs
from hsicli.models.kinds import PATCH
from hsicli.models.spectralformer import GroupwiseSpectralEmbedding

torch.set_num_threads(1)

NAMES = ("hybridsn", "ssrn", "spectralformer", "ssftt", "a2s2k", "els2t")

# Small architectures for fast wiring and gradient checks (bands, classes, patch, args).
SMALL = {
    "hybridsn": (16, 5, 11, {"conv3d_channels": [2, 3, 4], "conv2d_channels": 6, "hidden": [12, 8]}),
    "ssrn": (20, 5, 5, {"spectral_kernels": 4, "spectral_maps": 8, "spatial_kernels": 4}),
    "spectralformer": (12, 5, 3, {"dim": 16, "depth": 4, "heads": 2, "mlp_dim": 8}),
    "ssftt": (8, 5, 7, {"conv3d_kernels": 2, "conv2d_kernels": 16, "heads": 2}),
    "a2s2k": (15, 5, 5, {"kernels": 4}),
    "els2t": (15, 5, 5, {"kernels": 4}),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def window(name: str, patch: int) -> dict[str, int]:
    """The patch argument, for the architectures whose layers depend on it."""
    return {"patch": patch} if get_model_spec(name).takes_patch else {}


def small_model(name: str, seed: int = 0, **extra) -> tuple[nn.Module, torch.Tensor]:
    bands, classes, patch, args = SMALL[name]
    torch.manual_seed(seed)
    model = create_model(name, bands, classes, **window(name, patch), **args, **extra)
    x = torch.randn(6, bands, patch, patch)
    return model, x


def ssrn_count(bands, classes, k=24, d=7, stride=2, spec_blocks=2, maps=128, sk=24, sp_blocks=2):
    """SSRN parameters by hand: convolutions and dense, plus BN scale and shift per channel."""
    remaining = (bands - d) // stride + 1
    conv = (
        (d * k + k)  # 1×1×d stem
        + 2 * spec_blocks * (d * k * k + k)  # two 1×1×d convs per spectral block
        + (remaining * k * maps + maps)  # 1×1×remaining collapse
        + (9 * maps * sk + sk)  # 3×3×maps
        + 2 * sp_blocks * (9 * sk * sk + sk)  # two 3×3 convs per spatial block
        + (sk * classes + classes)  # dense
    )
    # BN after stem; one inside a stage's first block, two in the others; one closing each
    # stage; after the collapse and after the 3×3×maps convolution.
    bn = k + (2 * spec_blocks - 1) * k + k + maps + sk + (2 * sp_blocks - 1) * sk + sk
    return conv + 2 * bn


def spectralformer_count(bands, classes, pixels, group=3, dim=64, depth=5, mlp=8, caf=True):
    tokens = bands + 1
    layer = 2 * (2 * dim) + 3 * dim * dim + (dim * dim + dim) + (dim * mlp + mlp) + (mlp * dim + dim)
    fuse = (depth - 2) * (tokens * tokens * 2 + tokens) if caf else 0
    return (
        (group * pixels * dim + dim)  # GSE projection
        + dim  # class token
        + tokens * dim  # positions
        + depth * layer
        + fuse
        + 2 * dim  # final LayerNorm
        + dim * classes
        + classes
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("bands", "patch", "classes"), [(30, 9, 16), (15, 11, 3)])
def test_output_shapes(name, bands, patch, classes):
    torch.manual_seed(0)
    model = create_model(name, bands, classes, **window(name, patch)).eval()
    x = torch.randn(3, bands, patch, patch)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert logits.shape == (3, classes)
    assert feats.shape == (3, model.num_features)
    assert torch.isfinite(logits).all()


def test_hybridsn_paper_parameter_count():
    # Roy et al. 2020, Table I: 5,122,176 parameters for 25×25×30 Indian Pines windows.
    model = create_model("hybridsn", 30, 16, patch=25)
    assert n_params(model) == 5_122_176
    assert model.num_features == 128


def test_ssrn_parameter_count_matches_arithmetic():
    assert n_params(create_model("ssrn", 200, 16)) == ssrn_count(200, 16) == 364_168
    assert n_params(create_model("ssrn", 30, 9)) == ssrn_count(30, 9)
    args = {"spectral_blocks": 1, "spatial_blocks": 3, "spectral_stride": 1}
    assert n_params(create_model("ssrn", 103, 9, **args)) == ssrn_count(
        103, 9, stride=1, spec_blocks=1, sp_blocks=3
    )


def test_spectralformer_parameter_count_matches_arithmetic():
    assert n_params(create_model("spectralformer", 200, 16)) == spectralformer_count(200, 16, 49)
    assert n_params(create_model("spectralformer", 200, 16)) == 355_577
    pixel = create_model("spectralformer", 30, 9, input_mode="pixel")
    assert n_params(pixel) == spectralformer_count(30, 9, 1)
    plain = create_model("spectralformer", 30, 9, fusion="none", group_size=1)
    assert n_params(plain) == spectralformer_count(30, 9, 49, group=1, caf=False)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model, x = small_model(name)
    model.train()
    target = torch.arange(len(x)) % 5
    nn.functional.cross_entropy(model(x), target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_features_and_head_compose_to_forward(name):
    model, x = small_model(name)
    model.eval()
    with torch.no_grad():
        direct = model(x)
        composed = model.forward_head(model.forward_features(x))
    torch.testing.assert_close(direct, composed, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_samples_do_not_mix_in_eval(name):
    # A reshape that mixed batch and feature axes would make a sample's logits depend on
    # its neighbours in the batch.
    model, x = small_model(name)
    model.eval()
    with torch.no_grad():
        whole = model(x)
        parts = torch.cat([model(x[:2]), model(x[2:])])
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-5)


def test_ssrn_spectral_part_is_per_pixel():
    # The 1×1×7 kernels and the 1×1×T' collapse act along bands only: changing one pixel's
    # spectrum changes the collapsed maps at that pixel and nowhere else.
    model, x = small_model("ssrn")
    model.eval()
    maps: list[torch.Tensor] = []
    model.collapse.register_forward_hook(lambda _m, _i, out: maps.append(out))
    y = x.clone()
    y[:, :, 1, 3] += torch.randn(y.shape[:2])
    with torch.no_grad():
        model(x)
        model(y)
    side = x.shape[-1]
    diff = (maps[0] - maps[1]).reshape(len(x), -1, side, side)
    changed = diff.abs().amax(dim=(0, 1)) > 1e-6
    expected = torch.zeros_like(changed)
    expected[1, 3] = True
    assert torch.equal(changed, expected)


def test_gse_groups_neighbouring_bands_cyclically():
    bands, pixels, group = 5, 2, 3
    gse = GroupwiseSpectralEmbedding(bands, group, pixels, dim=4)
    x = (100 * torch.arange(bands)[:, None] + torch.arange(pixels)[None, :]).float()[None]
    grouped = gse.group(x)
    assert grouped.shape == (1, bands, group * pixels)
    for t in range(bands):
        expected = torch.cat([x[0, (t + o) % bands] for o in (-1, 0, 1)])
        torch.testing.assert_close(grouped[0, t], expected, rtol=0, atol=0)


def test_spectralformer_pixel_mode_sees_only_the_centre():
    pixel, x = small_model("spectralformer", input_mode="pixel")
    patch, _ = small_model("spectralformer")
    pixel.eval()
    patch.eval()
    y = x.clone()
    y[:, :, 0, 0] += 1.0  # a corner pixel
    z = x.clone()
    z[:, :, 1, 1] += 1.0  # the centre of the 3×3 patch
    with torch.no_grad():
        torch.testing.assert_close(pixel(x), pixel(y), rtol=0, atol=0)
        assert not torch.allclose(pixel(x), pixel(z), atol=1e-4)
        assert not torch.allclose(patch(x), patch(y), atol=1e-4)


def test_caf_fuses_the_input_of_two_layers_back():
    caf, x = small_model("spectralformer")
    plain, _ = small_model("spectralformer", fusion="none")
    missing, unexpected = plain.load_state_dict(caf.state_dict(), strict=False)
    assert not missing and all(k.startswith("fuse.") for k in unexpected)
    caf.eval()
    plain.eval()
    tokens = caf.fuse[0].out_channels
    with torch.no_grad():
        with_caf = caf(x)
        # Weights that keep the current input and drop the skip make CAF the identity.
        for conv in caf.fuse:
            conv.weight.zero_()
            conv.weight[:, :tokens, 0] = torch.eye(tokens)
            conv.bias.zero_()
        torch.testing.assert_close(caf(x), plain(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(with_caf, plain(x), atol=1e-4)


def test_caf_skip_comes_from_the_input_of_layer_l_minus_2():
    model, x = small_model("spectralformer")  # depth 4: CAF at layers 2 and 3
    model.eval()
    tokens = model.fuse[0].out_channels
    inputs: list[torch.Tensor] = []
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    with torch.no_grad():
        # Weights that keep only the skip make layer l's input that of layer l-2.
        for conv in model.fuse:
            conv.weight.zero_()
            conv.weight[:, tokens:, 0] = torch.eye(tokens)
            conv.bias.zero_()
        model(x)
    assert len(inputs) == 4
    torch.testing.assert_close(inputs[2], inputs[0], rtol=0, atol=0)
    torch.testing.assert_close(inputs[3], inputs[1], rtol=0, atol=0)
    assert not torch.allclose(inputs[1], inputs[0])


def test_ssftt_parameters_and_macs_match_the_authors_code():
    """Reference: zgr6010/HSI_SSFTT, cls_SSFTT_IP/SSFTTnet.py, SSFTTnet() for 30 PCA bands, 16
    classes, 13×13 windows, layer by layer: Conv3d 1->8 3×3×3 (224) + BN (16); Conv2d 8·28->64 3×3
    (129,088) + BN (128); W_a 4×64 (256), W_v 64×64 (4,096); positions 5×64 (320), class token 64;
    encoder: 2 LayerNorms (256), qkv 64->192 (12,480), out 64->64 (4,160), MLP 64->8->64 (1,096);
    Linear 64->16 (1,040): 153,224. MACs: conv3d 8·28·11·11·27 (731,808), conv2d 64·9·9·224·9
    (10,450,944), tokenizer 81·64·(4+64) + 4·81·64 (373,248), encoder on 5 tokens 5·64·(192+64+16)
    + 2·8·5·5·8 (90,240), head 1,024: 11,647,264 (a throwaway copy of the authors' module, counted
    by hsicli.models.complexity, gives both figures)."""
    model = create_model("ssftt", 30, 16).eval()
    assert n_params(model) == 153_224
    assert measure_macs(model, (30, 13, 13)).total == 11_647_264
    assert model.num_features == 64


def a2s2k_reference_count(bands, classes, k=24, maps=128):
    """suvojit-0x55aa/A2S2K-ResNet, A2S2KResNet/A2S2KResNet.py, S3KAIResNet(band, classes, 2) with
    PARAM_KERNEL_SIZE 24, layer by layer (every BN has 2 k parameters, the ECA conv 9)."""
    remaining = -(-(bands - 6) // 2)  # the code's kernel_3d
    reduced = bands // 2
    stem = (7 * k + k) + (63 * k + k) + 2 * 2 * k  # 1×1×7, 3×3×7, their BNs
    attention = (k * reduced + reduced) + (reduced * k + k)  # conv_se, conv_ex (one, used twice)
    spectral_conv, spatial_conv = 7 * k * k + k, 9 * k * k + k
    start = 2 * spectral_conv + 2 * 2 * k + 9  # conv1, conv2, bn1, bn2, ECA
    later = [2 * conv + 3 * 2 * k + 9 for conv in (spectral_conv, spatial_conv, spatial_conv)]  # + bn0
    collapse = remaining * k * maps + maps + 2 * maps
    spatial_stem = 9 * maps * k + k + 2 * k
    return stem + attention + start + sum(later) + collapse + spatial_stem + k * classes + classes


def test_a2s2k_parameters_and_macs_within_one_percent_of_the_authors_code():
    # The reference figures (also those of a throwaway copy of the authors' module): 370,856 for
    # Indian Pines (200 bands, 16 classes) and 220,824 for Pavia University (103, 9), which is
    # Lite-C2ANet's Table 7 (220.82 K). Ours adds the paper's second excitation (24 · T//2 + 24)
    # and drops weights the code never uses (its 3×3 ECA's outer taps, two unused BNs); see the
    # module docstring.
    assert a2s2k_reference_count(200, 16) == 370_856
    assert a2s2k_reference_count(103, 9) == 220_824
    for bands, classes in ((200, 16), (103, 9), (204, 16), (30, 16)):
        reference = a2s2k_reference_count(bands, classes)
        ours = n_params(create_model("a2s2k", bands, classes))
        assert ours == reference + (24 * (bands // 2) + 24) - 4 * 6 - 2 * 48
        assert ours == pytest.approx(reference, rel=0.01)
    # MACs for 9×9 windows of 200 bands: the code's 166,433,424 less its ECA's outer taps.
    model = create_model("a2s2k", 200, 16).eval()
    assert measure_macs(model, (200, 9, 9)).total == 166_433_424 - 4 * 24 * 6


def test_a2s2k_branch_attention_depends_on_the_input():
    # The authors' code softmaxes one excitation against itself (always 0.5 / 0.5); ours must not.
    model, x = small_model("a2s2k")
    model.eval()
    weights: list[torch.Tensor] = []
    model.excite.register_forward_hook(lambda _m, _i, out: weights.append(out.unflatten(1, (2, -1)).softmax(1)))
    with torch.no_grad():
        model(x)
    assert not torch.allclose(weights[0], torch.full_like(weights[0], 0.5), atol=1e-3)
    assert not torch.allclose(weights[0][0], weights[0][1])


def test_els2t_matches_the_public_code_and_lite_c2anet_table_7():
    """Reference: DelonKong/ULite_FDRNet, models/ELS2T.py, ELS2T(dataset, patch_size=9) (class
    `overall`: 6 kernels, depth 2, MLP width 1); a throwaway copy counted by hsi's counters gives
    11,847 / 14,344 / 15,837 parameters for Pavia University (103 bands, 9 classes), Salinas (204,
    16) and WHU-Hi-LongKou (270, 9), and 6,825,372 MACs for a 9×9 Pavia window; Lite-C2ANet's
    Table 7 lists 11.85 K, 14.34 K and 15.84 K. With the copy's weights loaded (its 4 inert biases
    at zero), our outputs equal its outputs (1e-7). The count, layer by layer at 9×9 (k = 6, T' = (T - 7) // 2 + 1):
    spatial 1×1 conv (6 T + 6) and 3 blocks of two 3×3 convs with BNs (3 · 684); spectral 7-band
    conv (48), 3 blocks (3 · 540), T'-band conv (36 T' + 6); two MCAMs (2 · 1,185); two 3×3 convs
    (2 · 330); AFF (432); positions 82 · 12, class token 12; 2 encoder layers (2 · 579); head 13 C."""
    def count(bands, classes):
        return 6 * bands + 6 + 3 * 684 + 48 + 3 * 540 + 36 * ((bands - 7) // 2 + 1) + 6 + 2 * 1185 + 660 + 432 \
            + 82 * 12 + 12 + 2 * 579 + 13 * classes
    # Ours leaves out 4 biases that get no gradient (see hsicli/models/els2t.py).
    for bands, classes, reference in ((103, 9, 11_847), (204, 16, 14_344), (270, 9, 15_837)):
        assert count(bands, classes) == reference
        assert n_params(create_model("els2t", bands, classes)) == reference - 4
    assert measure_macs(create_model("els2t", 103, 9).eval(), (103, 9, 9)).total == 6_825_372
    # The position embeddings fix the window.
    assert n_params(create_model("els2t", 103, 9, patch=7)) == 11_843 - (81 - 49) * 12


def test_registry_lists_them_with_paper_protocols():
    patch_models = list_models(PATCH)
    for name in NAMES:
        assert name in patch_models
        spec = get_model_spec(name)
        assert spec.kind is PATCH
        assert spec.description
    h, s, f, t, a, e = (get_model_spec(n).defaults for n in NAMES)
    assert (h.patch, h.optimizer, h.lr, h.batch_size, h.epochs) == (25, "adam", 1e-3, 256, 100)
    assert (s.patch, s.optimizer, s.lr, s.batch_size, s.epochs) == (7, "rmsprop", 3e-4, 16, 200)
    assert (f.patch, f.optimizer, f.lr, f.weight_decay, f.batch_size, f.epochs) == (
        7, "adam", 5e-4, 5e-3, 64, 300,
    )
    assert (t.patch, t.optimizer, t.lr, t.weight_decay, t.batch_size, t.epochs) == (13, "adam", 1e-3, 0.0, 64, 100)
    assert (a.patch, a.optimizer, a.lr, a.batch_size, a.epochs, a.patience) == (9, "adam", 1e-3, 32, 200, 20)
    assert (e.patch, e.optimizer, e.lr, e.batch_size, e.epochs) == (9, "adam", 1e-3, 64, 100)


@pytest.mark.parametrize(
    ("name", "bands", "args"),
    [
        ("hybridsn", 12, {"patch": 25}),  # 3-D kernels span 13 bands
        ("hybridsn", 30, {"patch": 7}),  # valid convolutions need 9×9
        ("hybridsn", 30, {"conv3d_channels": [8, 16]}),
        ("ssrn", 6, {}),
        ("ssrn", 30, {"patch": 2}),
        ("spectralformer", 30, {"group_size": 2}),
        ("spectralformer", 30, {"input_mode": "cube"}),
        ("spectralformer", 30, {"heads": 5}),
        ("ssftt", 2, {}),
        ("ssftt", 30, {"heads": 5}),
        ("a2s2k", 6, {}),
        ("els2t", 6, {}),
    ],
)
def test_impossible_configurations_are_clear_errors(name, bands, args):
    with pytest.raises(HsiError):
        create_model(name, bands, 4, **args)


def test_unknown_argument_is_an_error():
    with pytest.raises(HsiError, match="unknown argument"):
        create_model("ssrn", 30, 4, kernels=3)


@pytest.mark.parametrize(
    ("name", "args"),
    [("ssftt", {"conv3d_kernels": 2, "conv2d_kernels": 16, "heads": 2}), ("a2s2k", {"kernels": 4}),
     ("els2t", {"kernels": 4})],
)
def test_pipe_trains_predicts_evaluates_and_plots(name, args, synthetic_scene, cli, tmp_path):
    # Shrunk by --model-args so that an epoch takes milliseconds; the paper's window (--patch default).
    synthetic_scene("scene.mat", bands=12)
    steps = [("prep", "scene.mat"), ("split", "--ratio", "0.3"),
             ("train", "--model", name, "--epochs", "1", "--threads", "1", "--model-args", json.dumps(args)),
             ("predict", "--threads", "1"), ("evaluate",)]
    outputs = [""]
    for step in steps:
        done = cli(*step, input=outputs[-1])
        assert done.exit_code == 0, (step, done.stderr)
        outputs.append(done.stdout.strip())
    checkpoint, prediction, metrics_path = (Path(p) for p in outputs[3:])
    assert checkpoint.suffix == ".safetensors" and f"-{name}-" in checkpoint.name
    metrics = json.loads(metrics_path.read_text())
    assert metrics["model"] == name and metrics["n"] > 0 and 0 <= metrics["oa"] <= 1
    figure = cli("plot", "map", prediction, "--with-gt")
    assert figure.exit_code == 0, figure.stderr
    assert Path(figure.stdout.strip()).suffix == ".png" and Path(figure.stdout.strip()).stat().st_size > 0
