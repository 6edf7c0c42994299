"""`hsi plot`: every figure of the three papers, from the artifacts alone (issue 7).

Each kind is one function that turns input paths into a matplotlib `Figure` (the figure kinds)
or a `Raster` (one value per scene pixel: `--raw` PNG and GeoTIFF export). This module only
dispatches; it imports nothing heavy at import time, so the CLI stays instant.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
rendering is headless whatever backend the user configured and leaves no global state behind.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from hsicli.about import API_COMMAND
from hsicli.plot.formats import FORMAT_SUFFIXES, FORMATS  # noqa: F401  (the CLI's --format choices)

if TYPE_CHECKING:
    from hsicli.plot.common import PlotOptions

# kind: (module, figure function, raster function or None, one-line description for --help)
KINDS: dict[str, tuple[str, str, str | None, str]] = {
    "map": ("maps", "map_figure", "map_raster", "classification map of a prediction store"),
    "gt": ("maps", "gt_figure", "gt_raster", "ground truth of a scene store"),
    "rgb": ("maps", "rgb_figure", "rgb_raster", "false-colour preview of a scene store"),
    "uncertainty": ("maps", "uncertainty_figure", "uncertainty_raster", "per-pixel entropy of a prediction"),
    "split": ("maps", "split_figure", "split_raster", "train / validation / test pixel locations"),
    "pseudo": ("maps", "pseudo_figure", None, "pseudo-label layers of a scene store as a strip"),
    "grid": ("maps", "grid_figure", None, "several prediction maps beside the ground truth"),
    "curves": ("curves", "curves_figure", None, "loss and accuracy per epoch of checkpoints"),
    "loss-weights": ("curves", "loss_weights_figure", None, "learned loss weights per epoch"),
    "confusion": ("metrics_figs", "confusion_figure", None, "row-normalised confusion matrix"),
    "pr": ("metrics_figs", "pr_figure", None, "per-class precision-recall curves with AP"),
    "compare": ("metrics_figs", "compare_figure", None, "OA / AA / κ mean ± std per model"),
    "sweep": ("metrics_figs", "sweep_figure", None, "a metric against a recorded parameter (--x)"),
    "tsne": ("embedding", "tsne_figure", None, "t-SNE of the embeddings of labelled pixels"),
}

RASTER_KINDS = tuple(kind for kind, entry in KINDS.items() if entry[2])


def plot(kind: str, inputs: list[Path], options: PlotOptions, *, command: str = API_COMMAND) -> Path:
    """Render `kind` from `inputs` and write it atomically; returns the written path. The same
    figure of the same inputs already at the destination is kept (re-running is a no-op)."""
    from dataclasses import replace

    from hsicli.plot import common
    from hsicli.store.atomic import up_to_date

    module_name, figure_name, raster_name, _ = KINDS[kind]
    fmt = common.resolve_format(options)
    options = replace(options, format=fmt)
    raster_output = options.raw or fmt == "tif"
    if raster_output and raster_name is None:
        from hsicli.errors import UsageError

        what = "--raw" if options.raw else "--format tif"
        raise UsageError(
            f"{what} writes one value per scene pixel, which {kind!r} does not have",
            hint=f"use it with {', '.join(RASTER_KINDS)}",
        )
    out = common.output_path(kind, inputs, options, fmt)
    described = common.describe_inputs(inputs)
    key = common.request_key(kind, described, options)
    if up_to_date(out, key, common.read_request_key, options.overwrite):
        return out
    module = importlib.import_module(f"hsicli.plot.{module_name}")
    provenance = common.provenance(command, described, key)
    if raster_output:
        raster = getattr(module, raster_name)(inputs, options)
        return common.save_raster(raster, out, fmt, options.overwrite, provenance)
    with common.style():
        figure = getattr(module, figure_name)(inputs, options)
        return common.save_figure(figure, out, fmt, options, provenance)
