"""What every figure shares: options, style, colours, legends, inputs, and atomic saving.

Publication defaults: 300 dpi, 7–9 pt fonts, no top/right spines, text kept as text in SVG
(`svg.fonttype: none`) and TrueType fonts in PDF (`pdf.fonttype: 42`, which journals ask for),
fixed figure sizes (constrained layout, never `bbox_inches="tight"`), so a figure's pixel size is
exactly its size in inches times `--dpi`. Class colours always come from the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hsicli.about import __version__
from hsicli.errors import InputError, StoreError, UsageError
from hsicli.plot.formats import FORMAT_SUFFIXES, FORMATS
from hsicli.store.atomic import atomic_path
from hsicli.store.layout import node_attributes
from hsicli.store.prediction import PredictionStore
from hsicli.store.provenance import describe_file, record
from hsicli.store.scene import SceneStore, split_layer_path


STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "image.interpolation": "nearest",
    "svg.fonttype": "none",
    "svg.hashsalt": "hsicli",  # stable element ids: the same inputs give the same SVG
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.facecolor": "white",
}

# Inches: the width of one map panel, one legend row, and the room a one-line panel title takes.
PANEL_WIDTH = 3.0
LEGEND_ROW = 0.19
TITLE_ROOM = 0.35
TITLE_LINE = 0.16  # each further line of a 9 pt panel title
ZOOM_EDGE = "#ffcc00"  # amber frames read on both the black background and white paper


@dataclass
class PlotOptions:
    out: Path | None = None
    format: str | None = None
    dpi: int = 300
    title: str | None = None
    size: tuple[float, float] | None = None  # inches; None: each kind's default
    overwrite: bool = False
    masked: bool = False
    with_gt: bool = False
    with_rgb: bool = False
    zoom: list[tuple[int, int, int, int]] = field(default_factory=list)  # x0, y0, x1, y1 (end exclusive)
    raw: bool = False
    split: str | None = None
    x: str | None = None
    metric: str = "oa"
    points: int = 5000
    seed: int = 0


# -- option parsing ------------------------------------------------------------------------------


def parse_size(text: str | None) -> tuple[float, float] | None:
    """'7,3.5' -> (7.0, 3.5) inches."""
    if text is None:
        return None
    try:
        width, height = (float(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"--size {text!r} is not WIDTH,HEIGHT in inches", hint="e.g. --size 7,3.5") from None
    if not (0.5 <= width <= 50 and 0.5 <= height <= 50):
        raise UsageError(f"--size {text!r}: each side must lie in 0.5..50 inches", hint="e.g. --size 7,3.5")
    return width, height


def parse_box(text: str) -> tuple[int, int, int, int]:
    """'x0,y0,x1,y1' pixel corners (columns x, rows y; x1, y1 exclusive)."""
    try:
        x0, y0, x1, y1 = (int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--zoom {text!r} is not x0,y0,x1,y1 in pixels", hint="e.g. --zoom 10,20,40,50 (columns 10-39, rows 20-49)"
        ) from None
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise UsageError(f"--zoom {text!r}: need 0 <= x0 < x1 and 0 <= y0 < y1", hint="e.g. --zoom 10,20,40,50")
    return x0, y0, x1, y1


def resolve_format(options: PlotOptions) -> str:
    """--format, else the suffix of --out, else PNG; the two must agree when both are given, and a
    suffix names a format hsi writes (`-o map.bmp` is refused rather than filled with PNG bytes)."""
    suffix = Path(options.out).suffix.lower() if options.out else ""
    from_suffix = FORMAT_SUFFIXES.get(suffix)
    if suffix and from_suffix is None:
        raise UsageError(f"--out {options.out}: hsi plot does not write {suffix} files",
                         hint=f"use one of {', '.join(FORMAT_SUFFIXES)}")
    fmt = options.format or from_suffix or "png"
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if options.format and from_suffix and from_suffix != options.format:
        raise UsageError(
            f"--out {options.out} names a {from_suffix} file but --format is {options.format}",
            hint="drop --format, or give --out the matching suffix",
        )
    if options.raw and fmt not in ("png", "tif"):
        raise UsageError(f"--raw writes one image pixel per scene pixel; {fmt} is not a raster format",
                         hint="use --raw with PNG (or --format tif)")
    return fmt


# -- inputs ---------------------------------------------------------------------------------------


def artifact_kind(path: Path) -> str | None:
    """'scene', 'prediction', 'checkpoint', 'resume-state', 'metrics', or None when unknown."""
    path = Path(path)
    store, _, _ = split_layer_path(path)
    if store.is_dir():
        return node_attributes(store).get("kind")
    if path.suffix == ".json":
        return "metrics"
    if path.suffix == ".safetensors":
        from hsicli.store.checkpoint import read_header

        return read_header(path)[1].get("kind")
    return None


def stem(path: Path) -> str:
    """A file name without the artifact's suffixes: run.pred.zarr, run.metrics.json -> run."""
    name = Path(path).name
    for suffix in (".zarr", ".pred", ".safetensors", ".resume", ".json", ".metrics"):
        name = name.removesuffix(suffix)
    return name


def open_prediction(path: Path, kind: str) -> PredictionStore:
    """The prediction store `hsi plot KIND` needs, with a hint fitting the plot when it is not one."""
    found = artifact_kind(path)
    if found == "scene":
        raise StoreError(
            f"{path} is a scene store; `hsi plot {kind}` needs a prediction store",
            hint="make one with `hsi predict CHECKPOINT`; `hsi plot gt` or `hsi plot rgb` draw a scene store",
        )
    return PredictionStore.open(Path(path))


def open_scene(path: Path) -> tuple[SceneStore, PredictionStore | None, str | None, str | None]:
    """(scene store, prediction or None, layer kind, layer name) of a scene, layer or prediction path."""
    store_path, layer_kind, layer_name = split_layer_path(Path(path))
    if artifact_kind(store_path) == "prediction":
        prediction = PredictionStore.open(store_path)
        return prediction.scene(), prediction, None, None
    return SceneStore.open(store_path), None, layer_kind, layer_name


# -- colours and legends ------------------------------------------------------------------------


def hex_to_rgb(colors: Sequence[str]) -> np.ndarray:
    """(K, 3) uint8 from '#rrggbb' (or any matplotlib colour) strings."""
    from matplotlib.colors import to_rgb

    return np.round(np.array([to_rgb(c) for c in colors], dtype=np.float64).reshape(-1, 3) * 255).astype(np.uint8)


def class_palette(colors: Sequence[str]) -> np.ndarray:
    """(C + 1, 3) uint8: row 0 the unlabelled background, row k the colour of class k.

    The background is black as in the papers' maps, or white if some class is black.
    """
    rgb = hex_to_rgb(colors)
    background = [255, 255, 255] if (rgb == 0).all(axis=1).any() else [0, 0, 0]
    return np.vstack([np.array(background, dtype=np.uint8), rgb])


def colorize(values: np.ndarray, palette: np.ndarray, source: Path) -> np.ndarray:
    """(H, W) codes -> (H, W, 3) uint8 through a palette, one vectorised lookup."""
    top = int(values.max(initial=0))
    if top >= len(palette):
        raise StoreError(
            f"{source} holds class {top}, but only {len(palette) - 1} classes have colours",
            hint="the store's class table and its maps disagree; recreate the store",
        )
    return palette[values]


def legend_layout(labels: Sequence[str], width: float) -> tuple[int, int]:
    """(columns, rows) for a legend of `labels` across a figure `width` inches wide."""
    item = 0.4 + 0.055 * max((len(label) for label in labels), default=1)  # swatch + ~7 pt characters
    columns = max(1, min(len(labels), int(width // item)))
    return columns, math.ceil(len(labels) / columns)


def legend_height(labels: Sequence[str], width: float) -> float:
    return legend_layout(labels, width)[1] * LEGEND_ROW + 0.15


def figure_legend(fig: Figure, handles: Sequence, labels: Sequence[str]) -> None:
    """A legend below the panels, as many columns as the figure's width holds (see `legend_height`)."""
    columns, _ = legend_layout(labels, fig.get_figwidth())
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, handlelength=1.5, columnspacing=1.0)


def class_legend(names: Sequence[str], colors: Sequence[str], palette: np.ndarray,
                 codes: Sequence[np.ndarray]) -> tuple[list[str], list[str]]:
    """(labels, colours) of a class map's legend: the classes, and "unlabelled" in the background
    colour when a panel drawn from `codes` shows code-0 pixels."""
    labels, swatches = list(names), list(colors)
    if any((values == 0).any() for values in codes):
        labels.append("unlabelled")
        swatches.append("#{:02x}{:02x}{:02x}".format(*palette[0]))
    return labels, swatches


def add_legend(fig: Figure, labels: Sequence[str], colors: Sequence[str]) -> None:
    """Colour swatches with names, below the panels."""
    from matplotlib.patches import Patch

    figure_legend(fig, [Patch(facecolor=c, edgecolor="0.3", linewidth=0.3) for c in colors], labels)


# -- figures --------------------------------------------------------------------------------------


@contextlib.contextmanager
def style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(options: PlotOptions, default_size: tuple[float, float], layout: str = "constrained") -> Figure:
    """A headless figure, `--size` or the kind's default size. Maps use the "compressed" layout:
    plain constrained layout sizes the margins of fixed-aspect image axes before the aspect
    shrinks them, which clipped two-line panel titles at the top of the figure."""
    fig = Figure(figsize=options.size or default_size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def map_panel_size(shape: tuple[int, int], panels: int, columns: int | None = None,
                   title_lines: int = 1) -> tuple[float, float]:
    """(figure width, height of the panel rows) in inches for `panels` maps of a (H, W) scene
    whose titles span up to `title_lines` lines."""
    columns = columns or panels
    rows = math.ceil(panels / columns)
    panel = PANEL_WIDTH if columns <= 3 else 2.2
    # The image spans a little less than its panel (padding), hence the 0.1 inch.
    image_height = min(max((panel - 0.1) * shape[0] / shape[1], 1.2), 2.5 * panel)
    return panel * columns, rows * (image_height + TITLE_ROOM + TITLE_LINE * (title_lines - 1))


def show_image(ax, image: np.ndarray, title: str | None, zoom: Sequence[tuple[int, int, int, int]] = (), **kwargs):
    """An image panel without axes; `zoom` boxes get magnified insets in the panel's corners."""
    handle = ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    height, width = image.shape[:2]
    corners = ((0.6, 0.6), (0.6, 0.02), (0.02, 0.02), (0.02, 0.6))
    for index, (x0, y0, x1, y1) in enumerate(zoom):
        if x1 > width or y1 > height:
            raise UsageError(
                f"--zoom {x0},{y0},{x1},{y1} reaches outside the {height} × {width} scene",
                hint=f"keep x1 <= {width} and y1 <= {height}",
            )
        left, bottom = corners[index % len(corners)]
        inset = ax.inset_axes([left, bottom, 0.38, 0.38])
        inset.imshow(image, interpolation="nearest", **kwargs)
        inset.set_xlim(x0 - 0.5, x1 - 0.5)
        inset.set_ylim(y1 - 0.5, y0 - 0.5)
        inset.set_xticks([])
        inset.set_yticks([])
        for spine in inset.spines.values():
            spine.set_visible(True)
            spine.set_edgecolor(ZOOM_EDGE)
            spine.set_linewidth(1.0)
        ax.indicate_inset_zoom(inset, edgecolor=ZOOM_EDGE, linewidth=0.8, alpha=1.0)
    return handle


def describe_inputs(inputs: Sequence[Path]) -> dict[str, dict]:
    """Each input as provenance records it: a file by its content hash, a store or layer by its
    recorded fingerprint (a prediction by the request key it was made from)."""
    described = {}
    for index, path in enumerate(inputs, start=1):
        path = Path(path)
        if path.is_file():
            described[f"input{index}"] = describe_file(path)
            continue
        entry = {"path": str(path.absolute())}
        attributes = node_attributes(path)
        fingerprint = attributes.get("fingerprint") or attributes.get("request_key")
        if isinstance(fingerprint, str):
            entry["fingerprint"] = fingerprint
        described[f"input{index}"] = entry
    return described


_KEY_MARK = "hsi-figure-key-"
_KEY_PATTERN = re.compile(rb"hsi-figure-key-([0-9a-f]{64})")


def request_key(kind: str, described: dict[str, dict], options: PlotOptions) -> str:
    """What makes a figure: its kind, its inputs' contents and the drawing options (not where
    it goes nor whether it may replace; inputs by content where they record it, so a moved
    workspace still matches). Equal keys: re-running is a no-op."""
    drawing = {k: v for k, v in asdict(options).items() if k not in ("out", "overwrite")}
    contents = [entry.get("sha256") or entry.get("fingerprint") or entry["path"] for entry in described.values()]
    key = json.dumps({"kind": kind, "inputs": contents, "options": drawing, "version": __version__},
                     sort_keys=True, default=str)
    return _KEY_MARK + hashlib.sha256(key.encode()).hexdigest()


def read_request_key(path: Path) -> str | None:
    """The request key embedded in a figure's metadata (PNG text, SVG/PDF/GeoTIFF metadata all
    keep it as plain ASCII), or None."""
    try:
        found = _KEY_PATTERN.search(path.read_bytes())
    except OSError:
        return None
    return _KEY_MARK + found.group(1).decode() if found else None


def provenance(command: str, described: dict[str, dict], key: str) -> str:
    """The provenance record of a figure as JSON, embedded in its metadata."""
    return json.dumps(record(command, described, request_key=key), separators=(",", ":"))


def output_path(kind: str, inputs: Sequence[Path], options: PlotOptions, fmt: str) -> Path:
    """--out, or beside the (first) input: RUN.KIND.png; several inputs: KIND-DIGEST.png."""
    if options.out is not None:
        out = Path(options.out).absolute()
        if out.is_dir():
            raise UsageError(f"--out {options.out} is a directory", hint="give a file name, e.g. --out figures/map.png")
    else:
        first = Path(inputs[0]).absolute()
        store, layer_kind, layer_name = split_layer_path(first)
        folder = store.parent
        variant = kind + ("-raw" if options.raw else "")
        if len(inputs) == 1:
            name = stem(store) + (f".{layer_name}" if layer_kind else "")
            out = folder / f"{name}.{variant}.{fmt}"
        else:
            key = "\n".join(sorted(str(Path(p).absolute()) for p in inputs) + [str(options.x), options.metric])
            digest = hashlib.sha256(key.encode()).hexdigest()[:10]
            out = folder / f"{variant}-{digest}.{fmt}"
    return out


def save_figure(fig: Figure, out: Path, fmt: str, options: PlotOptions, provenance_json: str) -> Path:
    if options.title:
        fig.suptitle(options.title)
    creator = f"hsicli {__version__}"
    metadata = {
        "png": {"Software": creator, "Description": provenance_json},
        "svg": {"Creator": creator, "Description": provenance_json, "Date": None},
        "pdf": {"Creator": creator, "Subject": provenance_json, "CreationDate": None},
        "eps": {"Creator": creator},
    }.get(fmt)  # matplotlib keeps no metadata in jpg and webp
    with atomic_path(out, options.overwrite) as tmp:
        fig.savefig(tmp, format=fmt, dpi=options.dpi, metadata=metadata)
    return out


# -- rasters (--raw PNG and GeoTIFF) ------------------------------------------------------------


@dataclass
class Raster:
    """One value per scene pixel: class codes with a palette, an RGB image, or floats with a colormap."""

    values: np.ndarray  # (H, W) codes or floats, or (H, W, 3) uint8
    source: Path  # the store the values come from, for messages
    geo: dict | None = None
    palette: np.ndarray | None = None  # (K, 3) uint8, indexed by code
    code_names: dict[int, str] | None = None  # what each code means, written as GeoTIFF band tags
    cmap: str | None = None
    vmin: float = 0.0
    vmax: float = 1.0

    def to_rgb(self) -> np.ndarray:
        if self.palette is not None:
            return colorize(self.values, self.palette, self.source)
        if self.cmap is not None:
            colormap = matplotlib.colormaps[self.cmap].with_extremes(bad="white")
            scaled = (self.values - self.vmin) / max(self.vmax - self.vmin, 1e-12)
            return colormap(np.ma.masked_invalid(scaled), bytes=True)[..., :3]
        return self.values


def save_raster(raster: Raster, out: Path, fmt: str, overwrite: bool, provenance_json: str) -> Path:
    if fmt == "tif":
        return _write_geotiff(raster, out, overwrite, provenance_json)
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", f"hsicli {__version__}")
    info.add_text("Description", provenance_json)
    with atomic_path(out, overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(raster.to_rgb()), "RGB").save(tmp, format="PNG", pnginfo=info)
    return out


def _write_geotiff(raster: Raster, out: Path, overwrite: bool, provenance_json: str) -> Path:
    """A georeferenced GeoTIFF (`raster.geo` from the scene): class codes with the class colours as
    colour table, RGB, or floats."""
    try:
        import rasterio
        from rasterio.transform import Affine
    except ImportError:
        raise InputError(
            f"writing {out} as GeoTIFF needs rasterio, which is not installed",
            hint="pip install hsicli[geotiff], or use --format png",
        ) from None
    values = raster.values
    bands = np.moveaxis(values, -1, 0) if values.ndim == 3 else values[None]
    if raster.palette is not None:
        bands = bands.astype(np.uint8 if len(raster.palette) <= 256 else np.uint16)
    profile = {
        "driver": "GTiff", "height": values.shape[0], "width": values.shape[1], "count": bands.shape[0],
        "dtype": bands.dtype.name, "transform": Affine(*raster.geo["transform"][:6]), "crs": raster.geo.get("crs"),
        "compress": "deflate",
    }
    if raster.palette is not None:
        profile["nodata"] = 0
    elif raster.cmap is not None:
        profile["nodata"] = float("nan")
    else:
        profile["photometric"] = "RGB"
    with atomic_path(out, overwrite) as tmp, rasterio.open(tmp, "w", **profile) as dataset:
        dataset.write(bands)
        dataset.update_tags(SOFTWARE=f"hsicli {__version__}", HSI_PROVENANCE=provenance_json)
        if raster.palette is not None:
            dataset.write_colormap(1, {k: (*map(int, rgb), 255) for k, rgb in enumerate(raster.palette)})
        if raster.code_names:  # e.g. CLASS_3=Lettuce romaine 4wk: codes are the store's, not the source file's
            dataset.update_tags(1, **{f"CLASS_{code}": name for code, name in raster.code_names.items()})
    return out
