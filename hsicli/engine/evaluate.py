"""Evaluation behind `hsi evaluate`: metrics on a split's test pixels, one or several runs.

Each prediction store is scored and its metrics written beside it; metrics files and summaries
written before are inputs too, so a table can be rebuilt without the stores. Runs are averaged
only within a group of comparable runs (the same setup: model, arguments, training settings,
scene, split protocol); several groups give one column each, never a mean across them. Scoring,
setups and grouping are `hsicli.store.evaluation`, which `hsi plot` reads as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsicli.engine.report import Table, comparison_table, run_tables
from hsicli.errors import InputError, UsageError
from hsicli.metrics import summarize_runs
from hsicli.store.atomic import atomic_path
from hsicli.store.evaluation import RunGroup, evaluate_prediction, group_runs, metrics_path, read_metrics_file
from hsicli.store.prediction import PredictionStore
from hsicli.store.provenance import API_COMMAND, record


@dataclass
class EvaluationResult:
    path: Path
    result: dict[str, Any]  # one run's metrics, one group's summary, or every group's summary
    runs: list[dict[str, Any]]
    groups: list[RunGroup]
    tables: list[Table]


def _write_json(path: Path, payload: dict, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    return path


# --- evaluate -----------------------------------------------------------------------------------


def _is_prediction(path: Path) -> bool:
    return Path(path).is_dir()


def evaluate(inputs: list[Path], *, split: str | None, out: Path | None, command: str = API_COMMAND,
             overwrite: bool = False) -> EvaluationResult:
    """Evaluate each prediction store (metrics saved beside it, refreshed on every run) and read each
    metrics file or summary; group the runs by setup. Several runs give mean ± std per group, one
    column per group. An explicit `out` is never replaced without `overwrite`."""
    runs, sources = [], {}
    for source in map(Path, inputs):
        if _is_prediction(source):
            metrics = evaluate_prediction(source, split)
            metrics["provenance"] = record(command, {"prediction": PredictionStore.open(source).as_input()})
            _write_json(metrics_path(source), metrics)
            found = [metrics]
        elif split is not None:
            raise UsageError(f"--split applies to prediction stores; {source} is a metrics file",
                             hint="evaluate the prediction store on that split instead")
        else:
            found = read_metrics_file(source)
        for run in found:
            key = (run.get("prediction") or f"{source}#{len(runs)}", run.get("split"))
            if key in sources:
                raise InputError(f"the run of {key[0]} is given twice ({sources[key]} and {source})",
                                 hint="give each run once: its prediction store, metrics file or a summary")
            sources[key] = source
            runs.append(run)
    groups = group_runs(runs)
    if len(runs) == 1:
        return _single(runs[0], groups, Path(inputs[0]), out, overwrite)
    if len(groups) == 1:
        result = {**summarize_runs(runs), "label": groups[0].label, "setup": groups[0].setup}
    else:
        result = {"runs": len(runs),
                  "groups": [{"label": g.label, "setup": g.setup, "predictions": [r.get("prediction") for r in g.runs],
                              **summarize_runs(g.runs)} for g in groups]}
    result.update(predictions=[r.get("prediction") for r in runs], run_metrics=runs, provenance=record(command))
    if out is None:
        digest = hashlib.sha256("\n".join(sorted(str(key[0]) for key in sources)).encode()).hexdigest()[:10]
        path = _write_json(Path.cwd() / f"summary-{digest}.metrics.json", result)
    else:
        path = _write_json(Path(out).absolute(), result, overwrite)
    table = comparison_table([(g.label, g.runs) for g in groups])
    return EvaluationResult(path, result, runs, groups, [table])


def _single(run: dict[str, Any], groups: list[RunGroup], source: Path, out: Path | None,
            overwrite: bool) -> EvaluationResult:
    """One run: its metrics file (beside the store, or the file given) unless `out` names another."""
    written = metrics_path(source) if _is_prediction(source) else source.absolute()
    path = Path(out).absolute() if out else written
    if path != written:  # `--out` naming the file already written or read is that file
        _write_json(path, run, overwrite)
    return EvaluationResult(path, run, [run], groups, run_tables(run, groups[0].label))
