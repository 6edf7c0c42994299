"""`hsi plot` (issue 7): every kind renders headless to PNG and SVG from real artifacts.

Artifacts are built once per module: a tiny synthetic scene with hand-made checkpoints and
prediction stores (always), the SalinasA pipeline run in-process (prep → split → SVM and a
shrunk HybridSN → predict → evaluate, plus a tiny HSIseg for its learned loss weights; skipped
when ../shared/data is absent), and georeferenced ENVI and GeoTIFF scenes through `hsi prep |
split | train | predict` (skipped without rasterio). Figures are checked by file type and pixel
size, by the data drawn in them (bar heights, line values, matrix cells), raw maps pixel by pixel
against the class colours of the store, and GeoTIFFs against the scene's CRS and transform as
GDAL reads them from the original file.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hsicli.cli import app
from hsicli.data.splits import TEST, TRAIN, VAL
from hsicli.engine.evaluate import evaluate
from hsicli.errors import HsiError, InputError, OutputExistsError, StoreError, UsageError
from hsicli.plot import KINDS
from hsicli.plot.common import PlotOptions
from hsicli.store.checkpoint import save_arrays
from hsicli.store.prediction import PredictionStore
from hsicli.store.provenance import describe_file
from hsicli.store.scene import SceneStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SALINAS_A = DATA / "salinasA"
NAMES = ["water", "forest", "crop", "road"]
COLORS = ["#1f78b4", "#33a02c", "#e3c31a", "#6a3d9a"]
GEO = {"transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0], "crs": None}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"



@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """t-SNE's OpenMP and BLAS pools spin on a shared machine; one thread is faster there."""
    import sklearn.manifold  # noqa: F401  (load its OpenMP runtime so that the limit reaches it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def run_hsi(*args, input: str | None = None):
    """`hsi ARGS` in-process through the real app; a typed error stays in `result.exception`."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def hsi_ok(*args) -> str:
    """The one path a successful command prints."""
    result = run_hsi(*args)
    assert result.exit_code == 0, f"hsi {' '.join(map(str, args))}: {result.exception!r} {result.stderr}"
    return result.stdout.strip()


def run_plot(*args, input: str | None = None):
    return run_hsi("plot", *args, input=input)


def plot_ok(*args, input: str | None = None) -> Path:
    result = run_plot(*args, input=input)
    assert result.exit_code == 0, f"{result.exception!r} {result.stderr}"
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    path = Path(lines[0])
    assert path.is_absolute() and path.is_file()
    return path


def plot_error(*args, error: type[HsiError] = HsiError) -> HsiError:
    """The command fails with one typed error: a one-line message and a hint, nothing on stdout."""
    result = run_plot(*args)
    assert isinstance(result.exception, error), f"{result.exception!r}"
    assert result.exit_code != 0 and result.stdout == ""
    assert "\n" not in result.exception.message and result.exception.hint
    return result.exception


def hex_rgb(colors: list[str]) -> np.ndarray:
    return np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.uint8)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_file(path: Path, fmt: str, size: tuple[float, float], dpi: int) -> None:
    """Type by magic bytes; PNG pixels = inches × dpi, SVG points = inches × 72."""
    if fmt == "png":
        width, height = png_size(path)
        assert abs(width - size[0] * dpi) <= 1 and abs(height - size[1] * dpi) <= 1
    else:
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        match = re.search(r'<svg[^>]*width="([\d.]+)pt"[^>]*height="([\d.]+)pt"', text)
        assert match and abs(float(match[1]) - size[0] * 72) < 0.5 and abs(float(match[2]) - size[1] * 72) < 0.5


# -- synthetic artifacts ------------------------------------------------------------------------------


def make_scene(path: Path, height: int, width: int, geo: dict | None, seed: int = 0) -> tuple[SceneStore, np.ndarray]:
    """A scene of four class blocks, about 25 % unlabelled, with split `s0`; returns (store, truth)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((height, width))
    truth = ((rows * 2 // height) * 2 + cols * 2 // width + 1).astype(np.uint16)
    gt = np.where(rng.random((height, width)) < 0.25, 0, truth).astype(np.uint16)
    store = SceneStore.create(
        path, cube=rng.normal(size=(height, width, 2)).astype(np.float32), gt=gt,
        rgb=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        attrs={"class_names": NAMES, "class_colors": COLORS, "geo": geo},
        transform={"offset": np.zeros(2, np.float32)}, transform_attrs={},
    )
    split = np.where(gt > 0, rng.choice([TRAIN, VAL, TEST], size=gt.shape, p=[0.2, 0.1, 0.7]), 0)
    store.add_layer("splits", "s0", split.astype(np.uint8),
                    {"params": {"ratio": 0.2, "val": 0.1, "seed": 0}, "leakage": {"patch": 5, "share": 0.5}})
    return SceneStore.open(path), truth


def make_prediction(folder: Path, store: SceneStore, truth: np.ndarray, *, model: str, patch: int, seed: int,
                    params: int, error: float, embeddings: bool = True, weights: bool = False,
                    evaluated: bool = True, split: str = "s0", model_args: dict | None = None) -> Path:
    """A checkpoint (history, hyper-parameters, `params` weights) and its prediction store."""
    rng = np.random.default_rng(seed * 100 + patch)
    epochs = 4
    history = [{"epoch": e, "loss": 1.5 / e, "train_accuracy": 0.5 + 0.1 * e, "val_accuracy": 0.45 + 0.1 * e}
               for e in range(1, epochs + 1)]
    if weights:
        for entry in history:
            e = entry["epoch"]
            entry["loss_weights"] = {"alpha": 1.0 / e, "beta": 0.5, "gamma": 0.1 * e, "delta": 0.2}
    name = "-".join([model, *map(str, (model_args or {}).values()), f"p{patch}", f"s{seed}"])
    checkpoint = save_arrays(folder / f"{name}.safetensors", {"model.w": np.zeros(params, np.float32)}, {
        "model": model, "class_names": NAMES, "class_colors": COLORS, "model_args": model_args or {},
        "training": {"history": history, "best_epoch": epochs, "split": "s0", "seed": seed,
                     "hyper": {"patch": patch}},
    })
    classes = np.where(rng.random(truth.shape) < error, rng.integers(1, 5, truth.shape), truth)
    logits = rng.normal(size=(*truth.shape, 4)).astype(np.float32)
    logits[np.arange(4)[None, None, :] == (classes - 1)[..., None]] += 4.0
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    entropy = -(probabilities * np.log(probabilities)).sum(-1)
    attrs = {"model": model, "class_names": NAMES, "class_colors": COLORS, "checkpoint": describe_file(checkpoint),
             "scene_store": store.describe(), "split": split}
    path = folder / f"{name}.pred.zarr"
    height, width = truth.shape
    with PredictionStore.build(path, height=height, width=width, n_classes=4, probabilities=True,
                               attrs=attrs) as writer:
        writer.write_rows(0, classes.astype(np.uint16), probabilities, entropy.astype(np.float32))
        if embeddings:
            index = np.flatnonzero(store.gt().ravel() > 0)
            features = np.eye(4)[truth.ravel()[index] - 1] * 3 + rng.normal(size=(index.size, 4))
            writer.write_embeddings(index, np.hstack([features, rng.normal(size=(index.size, 4))]))
    if evaluated:
        evaluate([path], split=None, out=None, command="test")
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("toy")
    store, truth = make_scene(folder / "toy.zarr", 24, 20, GEO)
    runs = [("toyA", 5, 0, 100, 0.10), ("toyA", 5, 1, 100, 0.20), ("toyA", 7, 0, 100, 0.05),
            ("toyA", 7, 1, 100, 0.15), ("toyB", 5, 0, 1000, 0.30)]
    preds = [make_prediction(folder, store, truth, model=m, patch=p, seed=s, params=n, error=e, weights=(m == "toyB"))
             for m, p, s, n, e in runs]
    for round_, share in (("round1", 0.3), ("round2", 0.6)):
        layer = np.where(np.random.default_rng(len(round_)).random(truth.shape) < share, truth, 0)
        store.add_layer("labels", round_, layer.astype(np.uint16), {})
    bare = make_prediction(folder, store, truth, model="toyC", patch=3, seed=0, params=10, error=0.1,
                           embeddings=False)
    return {"folder": folder, "store": store.path, "truth": truth, "preds": preds, "bare": bare,
            "ckpt": [p.with_name(p.name.replace(".pred.zarr", ".safetensors")) for p in preds],
            "metrics": [p.with_name(p.name.replace(".pred.zarr", ".metrics.json")) for p in preds]}


def kind_args(kind: str, a: dict) -> list:
    """Inputs and options that make `kind` draw from the artifacts `a` (toy or SalinasA)."""
    pred = a["preds"][-1]
    return {
        "map": [pred, "--masked", "--with-gt", "--with-rgb", "--zoom", "2,2,8,8"],
        "gt": [a["store"]],
        "rgb": [a["store"]],
        "uncertainty": [pred, "--masked"],
        "split": [a["store"]],
        "pseudo": [a["store"], "--with-gt"],
        "grid": [*a["preds"][:2], "--masked"],
        "curves": a["ckpt"][:2],
        "loss-weights": [a.get("weighted", a["ckpt"][-1])],
        "confusion": [a["metrics"][-1]],
        "pr": [pred],
        "tsne": [a.get("embedded", pred), "--points", 60],
        "compare": a["preds"],
        "sweep": [*a["preds"], "--x", "training.seed"],
    }[kind]


@pytest.mark.parametrize("fmt", ["png", "svg"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_renders_from_synthetic_artifacts(toy, tmp_path, kind, fmt):
    out = tmp_path / f"{kind}.{fmt}"
    path = plot_ok(kind, *kind_args(kind, toy), "--out", out, "--size", "4,3", "--dpi", 50)
    assert path == out
    check_file(out, fmt, (4, 3), 50)


# -- SalinasA, the real pipeline ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def salinas(tmp_path_factory) -> dict:
    if not (SALINAS_A / "SalinasA_corrected.mat").is_file():
        pytest.skip(f"real data {SALINAS_A} is not present (see ../shared/data/README.md)")
    import torch

    from hsicli.data.prepare import PrepRequest, prepare_scene
    from hsicli.data.splitting import SplitRequest, make_split
    from hsicli.engine.predict import PredictOptions, predict
    from hsicli.engine.train import TrainOptions, train

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("salinasA")
    scene = prepare_scene(PrepRequest(SALINAS_A / "SalinasA_corrected.mat", pca=30), out=folder / "sa.zarr",
                          command="test").path
    split = make_split(scene, SplitRequest(ratio=0.05), command="test").path
    small = {"patch": 9, "conv3d_channels": [4, 8], "conv3d_depths": [7, 5], "conv2d_channels": 16, "hidden": [32, 16]}
    preds = []
    for options, embeddings in ((TrainOptions(model="svm"), False),
                                (TrainOptions(model="hybridsn", model_args=small, patch=9, epochs=2, threads=1), True)):
        checkpoint = train(split, options, command="test").path
        pred = predict(checkpoint, PredictOptions(embeddings=embeddings, threads=1), command="test").path
        evaluate([pred], split=None, out=None, command="test")
        preds.append(pred)
    # HSIseg learns the weights of its loss terms (the only model whose history has them); one tiny
    # network, two epochs, no prediction: just the checkpoint for `loss-weights`.
    tiny = {"dim": 8, "heads": 2, "grids": [4, 3], "dropout": 0.0}
    weighted = train(split, TrainOptions(model="hsiseg", model_args=tiny, patch=9, epochs=2, batch_size=32,
                                         device="cpu", threads=1), command="test").path
    store = SceneStore.open(scene)
    labels = np.where(PredictionStore.open(preds[0]).entropy() < 0.5, PredictionStore.open(preds[0]).classes(), 0)
    store.add_layer("labels", "svm-round1", labels.astype(np.uint16), {})  # as `hsi pseudolabel` would
    return {"store": scene, "preds": preds, "embedded": preds[1], "weighted": weighted,
            "ckpt": [p.with_name(p.name.replace(".pred.zarr", ".safetensors")) for p in preds],
            "metrics": [p.with_name(p.name.replace(".pred.zarr", ".metrics.json")) for p in preds]}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_renders_from_the_salinas_a_pipeline(salinas, tmp_path, kind):
    for fmt in ("png", "svg"):
        out = tmp_path / f"{kind}.{fmt}"
        plot_ok(kind, *kind_args(kind, salinas), "--out", out, "--size", "5,4", "--dpi", 40)
        check_file(out, fmt, (5, 4), 40)


def test_raw_salinas_map_is_the_class_colours(salinas, tmp_path):
    prediction = PredictionStore.open(salinas["preds"][0])
    store = SceneStore.open(salinas["store"])
    out = plot_ok("map", prediction.path, "--raw", "--masked", "--out", tmp_path / "raw.png")
    from PIL import Image

    image = np.asarray(Image.open(out).convert("RGB"))
    palette = np.vstack([[0, 0, 0], hex_rgb(store.class_colors)])
    expected = palette[np.where(store.gt() > 0, prediction.classes(), 0)]
    assert image.shape == (*store.shape[:2], 3)
    np.testing.assert_array_equal(image, expected)


def test_salinas_a_missing_inputs_are_one_line_errors_with_hints(salinas, tmp_path):
    svm = salinas["preds"][0]  # predicted without --embeddings, from a .mat scene without georeferencing
    error = plot_error("tsne", svm, error=StoreError)
    assert svm.name in error.message and "hsi predict --embeddings" in error.hint
    error = plot_error("map", svm, "--format", "tif", "--out", tmp_path / "m.tif", error=StoreError)
    assert "georeferencing" in error.message and "PNG" in error.hint
    error = plot_error("loss-weights", salinas["ckpt"][1], error=StoreError)  # HybridSN learns no loss weights
    assert "loss_weights" in error.message
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_gallery_script_draws_the_readme_figures(shell, tmp_path):
    """examples/gallery.sh end to end on SalinasA (about a minute): six small PNGs, nothing else."""
    if not (SALINAS_A / "SalinasA_corrected.mat").is_file():
        pytest.skip(f"real data {SALINAS_A} is not present (see ../shared/data/README.md)")
    script = Path(__file__).resolve().parents[1] / "examples" / "gallery.sh"
    result = shell(f"sh {script} gallery", env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    names = ["map", "uncertainty", "curves", "confusion", "tsne", "grid"]
    assert result.stdout.split() == [str(tmp_path / "gallery" / f"salinasA-{n}.png") for n in names]
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == sorted(f"salinasA-{n}.png" for n in names)
    for name in names:
        path = tmp_path / "gallery" / f"salinasA-{name}.png"
        width, _ = png_size(path)
        assert 400 <= width <= 1200 and path.stat().st_size < 150_000, name


# -- maps, pixel by pixel ------------------------------------------------------------------------------


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_raw_maps_paint_each_pixel_in_its_class_colour(toy, tmp_path):
    pred = PredictionStore.open(toy["preds"][0])
    store = SceneStore.open(toy["store"])
    palette = np.vstack([[0, 0, 0], hex_rgb(COLORS)])  # unlabelled: black
    classes, gt = pred.classes(), store.gt()
    cases = {
        "map": ([pred.path], palette[classes]),
        "map --masked": ([pred.path, "--masked"], palette[np.where(gt > 0, classes, 0)]),
        "gt": ([store.path], palette[gt]),
        "rgb": ([store.path], store.rgb()),
        "split": ([f"{store.path}/splits/s0"],
                  hex_rgb(["#d9d9d9", "#d62728", "#ff7f0e", "#1f77b4"])[store.read_layer("splits", "s0").data]),
    }
    for index, (case, (args, expected)) in enumerate(cases.items()):
        out = plot_ok(case.split()[0], *args, "--raw", "--out", tmp_path / f"raw{index}.png")
        np.testing.assert_array_equal(read_png(out), expected, err_msg=case)
    # Default name beside the input, marked raw.
    assert plot_ok("map", pred.path, "--raw", "--overwrite") == pred.path.parent / (
        pred.path.name.removesuffix(".pred.zarr") + ".map-raw.png")


def test_raw_uncertainty_follows_entropy(toy, tmp_path):
    pred = PredictionStore.open(toy["preds"][0])
    image = read_png(plot_ok("uncertainty", pred.path, "--raw", "--out", tmp_path / "u.png")).astype(int)
    entropy = pred.entropy()
    low, high = np.unravel_index(entropy.argmin(), entropy.shape), np.unravel_index(entropy.argmax(), entropy.shape)
    # inferno: dark for certain pixels, bright for uncertain ones.
    assert image[low].sum() < image[high].sum()


def test_map_figure_draws_the_class_colours_and_legend(toy):
    from hsicli.plot.common import style
    from hsicli.plot.maps import map_figure

    pred = PredictionStore.open(toy["preds"][1])
    with style():
        fig = map_figure([pred.path], PlotOptions(with_gt=True, zoom=[(1, 1, 6, 6)]))
    # The prediction was evaluated: its OA, from the metrics file beside it, under the model's name.
    oa = json.loads(pred.path.with_name(pred.path.name.replace(".pred.zarr", ".metrics.json")).read_text())["oa"]
    map_ax = [ax for ax in fig.axes if ax.get_title() == f"toyA\nOA {100 * oa:.2f}%"][0]
    palette = np.vstack([[0, 0, 0], hex_rgb(COLORS)])
    np.testing.assert_array_equal(map_ax.images[0].get_array(), palette[pred.classes()])
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [*NAMES, "unlabelled"]  # the ground truth's black
    assert legend.get_patches()[-1].get_facecolor()[:3] == (0.0, 0.0, 0.0)
    with style():
        alone = map_figure([pred.path], PlotOptions())  # every pixel predicted: nothing unlabelled shown
    assert [t.get_text() for t in alone.legends[0].get_texts()] == NAMES
    assert len(map_ax.child_axes) == 1  # the zoom inset


def test_map_legend_marks_the_classes_the_split_dropped(toy, tmp_path):
    from hsicli.plot.common import style
    from hsicli.plot.maps import map_figure

    import shutil

    store = SceneStore.open(shutil.copytree(toy["store"], tmp_path / "toy.zarr"))  # the module's store keeps one split
    layer = store.read_layer("splits", "s0").data
    store.add_layer("splits", "min", np.where(store.gt() == 4, 0, layer).astype(np.uint8),
                    {"dropped": [{"class": 4, "name": NAMES[3], "pixels": int((store.gt() == 4).sum())}]})
    pred = make_prediction(tmp_path, store, toy["truth"], model="toyD", patch=3, seed=0, params=10, error=0.1,
                           embeddings=False, evaluated=False, split="min")
    with style():
        fig = map_figure([pred], PlotOptions(with_gt=True))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [*NAMES[:3], f"{NAMES[3]} (dropped)", "unlabelled"]


@pytest.mark.parametrize("artifacts", ["toy", "salinas"])  # a tall scene and a square one
@pytest.mark.parametrize("kind", ["map", "grid", "split", "pseudo", "uncertainty"])
def test_map_figures_keep_titles_and_legends_inside_the_figure(request, artifacts, kind):
    """Nothing drawn is cut at the figure's edge, two-line panel titles included (grid: model and OA;
    split: the leakage line; pseudo: the pixel count)."""
    from hsicli.plot import maps
    from hsicli.plot.common import style

    a = request.getfixturevalue(artifacts)
    inputs = a["preds"][:2] if kind == "grid" else a["preds"][:1] if kind in ("map", "uncertainty") else [a["store"]]
    with style():
        fig = getattr(maps, f"{kind}_figure")(inputs, PlotOptions(with_gt=True, masked=True))
        fig.canvas.draw()  # lays the figure out as saving does, inside the style
        renderer = fig.canvas.get_renderer()
        for artist in [*fig.axes, *fig.legends]:
            box = artist.get_tightbbox(renderer)
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= fig.bbox.x1 + 1 and box.y1 <= fig.bbox.y1 + 1, artist


def test_map_of_a_salinas_sized_prediction_renders_within_5_seconds(tmp_path):
    store, truth = make_scene(tmp_path / "big.zarr", 512, 217, None)
    pred = make_prediction(tmp_path, store, truth, model="big", patch=5, seed=0, params=1, error=0.1,
                           embeddings=False, evaluated=False)
    started = time.perf_counter()
    out = plot_ok("map", pred, "--masked", "--with-gt")
    assert time.perf_counter() - started <= 5.0
    assert png_size(out)[0] == 2 * 3.0 * 300  # two panels of 3 inches at the default 300 dpi


def test_dpi_scales_the_pixels(toy, tmp_path):
    small = png_size(plot_ok("gt", toy["store"], "--dpi", 50, "--out", tmp_path / "a.png"))
    large = png_size(plot_ok("gt", toy["store"], "--dpi", 100, "--out", tmp_path / "b.png"))
    assert abs(large[0] - 2 * small[0]) <= 2 and abs(large[1] - 2 * small[1]) <= 2


# -- data drawn in the figures -------------------------------------------------------------------------


def test_confusion_cells_are_row_normalised_counts(toy):
    from sklearn.metrics import confusion_matrix

    from hsicli.plot.common import style
    from hsicli.plot.metrics_figs import confusion_figure

    pred = PredictionStore.open(toy["preds"][4])
    store = SceneStore.open(toy["store"])
    test = (store.read_layer("splits", "s0").data == TEST) & (store.gt() > 0)
    expected = confusion_matrix(store.gt()[test], pred.classes()[test], labels=[1, 2, 3, 4], normalize="true")
    with style():
        fig = confusion_figure([pred.path], PlotOptions())
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES


def test_pr_curve_area_is_the_average_precision():
    from sklearn.metrics import average_precision_score

    from hsicli.plot.metrics_figs import pr_curve

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(500), 2)  # many ties
    positive = rng.random(500) < scores
    recall, precision = pr_curve(scores, positive)
    assert recall[-1] == 1.0 and np.all(np.diff(recall) >= 0)
    area = float(np.diff(recall, prepend=0.0) @ precision)
    assert area == pytest.approx(average_precision_score(positive, scores))


def test_compare_bars_are_mean_oa_aa_kappa_per_setup(toy):
    """Runs group as in `hsi evaluate`: toyA at patch 5 and at patch 7 are two setups, never averaged."""
    from hsicli.plot.common import style
    from hsicli.plot.metrics_figs import compare_figure

    with style():
        fig = compare_figure(toy["metrics"], PlotOptions())
    bars, size_ax = fig.axes[0], fig.axes[1]
    heights = [patch.get_height() for patch in bars.patches]
    records = [json.loads(p.read_text()) for p in toy["metrics"]]
    expected = []
    for group in (records[:2], records[2:4], records[4:]):  # toyA patch 5, toyA patch 7, toyB
        expected += [100 * np.mean([r[k] for r in group]) for k in ("oa", "aa", "kappa")]
    np.testing.assert_allclose(heights, expected)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["toyA (patch=5) (n=2)", "toyA (patch=7) (n=2)",
                                                                  "toyB (n=1)"]
    assert bars.get_ylim()[1] == 100  # accuracy ends at 100 %
    values = [t.get_text() for t in bars.texts]
    assert all("±" in v for v in values[:6]) and not any("±" in v for v in values[6:])  # toyB: one run
    # Accuracy against parameters: toyA has 100 weights, toyB 1000.
    points = [tuple(container.lines[0].get_xydata()[0]) for container in size_ax.containers]
    assert points == [(100, pytest.approx(expected[0])), (100, pytest.approx(expected[3])),
                      (1000, pytest.approx(expected[6]))]


def test_sweep_lines_are_means_over_seeds_per_patch(toy):
    from hsicli.plot.common import style
    from hsicli.plot.metrics_figs import sweep_figure

    with style():
        fig = sweep_figure(toy["preds"], PlotOptions(x="training.hyper.patch", metric="aa"))
    ax = fig.axes[0]
    line = ax.lines[0]  # toyA: patches 5 and 7, two seeds each; the swept patch is no setup of its own
    records = [json.loads(p.read_text()) for p in toy["metrics"][:4]]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["toyA", "toyB"]
    assert list(line.get_xdata()) == [5, 7]
    # The axes say what is swept and measured (not the model's name), and the patch ticks are the
    # swept sizes themselves, never 5.5.
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("patch size (pixels)", "AA (%)")
    assert ax.get_title() == "AA (mean ± std) against patch size (pixels)"
    assert list(ax.get_xticks()) == [5, 7] and [t.get_text() for t in ax.get_xticklabels()] == ["5", "7"]
    np.testing.assert_allclose(line.get_ydata(), [100 * np.mean([r["aa"] for r in records[:2]]),
                                                  100 * np.mean([r["aa"] for r in records[2:]])])


def test_sweep_over_words_puts_each_value_on_its_own_tick(toy, tmp_path):
    from hsicli.plot.common import style
    from hsicli.plot.metrics_figs import sweep_figure

    store = SceneStore.open(toy["store"])
    runs = [("lstm", 0, 0.10), ("lstm", 1, 0.30), ("gru", 0, 0.05)]
    preds = [make_prediction(tmp_path, store, toy["truth"], model="toyR", patch=5, seed=seed, params=10, error=error,
                             model_args={"rnn": rnn}) for rnn, seed, error in runs]
    with style():
        fig = sweep_figure(preds, PlotOptions(x="model_args.rnn"))
    ax = fig.axes[0]
    oa = [json.loads(p.with_name(p.name.replace(".pred.zarr", ".metrics.json")).read_text())["oa"] for p in preds]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["toyR"]  # one setup: the swept argument varies
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lstm", "gru"]  # in the order given, not sorted
    assert list(ax.get_xticks()) == [0, 1] and list(ax.lines[0].get_xdata()) == [0, 1]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [100 * np.mean(oa[:2]), 100 * oa[2]])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("rnn (model argument)", "OA (%)")


def test_sweep_keys_resolve_in_checkpoint_split_and_metrics(toy):
    from hsicli.plot.metrics_figs import load_runs

    run = load_runs([toy["metrics"][2]], "sweep", None)[0]
    assert run.lookup("training.hyper.patch") == 7
    assert run.lookup("params.ratio") == 0.2 and run.lookup("split.params.ratio") == 0.2
    assert run.lookup("model") == "toyA" and run.lookup("checkpoint.training.seed") == 0
    with pytest.raises(StoreError) as missing:
        run.lookup("training.hyper.nope")
    assert "training.hyper.patch" in missing.value.hint


def test_curves_lines_follow_the_history(toy):
    from hsicli.plot.common import style
    from hsicli.plot.curves import curves_figure, loss_weights_figure

    with style():
        fig = curves_figure(toy["ckpt"][:1], PlotOptions())
        weights = loss_weights_figure(toy["ckpt"][-1:], PlotOptions())
    loss_ax, acc_ax = fig.axes[:2]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [1.5 / e for e in range(1, 5)])
    assert loss_ax.get_title() == "Training loss"  # these histories record no validation loss
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [100 * (0.45 + 0.1 * e) for e in range(1, 5)])
    alpha = weights.axes[0].lines[0]
    np.testing.assert_allclose(alpha.get_ydata(), [1.0 / e for e in range(1, 5)])
    assert [t.get_text() for t in weights.legends[0].get_texts()] == ["α", "β", "γ", "δ"]


def test_tsne_draws_a_sample_of_labelled_pixels_in_class_colours(toy):
    from matplotlib.colors import to_hex

    from hsicli.plot.common import style
    from hsicli.plot.embedding import tsne_figure

    with style():
        fig = tsne_figure(toy["preds"][:1], PlotOptions(points=80))
    scatter = fig.axes[0].collections[0]
    assert len(scatter.get_offsets()) == 80
    assert {to_hex(c) for c in scatter.get_facecolors()} <= set(COLORS)


# -- the command's contract -----------------------------------------------------------------------------


def test_default_name_no_silent_overwrite_and_stdin(toy, tmp_path):
    pred = toy["preds"][0]
    out = plot_ok("uncertainty", input=f"{pred}\n")
    assert out == pred.parent / (pred.name.removesuffix(".pred.zarr") + ".uncertainty.png")
    before = out.stat().st_mtime_ns
    assert plot_ok("uncertainty", pred) == out  # the same figure again: a no-op
    plot_error("uncertainty", pred, "--dpi", "72", error=OutputExistsError)  # another figure: never silently
    assert out.stat().st_mtime_ns == before
    assert plot_ok("uncertainty", pred, "--overwrite") == out
    several = plot_ok("grid", *toy["preds"][:2], "--format", "pdf", "--overwrite")
    assert several.parent == pred.parent and several.name.startswith("grid-") and several.suffix == ".pdf"
    assert several.read_bytes()[:5] == b"%PDF-"
    result = run_plot("gt", toy["store"], "--out", tmp_path / "g.png", "--json")
    assert json.loads(result.stdout) == {"path": str(tmp_path / "g.png"), "kind": "gt"}


def test_png_records_provenance(toy, tmp_path):
    from PIL import Image

    out = plot_ok("gt", toy["store"], "--out", tmp_path / "g.png", "--dpi", 30)
    text = Image.open(out).text
    assert text["Software"].startswith("hsicli")
    assert json.loads(text["Description"])["inputs"]["input1"]["path"] == str(Path(toy["store"]).absolute())


def test_missing_inputs_are_one_line_errors_with_hints(toy, tmp_path):
    error = plot_error("tsne", toy["bare"], error=StoreError)
    assert str(toy["bare"].name) in error.message and "hsi predict --embeddings" in error.hint
    error = plot_error("loss-weights", toy["ckpt"][0], error=StoreError)
    assert "loss_weights" in error.message
    for not_checkpoint in (toy["preds"][0], toy["metrics"][0], toy["store"]):
        error = plot_error("curves", not_checkpoint, error=InputError)
        assert "not a checkpoint" in error.message and ".safetensors" in error.hint
    error = plot_error("map", toy["store"], error=StoreError)
    assert "scene store" in error.message and "hsi plot gt" in error.hint
    plot_error("pseudo", f"{toy['store']}/splits/s0", error=UsageError)
    plot_error("sweep", *toy["preds"], error=UsageError)  # no --x
    assert "training.hyper.patch" in plot_error("sweep", *toy["preds"], "--x", "nope", error=StoreError).hint
    plot_error("curves", toy["ckpt"][0], "--raw", error=UsageError)
    plot_error("map", toy["preds"][0], "--zoom", "0,0,99,99", error=UsageError)
    plot_error("gt", toy["store"], "--out", tmp_path / "x.svg", "--format", "png", error=UsageError)
    assert ".bmp" in plot_error("gt", toy["store"], "--out", tmp_path / "x.bmp", error=UsageError).message
    assert not (tmp_path / "x.bmp").exists()
    plot_error("compare", toy["ckpt"][0], error=InputError)
    plot_error("gt", toy["store"], "--out", tmp_path, "--overwrite", error=UsageError)
    assert tmp_path.is_dir()
    assert not [p for p in Path(toy["folder"]).iterdir() if ".tmp-" in p.name]


# -- GeoTIFF export of georeferenced scenes (the optional extra `geotiff`: rasterio) --------------------

# ENVI `map info`: the 1-based reference pixel (x, y) lies at (easting, northing); square 3.7 m pixels.
MAP_INFO = (2.5, 3.5, 512345.5, 4123456.0, 3.7)


def write_envi(folder: Path, cube: np.ndarray, wkt: str) -> Path:
    """A BSQ float32 ENVI scene georeferenced as ENVI and GDAL write it: `map info` and the WKT."""
    height, width, bands = cube.shape
    ref_x, ref_y, easting, northing, size = MAP_INFO
    np.ascontiguousarray(np.moveaxis(cube, -1, 0), dtype="<f4").tofile(folder / "scene.img")
    header = folder / "scene.hdr"
    header.write_text(
        f"ENVI\nsamples = {width}\nlines = {height}\nbands = {bands}\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n"
        f"map info = {{UTM, {ref_x}, {ref_y}, {easting}, {northing}, {size}, {size}, 10, North, WGS-84, "
        f"units=Meters}}\ncoordinate system string = {{{wkt}}}\n"
    )
    return header


def write_geotiff(folder: Path, cube: np.ndarray, crs, transform) -> Path:
    import rasterio

    path = folder / "scene.tif"
    height, width, bands = cube.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=bands, dtype="float32",
                       crs=crs, transform=transform) as dataset:
        dataset.write(np.moveaxis(cube, -1, 0))
    return path


@pytest.fixture(scope="module", params=["envi", "geotiff"])
def georeferenced(request, tmp_path_factory) -> dict:
    """A georeferenced scene file taken through `hsi prep | split | train svm | predict`; `reference`
    is the scene's CRS and transform as GDAL reads them from the original file."""
    rasterio = pytest.importorskip("rasterio", reason="GeoTIFF export needs the optional extra geotiff (rasterio)")
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    folder = tmp_path_factory.mktemp(request.param)
    rng = np.random.default_rng(5)
    height, width = 18, 15
    rows, cols = np.indices((height, width))
    truth = (rows * 3 // height + 1).astype(np.uint8)  # three horizontal fields
    gt = np.where(rng.random((height, width)) < 0.3, 0, truth).astype(np.uint8)
    cube = (np.eye(4)[truth] * 50 + rng.normal(0, 1, (height, width, 4)) + cols[..., None] * 0.1).astype(np.float32)
    np.save(folder / "scene_gt.npy", gt)
    if request.param == "envi":
        scene = write_envi(folder, cube, CRS.from_epsg(32610).to_wkt())
        opened = folder / "scene.img"  # GDAL opens the data file and finds its header
    else:
        scene = opened = write_geotiff(folder, cube, CRS.from_epsg(4326), Affine(1e-4, 0, -121.5, 0, -1e-4, 36.7))
    with rasterio.open(opened) as dataset:
        reference = dataset.crs, dataset.transform
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # where the commands write by default
        store = hsi_ok("prep", scene, "--gt", folder / "scene_gt.npy", "-q")
        split = hsi_ok("split", store, "--ratio", "0.3", "-q")
        prediction = hsi_ok("predict", hsi_ok("train", split, "--model", "svm", "-q"), "-q")
    assert Path(prediction).parent == folder
    return {"store": Path(store), "prediction": Path(prediction), "reference": reference}


def test_geotiff_rasters_are_georeferenced_like_the_scene(georeferenced, tmp_path):
    import rasterio

    store = SceneStore.open(georeferenced["store"])
    prediction = PredictionStore.open(georeferenced["prediction"])
    crs, transform = georeferenced["reference"]
    gt, classes = store.gt(), prediction.classes()
    assert crs is not None and (gt > 0).any() and (gt == 0).any()
    expected = {  # kind and options: (values, dtype, nodata)
        ("map",): (classes, "uint8", 0),
        ("map", "--masked"): (np.where(gt > 0, classes, 0), "uint8", 0),
        ("gt",): (gt, "uint8", 0),
        ("split",): (store.read_layer("splits", store.layer_names("splits")[0]).data, "uint8", 0),
        ("uncertainty",): (prediction.entropy(), "float32", None),
        ("rgb",): (store.rgb(), "uint8", None),
    }
    palette = np.vstack([[0, 0, 0], hex_rgb(store.class_colors)])
    for index, ((kind, *options), (values, dtype, nodata)) in enumerate(expected.items()):
        source = georeferenced["prediction"] if kind in ("map", "uncertainty") else store.path
        out = plot_ok(kind, source, *options, "--format", "tif", "--out", tmp_path / f"{index}.tif")
        assert out.read_bytes()[:4] in (b"II*\x00", b"MM\x00*")
        with rasterio.open(out) as dataset:
            case = f"{kind} {options}"
            assert dataset.crs == crs, case
            assert dataset.transform.almost_equals(transform), case
            assert (dataset.height, dataset.width) == store.shape[:2] and dataset.dtypes[0] == dtype, case
            data = np.moveaxis(dataset.read(), 0, -1)
            np.testing.assert_array_equal(data.squeeze(-1) if values.ndim == 2 else data, values, err_msg=case)
            if nodata is not None:
                assert dataset.nodata == nodata, case
            if kind in ("map", "gt"):  # the colour table: code k in class k's colour, 0 the (nodata) background
                table = dataset.colormap(1)
                assert [table[k] for k in range(1, len(palette))] == [(*map(int, rgb), 255) for rgb in palette[1:]]
                assert table[0][:3] == (0, 0, 0), case
            if kind in ("map", "gt"):  # each code's class name
                names = {f"CLASS_{k}": name for k, name in enumerate(store.class_names, start=1)}
                assert dataset.tags(1) == names, case
            if kind == "split":
                assert dataset.tags(1) == {"CLASS_0": "unused", "CLASS_1": "train", "CLASS_2": "validation",
                                           "CLASS_3": "test"}, case
    # Re-running the same export is a no-op; another one is never written silently.
    again = tmp_path / "0.tif"
    before = again.stat().st_mtime_ns
    assert plot_ok("map", georeferenced["prediction"], "--format", "tif", "--out", again) == again
    assert again.stat().st_mtime_ns == before
    plot_error("map", georeferenced["prediction"], "--masked", "--format", "tif", "--out", again,
               error=OutputExistsError)


def test_geotiff_without_rasterio_names_the_extra(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)  # `import rasterio` raises ImportError
    error = plot_error("map", toy["preds"][0], "--format", "tif", "--out", tmp_path / "m.tif", error=InputError)
    assert "rasterio" in error.message and "hsicli[geotiff]" in error.hint and "--format png" in error.hint
    assert not (tmp_path / "m.tif").exists()


def test_geotiff_needs_georeferencing(tmp_path):
    store, truth = make_scene(tmp_path / "plain.zarr", 6, 6, None)
    prediction = make_prediction(tmp_path, store, truth, model="plain", patch=3, seed=0, params=1, error=0.1,
                                 embeddings=False, evaluated=False)
    for kind, source in (("map", prediction), ("gt", store.path), ("uncertainty", prediction)):
        error = plot_error(kind, source, "--format", "tif", error=StoreError)
        assert "georeferencing" in error.message and str(store.path) in error.message and "PNG" in error.hint
    assert not list(tmp_path.glob("*.tif"))


def test_output_format_follows_the_suffix(toy, tmp_path):
    magic = {"jpeg": b"\xff\xd8\xff", "jpg": b"\xff\xd8\xff", "eps": b"%!PS", "webp": b"RIFF", "pdf": b"%PDF"}
    for suffix, start in magic.items():
        out = plot_ok("gt", toy["store"], "--out", tmp_path / f"gt.{suffix}", "--dpi", 30)
        assert out.read_bytes().startswith(start), suffix
