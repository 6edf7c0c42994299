"""`hsi evaluate`: accuracy metrics of prediction stores on their test pixels, as the papers' tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import JsonOpt, Log, OutOpt, OverwriteOpt, QuietOpt, VerboseOpt, command_line, emit, read_input_path
from hsicli.cli.options import layer_name_option


def evaluate(
    predictions: Annotated[
        Optional[list[str]],
        typer.Argument(help="Prediction stores, or metrics/summary files written by hsi evaluate; "
                            "omitted or '-' reads one path from stdin.",
                       autocompletion=completion.paths(".zarr", ".json")),
    ] = None,
    split: Annotated[
        Optional[str], layer_name_option("--split", help="Split to evaluate on (default: the trained one).",
                                         autocompletion=completion.split_names)
    ] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the table as CSV.")] = None,
    latex: Annotated[Optional[Path], typer.Option("--latex", help="Also write the table as LaTeX (booktabs).")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the table as Markdown.")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """OA, AA, κ, MCC, ARI and per-class scores on the split's test pixels.

    Runs are averaged only when comparable: same model, arguments and training settings, same
    scene, same split protocol (the seeds aside). Each such group is one column of mean ± std, as
    in the papers' tables, with the best value of each row in bold. The table goes to stderr;
    stdout gets the metrics JSON path, or the metrics and the table with --json. Metrics and
    summary files written earlier rebuild a table without the stores.

    Example: hsi evaluate runs/*.pred.zarr --latex table.tex
    """
    from hsicli.engine.evaluate import evaluate as run_evaluation
    from hsicli.engine.report import to_csv, to_json, to_latex, to_markdown
    from hsicli.store.atomic import atomic_path

    log = Log(quiet, verbose)
    paths = [read_input_path(p if p != "-" else None, "prediction store") for p in (predictions or [None])]
    result = run_evaluation(paths, split=split, out=out, command=command_line(), overwrite=overwrite)
    if not quiet:
        from rich.console import Console

        console = Console(stderr=True)
        for table in result.tables:
            console.print(terminal_table(table, styled=console.color_system is not None))
    for target, render in ((csv, to_csv), (latex, to_latex), (markdown, to_markdown)):
        if target is not None:
            with atomic_path(Path(target), overwrite) as tmp:
                tmp.write_text(render(result.tables))
            log.info(f"wrote {target}")
    if json_out:
        print(json.dumps({"path": str(result.path), **result.result, "tables": to_json(result.tables)}, default=str),
              file=sys.stdout)
    else:
        emit(result.path)


def terminal_table(table, styled: bool):
    """The rich rendering of a `hsicli.engine.report.Table`: the same headers and cell texts; the
    best cell of a row in bold, or followed by ` *` where styles do not show (a log file)."""
    from rich.table import Column, Table
    from rich.text import Text

    mark = "best of each row in bold" if styled else "* best of each row"
    caption = "; ".join([*table.notes, *([mark] if table.marked else [])]) or None
    headers = [Column(Text(table.corner)), *(Column(Text(c), justify="right") for c in table.columns)]
    shown = Table(*headers, title=table.title, caption=caption)
    for row, following in zip(table.rows, (*table.rows[1:], None)):
        cells = (Text(cell.text(), style="bold") if cell.best and styled else
                 Text(cell.text() + (" *" if cell.best else "")) for cell in row.cells)
        shown.add_row(Text(row.label), *cells, end_section=following is not None and following.section != row.section)
    return shown
