"""`hsi pseudolabel`: a pseudo-label layer from a prediction (HSIseg §3.5, eqs. 47-53)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hsicli.cli.common import JsonOpt, Log, QuietOpt, VerboseOpt, StoreArg, command_line, emit, read_input_path
from hsicli.cli.options import DeviceOpt, ThreadsOpt, layer_name_option, ranged_option


def pseudolabel(
    prediction: StoreArg = None,
    tau: Annotated[
        float, ranged_option("--tau", ge=0.0, le=1.0, help="τ2 of round 1: T = max(τ2, μ + σ of the probability map).")
    ] = 0.7,
    zeta: Annotated[float, ranged_option("--zeta", ge=0.0, le=1.0, help="ζ added to τ2 each round (eq. 53).")] = 0.005,
    round_number: Annotated[int, ranged_option("--round", ge=1, help="Round K: τ2 + ζ·(K − 1).")] = 1,
    name: Annotated[
        Optional[str], layer_name_option("--name", help="Name of the label layer written into the store, "
                                         "STORE/labels/NAME (default: pseudoK-HASH of the checkpoint, then the "
                                         "settings that differ from the defaults, e.g. -tau0.8-eval; NAME-K with "
                                         "--iterations).")
    ] = None,
    include_eval: Annotated[
        bool,
        typer.Option("--include-eval/--exclude-eval",
                     help="Let validation and test pixels receive predicted labels (the paper labels every "
                          "pixel); never their true labels."),
    ] = False,
    iterations: Annotated[
        Optional[int],
        ranged_option("--iterations", ge=1,
                     help="Run N rounds of pseudolabel → train → predict; prints the last prediction."),
    ] = None,
    epochs: Annotated[
        Optional[int],
        ranged_option("--epochs", ge=1, help="Fine-tuning epochs per round with --iterations (default: the model's)."),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Label the confident pixels of a prediction as a new label layer of its scene store.

    Pixels whose maximum class probability reaches T = max(τ2, μ + σ) get their predicted class,
    μ and σ taken over every class probability of every pixel.

    Training pixels keep their labels; each round is rebuilt from its own prediction.

    Prints STORE/labels/NAME, which `hsi train --labels NAME --init CKPT` reads. Examples:

    hsi predict model.safetensors | hsi pseudolabel --tau 0.7 --round 1

    hsi pseudolabel pred.zarr --iterations 4 | hsi evaluate   (prints the last prediction)
    """
    from hsicli.engine.progressive import ProgressiveOptions, progressive, test_accuracy
    from hsicli.engine.segmentation import PseudolabelOptions, pseudolabel as make_layer

    log = Log(quiet, verbose)
    path = read_input_path(prediction, "prediction store")
    options = PseudolabelOptions(tau=tau, zeta=zeta, round=round_number, name=name, include_eval=include_eval)

    def report(record: dict, layer: str) -> None:
        if record["added"] == 0:
            best = record["eligible_confidence_max"]
            log.warn(f"no pixel that may be labelled reached T = {record['threshold']:.4f} (their largest "
                     f"probability: {'none' if best is None else f'{best:.4f}'}): 0 added, "
                     f"layer {layer} holds the training labels only")
        else:
            log.info(f"labels/{layer}: {record['added']} pixels added at T = {record['threshold']:.4f} "
                     f"(τ2 {record['tau']:.3f}, μ + σ {record['mean_plus_std']:.4f}; per class "
                     f"{record['added_per_class']})")

    if iterations is None:
        result = make_layer(path, options, command=command_line())
        report(result.record, result.name)
        emit(result.path, json_out, name=result.name, **result.record)
        return
    rounds = progressive(
        path,
        ProgressiveOptions(pseudo=options, iterations=iterations, epochs=epochs, device=device, threads=threads),
        command=command_line(),
        on_labels=lambda labels: report(labels.record, labels.name),
        on_message=log.info,
    )
    initial_oa = test_accuracy(path)
    for label, oa in [("the initial model", initial_oa), *((f"round {r.round}", r.oa) for r in rounds)]:
        if oa is not None:
            log.info(f"{label}: OA {oa:.2%} on the test pixels")
    emit(rounds[-1].prediction, json_out, initial_oa=initial_oa, rounds=[r.to_dict() for r in rounds])
