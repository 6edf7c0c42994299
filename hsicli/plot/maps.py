"""Maps: classification map, ground truth, RGB preview, uncertainty, split, pseudo-labels, grid.

The class maps of the papers (CLAReSNet Fig. 1; Lite-C2ANet Figs. 5–7; HSIseg Figs. 7–11 and
17–21): each pixel painted in its class's colour from the store, unlabelled pixels black, no
axes, a legend of class names below. Colouring is one palette lookup (`palette[codes]`) and one
`imshow` of the RGB array, so a 512 × 217 Salinas map costs milliseconds before saving.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hsicli.errors import StoreError, UsageError
from hsicli.plot.common import (
    PlotOptions, Raster, add_legend, class_legend, class_palette, colorize, hex_to_rgb, legend_height, map_panel_size,
    new_figure, open_prediction, open_scene, show_image,
)
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore
from hsicli.store.splits import TEST, TRAIN, VAL, dropped_classes

ENTROPY_CMAP = "inferno"
# Split codes 0..3: unused (and unlabelled), train, validation, test.
SPLIT_COLORS = ("#d9d9d9", "#d62728", "#ff7f0e", "#1f77b4")
SPLIT_NAMES = ("unused", "train", "validation", "test")
MAP_LAYOUT = "compressed"  # constrained layout that packs fixed-aspect image panels (see new_figure)


def _lines(titles) -> int:
    """The most lines any panel title spans."""
    return max((title.count("\n") + 1 for title in titles if title), default=1)


def single(inputs: list[Path], kind: str, hint: str) -> Path:
    if len(inputs) != 1:
        raise UsageError(f"`hsi plot {kind}` takes one input, got {len(inputs)}", hint=hint)
    return Path(inputs[0])


@dataclass
class Source:
    """What a map kind draws from: a prediction and/or its scene store, opened lazily."""

    prediction: PredictionStore | None
    scene_store: SceneStore | None
    layer_kind: str | None = None
    layer_name: str | None = None

    @classmethod
    def for_kind(cls, kind: str, path: Path) -> Source:
        if kind in ("map", "uncertainty"):
            return cls(open_prediction(path, kind), None)
        store, prediction, layer_kind, layer_name = open_scene(path)
        return cls(prediction, store, layer_kind, layer_name)

    @cached_property
    def store(self) -> SceneStore:
        return self.scene_store or self.prediction.scene()

    @property
    def artifact(self) -> PredictionStore | SceneStore:
        """The prediction when there is one, else the scene store: whose classes and extent are drawn."""
        return self.prediction if self.prediction is not None else self.store

    @property
    def path(self) -> Path:
        return self.prediction.path if self.prediction is not None else self.store.path

    @property
    def names(self) -> list[str]:
        """Class names; those the prediction's split dropped (--min-pixels) say so."""
        names = self.artifact.class_names
        if self.prediction is not None:
            for cls in dropped_classes(self.store, self.prediction.split):
                names[cls - 1] += " (dropped)"
        return names

    @property
    def colors(self) -> list[str]:
        return self.artifact.class_colors

    @cached_property
    def palette(self) -> np.ndarray:
        return class_palette(self.colors)

    @property
    def code_names(self) -> dict[int, str]:
        """Class code (1..C; 0 is unlabelled or masked) → class name."""
        return dict(enumerate(self.artifact.class_names, start=1))

    @cached_property
    def gt(self) -> np.ndarray:
        return self.store.gt()

    @property
    def shape(self) -> tuple[int, int]:
        return self.artifact.shape[:2]

    def classes(self, masked: bool) -> np.ndarray:
        classes = self.prediction.classes()
        return np.where(self.gt > 0, classes, 0) if masked else classes

    def entropy(self, masked: bool) -> np.ndarray:
        entropy = self.prediction.entropy()
        return np.where(self.gt > 0, entropy, np.nan) if masked else entropy

    def geo(self, options: PlotOptions) -> dict | None:
        """The scene's georeferencing for GeoTIFF; None otherwise (a raw PNG needs no scene store)."""
        if options.format != "tif":
            return None
        geo = self.store.attrs.get("geo") or {}
        if not geo.get("transform"):
            raise StoreError(
                f"the scene store {self.store.path} carries no georeferencing for a GeoTIFF",
                hint="export PNG instead; GeoTIFF needs a scene prepped from a georeferenced GeoTIFF or ENVI file",
            )
        return geo


# -- map, gt, rgb, uncertainty ----------------------------------------------------------------------


def _scene_panels(kind: str, inputs: list[Path], options: PlotOptions) -> Figure:
    """The main panel of `kind`, after the RGB preview (--with-rgb) and ground truth (--with-gt)."""
    source = Source.for_kind(kind, single(inputs, kind, "use `hsi plot grid` to set several maps side by side"))
    panels = []  # (image, title, imshow keyword arguments)
    codes = []  # the class maps drawn, for the legend's "unlabelled" entry
    if options.with_rgb or kind == "rgb":
        panels.append((source.store.rgb(), "RGB preview", {}))
    if options.with_gt or kind == "gt":
        codes.append(source.gt)
        panels.append((colorize(source.gt, source.palette, source.store.path), "Ground truth", {}))
    if kind == "map":
        codes.append(source.classes(options.masked))
        panels.append((colorize(codes[-1], source.palette, source.path), _map_title(source.prediction), {}))
    elif kind == "uncertainty":
        scale = {"cmap": ENTROPY_CMAP, "vmin": 0.0, "vmax": math.log(max(len(source.names), 2))}
        panels.append((source.entropy(options.masked), "Uncertainty (entropy)", scale))
    with_legend = kind in ("map", "gt") or options.with_gt
    legend = class_legend(source.names, source.colors, source.palette, codes)
    width, height = map_panel_size(source.shape, len(panels), title_lines=_lines(t for _, t, _ in panels))
    width += 0.7 if kind == "uncertainty" else 0.0  # the colour bar
    if with_legend:
        height += legend_height(legend[0], width)
    fig = new_figure(options, (width, height), layout=MAP_LAYOUT)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (image, title, kwargs) in zip(axes, panels):
        handle = show_image(ax, image, title, options.zoom, **kwargs)
    if kind == "uncertainty":
        fig.colorbar(handle, ax=axes[-1], shrink=0.85, label="entropy (nats)")
    if with_legend:
        add_legend(fig, *legend)
    return fig


def map_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    return _scene_panels("map", inputs, options)


def gt_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    return _scene_panels("gt", inputs, options)


def rgb_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    return _scene_panels("rgb", inputs, options)


def uncertainty_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    return _scene_panels("uncertainty", inputs, options)


def map_raster(inputs: list[Path], options: PlotOptions) -> Raster:
    source = Source.for_kind("map", single(inputs, "map", "export one map at a time"))
    return Raster(source.classes(options.masked), source.path, source.geo(options), palette=source.palette,
                  code_names=source.code_names)


def gt_raster(inputs: list[Path], options: PlotOptions) -> Raster:
    source = Source.for_kind("gt", single(inputs, "gt", "export one map at a time"))
    return Raster(source.gt, source.store.path, source.geo(options), palette=source.palette,
                  code_names=source.code_names)


def rgb_raster(inputs: list[Path], options: PlotOptions) -> Raster:
    source = Source.for_kind("rgb", single(inputs, "rgb", "export one map at a time"))
    return Raster(source.store.rgb(), source.store.path, source.geo(options))


def uncertainty_raster(inputs: list[Path], options: PlotOptions) -> Raster:
    source = Source.for_kind("uncertainty", single(inputs, "uncertainty", "export one map at a time"))
    return Raster(source.entropy(options.masked), source.path, source.geo(options), cmap=ENTROPY_CMAP,
                  vmax=math.log(max(len(source.names), 2)))


# -- split -----------------------------------------------------------------------------------------


def _split_layer(source: Source, options: PlotOptions):
    """The split to draw: a STORE/splits/NAME path, --split, the prediction's split, or the only one."""
    if source.layer_kind == "labels":
        raise UsageError(f"{source.store.path}/labels/{source.layer_name} is a pseudo-label layer, not a split",
                         hint="use `hsi plot pseudo` for label layers")
    name = source.layer_name or options.split or (source.prediction.split if source.prediction else None)
    if name is None:
        names = source.store.layer_names("splits")
        if len(names) != 1:
            raise StoreError(
                f"{source.store.path} has {len(names)} splits ({', '.join(names) or 'none'}) and none was chosen",
                hint="choose one with --split NAME" if names else "make one with `hsi split`",
            )
        name = names[0]
    return source.store.read_layer("splits", name)


def split_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """Where the train / validation / test pixels lie, to see spatial leakage at a glance."""
    source = Source.for_kind("split", single(inputs, "split", "draw one split at a time"))
    layer = _split_layer(source, options)
    counts = np.bincount(layer.data.ravel(), minlength=4)
    labels = [f"{name} ({counts[code]:,} px)" for code, name in enumerate(SPLIT_NAMES)]
    order = [TRAIN, VAL, TEST, 0]
    title = f"Split {layer.name}"
    leakage = layer.attrs.get("leakage") or {}
    if leakage.get("share") is not None:
        title += f"\nleakage at {leakage['patch']}×{leakage['patch']}: {100 * leakage['share']:.1f}% of test pixels"
    width, height = map_panel_size(layer.data.shape, 1, title_lines=_lines([title]))
    width = max(width, 3.6)
    height += legend_height(labels, width)
    fig = new_figure(options, (width, height), layout=MAP_LAYOUT)
    ax = fig.subplots()
    show_image(ax, colorize(layer.data, _split_palette(), source.store.path), title, options.zoom)
    add_legend(fig, [labels[c] for c in order], [SPLIT_COLORS[c] for c in order])
    return fig


def _split_palette() -> np.ndarray:
    return hex_to_rgb(SPLIT_COLORS)


def split_raster(inputs: list[Path], options: PlotOptions) -> Raster:
    source = Source.for_kind("split", single(inputs, "split", "export one split at a time"))
    layer = _split_layer(source, options)
    return Raster(layer.data, source.store.path, source.geo(options), palette=_split_palette(),
                  code_names=dict(enumerate(SPLIT_NAMES)))


# -- pseudo-label strip and method grid -------------------------------------------------------------


def _grid(options: PlotOptions, shape: tuple[int, int], panels: list[tuple[np.ndarray, str, Path]],
          names: list[str], colors: list[str], palette: np.ndarray, columns: int) -> Figure:
    """Class maps, given as (codes, title, where they come from), in a grid above one legend."""
    columns = min(columns, len(panels))
    names, colors = class_legend(names, colors, palette, [codes for codes, _, _ in panels])
    width, height = map_panel_size(shape, len(panels), columns, title_lines=_lines(t for _, t, _ in panels))
    height += legend_height(names, width)
    fig = new_figure(options, (width, height), layout=MAP_LAYOUT)
    rows = math.ceil(len(panels) / columns)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (codes, title, source) in zip(axes, panels):
        show_image(ax, colorize(codes, palette, source), title, options.zoom)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    add_legend(fig, names, colors)
    return fig


def pseudo_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """The pseudo-label layers of successive rounds, in the order they were written (HSIseg Figs. 17–21)."""
    store = None
    layers: list[str] = []
    for path in inputs:
        source = Source.for_kind("pseudo", Path(path))
        if store is not None and source.store.path.absolute() != store.path.absolute():
            raise UsageError(f"{path} belongs to another scene store than {store.path}",
                             hint="draw the layers of one scene store at a time")
        store = source.store
        if source.layer_kind == "splits":
            raise UsageError(f"{path} is a split layer, not a pseudo-label layer", hint="use `hsi plot split`")
        layers += [source.layer_name] if source.layer_kind == "labels" else store.layer_names("labels")
    if not layers:
        raise StoreError(f"{store.path} has no pseudo-label layers (labels/*)",
                         hint="make them with `hsi pseudolabel PREDICTION`")
    palette = class_palette(store.class_colors)
    panels = [(store.gt(), "Ground truth", store.path)] if options.with_gt else []
    for name in dict.fromkeys(layers):  # in order, each once
        data = store.read_layer("labels", name).data
        panels.append((data, f"{name}\n{int((data > 0).sum()):,} px", store.path))
    return _grid(options, store.shape[:2], panels, store.class_names, store.class_colors, palette, columns=5)


def grid_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    """Ground truth, then each prediction's map: the papers' method-comparison figures."""
    predictions = [open_prediction(Path(p), "grid") for p in inputs]
    first = predictions[0]
    for other in predictions[1:]:
        if other.scene_fingerprint != first.scene_fingerprint:
            raise UsageError(f"{other.path} predicts another scene than {first.path}",
                             hint="set side by side only predictions of the same scene store")
        if other.class_names != first.class_names:
            raise UsageError(f"{other.path} has other classes than {first.path}",
                             hint="set side by side only predictions with the same classes")
    source = Source(first, None)
    panels = [(source.gt, "Ground truth", source.store.path)]
    for prediction in predictions:
        panels.append((Source(prediction, source.store).classes(options.masked), _map_title(prediction),
                       prediction.path))
    return _grid(options, source.shape, panels, source.names, source.colors, source.palette, columns=4)


def _map_title(prediction: PredictionStore) -> str:
    """The model's name, and its OA when `hsi evaluate` has recorded one beside the prediction."""
    from hsicli.store.evaluation import metrics_path

    title = prediction.model or prediction.path.name
    oa = _recorded_oa(metrics_path(prediction.path), prediction.path)
    return title if oa is None else f"{title}\nOA {100 * oa:.2f}%"


def _recorded_oa(metrics_file: Path, prediction: Path) -> float | None:
    """OA from the `hsi evaluate` record beside a prediction, when it is that prediction's."""
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError):
        return None
    if metrics.get("prediction") != str(Path(prediction).absolute()):
        return None
    return metrics.get("oa")
