"""Inference behind `hsi predict`: the whole scene, tile by tile, into a prediction store.

Memory is bounded by one tile of rows (plus the patch margin), never by the scene: rows are read
from the store's chunks, reflect-padded exactly as the training sampler pads the whole cube, and
the results written before the next tile is read.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.data.patches import PatchSampler, block_sampler
from hsicli.engine.segmentation import default_stride, predict_windows, scene_inputs
from hsicli.errors import HsiError, StoreError
from hsicli.models.registry import create_model, get_model_spec
from hsicli.store.checkpoint import load_arrays, require_checkpoint
from hsicli.store.atomic import up_to_date
from hsicli.store.prediction import ROW_BLOCK, PredictionStore
from hsicli.store.provenance import describe_file, record
from hsicli.store.scene import SceneStore


@dataclass
class PredictOptions:
    store: Path | None = None
    out: Path | None = None
    batch_size: int | None = None
    embeddings: bool = False
    probabilities: bool = True
    device: str = "auto"
    threads: int | None = None
    amp: bool = False
    overwrite: bool = False


@dataclass
class PredictResult:
    path: Path
    summary: dict[str, Any]


class Classifier:
    """A checkpoint turned back into something that maps centre pixels to class probabilities."""

    def __init__(self, checkpoint: Path, options: PredictOptions):
        self.path = Path(checkpoint)
        arrays, self.meta = load_arrays(self.path)
        require_checkpoint(self.path, self.meta)
        self.spec = get_model_spec(self.meta["model"])
        self.n_classes = len(self.meta["class_names"])
        self.bands = int(self.meta["input"]["bands"])
        self.patch = int(self.meta["input"]["patch"])
        hyper = self.meta["training"].get("hyper", {})
        self.batch_size = options.batch_size or int(hyper.get("eval_batch_size", 256))
        self.options = options
        if self.spec.kind == "spectral":
            from hsicli.models.classical import estimator_from_arrays

            estimator_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("est.")}
            self.estimator = estimator_from_arrays(self.spec.name, estimator_arrays, self.meta["training"]["estimator"])
            self.patch = 1
        else:
            import torch

            from hsicli.engine.train import load_weights, select_device

            if options.threads:
                torch.set_num_threads(options.threads)
            self.device = select_device(options.device)
            self.model = create_model(self.spec.name, self.bands, self.n_classes, **self.meta["model_args"])
            load_weights(self.model, arrays, "model.", self.path)
            self.model.to(self.device).eval()
        if options.embeddings and not hasattr(getattr(self, "model", None), "forward_features"):
            raise HsiError(f"model {self.spec.name} has no embedding to export", hint="drop --embeddings")

    def predict(self, sampler: PatchSampler, rows: np.ndarray, cols: np.ndarray,
                embed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(class index (N,), probabilities (N, C), embeddings of pixels where `embed`)."""
        if self.spec.kind == "spectral":
            x = sampler.centres(rows, cols)
            # An SVM's map comes from its own decision (one-vs-one votes), not argmax of probabilities.
            return self.estimator.predict(x).astype(np.int64), self.estimator.predict_proba(x), None
        import contextlib

        import torch

        from hsicli.engine.train import centre_logits

        autocast = (torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.options.amp
                    else contextlib.nullcontext())
        probabilities = np.empty((rows.size, self.n_classes), dtype=np.float32)
        features = []
        with torch.no_grad(), autocast:
            for start in range(0, rows.size, self.batch_size):
                sl = slice(start, start + self.batch_size)
                x = torch.from_numpy(sampler.patches(rows[sl], cols[sl])).permute(0, 3, 1, 2).to(self.device)
                if self.options.embeddings:
                    feats = self.model.forward_features(x)
                    logits = self.model.forward_head(feats)
                    features.append(feats[torch.from_numpy(embed[sl]).to(self.device)].float().cpu().numpy())
                else:
                    logits = self.model(x)
                logits = centre_logits(self.spec.kind, logits)
                probabilities[sl] = torch.softmax(logits.float(), dim=1).cpu().numpy()
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
    recorded = classifier.meta["source_store"]
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
    expected = classifier.meta["input"].get("transform_fingerprint")
    if expected and store.attrs.get("transform_fingerprint") != expected:
        raise StoreError(
            f"{store.path} was preprocessed differently from the scene {classifier.path.name} was trained on",
            hint="prep the scene with `hsi prep NEW --like TRAINING_STORE`",
        )
    return store, own


def predict(checkpoint: Path, options: PredictOptions, *, command: str,
            on_progress: Callable[[int, int], None] = lambda done, total: None,
            on_message: Callable[[str], None] = lambda message: None) -> PredictResult:
    classifier = Classifier(checkpoint, options)
    store, own = open_scene_for(classifier, options.store)
    height, width, _ = store.shape
    out = Path(options.out) if options.out else default_prediction_path(Path(checkpoint), store, own)
    out = out.absolute()
    checkpoint_record = describe_file(Path(checkpoint))
    key = hashlib.sha256(json.dumps([checkpoint_record["sha256"], store.fingerprint, options.probabilities,
                                     options.embeddings, options.amp]).encode()).hexdigest()
    if up_to_date(out, key, lambda p: PredictionStore.open(p).attrs.get("request_key"), options.overwrite):
        on_message(f"{out} is up to date (same checkpoint, scene and options)")
        return PredictResult(out, {"inference_seconds": PredictionStore.open(out).attrs.get("inference_seconds")})
    gt = store.gt()
    attrs = {
        "request_key": key,
        "model": classifier.spec.name,
        "class_names": classifier.meta["class_names"],
        "class_colors": classifier.meta["class_colors"],
        "checkpoint": checkpoint_record,
        "scene_store": store.describe(),
        "split": classifier.meta["training"].get("split"),
        "labels": classifier.meta["training"].get("labels"),
    }
    started = time.perf_counter()
    embedded_index, embedded = [], []
    with PredictionStore.build(out, height=height, width=width, n_classes=classifier.n_classes,
                               probabilities=options.probabilities, attrs=attrs,
                               overwrite=options.overwrite) as writer:
        aux_bands = getattr(getattr(classifier, "model", None), "aux_bands", 0)
        for top in range(0, height, ROW_BLOCK):
            bottom = min(top + ROW_BLOCK, height)
            embed = gt[top:bottom].ravel() > 0
            if classifier.spec.kind == "segmenter":
                # Overlapping windows blended smoothly; each block reads the halo its windows need.
                probabilities = predict_windows(
                    classifier.model, lambda rows: scene_inputs(store, aux_bands, rows), height=height, width=width,
                    top=top, bottom=bottom, window=classifier.patch, stride=default_stride(classifier.patch),
                    batch_size=classifier.batch_size, device=classifier.device, amp=options.amp,
                ).reshape(-1, classifier.n_classes)
                index, features = probabilities.argmax(1), None
            else:
                sampler = block_sampler(store.cube, height, width, top, bottom, classifier.patch)
                rows, cols = np.divmod(np.arange((bottom - top) * width), width)
                index, probabilities, features = classifier.predict(sampler, rows, cols, embed)
            shape = (bottom - top, width)
            writer.write_rows(top, (index + 1).reshape(shape).astype(np.uint16),
                              probabilities.reshape(*shape, -1), _entropy(probabilities).reshape(shape))
            if features is not None:
                embedded_index.append(top * width + np.flatnonzero(embed))
                embedded.append(features)
            on_progress(bottom, height)
        seconds = round(time.perf_counter() - started, 3)
        if options.embeddings:
            writer.write_embeddings(np.concatenate(embedded_index), np.concatenate(embedded))
        writer.update_attrs({"inference_seconds": seconds, "pixels": height * width,
                             "provenance": record(command, {"checkpoint": checkpoint_record,
                                                            "store": store.describe()})})
    on_message(f"predicted {height * width} pixels in {seconds:.2f} s")
    return PredictResult(out, {"inference_seconds": seconds})
