"""`hsi train`: train a registered model on a scene store's split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import (
    JsonOpt, Log, OutOpt, OverwriteOpt, QuietOpt, StoreOrLayerArg, command_line, emit, read_input_path,
)
from hsicli.cli.options import AmpOpt, DeviceOpt, SeedOpt, ThreadsOpt, layer_name_option, ranged_option
from hsicli.errors import UsageError


def train(
    store: StoreOrLayerArg = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model (see `hsi models`).",
                                                 autocompletion=completion.model_names)] = "svm",
    model_args: Annotated[
        Optional[str], typer.Option("--model-args", help='Architecture arguments as JSON, e.g. \'{"layers": 1}\'.')
    ] = None,
    split: Annotated[Optional[str], layer_name_option("--split", help="Split layer (default: the piped or only one).",
                                                                      autocompletion=completion.split_names)] = None,
    labels: Annotated[Optional[str], layer_name_option("--labels", help="Pseudo-label layer to train on.",
                                                                       autocompletion=completion.label_layer_names)] = None,
    epochs: Annotated[Optional[int], ranged_option("--epochs", ge=1, help="Epochs (default: the paper's).")] = None,
    batch_size: Annotated[Optional[int], ranged_option("--batch-size", ge=1, help="Batch size (default: the paper's).")] = None,
    lr: Annotated[Optional[float], ranged_option("--lr", gt=0.0, help="Learning rate (default: the paper's).")] = None,
    weight_decay: Annotated[Optional[float], ranged_option("--weight-decay", ge=0.0, help="Weight decay (default: the paper's).")] = None,
    patch: Annotated[Optional[int], ranged_option("--patch", ge=1, help="Patch / window size, odd (default: the paper's).")] = None,
    augment: Annotated[
        Optional[bool], typer.Option("--augment/--no-augment", help="CLAReSNet §III-B augmentations.")
    ] = None,
    schedule: Annotated[
        Optional[str],
        typer.Option("--schedule", help="Learning-rate schedule: constant, step or cosine (default: the paper's)."),
    ] = None,
    warmup: Annotated[
        Optional[int], ranged_option("--warmup", ge=0, help="Epochs of linear learning-rate warm-up (default: the paper's, 0).")
    ] = None,
    clip_grad: Annotated[
        Optional[float], ranged_option("--clip-grad", gt=0.0, help="Clip the gradients' global L2 norm to this (default: off).")
    ] = None,
    ema: Annotated[
        Optional[float],
        ranged_option("--ema", gt=0.0, lt=1.0, help="Average the weights exponentially with this decay per step (e.g. 0.999); validation, "
                     "the best epoch and the checkpoint use the average (default: off)."),
    ] = None,
    seed: SeedOpt = 0,
    patience: Annotated[
        Optional[int], ranged_option("--patience", ge=1, help="Stop after N epochs without validation improvement.")
    ] = None,
    class_weights: Annotated[
        str, typer.Option("--class-weights", help="'none' or 'balanced' (inverse class frequency).")
    ] = "none",
    init: Annotated[Optional[Path], typer.Option("--init", help="Start from this checkpoint's weights.",
                                                                 autocompletion=completion.checkpoints)] = None,
    log_file: Annotated[Optional[Path], typer.Option("--log", "--log-file", help="Append per-epoch JSON lines here (--log-file under torchrun).",
                                                                        autocompletion=completion.json_lines_files)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its state file.")] = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    amp: AmpOpt = False,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a model and write a checkpoint (.safetensors).

    Example: hsi prep ip.mat --pca 30 | hsi split --ratio 0.72 | hsi train --model claresnet

    Data-parallel when launched by torchrun or srun (`torchrun --nproc_per_node 4 -m hsicli train …`):
    --batch-size stays the global batch; rank 0 writes the checkpoint. On SIGTERM or SIGUSR1 the run
    stops at the next batch and exits with code 75; the same command with --resume continues after
    the last finished epoch.
    """
    import json

    from hsicli.cli.options import parse_json_object
    from hsicli.engine.train import TrainOptions, train as run_training

    architecture = parse_json_object(model_args, "--model-args")
    _check_window(model, *(("--patch", patch) if patch is not None else ("--model-args patch", architecture.get("patch"))))
    log = Log(quiet)
    path = read_input_path(store, "scene store")
    options = TrainOptions(
        model=model, model_args=architecture, split=split, labels=labels,
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patch=patch, patience=patience,
        augment=augment, schedule=schedule, warmup=warmup, clip_grad=clip_grad, ema=ema, seed=seed, device=device,
        threads=threads, class_weights=class_weights, amp=amp, init=init, log=log_file, resume=resume, out=out,
        overwrite=overwrite,
    )
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
        result = run_training(path, options, command=command_line(), on_epoch=on_epoch, on_message=log.info)
    finally:
        if log_handle:
            log_handle.close()
    if result.main:  # the other ranks of a data-parallel run print nothing
        emit(result.path, json_out, **result.summary)


def _check_window(model: str, flag: str, patch: object) -> None:
    """The patch size against what the model reads, before any data: a usage error naming --patch."""
    from hsicli.models.registry import get_model_spec

    spec = get_model_spec(model)
    if patch is None or not spec.reads_windows:
        return
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise UsageError(f"{flag} {patch!r} is not a window size", hint="give the size with --patch, e.g. --patch 9")
    if patch % 2 == 0:
        raise UsageError(f"{flag} {patch}: {model} reads a window centred on each pixel, so its size must be odd",
                         hint=f"use --patch {patch - 1} or --patch {patch + 1}")
