"""`hsi prep`: read a scene file and write a scene store."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import (
    JsonOpt,
    Log,
    OutOpt,
    OverwriteOpt,
    QuietOpt, VerboseOpt,
    SceneFileArg,
    command_line,
    emit,
    read_input_path,
)
from hsicli.cli.options import parse_name_list, ranged_option


class Layout(str, Enum):
    auto = "auto"
    matrix = "matrix"


class Norm(str, Enum):
    zscore = "zscore"
    minmax = "minmax"
    none = "none"


class Fill(str, Enum):
    error = "error"
    zero = "zero"
    mean = "mean"


def prep(
    input: SceneFileArg = None,
    gt: Annotated[Optional[Path], typer.Option("--gt", help="Ground truth in a separate file.",
                                                        autocompletion=completion.scene_files)] = None,
    var: Annotated[Optional[str], typer.Option("--var", help="Name of the cube array in the file.")] = None,
    gt_var: Annotated[Optional[str], typer.Option("--gt-var", help="Name of the ground-truth array.")] = None,
    layout: Annotated[
        Layout, typer.Option("--layout", help="'matrix': bands × pixels plus nRow/nCol (Jasper Ridge's .mat).")
    ] = Layout.auto,
    drop_bands: Annotated[
        Optional[str],
        typer.Option("--drop-bands", help="Bands to remove, 1-based inclusive: 104-108,150-163,220."),
    ] = None,
    drop_water: Annotated[
        bool, typer.Option("--drop-water", help="Remove the known scene's water-absorption bands (see `hsi datasets`).")
    ] = False,
    fill: Annotated[Fill, typer.Option("--fill", help="What to do with NaN/inf values.")] = Fill.error,
    norm: Annotated[Norm, typer.Option("--norm", help="Per-band normalisation before PCA.")] = Norm.zscore,
    pca: Annotated[Optional[int], ranged_option("--pca", ge=1, help="Reduce to N principal components.")] = None,
    whiten: Annotated[bool, typer.Option("--whiten", help="Whiten the PCA components (HSIseg).")] = False,
    aux: Annotated[
        Optional[list[Path]], typer.Option("--aux", help="Auxiliary raster (LiDAR, SAR, MSI), same height and width; repeatable.",
                                         autocompletion=completion.scene_files)
    ] = None,
    like: Annotated[
        Optional[Path], typer.Option("--like", help="Repeat the preprocessing recorded in this scene store, its fitted statistics unchanged.",
                                     autocompletion=completion.stores)
    ] = None,
    class_names: Annotated[
        Optional[str],
        typer.Option("--class-names", help="Names of the ground truth's classes in the order of their ids, "
                     "comma-separated (tree,water,soil,road) or @FILE with one per line; they replace a known "
                     "scene's or the --like store's names (default: those, else 'class ID').", show_default=False),
    ] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Read a scene (MATLAB, ENVI, NumPy, GeoTIFF) and write a scene store.

    Example: hsi prep Indian_pines_corrected.mat --pca 30
    """
    from hsicli.data.prepare import PrepRequest, prepare_scene

    log = Log(quiet, verbose)
    source = read_input_path(input, "scene file")
    request = PrepRequest(
        source=source,
        gt=gt,
        var=var,
        gt_var=gt_var,
        layout=layout.value,
        drop_bands=drop_bands,
        drop_water=drop_water,
        fill=fill.value,
        normalisation=norm.value,
        pca=pca,
        whiten=whiten,
        aux=list(aux or []),
        like=like,
        class_names=parse_name_list(class_names, "--class-names"),
    )
    result = prepare_scene(request, out=out, overwrite=overwrite, command=command_line(), on_message=log.info,
                           on_warning=log.warn)
    emit(result.path, json_out, **result.summary)
