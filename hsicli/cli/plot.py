"""`hsi plot`: the papers' figures from scene stores, checkpoints, predictions and metrics."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import JsonOpt, OutOpt, OverwriteOpt, QuietOpt, VerboseOpt, command_line, emit, read_input_path
from hsicli.cli.options import SEED_MAX, layer_name_option, ranged_option
from hsicli.errors import UsageError
from hsicli.plot import FORMATS, KINDS

Format = Enum("Format", {name: name for name in FORMATS}, type=str)


def _check_kind(value: str) -> str:
    if value not in KINDS:
        raise UsageError(f"no plot kind {value!r}", hint=f"one of: {', '.join(KINDS)}")
    return value


def plot(
    # A plain string checked by _check_kind: as a choice, typer's help folded the kinds mid-word.
    kind: Annotated[str, typer.Argument(help="What to draw: one of the kinds listed above.", show_default=False,
                                        autocompletion=completion.plot_kinds, callback=_check_kind)],
    inputs: Annotated[
        Optional[list[str]],
        typer.Argument(help="Stores, checkpoints or metrics JSON; omitted or '-' reads one path from stdin.",
                       autocompletion=completion.artifacts),
    ] = None,
    out: OutOpt = None,
    fmt: Annotated[
        Optional[Format], typer.Option("--format", "-f", help="Output format (default: --out's suffix, else png).")
    ] = None,
    dpi: Annotated[int, ranged_option("--dpi", ge=10, le=2400, help="Resolution of PNG (and raster parts).")] = 300,
    title: Annotated[Optional[str], typer.Option("--title", help="A title above the figure.")] = None,
    size: Annotated[
        Optional[str], typer.Option("--size", help="Figure size WIDTH,HEIGHT in inches (default: per kind).")
    ] = None,
    masked: Annotated[bool, typer.Option("--masked", help="Maps: only labelled pixels (others black).")] = False,
    with_gt: Annotated[bool, typer.Option("--with-gt", help="Maps: the ground truth beside.")] = False,
    with_rgb: Annotated[bool, typer.Option("--with-rgb", help="Maps: the RGB preview beside.")] = False,
    zoom: Annotated[
        Optional[list[str]],
        typer.Option("--zoom", help="Maps: magnified inset of pixels x0,y0,x1,y1 (columns x, rows y); repeatable."),
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Maps: one image pixel per scene pixel, no axes (PNG).")
    ] = False,
    split: Annotated[Optional[str], layer_name_option("--split", help="Split to draw or evaluate on.",
                                                                      autocompletion=completion.split_names)] = None,
    x: Annotated[Optional[str], typer.Option("--x", help="sweep: recorded parameter on the x axis.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="sweep: oa, aa, kappa, mcc, ari, map, or a recorded number "
                                                     "(e.g. training.pseudo_labels.added).")] = "oa",
    points: Annotated[int, ranged_option("--points", ge=2, help="tsne: at most this many pixels.")] = 5000,
    seed: Annotated[int, ranged_option("--seed", ge=0, le=SEED_MAX, help="tsne: seed of the sample and of t-SNE.")] = 0,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,  # plot writes nothing on stderr but errors; taken as every command takes it
    verbose: VerboseOpt = False,
) -> None:
    """Draw a figure headless (PNG, SVG, PDF, EPS, JPEG, WebP) or export a map (GeoTIFF); prints its path.

    \b
    map           classification map of a prediction (--masked, --with-gt, --zoom)
    gt, rgb       ground truth, false-colour preview of a scene store
    uncertainty   per-pixel entropy of a prediction
    split         where train / validation / test pixels lie
    pseudo        pseudo-label layers (labels/*) of a scene store, in order
    grid          several predictions' maps beside the ground truth
    curves        loss and accuracy per epoch of one or more checkpoints
    loss-weights  learned loss weights (α, β, γ, δ) per epoch of a checkpoint
    confusion     row-normalised confusion matrix with class names
    pr            per-class precision-recall curves with AP on test pixels
    tsne          t-SNE of stored embeddings (hsi predict --embeddings)
    compare       OA / AA / κ mean ± std per model; OA against parameters
    sweep         a metric against a recorded parameter (--x training.hyper.patch)

    Examples: hsi predict run.safetensors | hsi plot map --with-gt --masked

      hsi plot sweep runs/*.pred.zarr --x params.ratio --format pdf
    """
    from hsicli.plot import plot as render
    from hsicli.plot.common import PlotOptions, parse_box, parse_size

    paths = [read_input_path(p if p != "-" else None, "input") for p in (inputs or [None])]
    options = PlotOptions(
        out=out, format=fmt.value if fmt else None, dpi=dpi, title=title, size=parse_size(size),
        overwrite=overwrite, masked=masked, with_gt=with_gt, with_rgb=with_rgb,
        zoom=[parse_box(box) for box in zoom or []], raw=raw, split=split, x=x, metric=metric,
        points=points, seed=seed,
    )
    path = render(kind, [Path(p) for p in paths], options, command=command_line())
    emit(path, json_out, kind=kind)
