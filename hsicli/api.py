"""The Python API: one function per `hsi` command, and loaders for notebooks (docs/api.md).

Each function takes and returns the same artifacts as its command (paths of scene stores,
splits, checkpoints, prediction stores, figures) and calls the same engine entry point as the
CLI, with the same options under the names of the engine's request dataclasses; results are
the engine's typed results. Errors are the typed exceptions of `hsicli.errors`; nothing is
printed. Artifacts made here record `python API` as their command.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsicli.data.patches import PatchSampler
from hsicli.data.prepare import PrepRequest, PrepResult, prepare_scene
from hsicli.data.splits import TEST, TRAIN, VAL
from hsicli.data.splitting import SplitRequest, SplitResult, make_split
from hsicli.engine.evaluate import EvaluationResult, evaluate as evaluate_predictions
from hsicli.engine.predict import PredictOptions, PredictResult, predict as predict_scene
from hsicli.engine.progressive import ProgressiveOptions, RoundResult, progressive
from hsicli.engine.segmentation import PseudolabelOptions, PseudolabelResult, pseudolabel as pseudo_labels
from hsicli.engine.train import TrainOptions, TrainResult, resolve_split, train as train_model
from hsicli.errors import UsageError
from hsicli.plot import plot as render
from hsicli.plot.common import PlotOptions
from hsicli.store.scene import SceneStore, split_layer_path

SUBSETS = {"train": TRAIN, "val": VAL, "test": TEST}
# Sweep keys that set the split's protocol; the others are the run record's (TrainOptions).
SPLIT_KEYS = frozenset(f.name for f in fields(SplitRequest)) - {"seed", "name"}


def prep(source: str | Path, *, out: str | Path | None = None, overwrite: bool = False,
         **request: Any) -> PrepResult:
    """`hsi prep`: a scene file to a scene store. `request`: `PrepRequest`'s fields (gt, pca,
    normalisation, drop_water, ...). Returns the store's path and summary."""
    return prepare_scene(PrepRequest(source=Path(source), **request), out=Path(out) if out else None,
                         overwrite=overwrite)


def split(store: str | Path, **request: Any) -> SplitResult:
    """`hsi split`: a train/val/test layer of `store`. `request`: `SplitRequest`'s fields (ratio,
    val, per_class, spatial, controlled, patch, seed, name, ...). Returns STORE/splits/NAME."""
    return make_split(Path(store), SplitRequest(**request))


def train(split: str | Path, **options: Any) -> TrainResult:
    """`hsi train` on STORE/splits/NAME (or a store with one split). `options`: `TrainOptions`'s
    fields, the run record's settings (model, model_args, seed, epochs, patch, lr, like, out,
    ...). A run that is up to date is reused (`result.reused`)."""
    return train_model(Path(split), TrainOptions(**options))


def predict(checkpoint: str | Path, **options: Any) -> PredictResult:
    """`hsi predict`: a checkpoint to a prediction store. `options`: `PredictOptions`'s fields."""
    return predict_scene(Path(checkpoint), PredictOptions(**options))


def pseudolabel(prediction: str | Path, *, iterations: int | None = None, epochs: int | None = None,
                out: str | Path | None = None, device: str = "auto", threads: int | None = None,
                **options: Any) -> PseudolabelResult | list[RoundResult]:
    """`hsi pseudolabel`: a label layer of the prediction's scene store. `options`:
    `PseudolabelOptions`'s fields (tau, zeta, round, name, include_eval).

    With `iterations` N (`hsi pseudolabel --iterations N`): N rounds of pseudolabel → train from
    the previous weights → predict, `epochs` fine-tuning epochs each (None: the model's); one
    `RoundResult` per round (its labels' record, checkpoint, prediction, test OA). Round K writes
    `OUT-roundK.safetensors` and `.pred.zarr` with `out` given, else `hsi train`'s default names;
    a rerun reuses the rounds already done."""
    labels = PseudolabelOptions(**options)
    if iterations is None:
        if epochs is not None or out is not None:
            raise UsageError("epochs and out are settings of the rounds", hint="give iterations=N as well")
        return pseudo_labels(Path(prediction), labels)
    return progressive(Path(prediction), ProgressiveOptions(pseudo=labels, iterations=iterations, epochs=epochs,
                                                            out=Path(out) if out else None, device=device,
                                                            threads=threads))


def evaluate(*predictions: str | Path, split: str | None = None, out: str | Path | None = None,
             overwrite: bool = False) -> EvaluationResult:
    """`hsi evaluate`: metrics of prediction stores (or metrics/summary files), grouped by setup;
    `result.tables` are the tables the command prints (hsicli.engine.report renders them)."""
    return evaluate_predictions([Path(p) for p in predictions], split=split, out=Path(out) if out else None,
                                overwrite=overwrite)


def plot(kind: str, *inputs: str | Path, **options: Any) -> Path:
    """`hsi plot KIND`: a figure of `inputs`. `options`: `PlotOptions`'s fields (out, format,
    with_gt, masked, x, metric, ...). Returns the figure's path."""
    return render(kind, [Path(p) for p in inputs], PlotOptions(**options))


# -- loaders for notebooks ------------------------------------------------------------------------


@dataclass
class Scene:
    """A scene store's arrays: `cube` (H, W, T) float32 as models see it, `gt` (H, W) class
    codes 1..C (0 unlabelled), and each split's layer (H, W) with 0 unused, 1 train, 2 val, 3 test."""

    path: Path
    cube: np.ndarray
    gt: np.ndarray
    class_names: list[str]
    class_colors: list[str]
    splits: dict[str, np.ndarray]


def load_scene(store: str | Path) -> Scene:
    """A scene store as NumPy arrays (`Scene`)."""
    scene = SceneStore.open(Path(store))
    splits = {name: scene.read_layer("splits", name).data for name in scene.layer_names("splits")}
    return Scene(scene.path, scene.cube(), scene.gt(), scene.class_names, scene.class_colors, splits)


class PatchDataset(torch.utils.data.Dataset):
    """The labelled pixels of one subset of a split as (patch (T, P, P) float32, class index 0..C-1)
    pairs, cut by the engine's own sampler (`PatchSampler`, reflect-padded at the borders) in the
    layout `hsi train` feeds its models."""

    def __init__(self, split: str | Path, subset: str = "train", patch: int = 11):
        if subset not in SUBSETS:
            raise UsageError(f"unknown subset {subset!r}", hint=f"use one of {', '.join(SUBSETS)}")
        _, kind, name = split_layer_path(Path(split))
        store = SceneStore.open(Path(split))
        layer = resolve_split(store, None, name if kind == "splits" else None)
        gt = store.gt().astype(np.int64)
        self.rows, self.cols = np.nonzero((store.read_layer("splits", layer).data == SUBSETS[subset]) & (gt > 0))
        self.labels = gt[self.rows, self.cols] - 1
        self.sampler = PatchSampler.from_cube(store.cube(), patch)
        self.class_names = store.class_names

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rows, cols = self.rows[index : index + 1], self.cols[index : index + 1]
        if rows.size == 0:
            raise IndexError(index)
        patch = torch.from_numpy(self.sampler.patches(rows, cols)[0]).permute(2, 0, 1)
        return patch, int(self.labels[index])


def patch_dataset(split: str | Path, subset: str = "train", patch: int = 11) -> PatchDataset:
    """A torch `Dataset` of the patches of `subset` ("train", "val" or "test") of STORE/splits/NAME."""
    return PatchDataset(split, subset, patch)


# -- sweeps -------------------------------------------------------------------------------------


# How a run executes, not what it computes (the model leads the label).
_NOT_IN_LABEL = {"model", "device", "threads", "log", "resume", "overwrite"}
# Sweep keys of HSIseg's pseudo-label rounds (`api.pseudolabel` with `iterations`): `rounds` N
# (0: none), the rule (`tau`, `zeta`, `include_eval`) and `round_epochs`, fine-tuning epochs per round.
PSEUDO_KEYS = {"rounds": "iterations", "tau": "tau", "zeta": "zeta", "include_eval": "include_eval",
               "round_epochs": "epochs"}


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: the split's protocol, the run record's settings, the seed and, with
    `pseudo["rounds"]` ≥ 1, pseudo-label rounds from the trained model."""

    split: dict[str, Any]
    train: dict[str, Any]
    seed: int
    pseudo: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The point's name: its model, every setting the grid or the sweep sets, its seed."""
        return self._stem(self.pseudo)

    @property
    def run_label(self) -> str:
        """The trained model's file stem (the pseudo-label settings left out: every rounds point of
        one run shares its model)."""
        return self._stem({})

    @property
    def rounds_label(self) -> str:
        """The stem of the rounds' files, ROUNDS-roundK: the rule's settings and the seed, without
        the number of rounds (points with other numbers of rounds share their rounds)."""
        return self._stem({k: v for k, v in self.pseudo.items() if k != "rounds"})

    def _stem(self, pseudo: dict[str, Any]) -> str:
        settings = {**self.split, **{k: v for k, v in self.train.items() if k not in _NOT_IN_LABEL}, **pseudo}
        parts = [str(self.train.get("model", "model"))]
        parts += [_compact(key, value) for key, value in sorted(settings.items())]
        return "-".join([*parts, f"s{self.seed}"])


def _compact(key: str, value: Any) -> str:
    """`patch5`, `ratio0.01`, `model_args_n_estimators_5`: a setting as a file-name part."""
    if isinstance(value, (dict, list)):
        return key + "_" + re.sub(r"[^A-Za-z0-9.]+", "_", json.dumps(value, sort_keys=True)).strip("_")
    return key + re.sub(r"[^A-Za-z0-9._]+", "_", str(value))


def sweep_points(grid: dict[str, Sequence[Any]], seeds: Sequence[int] = (0,), **fixed: Any) -> list[SweepPoint]:
    """Every combination of `grid`'s values (keys: `SplitRequest` fields for the split's protocol,
    `TrainOptions` fields for the run record; `patch`, in both, sets the training window and the
    split's guard radius alike; `PSEUDO_KEYS` for pseudo-label rounds), for each seed (the split's
    and the training's); `fixed` settings apply to every point. The order is stable, so point i is
    the same run in every process (a SLURM array task runs point $SLURM_ARRAY_TASK_ID)."""
    train_keys = {f.name for f in fields(TrainOptions)}
    unknown = sorted((grid.keys() | fixed.keys()) - SPLIT_KEYS - train_keys - PSEUDO_KEYS.keys())
    if unknown or "seed" in grid or "seed" in fixed:
        raise UsageError(f"unknown sweep setting {', '.join(unknown) or 'seed'}",
                         hint="seeds are given apart; settings are SplitRequest or TrainOptions fields, "
                              f"or {', '.join(PSEUDO_KEYS)}")
    keys = sorted(grid)
    points = []
    for values in itertools.product(*(grid[key] for key in keys)):
        chosen = {**fixed, **dict(zip(keys, values))}
        for seed in seeds:
            points.append(SweepPoint(split={k: v for k, v in chosen.items() if k in SPLIT_KEYS},
                                     train={k: v for k, v in chosen.items() if k in train_keys}, seed=seed,
                                     pseudo={k: v for k, v in chosen.items() if k in PSEUDO_KEYS}))
    return points


def run_point(store: str | Path, point: SweepPoint, out: str | Path, **predict_options: Any) -> list[Path]:
    """Split, train and predict one sweep point into `out` (`RUN.safetensors`, `RUN.pred.zarr`, RUN
    its `run_label`), then run its pseudo-label rounds, if any (`api.pseudolabel` with
    `iterations`: `ROUNDS-roundK.safetensors` and `.pred.zarr`, ROUNDS its `rounds_label`). Each
    step reuses what an earlier identical run wrote, so a rerun does nothing. Returns the prediction
    stores, the trained model's then each round's that trained (a round that labels no pixel keeps
    the previous model), which `hsi evaluate` and `hsi plot sweep` read (rounds: `--x
    training.pseudo_round`). `predict_options` are `PredictOptions` fields for the trained model's
    prediction (e.g. pixels="test", amp=True: a heavy model need not classify the whole scene to be
    scored); rounds need it whole, as they label the pixels outside the split."""
    rounds = {PSEUDO_KEYS[key]: value for key, value in point.pseudo.items()}
    if rounds.get("iterations") and predict_options.get("pixels", "all") != "all":
        raise UsageError(f"pseudo-label rounds label the whole scene; pixels={predict_options['pixels']!r} "
                         "predicts only part of it", hint="drop the pixels prediction option for rounds")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layer = split(store, **point.split, seed=point.seed).path
    checkpoint = train(layer, **point.train, seed=point.seed, out=out / f"{point.run_label}.safetensors").path
    predictions = [predict(checkpoint, **predict_options, out=out / f"{point.run_label}.pred.zarr").path]
    if rounds.get("iterations"):
        made = pseudolabel(predictions[0], **rounds, out=out / point.rounds_label,
                           device=point.train.get("device", "auto"), threads=point.train.get("threads"))
        predictions += [result.prediction for result in made if result.trained]
    return predictions


def sweep(store: str | Path, grid: dict[str, Sequence[Any]], *, out: str | Path, seeds: Sequence[int] = (0,),
          predict_options: dict[str, Any] | None = None, **fixed: Any) -> list[Path]:
    """Run every point of `sweep_points(grid, seeds, **fixed)` on `store`, predicting with the
    `PredictOptions` fields in `predict_options`; the prediction stores, without repeats (points
    with other numbers of rounds share their model and rounds)."""
    made = [path for point in sweep_points(grid, seeds, **fixed)
            for path in run_point(store, point, out, **(predict_options or {}))]
    return list(dict.fromkeys(made))
