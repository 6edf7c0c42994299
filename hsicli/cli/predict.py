"""`hsi predict`: classify every pixel of a scene into a prediction store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import (
    CheckpointArg, JsonOpt, Log, OutOpt, OverwriteOpt, QuietOpt, VerboseOpt, command_line, emit, open_scene_early,
    read_input_path,
)
from hsicli.cli.options import AmpOpt, DeviceOpt, ThreadsOpt, ranged_option


def predict(
    checkpoint: CheckpointArg = None,
    store: Annotated[
        Optional[Path], typer.Option("--store", help="Scene store to predict (default: the training store).",
                                     autocompletion=completion.stores)
    ] = None,
    batch_size: Annotated[Optional[int], ranged_option("--batch-size", ge=1, help="Inference batch size (default: the model's).")] = None,
    embeddings: Annotated[
        bool, typer.Option("--embeddings", help="Also store the embeddings of labelled pixels.")
    ] = False,
    probabilities: Annotated[
        bool, typer.Option("--probabilities/--no-probabilities", help="Store per-class probabilities.")
    ] = True,
    pixels: Annotated[
        str,
        typer.Option("--pixels", help="Pixels to classify: all, labelled (ground truth > 0) or test (the labelled "
                                      "test pixels of the checkpoint's split); the others get class 0."),
    ] = "all",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    amp: AmpOpt = False,
    init: Annotated[
        bool, typer.Option("--init-shards", help="Sharded prediction, step 1: create the empty prediction store.")
    ] = False,
    shard: Annotated[
        Optional[str],
        typer.Option("--shard", help="Step 2: predict shard I/N (0 <= I < N) of the rows into the store; "
                                     "'slurm' takes I and N from the SLURM job array."),
    ] = None,
    finalize: Annotated[
        bool, typer.Option("--finalize", help="Step 3: check that every shard finished; complete the store.")
    ] = False,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Predict a whole scene from a checkpoint; needs no flags beyond the checkpoint.

    Example: hsi predict salinasA-pca30-svm-ratio0.05-val0.08-seed0-s0.safetensors

    A large scene in N tasks (e.g. a SLURM job array, see examples/slurm/): `hsi predict CKPT --init-shards`,
    then `hsi predict CKPT --shard I/N` for I = 0 … N-1 (in any order, in parallel; re-running one
    repairs its rows), then `hsi predict CKPT --finalize`. All three take the same options.
    """
    log = Log(quiet, verbose)
    path = read_input_path(checkpoint, "checkpoint")
    open_scene_early(store, path)

    from hsicli.engine.predict import PredictOptions, predict as run_prediction

    options = PredictOptions(store=store, out=out, batch_size=batch_size, embeddings=embeddings,
                             probabilities=probabilities, pixels=pixels, device=device, threads=threads, amp=amp,
                             overwrite=overwrite, init=init, shard=shard, finalize=finalize)
    with log.progress("rows predicted") as update:
        result = run_prediction(path, options, command=command_line(), on_message=log.info, on_progress=update)
    emit(result.path, json_out, **result.summary)
