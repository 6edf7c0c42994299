"""Inference behind `hsi predict`: the whole scene, tile by tile, into a prediction store.

Memory is bounded by one tile of rows (plus the patch margin), never by the scene: rows are read
from the store's chunks, reflect-padded exactly as the training sampler pads the whole cube, and
the results written before the next tile is read. A model whose leading layers see one pixel at a
time (`pixel_stage`, e.g. Lite-C2ANet's 1x1 group reductions) has them applied to the rows once,
and its patches cut from their output, instead of once per patch containing a pixel.

`--pixels labelled` or `test` classifies only the labelled pixels of the scene, or the labelled
test pixels of the checkpoint's split; the others keep class 0, probabilities 0 and entropy NaN.

Sharded (hsicli.engine.shards): `--init-shards` creates the complete, empty store marked incomplete;
`--shard I/N` predicts the row blocks of shard I into it, exactly as the unsharded loop would
(each block reads its own margin rows, or its windows' halo, so the result does not depend on the
sharding); `--finalize` checks that every shard finished and writes the final attributes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.data.patches import PatchSampler, block_sampler
from hsicli.engine import memory, shards
from hsicli.engine.windows import default_stride, predict_windows, scene_inputs
from hsicli.errors import HsiError, OutputExistsError, StoreError, UsageError
from hsicli.models.registry import create_model, stored_model_spec
from hsicli.store.checkpoint import Checkpoint, training_setup
from hsicli.store.atomic import up_to_date, write_lock
from hsicli.store.prediction import ROW_BLOCK, PredictionStore
from hsicli.store.provenance import API_COMMAND, describe_file, now, record
from hsicli.store.scene import SceneStore
from hsicli.store.splits import labelled_test_mask


@dataclass
class PredictOptions:
    store: Path | None = None
    out: Path | None = None
    batch_size: int | None = None
    embeddings: bool = False
    probabilities: bool = True
    pixels: str = "all"  # "all", "labelled" or "test": which pixels to classify (PIXEL_SETS)
    device: str = "auto"
    threads: int | None = None
    amp: bool = False
    overwrite: bool = False
    init: bool = False  # create the empty store for sharded prediction
    shard: str | None = None  # "I/N" or "slurm": predict that shard's rows into the initialised store
    finalize: bool = False  # check that every shard finished; write the final attributes


PIXEL_SETS = ("all", "labelled", "test")


@dataclass
class PredictResult:
    path: Path
    summary: dict[str, Any]


class Classifier:
    """A checkpoint turned back into something that maps centre pixels to class probabilities."""

    def __init__(self, checkpoint: Path, options: PredictOptions):
        self.path = Path(checkpoint)
        self.checkpoint = Checkpoint.open(self.path)
        record = self.checkpoint.record
        self.n_classes = len(self.checkpoint.class_names)
        self.bands = self.checkpoint.input.bands
        self.patch = self.checkpoint.input.patch
        batch_size = options.batch_size or record.hyper.eval_batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise StoreError(f"{self.path} records an evaluation batch size of {batch_size!r}",
                             hint="the checkpoint is damaged; give one with --batch-size")
        self.batch_size = batch_size
        tensors = self.checkpoint.tensors
        memory.require_prediction_fits(self.path, bands=self.bands, patch=self.patch, batch=self.batch_size,
                                       weights=memory.weights_bytes(tensors))
        self.spec = stored_model_spec(record.model)  # the checks below run before torch is loaded
        held = "est" if any(k.startswith("est.") for k in tensors) else "model" if tensors else "no"
        if (held == "est") == self.spec.kind.torch:  # an estimator's arrays for a network, or none for an estimator
            raise StoreError(f"{self.path} names the {self.spec.kind} model {self.spec.name} but holds {held} tensors",
                             hint="the checkpoint's metadata and weights disagree; train the model again")
        if self.spec.kind.reads_windows and self.patch % 2 == 0:
            raise StoreError(f"{self.path} records an even patch size, {self.patch}; {self.spec.name} reads windows "
                             "centred on a pixel", hint="the checkpoint is damaged; train the model again")
        arrays = self.checkpoint.arrays()
        self.options = options
        self.pixel_stage = None  # the model's per-pixel leading layers, if it has them
        prefix = f"{self.spec.kind.tensors}."
        if not self.spec.kind.torch:
            from hsicli.models.classical import estimator_from_arrays

            estimator_arrays = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            self.estimator = estimator_from_arrays(self.spec.name, estimator_arrays, self.checkpoint.estimator)
            self.patch = 1
            # Class indices 0..C-1; a class without training pixels is absent from the estimator.
            self.classes = self.estimator.classes_.astype(np.int64)
            if self.classes.size and not (self.classes.min() >= 0 and self.classes.max() < self.n_classes):
                raise StoreError(
                    f"{self.path} names {self.n_classes} classes, its {self.spec.name} model predicts class "
                    f"indices {self.classes.tolist()}",
                    hint="the checkpoint's metadata and weights disagree; train the model again",
                )
        else:
            import torch

            from hsicli.engine.train import keep_freed_memory, load_weights, select_device

            if options.threads:
                torch.set_num_threads(options.threads)
            self.device = select_device(options.device)
            keep_freed_memory()
            self.model = create_model(self.spec.name, self.bands, self.n_classes, **record.model_args)
            load_weights(self.model, arrays, prefix, self.path)
            self.model.to(self.device).eval()
            self.pixel_stage = self.model.pixel_stage
        if options.embeddings and not (self.spec.kind.torch and self.model.has_embedding):
            raise HsiError(f"model {self.spec.name} has no embedding to export", hint="drop --embeddings")

    def _autocast(self):
        from hsicli.models.precision import autocast

        return autocast(self.device, self.options.amp)

    def rows_reader(self, read_rows: Callable[[slice], np.ndarray]) -> Callable[[slice], np.ndarray]:
        """`read_rows` (scene rows (r, W, T)) as the model's patches are cut from: through the
        model's pixel stage when it has one, so that each pixel passes it once."""
        stage = self.pixel_stage
        if stage is None:
            return read_rows
        import torch

        def staged(rows: slice) -> np.ndarray:
            block = torch.from_numpy(read_rows(rows)).to(self.device)
            with torch.inference_mode(), self._autocast():
                # (1, T, r, W) channels-last: all the rows' pixels in one pass.
                out = stage(block.unsqueeze(0).permute(0, 3, 1, 2))
            return out[0].permute(1, 2, 0).float().cpu().numpy()

        return staged

    def predict(self, sampler: PatchSampler, rows: np.ndarray, cols: np.ndarray, embed: np.ndarray,
                on_batch: Callable[[int], None] = lambda done: None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(class index (N,), probabilities (N, C), embeddings of pixels where `embed`).

        `sampler` cuts from the rows `rows_reader` returns; `on_batch(pixels done)` follows each batch."""
        if not self.spec.kind.torch:
            x = sampler.centres(rows, cols)
            # An SVM's map comes from its own decision (one-vs-one votes), not argmax of probabilities.
            probabilities = np.zeros((rows.size, self.n_classes), dtype=np.float32)
            probabilities[:, self.classes] = self.estimator.predict_proba(x)
            return self.estimator.predict(x).astype(np.int64), probabilities, None
        import torch

        staged = {"staged": True} if self.pixel_stage is not None else {}
        probabilities = np.empty((rows.size, self.n_classes), dtype=np.float32)
        features = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, rows.size, self.batch_size):
                sl = slice(start, start + self.batch_size)
                x = torch.from_numpy(sampler.patches(rows[sl], cols[sl])).permute(0, 3, 1, 2).to(self.device)
                if self.options.embeddings:
                    feats = self.model.forward_features(x, **staged)
                    logits = self.model.forward_head(feats)
                    features.append(feats[torch.from_numpy(embed[sl]).to(self.device)].float().cpu().numpy())
                else:
                    logits = self.model(x, **staged)
                logits = self.spec.kind.centre_logits(logits)
                probabilities[sl] = torch.softmax(logits.float(), dim=1).cpu().numpy()
                on_batch(min(start + self.batch_size, rows.size))
        embedded = np.concatenate(features) if features else None
        return probabilities.argmax(1), probabilities, embedded


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(p)).sum(axis=-1).astype(np.float32)


def default_prediction_path(checkpoint: Path, store: SceneStore, own_store: bool) -> Path:
    stem = checkpoint.name.removesuffix(".safetensors")
    suffix = "" if own_store else f"-on-{store.name}"
    return checkpoint.parent / f"{stem}{suffix}.pred.zarr"


def open_scene_for(classifier: Classifier, requested: Path | None) -> tuple[SceneStore, bool]:
    """The scene to predict: the given store (same preprocessing required) or the training store."""
    recorded = classifier.checkpoint.source_store
    store = SceneStore.open(Path(requested) if requested else Path(recorded["path"]))
    own = store.fingerprint == recorded.get("fingerprint")
    if requested is None and not own:
        raise StoreError(
            f"the scene store {store.path} changed since {classifier.path.name} was trained on it",
            hint="retrain, or pass --store explicitly to predict it anyway",
        )
    if store.shape[2] != classifier.bands:
        raise StoreError(
            f"{store.path} has {store.shape[2]} bands, {classifier.path.name} expects {classifier.bands}",
            hint="prep the scene with `hsi prep --like` the training store",
        )
    expected = classifier.checkpoint.input.transform_fingerprint
    if expected and store.attrs.get("transform_fingerprint") != expected:
        raise StoreError(
            f"{store.path} was preprocessed differently from the scene {classifier.path.name} was trained on",
            hint="prep the scene with `hsi prep NEW --like TRAINING_STORE`",
        )
    return store, own


def predict(checkpoint: Path, options: PredictOptions, *, command: str = API_COMMAND,
            on_progress: Callable[[int, int], None] = lambda done, total: None,
            on_message: Callable[[str], None] = lambda message: None) -> PredictResult:
    steps = [flag for flag, given in (("--init-shards", options.init), ("--shard", options.shard),
                                      ("--finalize", options.finalize)) if given]
    if len(steps) > 1:
        raise UsageError(f"{' and '.join(steps)} are separate steps of a sharded prediction",
                         hint="run `--init-shards` once, then `--shard I/N` for every shard, then `--finalize`")
    if steps and options.embeddings:
        raise UsageError("--embeddings is not available for sharded prediction",
                         hint="predict the scene in one run to export embeddings")
    if options.pixels not in PIXEL_SETS:
        raise UsageError(f"--pixels must be one of {', '.join(PIXEL_SETS)}, got {options.pixels!r}",
                         hint="all: the whole scene; labelled: pixels with a label; test: the split's test pixels")
    classifier = Classifier(checkpoint, options)
    if options.amp and classifier.spec.kind.torch and not (options.init or options.finalize):
        from hsicli.models.precision import describe

        on_message(describe(classifier.model, classifier.device))
    store, own = open_scene_for(classifier, options.store)
    memory.require_scene_prediction_fits(classifier.path, shape=store.shape, patch=classifier.patch,
                                         classes=classifier.n_classes)
    store.verify()
    height, width, _ = store.shape
    selection = pixel_selection(store, options.pixels, classifier, own)
    out = Path(options.out) if options.out else default_prediction_path(Path(checkpoint), store, own)
    out = out.absolute()
    checkpoint_record = describe_file(Path(checkpoint))
    request = [checkpoint_record["sha256"], store.fingerprint, options.probabilities, options.embeddings, options.amp]
    if options.pixels != "all":  # so that whole-scene stores made before --pixels existed stay up to date
        request.append(options.pixels)
    key = hashlib.sha256(json.dumps(request).encode()).hexdigest()
    attrs = {
        "request_key": key,
        "pixel_set": options.pixels,
        "model": classifier.spec.name,
        "training_setup": training_setup(classifier.checkpoint.record, classifier.checkpoint.provenance,
                                         classifier.checkpoint.results.get("pseudo_labels")),
        "class_names": classifier.checkpoint.class_names,
        "class_colors": classifier.checkpoint.class_colors,
        "checkpoint": checkpoint_record,
        "scene_store": store.describe(),
        "split": classifier.checkpoint.record.split,
        "split_fingerprint": classifier.checkpoint.split_fingerprint,
        "labels": classifier.checkpoint.record.labels,
    }
    if steps:
        return _sharded_step(out, attrs, classifier, store, selection, options, command, on_progress, on_message)
    def request_key(path: Path) -> str | None:
        return PredictionStore.open(path).request_key

    def reused() -> PredictResult:
        on_message(f"{out} is up to date (same checkpoint, scene and options)")
        return PredictResult(out, {"inference_seconds": PredictionStore.open(out).inference_seconds})

    if up_to_date(out, key, request_key, options.overwrite):
        return reused()
    started = time.perf_counter()
    try:
        with PredictionStore.build(out, height=height, width=width, n_classes=classifier.n_classes,
                                   probabilities=options.probabilities, attrs=attrs,
                                   overwrite=options.overwrite) as writer:
            embedded_index, embedded = _predict_rows(classifier, store, writer, 0, height, selection, options.amp,
                                                     on_progress)
            seconds = round(time.perf_counter() - started, 3)
            if options.embeddings:
                writer.write_embeddings(np.concatenate(embedded_index), np.concatenate(embedded))
            pixels = int(selection.sum())
            writer.update_attrs({"inference_seconds": seconds, "pixels": pixels,
                                 "provenance": record(command, {"checkpoint": checkpoint_record,
                                                                "store": store.describe()})})
    except OutputExistsError:
        # The same request, run at the same time, published first: its store is this one (a no-op).
        if up_to_date(out, key, request_key, overwrite=False):
            return reused()
        raise
    on_message(f"predicted {pixels} pixels in {seconds:.2f} s")
    return PredictResult(out, {"inference_seconds": seconds})


def pixel_selection(store: SceneStore, pixels: str, classifier: Classifier, own: bool) -> np.ndarray:
    """(H, W) mask of the pixels `--pixels` asks for: all, labelled, or the labelled test pixels
    of the split the checkpoint was trained on (as `hsi evaluate` scores them)."""
    if pixels == "all":
        return np.ones(store.shape[:2], dtype=bool)
    if pixels == "labelled":
        return store.gt() > 0
    split = classifier.checkpoint.record.split
    if not split or split not in store.layer_names("splits"):
        raise StoreError(
            f"--pixels test needs the split {classifier.path.name} was trained on ({split or 'none recorded'}), "
            f"and {store.path} has no such split",
            hint="predict --pixels labelled or all, or add the split to the store",
        )
    return labelled_test_mask(
        store, split, classifier.checkpoint.split_fingerprint if own else None, classifier.path.name,
        hint="its test pixels may include training pixels: train again, or predict --pixels labelled",
    )


def _predict_rows(classifier: Classifier, store: SceneStore, writer, start: int, stop: int, selection: np.ndarray,
                  amp: bool, on_progress: Callable[[int, int], None]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predict the `selection` pixels of scene rows [start, stop) block by block into `writer` (class 0,
    probabilities 0 and entropy NaN elsewhere); the embeddings of the labelled ones (flat pixel indices
    and features) when the classifier exports them."""
    height, width, _ = store.shape
    gt = store.gt()
    read_rows = classifier.rows_reader(store.cube)
    embedded_index, embedded = [], []
    for top in range(start, stop, ROW_BLOCK):
        bottom = min(top + ROW_BLOCK, stop)
        shape = (bottom - top, width)
        rows, cols = np.nonzero(selection[top:bottom])
        embed = gt[top:bottom][rows, cols] > 0
        features = None
        if rows.size == 0:
            probabilities = np.zeros((0, classifier.n_classes), dtype=np.float32)
            index = np.zeros(0, dtype=np.int64)
        elif classifier.spec.kind.dense:
            # Overlapping windows blended smoothly; each block reads the halo its windows need.
            probabilities = predict_windows(
                classifier.model, lambda rows: scene_inputs(store, classifier.model.aux_bands, rows),
                height=height, width=width, top=top, bottom=bottom, window=classifier.patch, stride=default_stride(classifier.patch),
                batch_size=classifier.batch_size, device=classifier.device, amp=amp,
            )[rows, cols]
            index = probabilities.argmax(1)
        else:
            sampler = block_sampler(read_rows, height, width, top, bottom, classifier.patch)

            def rows_done(pixels: int, top: int = top, rows: np.ndarray = rows) -> None:
                # Pixels go in row order: the rows above the last one predicted are finished.
                on_progress(top - start + int(rows[pixels - 1]), stop - start)

            index, probabilities, features = classifier.predict(sampler, rows, cols, embed, rows_done)
        classes = np.zeros(shape, dtype=np.uint16)
        classes[rows, cols] = index + 1
        block_probabilities = np.zeros((*shape, classifier.n_classes), dtype=np.float32)
        block_probabilities[rows, cols] = probabilities
        entropy = np.full(shape, np.nan, dtype=np.float32)
        entropy[rows, cols] = _entropy(probabilities)
        writer.write_rows(top, classes, block_probabilities, entropy)
        if features is not None:
            embedded_index.append((top + rows[embed]) * width + cols[embed])
            embedded.append(features)
        on_progress(bottom - start, stop - start)
    return embedded_index, embedded


# -- sharded prediction ---------------------------------------------------------------------------


def _sharded_step(out: Path, attrs: dict[str, Any], classifier: Classifier, store: SceneStore, selection: np.ndarray,
                  options: PredictOptions, command: str, on_progress, on_message) -> PredictResult:
    """`--init-shards`, `--shard I/N` or `--finalize`: the steps of one prediction store filled by N tasks."""
    height, width, _ = store.shape
    key = attrs["request_key"]
    if options.init:
        if up_to_date(out, key, lambda p: PredictionStore.open(p, allow_incomplete=True).request_key,
                      options.overwrite):
            on_message(f"{out} is already initialised for this checkpoint, scene and options")
            return PredictResult(out, {"complete": PredictionStore.open(out, allow_incomplete=True).complete})
        with PredictionStore.build(out, height=height, width=width, n_classes=classifier.n_classes,
                                   probabilities=options.probabilities, attrs={**attrs, "complete": False},
                                   overwrite=options.overwrite):
            pass
        on_message(f"initialised {out} ({height} x {width} pixels) for sharded prediction")
        return PredictResult(out, {"complete": False})
    if not out.exists():
        raise StoreError(f"prediction store {out} does not exist",
                         hint="create it first with `hsi predict CHECKPOINT --init-shards` (same options)")
    prediction = PredictionStore.open(out, allow_incomplete=True)
    if prediction.request_key != key:
        raise StoreError(f"{out} was initialised for another checkpoint, scene or options",
                         hint="give the checkpoint and options of `--init-shards`, or start over with `--init-shards --overwrite`")
    if prediction.complete:  # a requeued task or a second finalize: nothing left to do
        on_message(f"{out} is already complete")
        return PredictResult(out, {"complete": True})
    if options.shard:
        shard = shards.parse_shard(options.shard)
        start, stop = shard.rows(height, ROW_BLOCK)
        with write_lock(out):
            shards.begin(out, shard)
        started = time.perf_counter()
        _predict_rows(classifier, store, prediction.writer(), start, stop, selection, options.amp, on_progress)
        seconds = round(time.perf_counter() - started, 3)
        with write_lock(out):
            shards.finish(out, shard, (start, stop), {"inference_seconds": seconds, "host": socket.gethostname(),
                                                      "slurm_job": shards.slurm_job(), "time": now(),
                                                      "command": command})
        on_message(f"shard {shard}: predicted rows {start}-{stop - 1} ({int(selection[start:stop].sum())} pixels) in "
                   f"{seconds:.2f} s" if stop > start else f"shard {shard}: no rows (more shards than row blocks)")
        return PredictResult(out, {"shard": str(shard), "rows": [start, stop], "inference_seconds": seconds})
    with write_lock(out):
        markers = shards.check_complete(out, height, ROW_BLOCK)
        seconds = round(sum(m["inference_seconds"] for m in markers), 3)
        prediction.writer().update_attrs({
            "complete": True,
            "inference_seconds": seconds,
            "pixels": int(selection.sum()),
            "shards": [{k: m[k] for k in ("index", "count", "rows", "inference_seconds", "host", "slurm_job")}
                       for m in markers],
            "provenance": record(command, {"checkpoint": attrs["checkpoint"], "store": store.describe()}),
        })
    on_message(f"{out} complete: {len(markers)} shards, {seconds:.2f} s of inference in all")
    return PredictResult(out, {"inference_seconds": seconds, "shards": len(markers)})
