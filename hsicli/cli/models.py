"""`hsi models`: the model registry with parameter counts and multiply-accumulates."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from hsicli.cli.common import JsonOpt
from hsicli.cli.options import ranged_option


def models(
    name: Annotated[Optional[list[str]], typer.Argument(help="Only these models (default: all).")] = None,
    bands: Annotated[int, ranged_option("--bands", ge=1, help="Input bands for the figures.")] = 30,
    classes: Annotated[int, ranged_option("--classes", ge=2, help="Classes for the figures.")] = 16,
    patch: Annotated[
        Optional[int], ranged_option("--patch", ge=1, help="Patch / window size (default: each model's paper default).")
    ] = None,
    model_args: Annotated[Optional[str], typer.Option("--model-args", help="Architecture arguments as JSON.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the registered models: kind, paper, parameters and MACs per sample, paper protocol.

    MACs are multiply-accumulates of one sample's forward pass: every matrix product, convolution
    and attention, recurrent layers by their gate formula; FLOPs = 2 × MACs. "conv + linear" counts
    only convolution and linear layers, as common counters (and the Lite-C2ANet paper) report them.
    Example: hsi models litec2anet --bands 103 --classes 9
    """
    from hsicli.cli.options import parse_json_object
    from hsicli.models.catalogue import describe_models

    rows = describe_models(name or None, bands=bands, classes=classes, patch=patch,
                           model_args=parse_json_object(model_args, "--model-args"))
    if json_out:
        print(json.dumps({"bands": bands, "classes": classes, "models": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "kind", "paper", "patch", "parameters", "MACs / sample", "conv + linear", "optimiser, lr, batch, epochs",
                  title=f"{bands} bands, {classes} classes")
    for row in rows:
        d = row["defaults"]
        params = f"{row['parameters']:,}" if row["parameters"] is not None else "—"
        macs, layer_macs = (f"{row[key] / 1e6:,.2f} M" if row[key] is not None else "—"
                            for key in ("macs", "layer_macs"))
        table.add_row(row["name"], row["kind"], row["paper"], str(row["patch"]), params, macs, layer_macs,
                      f"{d['optimizer']} {d['lr']:g}, {d['batch_size']}, {d['epochs']}")
    Console(file=sys.stderr).print(table)
