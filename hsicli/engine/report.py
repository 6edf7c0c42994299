"""The tables of `hsi evaluate`: one model of a table, rendered to CSV, LaTeX, Markdown and JSON.

A `Table` is a title, the header of its label column, the headers of its value columns and rows
of `Cell`s; the CLI renders the same object on the terminal. Every format therefore holds the
same cells under the same headers, and a cell's text is the same everywhere (LaTeX spells ± as
``$\\pm$``). Rates display as percentages (κ, MCC, ARI × 100) with 2 decimals; a mean over runs
displays as ``mean ± std`` (sample std), a single run's value alone.

Two shapes are built here:

- `comparison_table`: the papers' table. One column per group of comparable runs, per-class
  accuracy rows (when every group has the same classes), then OA, AA, κ, MCC, ARI (and mAP,
  centroid distance when a run has them); with several columns the best value of each row is
  marked (bold; a ``Best`` column in CSV; ``"best": true`` in JSON).
- `run_tables`: one run in detail. Per-class support, precision, recall, F1 (and AP), then the
  overall scores under the run's own column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hsicli.metrics import OPTIONAL_SCORES, OVERALL_SCORES, summarize_runs

MISSING = "–"  # an undefined value (a class with no test pixels)
_LATEX_MISSING = "--"
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "κ": r"$\kappa$", "×": r"$\times$", "±": r"$\pm$", "–": "--",
}
# How each score displays: (scale, decimals).
_DISPLAY = {"centroid_distance": (1.0, 2), "support": (1.0, 0)}


@dataclass(frozen=True)
class Cell:
    """One value, or the mean of `runs` runs with its sample std; None: undefined."""

    value: float | None
    std: float | None = None
    runs: int | None = None  # None: a single value, not a mean
    scale: float = 100.0
    digits: int = 2
    best: bool = False

    @property
    def spread(self) -> bool:
        """Whether the cell shows a std (a mean over at least two runs)."""
        return self.value is not None and self.runs is not None and self.runs > 1

    def number(self, value: float | None) -> str:
        return MISSING if value is None else f"{value * self.scale:.{self.digits}f}"

    def text(self) -> str:
        if not self.spread:
            return self.number(self.value)
        return f"{self.number(self.value)} ± {self.number(self.std)}"

    def exact(self, value: float | None) -> str:
        """The value in display units at full precision (CSV); empty when undefined."""
        if value is None:
            return ""
        return str(round(value)) if self.digits == 0 else format(value * self.scale, ".12g")


@dataclass(frozen=True)
class Row:
    label: str
    cells: tuple[Cell, ...]
    section: str  # rows of one section print together; a rule separates sections


@dataclass(frozen=True)
class Table:
    title: str
    corner: str  # header of the label column
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    marked: bool = False  # whether the best cell of each row is marked
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spread(self) -> bool:
        """Whether some cell is a mean ± std (CSV then gives each column a std column)."""
        return any(cell.spread for row in self.rows for cell in row.cells)


# --- building -----------------------------------------------------------------------------------


def _score_cell(key: str, stats_or_value, **kwargs) -> Cell:
    scale, digits = _DISPLAY.get(key, (100.0, 2))
    if isinstance(stats_or_value, dict):
        return Cell(stats_or_value["mean"], stats_or_value["std"], stats_or_value["runs"], scale, digits, **kwargs)
    return Cell(stats_or_value, scale=scale, digits=digits, **kwargs)


def _class_label(name: str, dropped: bool | None) -> str:
    """A class row's label; a class the split dropped (`hsi split --min-pixels`) says so."""
    return f"{name} (dropped)" if dropped else name


def _overall_rows(summaries: Sequence[dict]) -> list[Row]:
    keys = [key for key, _ in OVERALL_SCORES] + [
        key for key, _ in OPTIONAL_SCORES if any(key in summary for summary in summaries)
    ]
    labels = dict(OVERALL_SCORES + OPTIONAL_SCORES)
    return [
        Row(labels[key], tuple(_score_cell(key, summary.get(key)) for summary in summaries), "overall")
        for key in keys
    ]


def comparison_table(columns: Sequence[tuple[str, list[dict]]]) -> Table:
    """The papers' table: one column per (label, runs of one group), mean ± std over its runs."""
    summaries = [summarize_runs(runs) for _, runs in columns]
    headers = tuple(f"{label} ({len(runs)} runs)" if len(runs) > 1 else label for label, runs in columns)
    names = [[row["name"] for row in summary["per_class"]] for summary in summaries]
    notes = []
    rows: list[Row] = []
    if all(n == names[0] for n in names):
        rows += [
            Row(_class_label(name, any(s["per_class"][k].get("dropped") for s in summaries)),
                tuple(_score_cell("accuracy", summary["per_class"][k]["accuracy"]) for summary in summaries), "class")
            for k, name in enumerate(names[0])
        ]
    else:
        notes.append("no per-class rows: the columns' runs have different classes")
    rows += _overall_rows(summaries)
    runs = sum(len(r) for _, r in columns)
    spread = " (mean ± std over runs)" if runs > len(columns) else ""
    table = Table(f"Accuracy on test pixels{spread}, {runs} run(s)", "Class", headers, tuple(rows),
                  notes=tuple(notes))
    return mark_best(table) if len(columns) > 1 else table


def run_tables(result: dict, label: str) -> list[Table]:
    """One run (a result of `classification_metrics`): per-class scores, then overall scores."""
    with_ap = "map" in result
    columns = ("Support", "Precision (%)", "Recall (%)", "F1 (%)") + (("AP (%)",) if with_ap else ())
    keys = ("support", "precision", "recall", "f1") + (("ap",) if with_ap else ())
    per_class = tuple(
        Row(_class_label(row["name"], row.get("dropped")), tuple(_score_cell(key, row[key]) for key in keys), "class")
        for row in result["per_class"]
    )
    return [
        Table(f"{label}: per-class scores on {result['n']} test pixels", "Class", columns, per_class),
        Table(f"{label}: overall scores", "Metric", (label,), tuple(_overall_rows([result]))),
    ]


def mark_best(table: Table) -> Table:
    """Mark, in each row, the cells whose displayed value is the highest (all of them on a tie)."""
    rows = []
    for row in table.rows:
        shown = [None if cell.value is None else round(cell.value * cell.scale, cell.digits) for cell in row.cells]
        top = max((v for v in shown if v is not None), default=None)
        cells = tuple(replace(cell, best=top is not None and v == top) for cell, v in zip(row.cells, shown))
        rows.append(replace(row, cells=cells))
    return replace(table, rows=tuple(rows), marked=True)


# --- rendering ----------------------------------------------------------------------------------


def to_csv(tables: Sequence[Table]) -> str:
    """Each table as CSV (a blank line between tables): the same headers and rows, values in display
    units at full precision; a table of means gives each column a `HEADER std` column after it; a
    marked table ends with a `Best` column naming the best column(s)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, table in enumerate(tables):
        if index:
            writer.writerow([])
        header = [table.corner]
        for column in table.columns:
            header += [column, f"{column} std"] if table.spread else [column]
        writer.writerow(header + (["Best"] if table.marked else []))
        for row in table.rows:
            line = [row.label]
            for cell in row.cells:
                line += [cell.exact(cell.value)] + ([cell.exact(cell.std) if cell.spread else ""] if table.spread else [])
            if table.marked:
                line.append("; ".join(c for c, cell in zip(table.columns, row.cells) if cell.best))
            writer.writerow(line)
    return buffer.getvalue()


def latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def to_latex(tables: Sequence[Table]) -> str:
    """Each table as a booktabs tabular (needs ``\\usepackage{booktabs}``), to ``\\input`` into a
    paper's table; its title as a comment line, best cells in bold."""
    blocks = []
    for table in tables:
        lines = [f"% {table.title}", f"\\begin{{tabular}}{{l{'r' * len(table.columns)}}}", r"\toprule",
                 " & ".join(latex_text(h) for h in (table.corner, *table.columns)) + r" \\"]
        section = None
        for row in table.rows:
            if row.section != section:
                lines.append(r"\midrule")
                section = row.section
            cells = [latex_text(cell.text()) for cell in row.cells]
            cells = [f"\\textbf{{{text}}}" if cell.best else text for cell, text in zip(row.cells, cells)]
            lines.append(" & ".join([latex_text(row.label), *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        blocks.append("\n".join(lines + [f"% {note}" for note in table.notes]))
    return "\n\n".join(blocks) + "\n"


def _markdown_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def to_markdown(tables: Sequence[Table]) -> str:
    """Each table as a Markdown pipe table under its bold title; best cells in bold."""
    blocks = []
    for table in tables:
        lines = [f"**{_markdown_text(table.title)}**", "",
                 "| " + " | ".join(_markdown_text(h) for h in (table.corner, *table.columns)) + " |",
                 "|---" + "|---:" * len(table.columns) + "|"]
        for row in table.rows:
            cells = [f"**{cell.text()}**" if cell.best else cell.text() for cell in row.cells]
            lines.append("| " + " | ".join([_markdown_text(row.label), *cells]) + " |")
        blocks.append("\n".join(lines + [f"\n_{_markdown_text(note)}_" for note in table.notes]))
    return "\n\n".join(blocks) + "\n"


def to_json(tables: Sequence[Table]) -> list[dict]:
    """The tables as plain JSON: cells hold their text, raw value (fraction), std, runs and mark."""
    return [
        {
            "title": table.title,
            "corner": table.corner,
            "columns": list(table.columns),
            "rows": [
                {"label": row.label, "section": row.section, "cells": [
                    {"text": cell.text(), "value": cell.value, "std": cell.std, "runs": cell.runs,
                     "scale": cell.scale, "best": cell.best}
                    for cell in row.cells
                ]}
                for row in table.rows
            ],
            "notes": list(table.notes),
        }
        for table in tables
    ]
