"""`hsi train`: train a registered model on a scene store's split.

Its options are not listed here: every setting of a run is declared once, in the run record
(hsicli/store/record.py), and `record_options` turns each declared flag into a typer option.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import (
    JsonOpt, Log, OutOpt, OverwriteOpt, QuietOpt, StoreOrLayerArg, VerboseOpt, command_line, emit, open_scene_early,
    read_input_path,
)
from hsicli.cli.options import DeviceOpt, ThreadsOpt, layer_name_option, ranged_option
from hsicli.errors import UsageError
from hsicli.store.record import RunRecord, TrainDefaults, flagged

# How a declared type is written on the command line: JSON for the model's arguments, a path for --init.
_CLI_TYPES = {"model_args": Optional[str], "init": Optional[Path]}
# What the shell completes a declared option with.
_COMPLETIONS = {"model": completion.model_names, "split": completion.split_names,
                "labels": completion.label_layer_names, "init": completion.checkpoints}


def record_options() -> list[inspect.Parameter]:
    """One keyword parameter per declared flag of the run record, defaulting to None (not given:
    the --like checkpoint's value, else the model's paper default)."""
    parameters = []
    for owner in (RunRecord, TrainDefaults):
        hints = typing.get_type_hints(owner)
        for f in flagged(owner):
            declared = hints[f.name]
            base = next((a for a in typing.get_args(declared) if a is not type(None)), declared)
            kind = _CLI_TYPES.get(f.name, Optional[base])
            names = [f.metadata["flag"]] + (["-m"] if f.name == "model" else [])
            bounds, help, complete = f.metadata["range"], f.metadata["help"], _COMPLETIONS.get(f.name)
            if bounds:
                option = ranged_option(*names, help=help, show_default=False, **bounds)
            elif f.metadata["layer_name"]:
                option = layer_name_option(*names, help=help, autocompletion=complete)
            else:
                option = typer.Option(*names, help=help, show_default=False, autocompletion=complete)
            parameters.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                                annotation=Annotated[kind, option]))
    return parameters


def train(store: Optional[str] = None, **settings: Any) -> None:
    """Train a model and write a checkpoint (.safetensors).

    Example: hsi prep ip.mat --pca 30 | hsi split --ratio 0.72 | hsi train --model claresnet

    `hsi train STORE --like CKPT` repeats the run recorded in CKPT (`hsi info CKPT` shows it);
    options given as well override the recorded settings.

    Data-parallel when launched by torchrun or srun (`torchrun --nproc_per_node 4 -m hsicli train …`):
    --batch-size stays the global batch; rank 0 writes the checkpoint. On SIGTERM or SIGUSR1 the run
    stops at the next batch and exits with code 75; the same command with --resume continues after
    the last finished epoch.
    """
    import json

    from hsicli.cli.options import parse_json_object

    log_file, json_out = settings.pop("log_file"), settings.pop("json_out")
    log = Log(settings.pop("quiet"), settings.pop("verbose"))
    if settings["model_args"] is not None:
        settings["model_args"] = parse_json_object(settings["model_args"], "--model-args")
    _check_window(settings)
    path = read_input_path(store, "scene store")
    open_scene_early(path)

    from hsicli.engine.train import TrainOptions, train as run_training

    options = TrainOptions(**settings, log=log_file)
    log_handle = open(log_file, "a") if log_file else None

    def on_epoch(entry: dict) -> None:
        val = entry["val_accuracy"]
        log.info(
            f"epoch {entry['epoch']}: loss {entry['loss']:.4f}, train {entry['train_accuracy']:.2%}"
            + (f", val {val:.2%}" if val is not None else "") + f", {entry['seconds']:.1f} s"
        )
        if log_handle:
            log_handle.write(json.dumps(entry) + "\n")
            log_handle.flush()

    try:
        with log.progress("training steps", estimate="training") as on_progress:
            result = run_training(path, options, command=command_line(), on_epoch=on_epoch, on_message=log.info,
                                  on_progress=on_progress)
    finally:
        if log_handle:
            log_handle.close()
    if result.main:  # the other ranks of a data-parallel run print nothing
        emit(result.path, json_out, **result.summary)


def _check_window(settings: dict[str, Any]) -> None:
    """The patch size against what the model reads, before any data: a usage error naming --patch."""
    from hsicli.models.registry import stored_model_spec

    patch, flag = settings["patch"], "--patch"
    if patch is None:
        patch, flag = (settings["model_args"] or {}).get("patch"), "--model-args patch"
    if patch is None:
        return
    model = settings["model"]
    if model is None and settings["like"] is not None:
        from hsicli.store.checkpoint import Checkpoint

        model = Checkpoint.open(settings["like"]).record.model
    spec = stored_model_spec(model or RunRecord.model)
    if not spec.kind.reads_windows:
        return
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise UsageError(f"{flag} {patch!r} is not a window size", hint="give the size with --patch, e.g. --patch 9")
    if patch % 2 == 0:
        raise UsageError(f"{flag} {patch}: {spec.name} reads a window centred on each pixel, so its size must be odd",
                         hint=f"use --patch {patch - 1} or --patch {patch + 1}")


def _execution_options() -> list[inspect.Parameter]:
    """How to run (not what the run is): never recorded, never replayed by --like."""
    declared = {
        "like": Annotated[Optional[Path], typer.Option(
            "--like", help="Repeat the run recorded in this checkpoint; options given override it.",
            autocompletion=completion.checkpoints)],
        "log_file": Annotated[Optional[Path], typer.Option(
            "--log", "--log-file", help="Append per-epoch JSON lines here (--log-file under torchrun).",
            autocompletion=completion.json_lines_files)],
        "resume": Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its state file.")],
        "no_aux": Annotated[bool, typer.Option(
            "--no-aux", help="Leave the store's auxiliary rasters (hsi prep --aux) out of a model that can read them.")],
        "device": DeviceOpt,
        "threads": ThreadsOpt,
        "out": OutOpt,
        "overwrite": OverwriteOpt,
        "json_out": JsonOpt,
        "quiet": QuietOpt,
        "verbose": VerboseOpt,
    }
    defaults = {"device": "auto", "resume": False, "no_aux": False, "overwrite": False, "json_out": False, "quiet": False,
                "verbose": False}
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name), annotation=kind)
            for name, kind in declared.items()]


_PARAMETERS = [inspect.Parameter("store", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                 annotation=StoreOrLayerArg), *record_options(), *_execution_options()]
train.__signature__ = inspect.Signature(_PARAMETERS)
train.__annotations__ = {p.name: p.annotation for p in _PARAMETERS}
