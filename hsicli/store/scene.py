"""Scene stores (`NAME.zarr`, Zarr v3): the cube, labels, preview, auxiliary rasters and layers.

Layout (DESIGN.md §3)::

    NAME.zarr/
      zarr.json            root attributes: schema, classes, source, preprocessing, provenance
      cube                 (H, W, T) float32, chunked in spatial tiles with all bands
      gt                   (H, W) uint16, classes 1..C, 0 = unlabelled
      rgb                  (H, W, 3) uint8 preview made from the raw bands
      aux                  (H, W, K) float32, optional (LiDAR, SAR, MSI)
      transform/           the fitted preprocessing as arrays (+ settings in its attributes)
      splits/NAME          (H, W) uint8: 0 unused, 1 train, 2 validation, 3 test
      labels/NAME          (H, W) uint16: pseudo-label layers, classes 1..C, 0 = none

The root and its arrays are written once, atomically, by `create`; afterwards only layers are
added, each written once under its own name and fingerprinted on its own, so adding a layer
never invalidates anything. This module and `hsicli.store.prediction` are the only zarr users.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from hsicli.errors import OutputExistsError, StoreError
from hsicli.store.atomic import atomic_path, write_lock
from hsicli.store.layout import (LAYER_HINT, SCENE_HINT, ClassTable, check_labels, check_layer, check_scene,
                                 node_attributes, open_array, open_group, reading)
from hsicli.store.names import LAYER_KINDS, RULE, layer_entries, name_problem, split_layer_path  # noqa: F401
from hsicli.store.provenance import arrays_fingerprint, check_schema, now

SCHEMA = 1
TILE = 64


def _create_array(group_or_path, name: str | None, data: np.ndarray, chunks, attributes=None):
    kwargs = dict(shape=data.shape, dtype=data.dtype, chunks=chunks, attributes=attributes or {})
    if name is None:
        array = zarr.create_array(store=str(group_or_path), **kwargs)
    else:
        array = group_or_path.create_array(name, **kwargs)
    array[...] = data
    return array


def _spatial_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (min(TILE, shape[0]), min(TILE, shape[1]), *shape[2:])


def _open_group(path: Path, expected_kind: str):
    """Open a store's root group, checking it is an hsi store of this schema and kind."""
    if not path.exists():
        raise StoreError(f"{path} does not exist", hint="check the path, or create it with `hsi prep`")
    if not (path / "zarr.json").is_file():
        raise StoreError(
            f"{path} is not an hsi store: no zarr.json found",
            hint="scene stores are made by `hsi prep`, prediction stores by `hsi predict`",
        )
    try:
        group = open_group(path)
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises many types for corrupt metadata
        raise StoreError(f"{path} is not a readable Zarr v3 store: {exc}", hint="recreate it") from None
    schema = attrs.get("hsi_schema")
    if schema is None:
        raise StoreError(
            f"{path} is a Zarr store but not an hsi store (no hsi_schema attribute)",
            hint="scene stores are made by `hsi prep`",
        )
    check_schema(path, "store", schema, SCHEMA)
    kind = attrs.get("kind")
    if kind != expected_kind:
        raise StoreError(
            f"{path} is a {kind} store, expected a {expected_kind} store",
            hint="check the order of the commands in the pipe",
        )
    return group, attrs


@dataclass
class Layer:
    kind: str
    name: str
    data: np.ndarray
    attrs: dict[str, Any]


class SceneStore(ClassTable):
    """A scene store opened for reading; layers can be added (each written once)."""

    def __init__(self, path: Path, group, attrs: dict[str, Any]):
        self.path = Path(path)
        self._group = group
        self.attrs = attrs

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        cube: np.ndarray,
        gt: np.ndarray,
        rgb: np.ndarray,
        attrs: dict[str, Any],
        transform: dict[str, np.ndarray],
        transform_attrs: dict[str, Any],
        aux: np.ndarray | None = None,
        overwrite: bool = False,
    ) -> SceneStore:
        """Write a complete store atomically (temporary directory, then rename)."""
        path = Path(path)
        if cube.ndim != 3 or gt.shape != cube.shape[:2] or rgb.shape != (*cube.shape[:2], 3):
            raise ValueError("cube, gt and rgb shapes disagree")
        cube = np.ascontiguousarray(cube, dtype=np.float32)
        gt = np.ascontiguousarray(gt, dtype=np.uint16)
        transform_fingerprint = arrays_fingerprint([transform[k] for k in sorted(transform)])
        fingerprint = arrays_fingerprint([cube, gt, *(transform[k] for k in sorted(transform))])
        with atomic_path(path, overwrite) as tmp:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            _create_array(root, "cube", cube, _spatial_chunks(cube.shape))
            _create_array(root, "gt", gt, _spatial_chunks(gt.shape))
            _create_array(root, "rgb", np.ascontiguousarray(rgb, dtype=np.uint8), _spatial_chunks(rgb.shape))
            if aux is not None:
                aux = np.ascontiguousarray(aux, dtype=np.float32)
                _create_array(root, "aux", aux, _spatial_chunks(aux.shape))
            tgroup = root.create_group("transform", attributes=transform_attrs)
            for key, value in transform.items():
                _create_array(tgroup, key, np.ascontiguousarray(value), value.shape or None)
            for kind in LAYER_KINDS:
                root.create_group(kind)
            root.attrs.update(
                {
                    **attrs,
                    "hsi_schema": SCHEMA,
                    "kind": "scene",
                    "shape": list(cube.shape),
                    "fingerprint": fingerprint,
                    "transform_fingerprint": transform_fingerprint,
                    "part_fingerprints": {"cube": arrays_fingerprint([cube]), "gt": arrays_fingerprint([gt]),
                                          "transform": transform_fingerprint},
                    "has_aux": aux is not None,
                }
            )
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> SceneStore:
        store_path, _, _ = split_layer_path(Path(path))
        group, attrs = _open_group(store_path, "scene")
        check_scene(group, attrs, store_path)  # metadata only: a store that lies is refused before any read
        return cls(store_path, group, attrs)

    # -- reading --------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self.attrs["fingerprint"]

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".zarr")

    def _read(self, name: str, selection=...) -> np.ndarray:
        with reading(self.path, name, SCENE_HINT):
            return self._group[name][selection]

    def cube(self, rows: slice = slice(None)) -> np.ndarray:
        """The reduced cube (H, W, T) float32, or a block of rows of it."""
        return self._read("cube", rows)

    def cube_array(self):
        """The lazy zarr array, for tiled reads without loading the scene."""
        return self._group["cube"]

    def gt(self) -> np.ndarray:
        return check_labels(self._read("gt"), self.n_classes, self.path, "gt", SCENE_HINT)

    def rgb(self) -> np.ndarray:
        return self._read("rgb")

    def aux(self) -> np.ndarray | None:
        return self._read("aux") if self.attrs.get("has_aux") else None

    def transform(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        with reading(self.path, "transform", SCENE_HINT):
            group = self._group["transform"]
            arrays = {name: array[...] for name, array in group.arrays()}
            return arrays, dict(group.attrs)

    def verify(self, cube: np.ndarray | None = None) -> None:
        """Recompute the fingerprint of the immutable parts (cube, ground truth, fitted transform)
        and compare it with the one recorded when the store was written; a StoreError names the
        part that differs. `cube`: the cube if the caller has read it already; otherwise it is
        hashed block by block from the store."""
        arrays, _ = self.transform()
        transform = [arrays[k] for k in sorted(arrays)]
        parts = {"cube": self.cube_array() if cube is None else cube, "gt": self._read("gt")}
        with reading(self.path, "cube", SCENE_HINT):  # the only part still streamed from the store
            if arrays_fingerprint([parts["cube"], parts["gt"], *transform]) == self.fingerprint:
                return
            recorded = self.attrs.get("part_fingerprints") or {}
            current = {"cube": arrays_fingerprint([parts["cube"]]), "gt": arrays_fingerprint([parts["gt"]]),
                       "transform": arrays_fingerprint(transform)}
        changed = [name for name in current if recorded.get(name) != current[name]] if recorded else []
        raise StoreError(
            f"{self.path}: {', '.join(changed) or 'cube, gt or transform'} changed since the store was written "
            "(its content no longer matches the recorded fingerprint)",
            hint="the store was modified or damaged; prep the scene again",
        )

    def describe(self) -> dict[str, str]:
        """How provenance records this store as an input."""
        return {"path": str(self.path.absolute()), "fingerprint": self.fingerprint}

    # -- layers ---------------------------------------------------------------------------

    def layer_names(self, kind: str) -> list[str]:
        folder = self.path / kind
        names = layer_entries(self.path, kind)
        for name in names:  # written by something else than hsi: never printed or used as it is
            problem = name_problem(name)
            if problem:
                raise StoreError(f"{folder} holds a layer named {ascii(name)}, which hsi does not accept: {problem}",
                                 hint=f"rename or remove that directory; layer names use {RULE}")
        return sorted(names, key=lambda n: (self.layer_attrs(kind, n).get("created", ""), n))

    def layer_attrs(self, kind: str, name: str) -> dict[str, Any]:
        return node_attributes(self.path / kind / name)

    def read_layer(self, kind: str, name: str) -> Layer:
        if name not in self.layer_names(kind):
            known = ", ".join(self.layer_names(kind)) or "none"
            what = "split" if kind == "splits" else "label layer"
            raise StoreError(
                f"{self.path} has no {what} named {name!r} (it has: {known})",
                hint="run `hsi split` first" if kind == "splits" else "run `hsi pseudolabel` first",
            )
        what = f"{kind} layer {name!r}"
        with reading(self.path, what, LAYER_HINT):
            array = check_layer(open_array(self.path / kind / name), self.path, kind, name, self.shape)
            data = check_labels(array[...], None if kind == "splits" else self.n_classes, self.path, what, LAYER_HINT)
            attrs = dict(array.attrs)
        if attrs.get("fingerprint") and arrays_fingerprint([data]) != attrs["fingerprint"]:
            raise StoreError(
                f"{kind} layer {name!r} of {self.path} does not match its recorded fingerprint",
                hint="the layer was modified or damaged; write a new layer under another name",
            )
        return Layer(kind, name, data, attrs)

    def add_layer(self, kind: str, name: str, data: np.ndarray, attrs: dict[str, Any]) -> Path:
        """Write a layer once under a lock: a new name, or exactly the same content (a no-op)."""
        if kind not in LAYER_KINDS:
            raise ValueError(kind)
        problem = name_problem(name)
        if problem:
            raise StoreError(f"invalid layer name {ascii(name)}: {problem}", hint=f"use {RULE}")
        if data.shape != self.shape[:2]:
            raise ValueError("layer shape differs from the scene")
        fingerprint = arrays_fingerprint([data])
        final = self.path / kind / name
        with write_lock(self.path):
            if final.exists():
                existing = self.layer_attrs(kind, name)
                if existing.get("fingerprint") == fingerprint:
                    return final  # same content: re-running is a no-op
                raise OutputExistsError(
                    f"{kind} layer {name!r} already exists in {self.path} with different content",
                    hint="layers are written once; choose another --name",
                )
            layer_attrs = {**attrs, "created": now(), "fingerprint": fingerprint}
            with atomic_path(final) as tmp:  # cleans up and names the layer if the write fails
                _create_array(tmp, None, data, _spatial_chunks(data.shape), layer_attrs)
        return final
