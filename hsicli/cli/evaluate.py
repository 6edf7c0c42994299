"""`hsi evaluate`: accuracy metrics of one or more prediction stores on their test pixels."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli.common import JsonOpt, Log, OutOpt, OverwriteOpt, QuietOpt, command_line, emit, read_input_path


def evaluate(
    predictions: Annotated[
        Optional[list[str]], typer.Argument(help="Prediction stores; omitted or '-' reads one path from stdin.")
    ] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split to evaluate on (default: the trained one).")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the per-class table as CSV.")] = None,
    latex: Annotated[Optional[Path], typer.Option("--latex", help="Also write the per-class table as LaTeX.")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """OA, AA, κ, MCC, ARI and per-class scores on the split's test pixels.

    Several predictions (e.g. seeds) give mean ± std as in the papers' tables. The table goes to
    stderr; stdout gets the metrics JSON path, or the metrics themselves with --json.

    Example: hsi evaluate runs/*.pred.zarr --latex table.tex
    """
    from hsicli.engine.evaluate import evaluate as run_evaluation
    from hsicli.engine.metrics import format_table, to_csv, to_latex
    from hsicli.store.atomic import atomic_path

    log = Log(quiet)
    paths = [read_input_path(p if p != "-" else None, "prediction store") for p in (predictions or [None])]
    result = run_evaluation(paths, split=split, out=out, command=command_line(), overwrite=overwrite)
    if not quiet:
        from rich.console import Console
        from rich.table import Table

        rows = format_table(result.result)
        table = Table(*rows[0], title=f"{len(result.runs)} run(s) on test pixels")
        for row in rows[1:]:
            table.add_row(*row)
        Console(stderr=True).print(table)
    for target, render in ((csv, to_csv), (latex, to_latex)):
        if target is not None:
            with atomic_path(Path(target), overwrite) as tmp:
                tmp.write_text(render(result.result))
            log.info(f"wrote {target}")
    if json_out:
        print(json.dumps({"path": str(result.path), **result.result}, default=str), file=sys.stdout)
    else:
        emit(result.path)
