"""`hsi split`: add a named train/validation/test split layer to a scene store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import JsonOpt, Log, QuietOpt, VerboseOpt, StoreArg, command_line, emit, read_input_path
from hsicli.cli.options import SeedOpt, layer_name_option, ranged_option


def split(
    store: StoreArg = None,
    ratio: Annotated[
        Optional[float], ranged_option("--ratio", gt=0.0, lt=1.0, help="Training fraction per class.")
    ] = None,
    val: Annotated[
        Optional[float],
        ranged_option("--val", ge=0.0, help="Validation fraction per class (default 0.08), or count with --per-class (default 0)."),
    ] = None,
    per_class: Annotated[
        Optional[int], ranged_option("--per-class", ge=1, help="A fixed number of training pixels per class (HSIseg: 10).")
    ] = None,
    spatial: Annotated[
        bool,
        typer.Option("--spatial", help="Spatially disjoint blocks with a guard margin of the window radius."),
    ] = False,
    controlled: Annotated[
        bool,
        typer.Option(
            "--controlled",
            help="Controlled random sampling (Liang et al. 2017, Lite-C2ANet): per class, training regions grown "
            "from a random seed in each connected region, plus a guard margin of the window radius.",
        ),
    ] = False,
    guard: Annotated[
        bool,
        typer.Option(
            "--guard/--no-guard",
            help="With --controlled: leave out the labelled pixels within the window radius of a training pixel "
            "(--no-guard keeps them as test, as the paper does).",
        ),
    ] = True,
    block: Annotated[Optional[int], ranged_option("--block", ge=1, help="Block size in pixels for --spatial.")] = None,
    from_maps: Annotated[
        Optional[Path], typer.Option("--from-maps", help="Import predefined train/test maps (e.g. Houston 2013).",
                                     autocompletion=completion.scene_files)
    ] = None,
    train_var: Annotated[Optional[str], typer.Option("--train-var", help="Train map variable in --from-maps.")] = None,
    test_var: Annotated[Optional[str], typer.Option("--test-var", help="Test map variable in --from-maps.")] = None,
    window: Annotated[
        int, ranged_option("--window", ge=1, help="Window size (the patch size you will train with) for the leakage "
                           "report and the --spatial / --controlled guard margin.")
    ] = 11,
    # The old spelling, hidden: --patch is train's patch size; here it named the window above.
    patch: Annotated[Optional[int], ranged_option("--patch", ge=1, help="Deprecated: --window.", hidden=True)] = None,
    seed: SeedOpt = 0,
    min_pixels: Annotated[
        Optional[int],
        ranged_option(
            "--min-pixels",
            ge=1,
            help="Drop the classes with fewer labelled pixels than this: never sampled, recorded in the split, "
            "shown as dropped by evaluate and plot.",
        ),
    ] = None,
    name: Annotated[
        Optional[str], layer_name_option("--name", help="Name of the split layer written into the store, "
                                         "STORE/splits/NAME (default: derived from the parameters and seed).")
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Split the labelled pixels of a scene store into train / validation / test.

    Prints STORE/splits/NAME, which `hsi train` reads. Examples:

      hsi split scene.zarr --ratio 0.72             (CLAReSNet 72/8/20)

      hsi split scene.zarr --per-class 10 --val 0   (HSIseg)

      hsi split scene.zarr --ratio 0.01 --val 0.01  (Lite-C2ANet 1/1/98)

      hsi split scene.zarr --ratio 0.1 --spatial --window 11

      hsi split scene.zarr --ratio 0.01 --val 0 --controlled --window 11   (Lite-C2ANet [37])

      hsi split scene.zarr --ratio 0.05 --min-pixels 10   (leave out classes under 10 pixels)
    """
    from hsicli.data.splitting import SplitRequest, make_split

    log = Log(quiet, verbose)
    if patch is not None:
        log.warn("split's --patch is now --window (--patch is train's patch size)")
        window = patch
    path = read_input_path(store, "scene store")
    request = SplitRequest(
        ratio=ratio,
        val=val,
        per_class=per_class,
        spatial=spatial,
        controlled=controlled,
        guard=guard,
        block=block,
        from_maps=from_maps,
        train_var=train_var,
        test_var=test_var,
        patch=window,
        seed=seed,
        min_pixels=min_pixels,
        name=name,
    )
    result = make_split(path, request, command=command_line())
    log.info(result.report)
    emit(result.path, json_out, name=result.name, leakage=result.leakage, counts=result.counts)
