"""Training behind `hsi train`: patch classifiers, segmenters and classical baselines.

Reproducibility: every random stream of epoch e (shuffling, augmentation, dropout) is seeded from
(seed, e), so a run resumed at an epoch boundary from its state file repeats the uninterrupted
run exactly. The state file (`NAME.resume.safetensors`) holds the current and best weights, the
optimiser tensors and a JSON record, written atomically after every epoch; no pickle anywhere.

Scale-out: launched by torchrun or srun, torch models train data-parallel (hsicli.engine.distributed)
and only rank 0 writes the state, the checkpoint and the log. On SIGTERM / SIGUSR1 training stops at
the next batch and exits with code 75, resumable from the last finished epoch (hsicli.engine.preempt).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hsicli.data.patches import Augment, PatchSampler, window_targets
from hsicli.data.splits import TEST, TRAIN, VAL
from hsicli.about import __version__
from hsicli.engine import budget, distributed, memory, preempt
from hsicli.engine.segmentation import pseudo_label_record
from hsicli.errors import HsiError, Interrupted, StoreError
from hsicli.models.kinds import IGNORE, ModelKind
from hsicli.models.registry import ModelSpec, architecture_args, stored_model_spec
from hsicli.store.atomic import up_to_date
from hsicli.store.checkpoint import Checkpoint, load_arrays, read_header, require_checkpoint, save_arrays
from hsicli.store.record import SCHEDULES, RunRecord, TrainDefaults, flagged, validate, with_overrides
from hsicli.store.provenance import API_COMMAND, describe_file, record
from hsicli.store.scene import SceneStore, split_layer_path


def _train_options() -> type:
    """The engine's input: every setting of the run record as given (None: not given, so the
    `--like` checkpoint's value or the model's paper default applies), then how to run it."""
    declared = [(f.name, Any, None) for f in fields(RunRecord) if f.name != "hyper"]
    declared += [(f.name, Any, None) for f in flagged(TrainDefaults)]
    execution = [
        ("like", Optional[Path], None),  # repeat this checkpoint's run; given settings override its own
        ("device", str, "auto"),
        ("threads", Optional[int], None),
        ("log", Optional[Path], None),
        ("resume", bool, False),
        ("no_aux", bool, False),  # leave a store's auxiliary rasters out (recorded as aux_bands 0)
        ("out", Optional[Path], None),
        ("overwrite", bool, False),
    ]
    return make_dataclass("TrainOptions", declared + execution, namespace={"__module__": __name__})


TrainOptions = _train_options()


@dataclass
class TrainResult:
    path: Path
    summary: dict[str, Any]
    reused: bool = False
    main: bool = True  # False on the other ranks of a data-parallel run: they write and print nothing


@dataclass
class TrainingData:
    """Pixels to learn from: coordinates and class indices (0..C-1) of train and validation sets."""

    cube: np.ndarray
    train_rows: np.ndarray
    train_cols: np.ndarray
    train_y: np.ndarray
    val_rows: np.ndarray
    val_cols: np.ndarray
    val_y: np.ndarray
    target_map: np.ndarray  # (H, W) class index at training pixels, IGNORE elsewhere (segmenters)


def resolve_split(store: SceneStore, requested: str | None, from_path: str | None) -> str:
    """The split to train on: named, taken from a piped `STORE/splits/NAME`, or the only one."""
    if requested:
        return requested
    if from_path:
        return from_path
    names = store.layer_names("splits")
    if len(names) == 1:
        return names[0]
    if not names:
        raise StoreError(f"{store.path} has no split", hint="run `hsi split` on it first")
    raise HsiError(
        f"{store.path} has {len(names)} splits ({', '.join(names)}) and none was chosen",
        hint="choose one with --split NAME",
    )


def load_training_data(store: SceneStore, split_name: str, labels_layer: str | None) -> TrainingData:
    gt = store.gt().astype(np.int64)
    split = store.read_layer("splits", split_name).data
    train_mask = (split == TRAIN) & (gt > 0)
    targets = np.where(train_mask, gt - 1, IGNORE)
    if labels_layer:
        # A pseudo-label layer adds predicted labels; validation and test locations train only when
        # the layer was built to include them (HSIseg labels the whole scene), never with true labels.
        layer = store.read_layer("labels", labels_layer)
        pseudo = layer.data.astype(np.int64)
        extra = (pseudo > 0) & ~train_mask
        if not layer.attrs.get("includes_eval_locations"):
            extra &= (split != VAL) & (split != TEST)
        targets = np.where(extra, pseudo - 1, targets)
    rows, cols = np.nonzero(targets != IGNORE)
    if rows.size == 0:
        raise HsiError(f"split {split_name!r} of {store.path} has no training pixels", hint="make another split")
    val_rows, val_cols = np.nonzero((split == VAL) & (gt > 0))
    return TrainingData(
        cube=store.cube(),
        train_rows=rows,
        train_cols=cols,
        train_y=targets[rows, cols],
        val_rows=val_rows,
        val_cols=val_cols,
        val_y=gt[val_rows, val_cols] - 1,
        target_map=targets,
    )


def _require_fits(spec, store: SceneStore, split_name: str, run: RunRecord, world: distributed.World) -> None:
    """Before any data is read: the --init checkpoint against the model and the scene (from its
    header), and the memory the run needs against the memory available (hsicli.engine.memory)."""
    init_weights = 0
    if run.init:
        header, meta = read_header(Path(run.init))
        require_checkpoint(Path(run.init), meta)
        recorded = (meta["model"], meta["input"]["bands"], len(meta["class_names"]))
        if recorded != (spec.name, store.shape[2], store.n_classes):
            raise StoreError(
                f"{run.init} holds {recorded[0]} weights for {recorded[1]} bands and {recorded[2]} classes; "
                f"this run trains {spec.name} on {store.shape[2]} bands and {store.n_classes} classes",
                hint="start from a checkpoint of the same model trained on this kind of scene",
            )
        init_weights = memory.weights_bytes(header)
    counts = store.layer_attrs("splits", split_name).get("counts", {}).get("train")
    batch = -(-run.hyper.batch_size // world.size)  # each process holds its share of the global batch
    if isinstance(counts, list) and all(isinstance(n, int) for n in counts):
        batch = min(batch, max(sum(counts), 1))  # a batch never holds more pixels than the split trains on
    memory.require_training_fits(spec, shape=store.shape, patch=run.hyper.patch, batch=batch, amp=run.amp,
                                 init_weights=init_weights)


def default_checkpoint_path(store: SceneStore, model: str, split: str, seed: int, labels: str | None) -> Path:
    parts = [store.name, model, split, f"s{seed}"]
    if labels:
        parts.insert(3, labels.replace("/", "-"))
    return store.path.parent / ("-".join(parts) + ".safetensors")


def resume_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".resume.safetensors")


def resolve_run(options: TrainOptions, store: SceneStore, piped_split: str | None,
                on_message: Callable[[str], None] = lambda message: None) -> tuple[RunRecord, ModelSpec]:
    """The fully resolved record of the run `options` ask for: each setting as given, else as the
    `--like` checkpoint ran it, else the model's paper default; every model argument resolved,
    and the store's auxiliary rasters read by a model that can take them (unless `no_aux`)."""
    like = Checkpoint.open(options.like).record if options.like else None
    model = options.model or (like.model if like else RunRecord.model)
    spec = stored_model_spec(model)  # no torch yet: a run that cannot fit is refused in milliseconds
    same_model = like is not None and like.model == model
    given_hyper = {f.name: getattr(options, f.name) for f in flagged(TrainDefaults)}
    protocol = budget.resolve_protocol(options.protocol, options.epochs is not None, like.protocol if like else None)
    hyper = with_overrides(like.hyper if same_model else budget.protocol_defaults(spec, protocol), **given_hyper)
    given_args = dict(options.model_args or {})
    if options.patch is None and "patch" in given_args:
        hyper = with_overrides(hyper, patch=int(given_args["patch"]))
    # The previous run's arguments stand unless given again; its window size follows --patch.
    base_args = {k: v for k, v in like.model_args.items() if k != "patch"} if same_model else {}
    base_args.update(_aux_arguments(spec, store, {**base_args, **given_args}, options.no_aux, on_message))
    validate(hyper)

    def chosen(name: str) -> Any:
        value = getattr(options, name)
        if value is not None:
            return value
        return getattr(like, name) if like is not None else getattr(RunRecord, name)

    init = options.init if options.init is not None else (like.init if like else None)
    run = RunRecord(
        model=model,
        model_args=architecture_args(spec, hyper.patch, {**base_args, **given_args}),
        split=resolve_split(store, options.split, piped_split or (like.split if like else None)),
        labels=chosen("labels"),
        seed=int(chosen("seed")),
        class_weights=chosen("class_weights"),
        amp=bool(chosen("amp")),
        init=str(Path(init).absolute()) if init else None,
        protocol=protocol,
        step_budget=int(chosen("step_budget")),
        hyper=hyper,
    )
    validate(hyper, run)
    return run, spec


def _aux_arguments(spec: ModelSpec, store: SceneStore, args: dict[str, Any], no_aux: bool,
                   on_message: Callable[[str], None]) -> dict[str, Any]:
    """A store prepared with auxiliary rasters (`hsi prep --aux`) gives them to a model that reads
    them (an `aux_bands` argument), unless its arguments already say how many or `no_aux`; either
    way a line says what happens to them."""
    if not store.attrs.get("has_aux") or "aux_bands" in args:
        return {}
    count = store.aux().shape[2]
    if "aux_bands" not in spec.arguments:
        on_message(f"{store.name} has {count} auxiliary raster(s); {spec.name} reads the spectral bands only")
        return {}
    if no_aux:
        on_message(f"{store.name} has {count} auxiliary raster(s); not used (--no-aux)")
        return {"aux_bands": 0}
    on_message(f"{spec.name} reads the {count} auxiliary raster(s) of {store.name} too (aux_bands {count}; "
               "--no-aux to leave them out)")
    return {"aux_bands": count}


def _request_key(store: SceneStore, run: RunRecord) -> str:
    """What determines the trained weights: the store's content, the split and the run record
    (the --init checkpoint by its content, not its path)."""
    blob = {
        "store": store.fingerprint,
        "split": store.layer_attrs("splits", run.split).get("fingerprint"),
        "labels": store.layer_attrs("labels", run.labels).get("fingerprint") if run.labels else None,
        "record": {**asdict(run), "init": describe_file(Path(run.init))["sha256"] if run.init else None},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def train(
    store_path: Path,
    options: TrainOptions,
    *,
    command: str = API_COMMAND,
    on_epoch: Callable[[dict[str, Any]], None] = lambda record: None,
    on_message: Callable[[str], None] = lambda message: None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> TrainResult:
    """Train as `options` say; `on_progress(done, total)` follows each optimiser step of this run."""
    world = distributed.detect_world()
    if not world.is_main:  # only rank 0 reports
        on_epoch, on_message, on_progress = (lambda record: None), (lambda message: None), (lambda done, total: None)
    _, layer_kind, layer_name = split_layer_path(Path(store_path))
    store = SceneStore.open(store_path)
    run, spec = resolve_run(options, store, layer_name if layer_kind == "splits" else None, on_message)
    split_name, hyper = run.split, run.hyper
    _require_fits(spec, store, split_name, run, world)
    out = Path(options.out) if options.out else default_checkpoint_path(
        store, run.model, split_name, run.seed, run.labels
    )
    out = out.absolute()
    key = _request_key(store, run)
    if up_to_date(out, key, lambda p: read_header(p)[1].get("request_key"), options.overwrite):
        on_message(f"{out} is up to date (same store, split and settings)")
        return TrainResult(out, {"model": run.model}, reused=True, main=world.is_main)
    data = load_training_data(store, split_name, run.labels)
    store.verify(cube=data.cube)  # the cube is read already: the check costs one hash
    on_message(
        f"training {run.model} on {store.name}, split {split_name}: "
        f"{data.train_y.size} training and {data.val_y.size} validation pixels"
    )
    started = time.perf_counter()
    if not spec.kind.torch:
        if not world.is_main:  # classical baselines fit on one process; the others have nothing to do
            return TrainResult(out, {"model": run.model}, main=False)
        arrays, training = _fit_classical(spec, data, store, run, options)
    else:
        try:
            with preempt.watch() as preemption, distributed.process_group(world, select_device(options.device)):
                plan = budget.plan(run.protocol, run.hyper.epochs, run.step_budget, train_pixels=data.train_y.size,
                                   batch_size=run.hyper.batch_size)
                arrays, training = _fit_torch(spec, data, store, run, plan, options, out, key, on_epoch,
                                              on_message, world, preemption, on_progress)
        except KeyboardInterrupt:
            raise Interrupted(f"training interrupted (Ctrl-C); {_kept_state(resume_path(out), key)}; "
                              "run the same command with --resume to continue") from None
        if not world.is_main:
            return TrainResult(out, {"model": run.model}, main=False)
    recorded = run.to_metadata()
    training.update(
        seconds=round(time.perf_counter() - started, 3),
        split_fingerprint=store.layer_attrs("splits", split_name).get("fingerprint"),
        **recorded.pop("training"),
        **pseudo_label_record(store, run.labels),
    )
    inputs = {"store": store.describe()}
    if run.init:
        inputs["init"] = describe_file(Path(run.init))
    metadata = {
        **recorded,
        "model_kind": spec.kind.name,
        "class_names": store.class_names,
        "class_colors": store.class_colors,
        "input": {
            "bands": store.shape[2],
            "patch": hyper.patch,
            "preprocessing": store.attrs.get("preprocessing"),
            "transform_fingerprint": store.attrs.get("transform_fingerprint"),
        },
        "training": training,
        "source_store": store.describe(),
        "request_key": key,
        "hsicli_version": __version__,
        "provenance": record(command, inputs),
    }
    save_arrays(out, arrays, metadata, overwrite=options.overwrite)
    resume_path(out).unlink(missing_ok=True)
    summary = {
        "model": run.model,
        "best_epoch": training.get("best_epoch"),
        "best_val_accuracy": training.get("best_val_accuracy"),
        "seconds": training["seconds"],
    }
    return TrainResult(out, summary)


# -- classical baselines ------------------------------------------------------------------------


def _fit_classical(spec: ModelSpec, data: TrainingData, store, run: RunRecord, options: TrainOptions) -> tuple[dict, dict]:
    from hsicli.models.classical import estimator_to_arrays
    from hsicli.models.registry import create_model

    import warnings

    from threadpoolctl import threadpool_limits

    cube = data.cube
    estimator = create_model(spec.name, store.shape[2], store.n_classes, seed=run.seed, **run.model_args)
    x_train = cube[data.train_rows, data.train_cols]
    # --threads bounds OpenMP/BLAS pools too (histogram boosting oversubscribes a busy machine).
    with threadpool_limits(limits=options.threads), warnings.catch_warnings():
        # scikit-learn 1.9 deprecates SVC(probability=True); the class map stays SVC.predict().
        warnings.filterwarnings("ignore", message=".*probability.*deprecated", category=FutureWarning)
        estimator.fit(x_train, data.train_y)
        train_acc = float((estimator.predict(x_train) == data.train_y).mean())
        val_acc = None
        if data.val_y.size:
            val_acc = float((estimator.predict(cube[data.val_rows, data.val_cols]) == data.val_y).mean())
    arrays, meta = estimator_to_arrays(estimator)
    history = [{"epoch": 1, "loss": None, "train_accuracy": train_acc, "val_accuracy": val_acc}]
    training = {"history": history, "best_epoch": 1, "best_val_accuracy": val_acc, "estimator": meta}
    return {f"{spec.kind.tensors}.{k}": v for k, v in arrays.items()}, training


# -- torch models -----------------------------------------------------------------------------


def select_device(requested: str):
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise HsiError("--device cuda asked for, but no CUDA device is available", hint="use --device cpu or auto")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise HsiError("--device mps asked for, but MPS is not available", hint="use --device cpu or auto")
    if requested not in ("cpu", "cuda", "mps"):
        raise HsiError(f"unknown device {requested!r}", hint="use auto, cpu, cuda or mps")
    return torch.device(requested)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD = 32 << 20  # the ceiling of glibc's own adaptive threshold on 64-bit systems


def keep_freed_memory() -> None:
    """Let glibc keep freed blocks of up to 32 MB for reuse instead of returning them at once.

    PyTorch's CPU tensors come straight from malloc, and by default glibc serves large blocks
    from fresh mappings and trims the heap's free top, so each batch's activations are
    page-faulted in anew: 1.4 to 3 million faults in a Lite-C2ANet training on Salinas (about
    a tenth of its time, varying from run to run), 0.12 million with this. Larger blocks (a
    whole cube) still go back when freed. Process-wide and idempotent; nothing happens without
    glibc (macOS, musl).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def build_optimizer(parameters, hyper: TrainDefaults):
    import torch

    name = hyper.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(parameters, lr=hyper.lr, betas=hyper.betas, weight_decay=hyper.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=hyper.lr, betas=hyper.betas, weight_decay=hyper.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    if name == "rmsprop":
        # rho 0.9 as Keras's RMSprop, which SSRN was trained with (torch defaults to 0.99).
        return torch.optim.RMSprop(parameters, lr=hyper.lr, alpha=0.9, weight_decay=hyper.weight_decay)
    raise HsiError(f"unknown optimiser {hyper.optimizer!r}", hint="use adam, adamw, sgd or rmsprop")


def learning_rate(hyper: TrainDefaults, epoch: int) -> float:
    """The learning rate of 1-based `epoch`: a pure function of the epoch, so resuming needs no
    scheduler state. The first `warmup` epochs rise linearly to `lr` (epoch k of w: lr·k/w); the
    schedule then runs over the remaining epochs. "step": × 0.9 every max(1, epochs // 10)
    epochs (SpectralFormer); "cosine": cosine annealing towards 0 by the last epoch."""
    if hyper.schedule not in SCHEDULES:
        raise HsiError(f"unknown learning-rate schedule {hyper.schedule!r}",
                       hint="use " + ", ".join(SCHEDULES))
    if epoch <= hyper.warmup:
        return hyper.lr * epoch / hyper.warmup
    step, span = epoch - 1 - hyper.warmup, max(1, hyper.epochs - hyper.warmup)
    if hyper.schedule == "step":
        return hyper.lr * 0.9 ** (step // max(1, span // 10))
    if hyper.schedule == "cosine":
        return hyper.lr * 0.5 * (1 + math.cos(math.pi * step / span))
    return hyper.lr


def optimizer_to_arrays(optimizer) -> tuple[dict[str, np.ndarray], dict]:
    """Optimiser state as arrays (`optim.<param index>.<name>`) plus JSON param groups."""
    state = optimizer.state_dict()
    arrays = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            arrays[f"optim.{index}.{name}"] = value.detach().cpu().numpy() if hasattr(value, "numpy") else np.asarray(value)
    return arrays, {"param_groups": state["param_groups"]}


def optimizer_from_arrays(optimizer, arrays: dict[str, np.ndarray], meta: dict) -> None:
    import torch

    state: dict[int, dict[str, Any]] = {}
    for key, value in arrays.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = torch.from_numpy(np.array(value))
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def weights_to_arrays(state_dict, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in state_dict.items()}


def weights_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    import torch

    return {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}


def load_weights(model, arrays: dict[str, np.ndarray], prefix: str, source: Path) -> None:
    weights = weights_from_arrays(arrays, prefix)
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:3]}") or (unexpected and f"unexpected {unexpected[:3]}") or (
            f"shape of {wrong[0]}: {tuple(weights[wrong[0]].shape)} vs model {tuple(own[wrong[0]].shape)}"
        )
        raise StoreError(
            f"weights in {source} do not fit the model: {detail}",
            hint="the checkpoint was made for another architecture, band or class count",
        )
    model.load_state_dict(weights)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def _class_weights(run: RunRecord, y: np.ndarray, n_classes: int):
    import torch

    if run.class_weights == "none":
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


class _Batches:
    """Turns pixel coordinates into model inputs for the model's kind."""

    def __init__(self, kind: ModelKind, data: TrainingData, patch: int, augment: Augment | None):
        self.kind = kind
        self.sampler = PatchSampler.from_cube(data.cube, patch)
        self.augment = augment
        self.data = data
        self.patch = patch

    def inputs(self, rows, cols, rng=None, augment: bool = False):
        import torch

        aug = self.augment if augment else None
        patches = self.sampler.patches(rows, cols, augment=aug, rng=rng)
        return torch.from_numpy(patches).permute(0, 3, 1, 2)  # (B, T, P, P), channels_last memory

    def targets(self, rows, cols, labels):
        import torch

        if self.kind.dense:
            return torch.from_numpy(window_targets(self.data.target_map, rows, cols, self.patch, IGNORE))
        return torch.from_numpy(np.asarray(labels, dtype=np.int64))


def evaluate_pixels(model, batches: _Batches, rows, cols, y, batch_size: int, device,
                    autocast) -> tuple[float | None, float | None]:
    """(accuracy, mean cross-entropy) of the model at the labelled pixels `rows, cols`; (None, None)
    for none. The loss is plain cross-entropy at the centre pixel for every model kind, so
    validation losses compare across models (a segmenter's training loss has other terms)."""
    import torch

    if y.size == 0:
        return None, None
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, y.size, batch_size):
            sl = slice(start, start + batch_size)
            x = batches.inputs(rows[sl], cols[sl]).to(device)
            with autocast():
                logits = batches.kind.centre_logits(model(x))
            target = torch.from_numpy(np.asarray(y[sl], dtype=np.int64)).to(device)
            loss += float(torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum"))
            correct += int((logits.argmax(1).cpu().numpy() == y[sl]).sum())
    return correct / y.size, loss / y.size


def _fit_torch(spec, data: TrainingData, store, run: RunRecord, plan: budget.Budget, options: TrainOptions,
               out: Path, run_key: str, on_epoch, on_message, world: distributed.World,
               preemption: preempt.PreemptionFlag, on_progress) -> tuple[dict, dict]:
    """Train a torch model for at most `plan.max_epochs`; `run_key` (the request key) ties the resume
    state to this exact run.

    Data-parallel across the ranks of `world` (inside its process group); stops with `Preempted`
    at the first batch after `preemption` is set.
    """
    import copy
    import functools

    import torch

    from hsicli.engine.averaging import WeightAverage
    from hsicli.models import precision
    from hsicli.models.registry import create_model

    hyper = replace(run.hyper, epochs=plan.max_epochs)  # the loop and the schedules span the whole budget
    if options.threads:
        torch.set_num_threads(options.threads)
    keep_freed_memory()
    device = distributed.rank_device(select_device(options.device), world)
    torch.manual_seed(run.seed)
    model = create_model(spec.name, store.shape[2], store.n_classes, **run.model_args).to(device)
    if run.init:
        arrays, _ = load_arrays(Path(run.init))
        load_weights(model, arrays, f"{spec.kind.tensors}.", Path(run.init))
    if model.aux_bands:  # HSIseg's auxiliary branch reads the aux rasters as extra channels after the bands
        from hsicli.engine.windows import scene_inputs

        data.cube = scene_inputs(store, model.aux_bands)
    if spec.kind.dense and hyper.augment:
        raise HsiError("--augment turns input windows but not their targets", hint="drop --augment for segmenters")
    optimizer = build_optimizer(model.parameters(), hyper)
    weights = _class_weights(run, data.train_y, store.n_classes)
    class_weights = None if weights is None else weights.to(device)
    augment = Augment() if hyper.augment else None
    batches = _Batches(spec.kind, data, hyper.patch, augment)

    autocast = functools.partial(precision.autocast, device, run.amp)
    if run.amp:
        on_message(precision.describe(model, device))

    history: list[dict[str, Any]] = []
    best = {"epoch": None, "val": -1.0, "weights": None, "bad_epochs": 0}
    average = WeightAverage(model, hyper.ema) if hyper.ema is not None else None
    start_epoch = 1
    state_file = resume_path(out)
    if options.resume and state_file.exists():
        arrays, meta = load_arrays(state_file)
        if meta.get("run_key") != run_key:
            raise StoreError(
                f"{state_file} belongs to a run with other settings",
                hint="resume with the same options, or delete the state file to start over",
            )
        load_weights(model, arrays, "model.", state_file)
        optimizer_from_arrays(optimizer, arrays, meta["optimizer"])
        history = meta["history"]
        best.update(epoch=meta["best_epoch"], val=meta["best_val"], bad_epochs=meta["bad_epochs"])
        best["weights"] = weights_from_arrays(arrays, "best.") or None
        if average is not None:
            average.state = {k: v.to(device) for k, v in weights_from_arrays(arrays, "average.").items()}
            average.updates = meta["average_updates"]
        # A run that had already stopped early resumes straight to writing its checkpoint.
        start_epoch = hyper.epochs + 1 if meta.get("stopped") else meta["epoch"] + 1
        on_message(f"resuming from {state_file.name} after epoch {meta['epoch']}")

    def patience_stop(best: dict[str, Any]) -> bool:
        return hyper.patience is not None and data.val_y.size > 0 and best["bad_epochs"] >= hyper.patience

    n = data.train_y.size
    net = distributed.wrap_model(model, world, device)
    # With --ema, validation, the best epoch and the checkpoint all use the averaged weights.
    averaged = copy.deepcopy(model) if average is not None else model
    # The adaptive protocol evens out its batches; the paper's keeps the papers' loaders' last partial one.
    balanced = plan.protocol == "adaptive"
    steps_per_epoch = len(distributed.rank_batches(np.arange(n), hyper.batch_size, world, balanced=balanced))
    steps, total_steps = 0, (hyper.epochs + 1 - start_epoch) * steps_per_epoch
    for epoch in range(start_epoch, hyper.epochs + 1):
        tick = time.perf_counter()
        rng = np.random.default_rng(_epoch_seed(run.seed, epoch))
        torch.manual_seed(_epoch_seed(run.seed, epoch))
        order = rng.permutation(n)  # the same on every rank
        if world.distributed:
            # Augmentation and dropout draw their own stream on each rank.
            rng = np.random.default_rng([_epoch_seed(run.seed, epoch), world.rank])
            torch.manual_seed(_epoch_seed(run.seed, epoch) + world.rank)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(hyper, epoch)
        net.train()
        total_loss, correct, seen = 0.0, 0, 0
        for index in distributed.rank_batches(order, hyper.batch_size, world, balanced=balanced):
            if distributed.any_rank(bool(preemption), world, device):
                raise _preempted(preemption, epoch, state_file, run_key)
            rows, cols, y = data.train_rows[index], data.train_cols[index], data.train_y[index]
            x = batches.inputs(rows, cols, rng=rng, augment=True).to(device)
            target = batches.targets(rows, cols, y).to(device)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = net(x)
                loss = model.training_loss(logits, target, class_weights)
            loss.backward()
            if hyper.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), hyper.clip_grad)
            optimizer.step()
            if average is not None:
                average.update(model)
            total_loss += float(loss.detach()) * len(index)
            correct += int((spec.kind.centre_logits(logits).argmax(1).cpu().numpy() == y).sum())
            seen += len(index)
            steps += 1
            on_progress(steps, total_steps)
        total_loss, correct, seen = distributed.all_reduce_sum([total_loss, correct, seen], world, device)
        if not math.isfinite(total_loss):  # the same sum on every rank, so all of them stop here
            raise HsiError(
                f"training stopped: the loss became {total_loss} during epoch {epoch}; "
                f"{_kept_state(state_file, run_key)}",
                hint="train again with a lower --lr or with --clip-grad (the kept state resumes the same "
                     "settings only)",
            )
        if average is not None:
            averaged.load_state_dict(average.state)
        val_acc, val_loss = _validation_scores(averaged, batches, data, hyper, device, autocast, world)
        entry = {
            "epoch": epoch,
            "loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "seconds": round(time.perf_counter() - tick, 3),
            "lr": learning_rate(hyper, epoch),
            **model.history_extras(),
        }
        history.append(entry)
        # Best epoch by validation accuracy, the later of tied epochs (a few dozen validation
        # pixels tie often, and the earlier epoch is the less trained); without validation
        # pixels, the last epoch. Patience counts epochs without a strict improvement.
        score = val_acc if val_acc is not None else float(epoch)
        best["bad_epochs"] = 0 if score > best["val"] else best["bad_epochs"] + 1
        if score >= best["val"]:
            best.update(epoch=epoch, val=score)
            best["weights"] = {k: v.detach().clone().cpu() for k, v in averaged.state_dict().items()}
        stop = patience_stop(best)
        converged = not stop and budget.should_stop(plan, history)
        stop = stop or converged
        if world.is_main:
            _write_state(state_file, model, optimizer, best, average, history, epoch, run_key, stop)
        on_epoch(entry)
        if converged and epoch < plan.max_epochs:
            on_message(budget.stop_message(plan, history))
        elif stop and not converged:
            on_message(f"early stop: no validation improvement for {hyper.patience} epochs")
        if stop:
            break
    underfit = budget.underfit(history)
    if underfit:
        on_message(budget.underfit_message(underfit))
    arrays = weights_to_arrays(best["weights"], f"{spec.kind.tensors}.")
    training = {
        "history": history,
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val"] if data.val_y.size else None,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "augment": asdict(augment) if augment else None,
        "budget": plan.to_dict(),
        "underfit": underfit,
        "stop": budget.stop_record(plan, history, patience_stop=patience_stop(best)),
    }
    return arrays, training


def _validation_scores(model, batches: _Batches, data: TrainingData, hyper: TrainDefaults, device, autocast,
                       world: distributed.World) -> tuple[float | None, float | None]:
    """(accuracy, loss) of the unwrapped model on the validation pixels; each rank scores its share."""
    part = distributed.rank_slice(data.val_y.size, world)
    accuracy, loss = evaluate_pixels(model, batches, data.val_rows[part], data.val_cols[part], data.val_y[part],
                                     hyper.eval_batch_size, device, autocast)
    if not world.distributed:
        return accuracy, loss
    size = data.val_y[part].size
    hits, loss_sum, total = distributed.all_reduce_sum(
        [round((accuracy or 0.0) * size), (loss or 0.0) * size, size], world, device)
    return (hits / total, loss_sum / total) if total else (None, None)


def _kept_state(state_file: Path, run_key: str) -> str:
    """What a stopped run leaves for --resume, read from the state file itself."""
    try:
        _, meta = read_header(state_file)
    except StoreError:
        meta = {}
    if meta.get("run_key") != run_key or not isinstance(meta.get("epoch"), int):
        return "no epoch had finished, so --resume starts over"
    return f"its state after epoch {meta['epoch']} is in {state_file}"


def _preempted(flag: preempt.PreemptionFlag, epoch: int, state_file: Path, run_key: str) -> preempt.Preempted:
    return preempt.Preempted(
        f"training stopped by {flag.name} during epoch {epoch}; {_kept_state(state_file, run_key)}",
        hint=f"run the same command with --resume to continue (exit code {preempt.EXIT_CODE} asks a batch "
             "script to requeue)",
    )


def _write_state(path: Path, model, optimizer, best, average, history, epoch: int, run_key: str,
                 stopped: bool) -> None:
    arrays = weights_to_arrays(model.state_dict(), "model.")
    arrays.update(weights_to_arrays(best["weights"], "best."))
    if average is not None:
        arrays.update(weights_to_arrays(average.state, "average."))
    optim_arrays, optim_meta = optimizer_to_arrays(optimizer)
    arrays.update(optim_arrays)
    meta = {
        "epoch": epoch,
        "history": history,
        "best_epoch": best["epoch"],
        "best_val": best["val"],
        "bad_epochs": best["bad_epochs"],
        "average_updates": average.updates if average is not None else None,
        "optimizer": optim_meta,
        "run_key": run_key,
        "stopped": stopped,
    }
    save_arrays(path, arrays, meta, overwrite=True, kind="resume-state")
