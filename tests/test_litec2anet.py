"""Lite-C2ANet (issue 5): budgets of the paper's Table 7, the layers of §3 against direct
re-implementations of their equations, and the ablation switches of Table 6."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from hsicli.data.patches import PatchSampler
from hsicli.errors import HsiError, UsageError
from hsicli.models import create_model, get_model_spec
from hsicli.models.complexity import count_macs, count_parameters
from hsicli.models.kinds import PATCH
from hsicli.models.litec2anet import CentralSimilarityGuidance, CoordinateAttention, LiteC2ANet

# Table 7: (bands, classes) -> (parameters, MACs per 9x9 sample).
PAPER = {
    "PU": (103, 9, 5_850, 0.27e6),
    "SV": (204, 16, 11_130, 0.61e6),
    "LK": (270, 9, 14_710, 0.89e6),
}


@pytest.fixture(scope="module")
def budgets() -> dict[str, tuple[int, int]]:
    out = {}
    for name, (bands, classes, _, _) in PAPER.items():
        model = create_model("litec2anet", bands, classes)
        out[name] = (count_parameters(model), count_macs(model, (bands, 9, 9)))
    return out


@pytest.mark.parametrize("name", list(PAPER))
def test_parameters_and_macs_match_table_7(budgets: dict[str, tuple[int, int]], name: str) -> None:
    _, _, paper_params, paper_macs = PAPER[name]
    params, macs = budgets[name]
    assert params == pytest.approx(paper_params, rel=0.15)
    assert macs == pytest.approx(paper_macs, rel=0.25)


def test_parameter_growth_matches_table_7(budgets: dict[str, tuple[int, int]]) -> None:
    # The increases pin the per-band and per-class costs, so no width is fudged to hit one number.
    assert budgets["SV"][0] - budgets["PU"][0] == pytest.approx(5_280, rel=0.15)
    assert budgets["LK"][0] - budgets["PU"][0] == pytest.approx(8_860, rel=0.15)


def test_exact_layer_budget() -> None:
    # The docstring's table: 8 C + 76 D + (D + 1) K + 5 for C = 204 (D = 104).
    model = LiteC2ANet(204, 16)
    assert model.width == 104
    assert count_parameters(model) == 8 * 204 + 76 * 104 + 105 * 16 + 5 == 11_221


def test_registry_entry_and_protocol() -> None:
    spec = get_model_spec("litec2anet")
    assert spec.kind is PATCH
    d = spec.defaults
    assert (d.patch, d.optimizer, d.lr, d.betas, d.batch_size, d.epochs) == (9, "adam", 1e-3, (0.9, 0.999), 64, 100)


@pytest.mark.parametrize(("bands", "classes", "patch"), [(103, 9, 9), (204, 16, 9), (16, 4, 7), (10, 3, 5), (40, 2, 11)])
def test_shapes_and_feature_head_composition(bands: int, classes: int, patch: int) -> None:
    torch.manual_seed(0)
    model = create_model("litec2anet", bands, classes).eval()
    x = torch.randn(3, bands, patch, patch)
    features = model.forward_features(x)
    assert features.shape == (3, model.width)
    logits = model(x)
    assert logits.shape == (3, classes)
    torch.testing.assert_close(logits, model.forward_head(features))
    # The layout the patch sampler produces (channels-last) gives the same answer.
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), logits)


def test_samples_are_independent_in_eval() -> None:
    torch.manual_seed(0)
    model = create_model("litec2anet", 103, 9).eval()
    x = torch.randn(4, 103, 9, 9)
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]))


def test_group_interaction_reads_the_neighbouring_spectral_groups() -> None:
    """Eqs. 8-9: output channel i * G^ + j must see channel i of groups j-1, j, j+1 only."""
    sgri = LiteC2ANet(40, 2).spectral.eval()  # G^ = 3 groups of g_c/2 = 8, D = 24
    groups, half, d = 3, 8, 24
    # Input to the interaction: channel (group j, channel i) holds the constant 10 * j + i + 1.
    y = (10 * torch.arange(groups).view(groups, 1) + torch.arange(half) + 1).float().view(1, d, 1, 1)
    y = y.expand(1, d, 5, 5).contiguous()
    for offset in (-1, 0, 1):
        with torch.no_grad():
            sgri.neighbour_conv.weight.zero_()
            sgri.neighbour_conv.weight[(offset + 1) * d : (offset + 2) * d, 0, 1, 1] = 1.0
        out = sgri.interact(y)[0, :, 1, 1] * math.sqrt(1 + 1e-5)  # undo the fresh BN's eps
        expected = [
            10 * min(max(j + offset, 0), groups - 1) + i + 1 for i in range(half) for j in range(groups)
        ]
        torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float32))


def reference_features(model: LiteC2ANet, x: torch.Tensor) -> torch.Tensor:
    """The forward pass written out from the equations, one spectral group and one channel at a
    time, on channel-major tensors; the module's layout tricks and fused ops must reproduce it."""
    sgri, cpca, acsg = model.spectral, model.spatial, model.guidance
    h, groups, width = sgri.half, sgri.groups, sgri.width
    bands = x.shape[1]
    x = x.contiguous()
    reduced = []  # eqs. 4-6: adjacent groups of g_c bands (the last one shorter) -> g_c / 2 channels each
    for j in range(groups):
        weight = sgri.reduce_full.weight[j * h : (j + 1) * h] if (j + 1) * 2 * h <= bands else sgri.reduce_rest.weight
        reduced.append(F.conv2d(x[:, j * 2 * h : (j + 1) * 2 * h], weight))
    y = sgri.supplement(sgri.reduce_act(torch.cat(reduced, 1)))  # eq. 7
    # Eqs. 8-9: output (i, j) sums the 3x3 convs of channel i of groups j-1, j, j+1 (edges repeated),
    # each with its own weight (offset-major, then group-major target index).
    mixed = []
    for i in range(h):
        for j in range(groups):
            terms = [
                F.conv2d(y[:, [min(max(j + o, 0), groups - 1) * h + i]],
                         sgri.neighbour_conv.weight[[k * width + j * h + i]])
                for k, o in enumerate((-1, 0, 1))
            ]
            mixed.append(terms[0] + terms[1] + terms[2])
    f = sgri.interact_act(torch.cat(mixed, 1))  # (B, D, H, W)

    def attention(pooled: torch.Tensor) -> torch.Tensor:  # eqs. 12-17 on (B, D, L)
        parts = [F.conv1d(p, c.weight, c.bias, padding=c.kernel_size[0] // 2, groups=c.groups)
                 for c, p in zip(cpca.convs, pooled.chunk(4, 1))]
        return torch.sigmoid(cpca.norm(torch.cat(parts, 1)))

    a = f * attention(f.mean(3)).unsqueeze(3) * attention(f.mean(2)).unsqueeze(2)  # eqs. 10-11, 18
    tokens = a.flatten(2).transpose(1, 2)  # (B, N, D)
    mid = f.shape[-1] // 2
    centre = model.centre(f[:, :, mid, mid].unsqueeze(1)).squeeze(1)  # §3.3's refined centre
    distance = torch.cdist(tokens, centre.unsqueeze(1)).squeeze(2)
    cosine = F.cosine_similarity(tokens, centre.unsqueeze(1), dim=2, eps=1e-6)
    lam = torch.sigmoid(acsg.mix)
    s = lam * torch.softmax(1 / (1 + distance + acsg.eps), 1) + (1 - lam) * torch.softmax(cosine, 1)  # eqs. 19-20
    return (tokens * s.unsqueeze(2) + tokens).mean(1)  # eq. 21, global average pooling


@pytest.mark.parametrize(("bands", "patch"), [(44, 9), (48, 7)])
def test_forward_and_gradients_match_the_equations_written_out(bands: int, patch: int) -> None:
    """The optimised layers (shifted-map interaction, channels-last CPCA) against the plain formulation,
    in training (batch statistics, running-stat updates, gradients) and in eval mode."""
    torch.manual_seed(0)
    model = LiteC2ANet(bands, 5)
    with torch.no_grad():  # every parameter away from its initial value, so no term hides behind a 0 or 1
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    reference = copy.deepcopy(model)
    x = torch.randn(6, patch, patch, bands).permute(0, 3, 1, 2)  # channels-last, as the sampler gives
    y = torch.arange(6) % 5
    features, expected = model.forward_features(x), reference_features(reference, x)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    F.cross_entropy(model.head(features), y).backward()
    F.cross_entropy(reference.head(expected), y).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, b), c in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(b, c, msg=name)
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), reference_features(reference, x), rtol=1e-5, atol=1e-5)


def test_pixel_stage_patches_equal_raw_patches() -> None:
    """Predicting from the per-pixel stage applied once to the scene gives the raw patches' outputs."""
    torch.manual_seed(0)
    model = LiteC2ANet(44, 5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    cube = torch.randn(12, 10, 44)
    rows, cols = torch.meshgrid(torch.arange(12), torch.arange(10), indexing="ij")
    rows, cols = rows.flatten().numpy(), cols.flatten().numpy()
    raw = torch.from_numpy(PatchSampler.from_cube(cube.numpy(), 9).patches(rows, cols)).permute(0, 3, 1, 2)
    with torch.no_grad():
        staged_cube = model.pixel_stage(cube.permute(2, 0, 1).unsqueeze(0))[0].permute(1, 2, 0)
        assert staged_cube.shape == (12, 10, model.width)
        staged = PatchSampler.from_cube(staged_cube.contiguous().numpy(), 9).patches(rows, cols)
        expected = model(raw)
        torch.testing.assert_close(model(torch.from_numpy(staged).permute(0, 3, 1, 2), staged=True), expected,
                                   rtol=1e-5, atol=1e-5)
    assert LiteC2ANet(44, 5, sgri=False).pixel_stage is None


def test_coordinate_attention_matches_eqs_10_to_18() -> None:
    torch.manual_seed(0)
    cpca = CoordinateAttention(16)
    for conv in cpca.convs:
        torch.nn.init.normal_(conv.weight)
    f = torch.randn(2, 16, 7, 7)  # (B, D, H, W)

    def attention(pooled: torch.Tensor) -> torch.Tensor:  # (B, D, L)
        parts = [F.conv1d(p, c.weight, c.bias, padding=c.kernel_size[0] // 2, groups=4)
                 for c, p in zip(cpca.convs, pooled.split(4, 1))]
        return torch.sigmoid(cpca.norm(torch.cat(parts, 1)))

    a_h = attention(f.mean(3)).unsqueeze(3)  # pooled along W
    a_w = attention(f.mean(2)).unsqueeze(2)  # pooled along H
    expected = a_h * a_w * f
    out = cpca(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected)
    assert [c.kernel_size[0] for c in cpca.convs] == [1, 3, 5, 7]
    assert all(c.groups == c.in_channels == 4 for c in cpca.convs)


def test_central_similarity_guidance_matches_eqs_19_to_21() -> None:
    torch.manual_seed(0)
    acsg = CentralSimilarityGuidance()
    with torch.no_grad():
        acsg.mix.fill_(0.7)
    tokens = torch.randn(2, 9, 6)
    centre = torch.randn(2, 6)
    lam = 1 / (1 + math.exp(-0.7))
    expected = torch.empty_like(tokens)
    for b in range(2):
        dist = torch.stack([torch.linalg.norm(tokens[b, n] - centre[b]) for n in range(9)])
        cos = torch.stack([tokens[b, n] @ centre[b] / (tokens[b, n].norm() * centre[b].norm()) for n in range(9)])
        s = lam * torch.softmax(1 / (1 + dist + 1e-6), 0) + (1 - lam) * torch.softmax(cos, 0)
        expected[b] = tokens[b] * s[:, None] + tokens[b]
    torch.testing.assert_close(acsg(tokens, centre), expected)


def test_lambda_stays_in_unit_interval() -> None:
    torch.manual_seed(0)
    model = create_model("litec2anet", 103, 9)
    assert model.guidance is not None
    assert float(model.guidance.lam.detach()) == pytest.approx(0.5)
    for raw in (-1e4, -3.0, 0.0, 3.0, 1e4):
        with torch.no_grad():
            model.guidance.mix.fill_(raw)
        lam = float(model.guidance.lam.detach())
        assert 0.0 <= lam <= 1.0
        assert lam == pytest.approx(1 / (1 + math.exp(-max(min(raw, 50), -50))), abs=1e-6)
    # Training moves lambda (it is learnt) and keeps it inside [0, 1].
    with torch.no_grad():
        model.guidance.mix.fill_(0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 103, 9, 9), torch.arange(8) % 9
    for _ in range(5):
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    lam = float(model.guidance.lam.detach())
    assert 0.0 <= lam <= 1.0 and abs(lam - 0.5) > 1e-3


@pytest.mark.parametrize(
    "args",
    [{}, {"sgri": False}, {"cpca": "vit"}, {"acsg": False}, {"group_channels": 8}, {"group_channels": 24}],
)
def test_gradients_reach_every_parameter(args: dict) -> None:
    torch.manual_seed(0)
    model = create_model("litec2anet", 103, 9, **args).train()
    x = torch.randn(6, 103, 9, 9)
    F.cross_entropy(model(x), torch.arange(6) % 9).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_ablation_switches_change_the_model_as_table_6() -> None:
    bands, classes = 103, 9
    full = count_parameters(create_model("litec2anet", bands, classes))
    d = 56
    # Case 3: ACSG is parameter-free but for lambda; with it goes the central Conv1d (3 + 1).
    assert count_parameters(create_model("litec2anet", bands, classes, acsg=False)) == full - 5
    # Case 1: SGRI (8 C + 67 D weights and BN) replaced by one dense 3x3 conv C -> D + BN.
    no_sgri = count_parameters(create_model("litec2anet", bands, classes, sgri=False))
    sgri_params = 8 * bands + (36 + 27 + 3 * 2) * d
    assert no_sgri == full - sgri_params + 9 * bands * d + 2 * d
    assert no_sgri > 9 * full  # the paper: "more than ten times" (66.59 K vs 5.85 K)
    # Case 2: a transformer block (attention 4 D^2 + 4 D, MLP D -> D/2 -> D, two LayerNorms)
    # instead of CPCA's 7 D.
    vit = count_parameters(create_model("litec2anet", bands, classes, cpca="vit"))
    vit_block = 4 * d * d + 4 * d + (d * d // 2 + d // 2) + (d * d // 2 + d) + 4 * d
    assert vit == full - 7 * d + vit_block
    # Fig. 4's g_c: wider groups, fewer of them.
    g24 = create_model("litec2anet", bands, classes, group_channels=24)
    assert g24.width == math.ceil(bands / 24) * 12


@pytest.mark.parametrize(
    "args",
    [{"group_channels": 12}, {"group_channels": 0}, {"cpca": "transformer"}, {"sgri": "no"}, {"acsg": 1}],
)
def test_bad_arguments_are_usage_errors(args: dict) -> None:
    with pytest.raises(UsageError):
        create_model("litec2anet", 103, 9, **args)


@pytest.mark.parametrize("shape", [(2, 16, 2, 2), (2, 16, 9, 7)])
def test_patches_must_be_square_and_at_least_3x3(shape: tuple[int, ...]) -> None:
    with pytest.raises(HsiError, match="square patches"):
        create_model("litec2anet", 16, 3)(torch.randn(shape))


def test_learns_a_small_synthetic_problem() -> None:
    """End to end: four classes whose spectra differ in one band range each, plus noise."""
    torch.manual_seed(0)
    n, bands, classes = 32, 32, 4
    labels = torch.arange(n) % classes
    spectra = torch.zeros(n, bands)
    for k in range(classes):
        spectra[labels == k, k * 8 : (k + 1) * 8] = 1.0
    model = create_model("litec2anet", bands, classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = spectra[:, :, None, None] + 0.5 * torch.randn(n, bands, 5, 5)
    for _ in range(20):
        optimiser.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        test = spectra[:, :, None, None] + 0.5 * torch.randn(n, bands, 5, 5)
        accuracy = (model(test).argmax(1) == labels).float().mean()
    assert accuracy >= 0.9
