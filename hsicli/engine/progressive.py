"""Progressive learning of HSIseg (../shared/papers/002_e54cedfdb6e864cf.txt Fig. 5): rounds of
pseudolabel → train → predict, each keeping its artifacts. Above train, predict and the
pseudo-labels, which never import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsicli.engine.segmentation import (ROUND_FIELDS, RULE_FIELDS, PseudolabelOptions, PseudolabelResult,
                                        pseudolabel)
from hsicli.errors import HsiError
from hsicli.store.provenance import API_COMMAND


@dataclass
class ProgressiveOptions:
    pseudo: PseudolabelOptions = field(default_factory=PseudolabelOptions)
    iterations: int = 1
    epochs: int | None = None  # per round; None = the first checkpoint's epochs
    # Round K writes OUT-roundK.safetensors and OUT-roundK.pred.zarr (a sweep's run names);
    # None: `hsi train`'s default names beside the scene store.
    out: Path | None = None
    device: str = "auto"
    threads: int | None = None


@dataclass
class RoundResult:
    round: int
    labels: PseudolabelResult
    checkpoint: Path
    prediction: Path
    trained: bool = True  # False: the round labelled no pixel and kept the previous model
    oa: float | None = None  # of `prediction` on the split's test pixels (None: the split has none)

    def to_dict(self) -> dict[str, Any]:
        return {**{key: self.labels.record.get(key) for key in (*ROUND_FIELDS, *RULE_FIELDS)},
                "round": self.round,
                "oa": self.oa, "trained": self.trained, "labels": str(self.labels.path),
                "checkpoint": str(self.checkpoint), "prediction": str(self.prediction)}


def round_path(out: Path, round_number: int) -> Path:
    """Round K's checkpoint under the stem OUT: OUT-roundK.safetensors (its prediction beside it)."""
    return Path(out).with_name(f"{Path(out).name}-round{round_number}.safetensors")


def test_accuracy(prediction: Path) -> float | None:
    """OA of a prediction on its split's test pixels; None when the split has none."""
    from hsicli.store.evaluation import evaluate_prediction, test_pixels
    from hsicli.store.prediction import PredictionStore

    try:
        test_pixels(PredictionStore.open(prediction))
    except HsiError:
        return None
    return evaluate_prediction(prediction)["oa"]


def progressive(
    prediction: Path,
    options: ProgressiveOptions,
    *,
    command: str = API_COMMAND,
    on_labels: Callable[[PseudolabelResult], None] = lambda result: None,
    on_message: Callable[[str], None] = lambda message: None,
) -> list[RoundResult]:
    """`iterations` rounds of pseudolabel → train (from the previous weights) → predict.

    Round K labels the scene from the previous round's prediction with τ + ζ·(K − 1), fine-tunes
    the previous checkpoint on those labels (its whole run record is repeated: model, arguments,
    split, seed and every training setting; only `epochs` per round may differ) and predicts the
    scene.
    A round whose mask is empty (no eligible pixel reaches the threshold) keeps the
    previous checkpoint and prediction instead of fine-tuning on the training labels alone.
    Every round's layer, checkpoint and prediction stay on disk under their default names, and a
    re-run reuses the rounds already done (same layer, same training request, same checkpoint) and
    resumes a round's interrupted training after its last finished epoch.
    """
    from dataclasses import replace

    from hsicli.engine.predict import PredictOptions, default_prediction_path, predict
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import Checkpoint, load_arrays
    from hsicli.store.prediction import PredictionStore
    from hsicli.store.provenance import file_sha256
    from hsicli.store.scene import SceneStore

    results: list[RoundResult] = []
    current = Path(prediction)

    def checkpoint_of(prediction_store: Path) -> Path:
        return PredictionStore.open(prediction_store).checkpoint_path or Path()

    if checkpoint_of(current).is_file():  # a round that labels nothing keeps it as it is: refuse NaN weights first
        load_arrays(checkpoint_of(current))
    for step in range(options.iterations):
        round_number = options.pseudo.round + step
        name = options.pseudo.name
        if name and options.iterations > 1:
            name = f"{name}-{round_number}"
        labels = pseudolabel(current, replace(options.pseudo, round=round_number, name=name), command=command)
        on_labels(labels)
        checkpoint = checkpoint_of(current)
        if labels.record["added"] == 0:
            # Eq. 52 with an empty mask leaves the training labels alone: fine-tuning on them adds no
            # information, only optimiser noise, so the round keeps the current model.
            on_message(f"round {round_number} labelled no pixel: keeping {checkpoint.name}")
            results.append(RoundResult(round_number, labels, checkpoint, current, trained=False,
                                       oa=test_accuracy(current)))
            continue
        # The round repeats the run of the checkpoint it continues (`hsi train --like`), on the new
        # labels, from its weights; a killed round resumes from its state file when run again.
        trained = train(
            Path(Checkpoint.open(checkpoint).source_store["path"]),
            TrainOptions(like=checkpoint, labels=labels.name, init=checkpoint, epochs=options.epochs,
                         device=options.device, threads=options.threads, resume=True,
                         out=None if options.out is None else round_path(options.out, round_number)),
            command=command,
            on_message=on_message,
        )
        model = Checkpoint.open(trained.path)
        store = SceneStore.open(Path(model.source_store["path"]))
        existing = default_prediction_path(trained.path, store, True)
        if existing.exists() and PredictionStore.open(existing).checkpoint_sha256 == file_sha256(trained.path):
            on_message(f"{existing} is up to date")
            current = existing
        else:
            current = predict(trained.path, PredictOptions(device=options.device, threads=options.threads,
                                                           amp=model.record.amp),
                              command=command, on_message=on_message).path
        results.append(RoundResult(round_number, labels, trained.path, current, oa=test_accuracy(current)))
    return results
