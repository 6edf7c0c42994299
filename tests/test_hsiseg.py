"""HSIseg (issue 6): DSRT regions, region attention, shapes, gradients, loss weights, DFS masks,
presets, and the segmenter engine's window prediction.

Models are shrunk to d = 8 and two or three token grids so that a pass takes milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hsicli.engine.windows import default_stride, hann_weights, predict_windows, reflect, scene_inputs, window_centres
from hsicli.errors import StoreError, UsageError
from hsicli.models.complexity import count_parameters
from hsicli.models.thresholds import adaptive_threshold
from hsicli.models.hsiseg import (
    DFS, HSIseg, IGNORE, PAPER_SETTINGS, LossWeights, RegionTokens, quadrant_masks, quadrant_sums,
)
from hsicli.models.kinds import SEGMENTER
from hsicli.models.registry import create_model, get_model_spec
from hsicli.store.scene import SceneStore

torch.set_num_threads(1)

TINY = {"dim": 8, "heads": 2, "grids": (4, 3), "dropout": 0.0}


def targets(batch: int, size: int, classes: int, seed: int = 0) -> torch.Tensor:
    """IGNORE everywhere but the centre and a few other pixels, as the engine's window targets are."""
    g = torch.Generator().manual_seed(seed)
    t = torch.full((batch, size, size), IGNORE)
    t[:, size // 2, size // 2] = torch.randint(0, classes, (batch,), generator=g)
    t[:, 1, 2] = torch.randint(0, classes, (batch,), generator=g)
    return t


# -- DSRT regions -------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(5, 5), (4, 7), (1, 3), (6, 1)])
def test_regions_are_the_closed_quadrants_through_every_query(height, width):
    masks = quadrant_masks(height, width)
    assert masks.shape == (4, height, width, height, width)
    rows, cols = np.indices((height, width))
    for h in range(height):
        for w in range(width):
            regions = masks[:, h, w].numpy()
            assert regions.any(0).all(), "the four regions cover the grid"
            covered = regions.sum(0)
            on_cross = (rows == h) | (cols == w)
            assert (covered[~on_cross] == 1).all(), "off row h and column w, regions do not overlap"
            assert (covered[on_cross] >= 2).all() and covered[h, w] == 4
            sizes = regions.reshape(4, -1).sum(1)
            expected = [(h + 1) * (w + 1), (h + 1) * (width - w), (height - h) * (w + 1), (height - h) * (width - w)]
            assert sizes.tolist() == expected
            # R1 is top-left: it holds (0, 0) and (h, w) but nothing below row h or right of column w.
            assert regions[0, 0, 0] and not regions[0][rows > h].any() and not regions[0][cols > w].any()
            assert not regions[3][rows < h].any() and not regions[3][cols < w].any()


def test_quadrant_sums_equal_the_masked_sums():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(2, 3, 4, 5, 6, 7, generator=g, dtype=torch.float64)  # region axis at -4
    masks = quadrant_masks(5, 6).double()
    expected = torch.einsum("rhwij,abrijc->abrhwc", masks, values)
    assert torch.allclose(quadrant_sums(values, region_dim=-4), expected)
    plain = values[..., 0]  # region axis at -3
    assert torch.allclose(quadrant_sums(plain, region_dim=-3), torch.einsum("rhwij,abrij->abrhw", masks, plain))


def test_region_tokens_equal_window_attention_over_each_region():
    """The cumulative-sum form equals eq. 30's attention of the region token over [token, region]."""
    torch.manual_seed(0)
    dim, heads, grid = 8, 2, 4
    module = RegionTokens(dim, grid, heads, mlp_ratio=2.0, dropout=0.0).double().eval()
    with torch.no_grad():  # larger scores than at initialisation, to exercise the shifted softmax
        module.cls.normal_(0, 2.0)
        module.pos.normal_(0, 1.0)
    tokens = torch.randn(2, grid * grid, dim, dtype=torch.float64)
    with torch.no_grad():
        fast = module(tokens, grid)
        b, n, dh = 2, grid * grid, dim // heads
        keys, values = module.key_value(module.norm(module.embed(tokens + module.pos))).chunk(2, -1)
        cls = module.embed(module.cls)
        q = module.query(module.norm(cls)).view(4, heads, dh)
        cls_k, cls_v = module.key_value(module.norm(cls)).chunk(2, -1)
        masks = quadrant_masks(grid, grid).reshape(4, n, n)
        reference = torch.empty(b, n, 4, dim, dtype=torch.float64)
        for region in range(4):
            for head in range(heads):
                part = slice(head * dh, (head + 1) * dh)
                qr = q[region, head]
                scores = keys[..., part] @ qr / math.sqrt(dh)  # (B, N keys)
                self_score = cls_k[region, part] @ qr / math.sqrt(dh)
                for query in range(n):
                    allowed = masks[region, query]
                    logits = torch.cat([self_score.expand(b, 1), scores[:, allowed]], 1)
                    weights = torch.softmax(logits, 1)
                    vals = torch.cat([cls_v[region, part].expand(b, 1, dh), values[:, allowed, part]], 1)
                    reference[:, query, region, part] = (weights[..., None] * vals).sum(1)
        region_tokens = cls + module.out(reference)
        reference = region_tokens + module.mlp(module.mlp_norm(region_tokens))
    assert torch.allclose(fast, reference, atol=1e-10)


# -- shapes, gradients, ablations ---------------------------------------------------------------


@pytest.mark.parametrize("window", [33, 41, 57])
@pytest.mark.parametrize("aux_bands", [0, 1, 2, 3])
def test_output_shapes(window, aux_bands):
    torch.manual_seed(0)
    model = HSIseg(6, 4, aux_bands=aux_bands, **TINY)
    assert model.input_channels == 6 + aux_bands
    x = torch.randn(2, 6 + aux_bands, window, window)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 4, window, window)
    model.train()
    logits = model(x)
    assert logits.shape == (2, 4, window, window)
    outputs = model._train_outputs
    assert outputs["dice_probabilities"].shape == (2, 4, window, window)
    assert torch.allclose(outputs["dice_probabilities"].sum(1), torch.ones(2, window, window), atol=1e-5)
    if aux_bands:
        assert outputs["reconstruction"].shape == (2, aux_bands, window, window)
    loss = model.training_loss(logits, targets(2, window, 4))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss >= 0


def test_resize_keeps_the_window_size_at_the_output():
    model = HSIseg(5, 3, resize=24, **TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 5, 33, 33)).shape == (1, 3, 33, 33)


@pytest.mark.parametrize("args, strict", [
    ({}, True),
    ({"aux_bands": 2}, True),
    ({"aux_bands": 1, "sources": "aux"}, False),
    ({"aux_bands": 2, "mixer": "vit", "fusion": "sum", "skip_fusion": "concat"}, False),
    ({"aux_bands": 2, "fusion": "concat", "skip_fusion": "sum"}, False),
    ({"aux_bands": 2, "fusion": "none"}, False),
])
def test_gradients_reach_every_parameter(args, strict):
    """Every parameter is in the loss's graph (DFS included, through the Dice loss); for the two main
    configurations also non-zero — for the ablations an SE layer whose four ReLU units all start
    inactive at this seed may legitimately get a zero gradient, so only reachability is checked."""
    torch.manual_seed(1)
    model = HSIseg(5, 3, **{**TINY, "dim": 16, **args}).train()
    x = torch.randn(4, model.input_channels, 17, 17)
    model.training_loss(model(x), targets(4, 17, 3)).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    silent = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not (strict and silent), silent


def test_ablations_build_what_they_name():
    names = lambda m: {type(module).__name__ for module in m.modules()}  # noqa: E731
    assert "DSRTBlock" in names(HSIseg(5, 3, **TINY)) and "ViTBlock" not in names(HSIseg(5, 3, **TINY))
    vit = HSIseg(5, 3, mixer="vit", **TINY)
    assert "ViTBlock" in names(vit) and "DSRTBlock" not in names(vit)
    assert "CFI" not in names(HSIseg(5, 3, skip_fusion="sum", **TINY))
    both = HSIseg(5, 3, aux_bands=2, **TINY)
    assert both.sources == "both" and hasattr(both, "aux") and len(both.encoder_links) == 2
    hsi_only = HSIseg(5, 3, aux_bands=2, sources="hsi", **TINY)
    assert not hasattr(hsi_only, "aux")
    # HSI only ignores the auxiliary channels; auxiliary only ignores the HSI bands.
    x = torch.randn(1, 7, 17, 17)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    with torch.no_grad():
        assert torch.equal(hsi_only.eval()(x), hsi_only(x2))
        aux_only = HSIseg(5, 3, aux_bands=2, sources="aux", **TINY).eval()
        x3 = x.clone()
        x3[:, :5] += 1.0
        assert torch.equal(aux_only(x), aux_only(x3))
        assert not torch.equal(aux_only(x), aux_only(x2))


@pytest.mark.parametrize("args", [
    {"mixer": "swin"}, {"fusion": "mean"}, {"skip_fusion": "none"}, {"sources": "both"}, {"dim": 10, "heads": 4},
    {"tau1": 1.5}, {"grids": []},
])
def test_bad_arguments_are_usage_errors(args):
    with pytest.raises(UsageError):
        HSIseg(5, 3, **{**TINY, **args})


# -- losses -------------------------------------------------------------------------------------


def test_learned_loss_weights_favour_the_largest_loss_without_collapsing():
    """Minimised, plain softmax weights would put everything on the smallest loss (the reverse of
    the paper's Fig. 14); the weights ascend instead, with the KL guard, and settle at
    w ∝ exp(L / mean L): the largest loss weighs most, every weight well above zero."""
    losses = torch.tensor([0.001, 1.0, 2.0, 1.0])
    weights = LossWeights(("alpha", "beta", "gamma", "delta"))
    optimiser = torch.optim.Adam(weights.parameters(), lr=0.1)
    for _ in range(500):
        optimiser.zero_grad()
        weights(losses).backward()
        optimiser.step()
    learned = torch.tensor(list(weights.values().values()))
    expected = torch.softmax(losses / losses.mean(), 0)
    assert torch.allclose(learned, expected, atol=1e-3)
    assert learned.argmax() == 2 and learned.argmin() == 0
    assert learned.min() > 0.05 and learned.max() < 0.7
    # The network's gradient is that of Σ w L at the current weights, and so is the reported value.
    parameter = torch.tensor([0.001, 1.0, 2.0, 1.0], requires_grad=True)
    total = weights(parameter)
    total.backward()
    assert torch.allclose(parameter.grad, learned, atol=1e-6)
    assert math.isclose(float(total.detach()), float((learned * losses).sum()), rel_tol=1e-5)
    assert math.isclose(float(learned.sum()), 1.0, abs_tol=1e-5)
    # Without the guard the same optimisation collapses onto the smallest loss.
    logits = torch.zeros(4, requires_grad=True)
    plain = torch.optim.Adam([logits], lr=0.1)
    for _ in range(500):
        plain.zero_grad()
        (torch.softmax(logits, 0) * losses).sum().backward()
        plain.step()
    assert torch.softmax(logits, 0)[0] > 0.99


def test_loss_weights_stay_balanced_while_training_and_are_reported():
    torch.manual_seed(0)
    model = HSIseg(5, 3, aux_bands=1, **TINY).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(2, 6, 13, 13)
    t = targets(2, 13, 3)
    for _ in range(10):
        optimiser.zero_grad()
        model.training_loss(model(x), t).backward()
        optimiser.step()
    record = model.history_extras()["loss_weights"]
    assert set(record) == {"alpha", "beta", "gamma", "delta"}
    assert math.isclose(sum(record.values()), 1.0, abs_tol=1e-4)
    assert min(record.values()) > 0.05


def test_cross_entropy_and_dice_only_see_training_pixels():
    torch.manual_seed(0)
    model = HSIseg(5, 3, **TINY).train()
    x = torch.randn(2, 5, 17, 17)
    t = targets(2, 17, 3)
    logits = model(x)
    loss = model.training_loss(logits, t)
    # Changing what the model predicts away from the training pixels leaves the loss unchanged.
    mask = (t == IGNORE).unsqueeze(1)
    bumped = logits + mask * torch.randn_like(logits) * 5
    model._train_outputs["dice_probabilities"] = torch.where(
        mask, torch.rand_like(logits), model._train_outputs["dice_probabilities"])
    assert torch.allclose(model.training_loss(bumped, t), loss)


def test_dfs_masks_follow_the_threshold_rule():
    torch.manual_seed(0)
    dfs = DFS(8, 3, levels=3, tau=0.4).eval()
    bottleneck = torch.randn(2, 8, 3, 3)
    outputs = dfs(bottleneck, [(3, 3), (4, 4), (9, 9)])
    assert [p.shape for p, _ in outputs] == [(2, 3, 3, 3), (2, 3, 4, 4), (2, 3, 9, 9)]
    for probabilities, mask in outputs:
        confidence = probabilities.detach().max(1).values  # (B, h, w)
        for sample in range(2):
            c = confidence[sample].double()
            threshold = max(0.4, float(c.mean() + c.std(unbiased=False)))
            assert torch.equal(mask[sample, 0].bool(), c >= threshold - 1e-7)
        assert mask.grad_fn is None and probabilities.grad_fn is not None  # the mask is a constant


# -- presets, registry --------------------------------------------------------------------------


def test_presets_follow_section_4_3_3_and_table_3():
    ip = create_model("hsiseg-ip", 30, 16)
    assert ip.grids == (12, 10, 8, 6, 4) and ip.resize == 144
    assert len(ip.main.encoders) == 5 and len(ip.main.decoders) == 5
    assert len(ip.main.encoders[0].blocks) == 4 and ip.dfs.tau == 0.8
    spec = get_model_spec("hsiseg-ip")
    assert spec.kind is SEGMENTER
    ip_defaults = spec.defaults
    assert (ip_defaults.patch, ip_defaults.epochs, ip_defaults.batch_size, ip_defaults.lr) == (33, 300, 32, 0.0015)
    pu = get_model_spec("hsiseg-pu").defaults
    assert (pu.patch, pu.epochs, pu.batch_size, pu.lr) == (49, 200, 64, 0.001)
    assert PAPER_SETTINGS["ip"]["iterations"] == 14 and PAPER_SETTINGS["pu"]["iterations"] == 8
    assert create_model("hsiseg-pu", 15, 9).dfs.tau == 0.9
    # Ablation arguments override a preset.
    assert isinstance(create_model("hsiseg-pu", 15, 9, mixer="vit").main.encoders[0].blocks[0].attention,
                      torch.nn.MultiheadAttention)
    default = create_model("hsiseg", 30, 16)
    assert default.resize is None and default.grids == (8, 6, 4)
    assert get_model_spec("hsiseg").defaults.patch == 33


def test_hsi_models_prints_the_parameter_count(cli):
    result = cli("models", "hsiseg", "--bands", "30", "--classes", "6", "--json")
    assert result.exit_code == 0, result.stderr
    (row,) = __import__("json").loads(result.stdout)["models"]
    assert row["kind"] == "segmenter" and row["patch"] == 33
    assert row["parameters"] == count_parameters(create_model("hsiseg", 30, 6)) > 0
    assert row["macs"] > 0


# -- window prediction --------------------------------------------------------------------------


class Pixelwise(torch.nn.Module):
    """A 1×1 conv: each pixel's output is independent of the window it sits in."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(bands, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Contextual(torch.nn.Module):
    """Output depends on the window (zero-padded 5×5 conv plus a window-mean term)."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(bands, classes, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x.mean((1, 2, 3))[:, None, None, None]


def reference_blend(model, cube: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Window by window, the naive way: every window of the grid, reflect-padded, weighted."""
    height, width, _ = cube.shape
    r = window // 2
    weights = hann_weights(window)
    total = np.zeros((height, width, 0))
    norm = np.zeros((height, width))
    for cr in window_centres(height, stride):
        for cc in window_centres(width, stride):
            rows = reflect(np.arange(cr - r, cr + r + 1), height)
            cols = reflect(np.arange(cc - r, cc + r + 1), width)
            x = torch.from_numpy(cube[rows][:, cols]).permute(2, 0, 1)[None]
            with torch.no_grad():
                p = torch.softmax(model(x), 1)[0].permute(1, 2, 0).double().numpy()
            if total.shape[2] == 0:
                total = np.zeros((height, width, p.shape[2]))
            for i in range(window):
                for j in range(window):
                    y, x_ = cr - r + i, cc - r + j
                    if 0 <= y < height and 0 <= x_ < width:
                        total[y, x_] += weights[i, j] * p[i, j]
                        norm[y, x_] += weights[i, j]
    return total / norm[..., None]


def run_windows(model, cube, window, stride, top=0, bottom=None, calls=None, batch_size=5):
    height, width, _ = cube.shape

    def read(rows: slice):
        if calls is not None:
            calls.append((rows.start, rows.stop))
        return cube[rows]

    return predict_windows(model, read, height=height, width=width, top=top, bottom=bottom or height,
                           window=window, stride=stride, batch_size=batch_size, device="cpu")


@pytest.mark.parametrize("height, width, window", [(13, 11, 5), (4, 9, 7), (20, 3, 9)])
def test_window_prediction_covers_every_pixel(height, width, window):
    torch.manual_seed(0)
    model = Pixelwise(3, 4).eval()
    cube = np.random.default_rng(0).normal(size=(height, width, 3)).astype(np.float32)
    blended = run_windows(model, cube, window, default_stride(window))
    with torch.no_grad():
        direct = torch.softmax(model(torch.from_numpy(cube).permute(2, 0, 1)[None]), 1)[0].permute(1, 2, 0).numpy()
    # A pixel predicted alike by every window keeps that prediction: the blend is normalised and
    # reaches every row and column, borders and corners included.
    assert blended.shape == (height, width, 4)
    assert np.allclose(blended, direct, atol=1e-5)


@pytest.mark.parametrize("stride", [3, 4, 7])
def test_window_prediction_equals_the_reference_blend(stride):
    torch.manual_seed(0)
    model = Contextual(3, 4).eval()
    cube = np.random.default_rng(1).normal(size=(15, 12, 3)).astype(np.float32)
    blended = run_windows(model, cube, 7, stride)
    assert np.allclose(blended, reference_blend(model, cube, 7, stride), atol=1e-5)
    assert np.allclose(blended.sum(2), 1.0, atol=1e-5)


def test_row_blocks_read_a_halo_and_equal_the_whole_scene():
    torch.manual_seed(0)
    model = Contextual(3, 4).eval()
    cube = np.random.default_rng(2).normal(size=(23, 10, 3)).astype(np.float32)
    window, stride = 7, 3
    whole = run_windows(model, cube, window, stride, batch_size=4)
    parts, calls = [], []
    for top in range(0, 23, 6):
        bottom = min(top + 6, 23)
        parts.append(run_windows(model, cube, window, stride, top, bottom, calls, batch_size=3))
        lo, hi = calls[-1]
        assert lo >= max(0, top - window) and hi <= min(23, bottom + window), "only the halo is read"
    assert np.allclose(np.concatenate(parts), whole, atol=1e-6)


def test_window_prediction_with_hsiseg_is_a_probability_map():
    torch.manual_seed(0)
    model = HSIseg(4, 3, **TINY).eval()
    cube = np.random.default_rng(3).normal(size=(30, 26, 4)).astype(np.float32)
    p = run_windows(model, cube, 17, 8)
    assert p.shape == (30, 26, 3) and np.allclose(p.sum(2), 1.0, atol=1e-5) and (p > 0).all()


def test_window_prediction_rejects_bad_geometry():
    model = Pixelwise(3, 2)
    cube = np.zeros((5, 5, 3), np.float32)
    with pytest.raises(Exception, match="odd"):
        run_windows(model, cube, 4, 2)
    with pytest.raises(Exception, match="stride"):
        run_windows(model, cube, 5, 6)


def test_threshold_rule_on_torch_and_numpy_alike():
    values = np.array([[0.2, 0.4], [0.6, 0.8]])
    mu_sigma = 0.5 + math.sqrt(0.05)
    assert math.isclose(adaptive_threshold(values, 0.7).item(), mu_sigma)
    assert math.isclose(adaptive_threshold(values, 0.8).item(), 0.8)
    t = adaptive_threshold(torch.tensor(values)[None, None], 0.7, axis=(2, 3))
    assert t.shape == (1, 1, 1, 1) and math.isclose(float(t), mu_sigma, rel_tol=1e-12)


# -- auxiliary inputs ---------------------------------------------------------------------------


def make_store(path, *, aux: np.ndarray | None) -> SceneStore:
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(6, 5, 4)).astype(np.float32)
    return SceneStore.create(
        path, cube=cube, gt=np.ones((6, 5), np.uint16), rgb=np.zeros((6, 5, 3), np.uint8),
        attrs={"class_names": ["a", "b"], "class_colors": ["#000000", "#ffffff"]},
        transform={"offset": np.zeros(4, np.float32)}, transform_attrs={}, aux=aux,
    )


def test_scene_inputs_append_the_auxiliary_bands(tmp_path):
    aux = np.arange(6 * 5 * 2, dtype=np.float32).reshape(6, 5, 2)
    store = make_store(tmp_path / "a.zarr", aux=aux)
    assert np.array_equal(scene_inputs(store, 0), store.cube())
    rows = scene_inputs(store, 2, slice(1, 4))
    assert rows.shape == (3, 5, 6)
    assert np.array_equal(rows[..., :4], store.cube()[1:4]) and np.array_equal(rows[..., 4:], aux[1:4])
    with pytest.raises(StoreError, match="has 2"):
        scene_inputs(store, 3)
    with pytest.raises(StoreError, match="no auxiliary"):
        scene_inputs(make_store(tmp_path / "b.zarr", aux=None), 1)


# -- the engine's segmenter path (once wired by the lead) ---------------------------------------


def _aux_path_wired() -> bool:
    """The training engine appends the aux rasters for a model with `aux_bands` (`scene_inputs`)
    and records `history_extras`; the prediction engine blends windows (`predict_windows`)."""
    import inspect

    import hsicli.engine.predict as predict_module
    import hsicli.engine.train as train_module

    train_source = inspect.getsource(train_module)
    return ("scene_inputs" in train_source and "history_extras" in train_source
            and "predict_windows" in inspect.getsource(predict_module))


@pytest.mark.skipif(not _aux_path_wired(),
                    reason="the lead has not wired the segmenter path yet: hsicli/engine/train.py does not use "
                           "scene_inputs / history_extras, or hsicli/engine/predict.py does not use predict_windows")
def test_training_and_prediction_with_auxiliary_bands(tmp_path):
    from hsicli.data.splits import stratified
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import read_header
    from hsicli.store.prediction import PredictionStore

    rng = np.random.default_rng(0)
    height, width = 16, 14
    gt = np.broadcast_to(np.arange(width) * 2 // width + 1, (height, width)).astype(np.uint16)
    cube = (np.eye(4, dtype=np.float32)[gt] + 0.3 * rng.normal(size=(height, width, 4))).astype(np.float32)
    aux = (gt[..., None] * np.ones(2) + 0.1 * rng.normal(size=(height, width, 2))).astype(np.float32)
    store = SceneStore.create(
        tmp_path / "aux.zarr", cube=cube, gt=gt, rgb=np.zeros((height, width, 3), np.uint8),
        attrs={"class_names": ["a", "b"], "class_colors": ["#000000", "#ffffff"]},
        transform={"offset": np.zeros(4, np.float32)}, transform_attrs={}, aux=aux,
    )
    store.add_layer("splits", "s", stratified(gt, train=0.05, val=0.05, seed=0).astype(np.uint8), {})
    args = {**TINY, "grids": [3, 2], "aux_bands": 2}
    result = train(store.path, TrainOptions(model="hsiseg", model_args=args, split="s", patch=9, epochs=2,
                                            batch_size=4, device="cpu", threads=1), command="test")
    _, meta = read_header(result.path)
    history = meta["training"]["history"]
    assert [set(entry["loss_weights"]) for entry in history] == [{"alpha", "beta", "gamma", "delta"}] * 2
    pred = predict(result.path, PredictOptions(device="cpu", threads=1), command="test").path
    probabilities = PredictionStore.open(pred).probabilities()
    assert probabilities.shape == (height, width, 2) and np.allclose(probabilities.sum(2), 1.0, atol=1e-5)
    # The auxiliary bands reach the model: a store whose rasters differ predicts differently.
    model = create_model("hsiseg", 4, 2, **args)
    from hsicli.engine.train import load_weights
    from hsicli.store.checkpoint import load_arrays

    load_weights(model, load_arrays(result.path)[0], "model.", result.path)
    model.eval()
    blended = run_windows(model, scene_inputs(store, 2), 9, 4)
    assert np.allclose(blended, probabilities, atol=1e-5)
    shuffled = scene_inputs(store, 2).copy()
    shuffled[..., 4:] = shuffled[:, ::-1, 4:]  # the stripes mirrored: other classes' rasters
    assert not np.allclose(run_windows(model, shuffled, 9, 4), probabilities, atol=1e-3)
