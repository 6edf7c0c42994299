"""Prediction stores (`NAME.zarr`): class map, probabilities, entropy, embeddings (DESIGN.md §3).

Layout::

    NAME.zarr/
      classes        (H, W) uint16, class ids 1..C
      probabilities  (H, W, C) float32 (unless --no-probabilities)
      entropy        (H, W) float32, nats
      embeddings     (N, D) float32 and embedding_index (N,) int64 flat pixel index (optional)

Written tile by tile into a temporary directory and renamed into place when complete. A sharded
prediction (`hsi predict --init`, `--shard I/N`, `--finalize`) is created complete in structure but
with the attribute `complete: false`, filled in place by the shards, and opened for reading only
once `--finalize` has set `complete: true`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from hsicli.errors import StoreError
from hsicli.store.atomic import atomic_path
from hsicli.store.layout import PREDICTION_HINT, ClassTable, check_labels, check_prediction, reading
from hsicli.store.scene import SCHEMA, TILE, _open_group

ROW_BLOCK = TILE  # rows per written block = the chunk height, so blocks never share a chunk


class PredictionWriter:
    def __init__(self, group, probabilities: bool):
        self._group = group
        self._probabilities = probabilities

    def write_rows(self, start: int, classes: np.ndarray, probabilities: np.ndarray, entropy: np.ndarray) -> None:
        stop = start + classes.shape[0]
        self._group["classes"][start:stop] = classes
        self._group["entropy"][start:stop] = entropy
        if self._probabilities:
            self._group["probabilities"][start:stop] = probabilities

    def write_embeddings(self, index: np.ndarray, embeddings: np.ndarray) -> None:
        for name, data in (("embeddings", embeddings.astype(np.float32)), ("embedding_index", index.astype(np.int64))):
            array = self._group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=data.shape or None)
            array[...] = data

    def update_attrs(self, attrs: dict[str, Any]) -> None:
        self._group.attrs.update(attrs)


class PredictionStore(ClassTable):
    """A prediction store opened for reading. What `hsi predict` recorded is read through the typed
    properties below; `attrs` stays the raw mapping for what looks keys up by name (`hsi plot
    sweep --x KEY`)."""

    def __init__(self, path: Path, group, attrs: dict[str, Any]):
        self.path = Path(path)
        self._group = group
        self.attrs = attrs

    @classmethod
    @contextlib.contextmanager
    def build(
        cls,
        path: Path,
        *,
        height: int,
        width: int,
        n_classes: int,
        probabilities: bool,
        attrs: dict[str, Any],
        overwrite: bool = False,
    ) -> Iterator[PredictionWriter]:
        """Create a store atomically; the caller fills it through the yielded writer."""
        with atomic_path(Path(path), overwrite) as tmp:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            chunks = (min(ROW_BLOCK, height), min(TILE, width))
            group.create_array("classes", shape=(height, width), dtype="uint16", chunks=chunks)
            group.create_array("entropy", shape=(height, width), dtype="float32", chunks=chunks)
            if probabilities:
                group.create_array(
                    "probabilities", shape=(height, width, n_classes), dtype="float32", chunks=(*chunks, n_classes)
                )
            group.attrs.update({**attrs, "hsi_schema": SCHEMA, "kind": "prediction", "shape": [height, width]})
            yield PredictionWriter(group, probabilities)

    @classmethod
    def open(cls, path: Path, *, allow_incomplete: bool = False) -> PredictionStore:
        group, attrs = _open_group(Path(path), "prediction")
        check_prediction(group, attrs, Path(path))  # metadata only, before any read
        if attrs.get("complete") is False and not allow_incomplete:
            raise StoreError(
                f"{path} is an unfinished sharded prediction",
                hint="run every `hsi predict CHECKPOINT --shard I/N`, then `hsi predict CHECKPOINT --finalize`",
            )
        return cls(Path(path), group, attrs)

    # -- what `hsi predict` recorded ----------------------------------------------------------

    @property
    def model(self) -> str | None:
        return self.attrs.get("model")

    @property
    def checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint file predicted with, as provenance records a file (path, sha256)."""
        return self.attrs.get("checkpoint")

    @property
    def checkpoint_path(self) -> Path | None:
        return _recorded_path(self.checkpoint)

    @property
    def checkpoint_sha256(self) -> str | None:
        return (self.checkpoint or {}).get("sha256")

    @property
    def scene_store(self) -> dict[str, Any] | None:
        """The scene store predicted, as it describes itself (path, fingerprint)."""
        return self.attrs.get("scene_store")

    @property
    def scene_path(self) -> Path | None:
        return _recorded_path(self.scene_store)

    @property
    def scene_fingerprint(self) -> str | None:
        return (self.scene_store or {}).get("fingerprint")

    @property
    def split(self) -> str | None:
        """The split the model was trained on, whose test pixels evaluate it."""
        return self.attrs.get("split")

    @property
    def split_fingerprint(self) -> str | None:
        return self.attrs.get("split_fingerprint")

    @property
    def labels(self) -> str | None:
        """The pseudo-label layer the model was trained on, if any."""
        return self.attrs.get("labels")

    @property
    def training_setup(self) -> dict[str, Any] | None:
        """The run's setup (hsicli.store.checkpoint.training_setup); None in stores older than it."""
        recorded = self.attrs.get("training_setup")
        return recorded if isinstance(recorded, dict) else None

    @property
    def pixel_set(self) -> str:
        """Which pixels were classified: all (stores made before `--pixels` have every one), labelled, test."""
        return self.attrs.get("pixel_set", "all")

    @property
    def request_key(self) -> str | None:
        return self.attrs.get("request_key")

    @property
    def inference_seconds(self) -> float | None:
        return self.attrs.get("inference_seconds")

    @property
    def pixels(self) -> int | None:
        return self.attrs.get("pixels")

    @property
    def shards(self) -> list[dict[str, Any]] | None:
        """Each shard's rows, time and host, for a sharded prediction."""
        return self.attrs.get("shards")

    @property
    def provenance(self) -> dict[str, Any] | None:
        return self.attrs.get("provenance")

    @property
    def complete(self) -> bool:
        return self.attrs.get("complete", True)

    def writer(self) -> PredictionWriter:
        """Write into this existing store in place (the shards of a sharded prediction)."""
        group = zarr.open_group(str(self.path), mode="r+")
        return PredictionWriter(group, "probabilities" in group)

    def scene(self):
        """The scene store this prediction was made from, unchanged since."""
        from hsicli.store.scene import SceneStore

        if self.scene_path is None:
            raise StoreError(f"{self.path} records no scene store", hint="predict again with `hsi predict`")
        store = SceneStore.open(self.scene_path)
        if store.fingerprint != self.scene_fingerprint:
            raise StoreError(
                f"the scene store {store.path} changed since {self.path.name} was predicted",
                hint="predict again from the checkpoint",
            )
        return store

    def as_input(self) -> dict[str, Any]:
        """How provenance records this prediction as an input: its path and the key it was made
        from (checkpoint content, scene fingerprint, options)."""
        return {"path": str(self.path.absolute()), "fingerprint": self.request_key}

    def _read(self, name: str) -> np.ndarray:
        with reading(self.path, name, PREDICTION_HINT):
            return self._group[name][...]

    def classes(self) -> np.ndarray:
        return check_labels(self._read("classes"), self.n_classes, self.path, "classes", PREDICTION_HINT)

    def entropy(self) -> np.ndarray:
        return self._read("entropy")

    def probabilities(self) -> np.ndarray | None:
        return self._read("probabilities") if "probabilities" in self._group else None

    def embeddings(self) -> tuple[np.ndarray, np.ndarray] | None:
        if "embeddings" not in self._group:
            return None
        return self._read("embedding_index"), self._read("embeddings")

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "prediction",
            "path": str(self.path.absolute()),
            "shape": list(self.shape),
            "model": self.model,
            "checkpoint": (self.checkpoint or {}).get("path"),
            "scene_store": (self.scene_store or {}).get("path"),
            "split": self.split,
            "classes": self.class_names,
            "probabilities": "probabilities" in self._group,
            "embeddings": "embeddings" in self._group,
            "inference_seconds": self.inference_seconds,
            "complete": self.complete,
            "provenance": self.provenance,
        }


def _recorded_path(described: dict[str, Any] | None) -> Path | None:
    """The path in a file's or store's recorded description (provenance's form), if it has one."""
    path = (described or {}).get("path")
    return Path(path) if isinstance(path, str) and path else None
