"""`hsi models`: the model registry with parameter counts and multiply-accumulates."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import JsonOpt, QuietOpt, VerboseOpt
from hsicli.cli.options import ranged_option


def models(
    name: Annotated[Optional[list[str]], typer.Argument(help="Show these models in detail (default: list all).",
                                                                   autocompletion=completion.model_names)] = None,
    bands: Annotated[int, ranged_option("--bands", ge=1, help="Input bands for the figures.")] = 30,
    classes: Annotated[int, ranged_option("--classes", ge=2, help="Classes for the figures.")] = 16,
    patch: Annotated[
        Optional[int], ranged_option("--patch", ge=1, help="Patch / window size (default: each model's paper default).")
    ] = None,
    model_args: Annotated[Optional[str], typer.Option("--model-args", help="Architecture arguments as JSON.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,  # the table is the whole output: nothing more to add
) -> None:
    """List the registered models: kind, paper, parameters and MACs per sample.

    `hsi models NAME` shows one model in detail: its paper, the training protocol `hsi train`
    uses by default (classical models: their hyper-parameters) and both MAC counts. `--json`
    prints every field of every row.

    MACs are multiply-accumulates of one sample's forward pass: every matrix product, convolution
    and attention, recurrent layers by their gate formula; FLOPs = 2 × MACs. "conv + linear" counts
    only convolution and linear layers, as common counters (and the Lite-C2ANet paper) report them.
    Example: hsi models litec2anet --bands 103 --classes 9
    """
    from hsicli.cli.options import parse_json_object
    from hsicli.engine.memory import require_model_fits
    from hsicli.models.catalogue import describe_models

    rows = describe_models(name or None, bands=bands, classes=classes, patch=patch,
                           model_args=parse_json_object(model_args, "--model-args"), check=require_model_fits)
    if json_out:
        print(json.dumps({"bands": bands, "classes": classes, "models": rows}))
        return
    if quiet:
        return
    from rich.console import Console

    console = Console(file=sys.stderr)
    if name:
        for index, row in enumerate(rows):
            if index:
                console.print()
            console.print(_details(row, bands, classes))
    else:
        console.print(_listing(rows, bands, classes))


def _compact(count: int | None) -> str:
    """A count in three significant digits with K/M/G: table cells stay short."""
    if count is None:
        return "—"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return str(count)


def _listing(rows: list[dict[str, Any]], bands: int, classes: int) -> Any:
    from rich import box
    from rich.table import Table

    from hsicli.models.catalogue import paper_name

    table = Table(box=box.SIMPLE_HEAD, title=f"{bands} bands, {classes} classes, each model's patch",
                  caption="details: hsi models NAME", caption_justify="left")
    for header, justify in (("model", "left"), ("kind", "left"), ("paper", "left"), ("params", "right"),
                            ("MACs", "right")):
        table.add_column(header, justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(row["name"], row["kind"], paper_name(row["paper"]), _compact(row["parameters"]),
                      _compact(row["macs"]))
    return table


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return str(value)


def _details(row: dict[str, Any], bands: int, classes: int) -> Any:
    from rich.table import Table

    from hsicli.models.kinds import model_kind

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(row["name"], f"{row['kind']} — {row['paper']}")
    grid.add_row("", row["description"])
    spectral = not model_kind(row["kind"]).torch
    window = "centre spectrum" if spectral else f"{row['patch']}×{row['patch']} window"
    grid.add_row("input", f"{bands} bands, {classes} classes, {window}")
    if not spectral:
        grid.add_row("parameters", f"{row['parameters']:,}")
        grid.add_row("MACs / sample", f"{row['macs']:,} (conv + linear layers: {row['layer_macs']:,})")
    if row["arguments"]:
        grid.add_row("hyper-parameters" if spectral else "model arguments",
                     ", ".join(f"{key} {_value(value)}" for key, value in row["arguments"].items()))
    if not spectral:  # the optimiser settings do not apply to classical models
        grid.add_row("paper protocol", "")
        for key, value in row["defaults"].items():
            if key != "patch":
                grid.add_row(f"  {key.replace('_', ' ')}", _value(value))
    return grid
