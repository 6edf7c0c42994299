"""What a store's arrays must look like, checked from their metadata alone (issue 17).

A store is a folder anyone can edit, so each `zarr.json` may lie. Opening a scene or prediction
store checks every array against the others and against the store's own attributes (shape, band
and class counts, data type, chunk shape, fill value, codecs, missing and extra arrays) before a
single chunk is read, so a store that claims a 10^12-pixel cube or 1 × 1 × 1 chunks is one clear
error at once rather than minutes of reading. What only the data can tell (a truncated chunk, a
codec that does not match the bytes, labels beyond the class names) is checked where it is read
(`reading`, `check_labels`). Chunks and metadata are read only from regular files inside the
store (`StoreFiles`): a symbolic link or a device where a chunk should be is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from hsicli.errors import HsiError, StoreError
from hsicli.store.names import split_layer_path

MIN_TILE = 16  # the smallest spatial chunk side read (hsicli writes 64): fewer, larger reads
TILE_LIMIT = 64  # a spatial chunk side may exceed a small extent up to one full tile
CODECS = frozenset({"bytes", "zstd", "gzip", "blosc", "crc32c", "transpose"})  # decoded without surprises
MAX_METADATA_BYTES = 16 * 2**20  # hsicli's largest zarr.json (a root with its provenance) is a few kB
COLOR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")  # as matplotlib reads them

SCENE_HINT = "the store is damaged or was edited; prep the scene again"
PREDICTION_HINT = "the prediction store is damaged or was edited; predict again"
LAYER_HINT = "the layer is damaged; write a new layer under another name"


class StoreFiles(LocalStore):
    """A read-only local store that reads only regular files: a chunk or `zarr.json` that is a
    symbolic link, a FIFO or a device (which could never end, or point outside the store) is an
    error instead of being followed."""

    def __init__(self, root: Path | str, *, read_only: bool = True) -> None:
        super().__init__(root, read_only=True)  # whatever zarr asks for (`with_read_only`)

    async def get(self, key, prototype=None, byte_range=None):
        path = self.root / key
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(info.st_mode):
            return None
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise OSError(f"{key} is {kind}; hsicli writes every chunk as a regular file")
        return await super().get(key, prototype, byte_range)


def node_attributes(folder: Path) -> dict:
    """The attributes recorded in `folder`/zarr.json, read without zarr (to tell a store's kind, or
    list layers); {} when it is missing, not a regular file, oversized or not a JSON object."""
    try:
        handle = os.open(Path(folder) / "zarr.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    with os.fdopen(handle, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_METADATA_BYTES:
            return {}
        try:
            document = json.loads(stream.read())
        except (OSError, ValueError, RecursionError):
            return {}
    attributes = document.get("attributes") if isinstance(document, dict) else None
    return attributes if isinstance(attributes, dict) else {}


class ClassTable:
    """The extent and classes every store records (checked against its arrays when it is opened),
    read from its attributes `attrs`."""

    attrs: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.attrs["shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    @property
    def class_colors(self) -> list[str]:
        return list(self.attrs["class_colors"])

    @property
    def n_classes(self) -> int:
        return len(self.attrs["class_names"])


def what_is(path: Path) -> str:
    """What the existing path is, in words, for errors that found the wrong kind of artifact:
    "a scene store", "split NAME of scene store X.zarr", "a prediction store", "a directory", "a file"."""
    path = Path(path)
    store_path, layer_kind, layer_name = split_layer_path(path)
    kind = node_attributes(store_path).get("kind")
    if kind is None:
        return "a directory" if path.is_dir() else "a file"
    store = f"{kind} store" if kind in ("scene", "prediction") else "store"
    if layer_kind:
        layer = {"splits": "split", "labels": "label layer"}[layer_kind]
        return f"{layer} {layer_name} of {store} {store_path.name}"
    return f"a {store}"


def open_group(path: Path):
    """The root group of the store at `path`, read through `StoreFiles`."""
    return zarr.open_group(store=StoreFiles(path), mode="r")


def open_array(path: Path):
    """A single array (a layer) at `path`, read through `StoreFiles`."""
    return zarr.open_array(store=StoreFiles(path), mode="r")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def reading(path: Path, what: str, hint: str) -> Iterator[None]:
    """Turn any failure to read or decode `what` of the store at `path` into one StoreError (zarr
    and its codecs raise many types for damaged chunks)."""
    try:
        yield
    except HsiError:
        raise
    except Exception as exc:
        raise StoreError(f"{what} of {path} cannot be read: {_one_line(exc)}", hint=hint) from None


def check_labels(values: np.ndarray, n_classes: int | None, path: Path, what: str, hint: str) -> np.ndarray:
    """Class ids must lie in 0..n_classes (0 = none): a label beyond the class names would index
    past every per-class table (names, colours, metrics). `n_classes` None: split codes 0..3."""
    top = int(values.max(initial=0))
    if n_classes is None and top > 3:
        raise StoreError(f"{path}: {what} holds the code {top}; a split marks pixels 0 to 3", hint=hint)
    if n_classes is not None and top > n_classes:
        raise StoreError(
            f"{path}: {what} holds class {top}, but the store names {n_classes} "
            f"class{'es' if n_classes != 1 else ''} (attribute class_names)",
            hint=hint,
        )
    return values


# -- arrays -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """An array as hsicli writes it: `shape`, `dtype`, the first `spatial` axes chunked in tiles
    and every other axis whole (all bands, all classes)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    spatial: int = 0


def _dims(shape) -> str:
    return " × ".join(str(n) for n in shape)


def _chunk_problem(shape: tuple[int, ...], chunks: tuple[int, ...], spatial: int) -> str | None:
    if len(chunks) != len(shape):
        return "a chunk rank that is not the array's"
    for axis, (extent, chunk) in enumerate(zip(shape, chunks)):
        if axis < spatial:
            if not min(MIN_TILE, max(extent, 1)) <= chunk <= max(extent, TILE_LIMIT):
                return (f"spatial chunk sides of {MIN_TILE} to {TILE_LIMIT} pixels "
                        f"(or the whole side when it is smaller)")
        elif not extent <= chunk <= max(extent, 1):
            return "every band or class in each chunk" if spatial else "one chunk for the whole array"
    return None


def check_array(node, path: Path, expected: Expected, hint: str):
    """`node` (opened from metadata only) is the array `expected` describes; else a StoreError
    naming the array and the disagreement. Returns the array."""
    name = expected.name
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{path}: {name} is a group, expected an array", hint=hint)
    metadata = node.metadata
    if metadata.zarr_format != 3:
        raise StoreError(f"{path}: {name} is a Zarr v{metadata.zarr_format} array, expected Zarr v3", hint=hint)
    shape = tuple(node.shape)
    if shape != expected.shape:
        raise StoreError(
            f"{path}: {name} has shape {_dims(shape)}, but the store records {_dims(expected.shape)}", hint=hint)
    dtype = np.dtype(node.dtype)
    if dtype != np.dtype(expected.dtype):
        raise StoreError(f"{path}: {name} is {dtype}, expected {np.dtype(expected.dtype)}", hint=hint)
    codecs = [codec.to_dict()["name"] for codec in metadata.codecs]
    unknown = [codec for codec in codecs if codec not in CODECS]
    if unknown:
        raise StoreError(f"{path}: {name} is encoded with {unknown[0]!r}, which hsicli does not read "
                         f"(it reads {', '.join(sorted(CODECS))})", hint=hint)
    chunks = tuple(node.chunks)
    problem = _chunk_problem(shape, chunks, expected.spatial)
    if problem:
        raise StoreError(f"{path}: {name} has chunks of {_dims(chunks)}; hsicli reads {problem}", hint=hint)
    fill = np.asarray(node.fill_value)
    if fill.shape != () or not fill == 0:
        raise StoreError(f"{path}: {name} has fill value {node.fill_value}, expected 0", hint=hint)
    return node


def _child(group, path: Path, name: str, hint: str):
    """The node `name` of `group` (metadata only), or None when the store has none."""
    if name not in _entries(path):
        return None
    if (path / name).is_symlink():
        raise StoreError(f"{path}: {name} is a symbolic link; hsicli writes every array inside its store",
                         hint=hint)
    with reading(path, name, hint):
        return group[name]


def _entries(path: Path) -> set[str]:
    """Names of the Zarr nodes directly in the folder `path` (hidden temporaries left out)."""
    try:
        with os.scandir(path) as found:
            return {entry.name for entry in found if not entry.name.startswith(".")
                    and os.path.lexists(os.path.join(entry.path, "zarr.json"))}
    except OSError:
        return set()


def _check_members(group, path: Path, expected: list[Expected], optional: set[str], hint: str) -> None:
    """Each expected array present and as described, no Zarr node beside them and `optional`."""
    present = _entries(path)
    extra = sorted(present - {e.name for e in expected} - optional)
    if extra:
        raise StoreError(f"{path} holds {extra[0]!r}, which is no part of this kind of store", hint=hint)
    for wanted in expected:
        node = _child(group, path, wanted.name, hint)
        if node is None:
            raise StoreError(f"{path} has no {wanted.name} array", hint=hint)
        with reading(path, wanted.name, hint):
            check_array(node, path, wanted, hint)


# -- attributes ------------------------------------------------------------------------------------


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_shape_attribute(attrs: dict, path: Path, rank: int, hint: str) -> tuple[int, ...]:
    shape = attrs.get("shape")
    if not (isinstance(shape, list) and len(shape) == rank and all(_count(n) for n in shape)):
        raise StoreError(f"{path}: the attribute shape is {str(shape)[:80]}, expected {rank} positive integers",
                         hint=hint)
    return tuple(shape)


def _check_class_table(attrs: dict, path: Path, hint: str, keys: tuple[str, ...]) -> int:
    """class_names (strings) and the per-class lists in `keys` have one entry per class."""
    names = attrs.get("class_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise StoreError(f"{path}: the attribute class_names is not a list of names", hint=hint)
    checks = {"class_colors": lambda c: isinstance(c, str) and COLOR.fullmatch(c),
              "class_ids": _count}
    for key in keys:
        values = attrs.get(key)
        if not (isinstance(values, list) and all(checks[key](v) for v in values)):
            raise StoreError(f"{path}: the attribute {key} is not a list of "
                             f"{'#rrggbb colours' if key == 'class_colors' else 'positive class ids'}", hint=hint)
        if len(values) != len(names):
            raise StoreError(f"{path}: class_names lists {len(names)} class{'es' if len(names) != 1 else ''} but {key} "
                             f"{len(values)}", hint=hint)
    return len(names)


# -- scene stores ------------------------------------------------------------------------------------

SCENE_GROUPS = ("transform", "splits", "labels")


def check_scene(group, attrs: dict, path: Path) -> None:
    """Every array of a scene store against the store's attributes and each other."""
    hint = SCENE_HINT
    height, width, bands = _check_shape_attribute(attrs, path, 3, hint)
    _check_class_table(attrs, path, hint, ("class_colors", "class_ids") if "class_ids" in attrs else ("class_colors",))
    if not isinstance(attrs.get("fingerprint"), str):
        raise StoreError(f"{path} records no content fingerprint", hint=hint)
    has_aux = attrs.get("has_aux", False)
    if not isinstance(has_aux, bool):
        raise StoreError(f"{path}: the attribute has_aux is {has_aux!r}, expected true or false", hint=hint)
    expected = [Expected("cube", (height, width, bands), "float32", 2),
                Expected("gt", (height, width), "uint16", 2),
                Expected("rgb", (height, width, 3), "uint8", 2)]
    aux = _child(group, path, "aux", hint)
    if (aux is not None) != has_aux:
        raise StoreError(f"{path} {'has no' if has_aux else 'holds an'} aux array, but its attribute has_aux is "
                         f"{'true' if has_aux else 'false'}", hint=hint)
    aux_bands = aux.shape[2] if isinstance(aux, zarr.Array) and len(aux.shape) == 3 else 1
    if has_aux:
        expected.append(Expected("aux", (height, width, aux_bands), "float32", 2))
    _check_members(group, path, expected, set(SCENE_GROUPS), hint)
    for name in SCENE_GROUPS:
        node = _child(group, path, name, hint)
        if name == "transform" and node is None:
            raise StoreError(f"{path} has no transform group (the fitted preprocessing)", hint=hint)
        if node is not None and not isinstance(node, zarr.Group):
            raise StoreError(f"{path}: {name} is an array, expected a group", hint=hint)
    _check_transform(group["transform"], path, max(bands, aux_bands), hint)


def _check_transform(group, path: Path, bands: int, hint: str) -> None:
    """The fitted preprocessing: small numeric arrays, none longer than the largest band count
    (raw, kept or auxiliary), each one chunk."""
    raw = group.attrs.get("n_raw_bands")
    bands = max(bands, raw if _count(raw) else 0)
    folder = path / "transform"
    for name in sorted(_entries(folder)):
        what = f"transform/{name}"
        with reading(path, what, hint):  # (zarr's own metadata errors; ours pass through)
            node = group[name]
            if not isinstance(node, zarr.Array) or np.dtype(node.dtype).kind not in "biuf":
                raise StoreError(f"{path}: {what} is not a numeric array", hint=hint)
            shape = tuple(node.shape)
            if len(shape) > 2 or any(n > bands for n in shape):
                raise StoreError(f"{path}: {what} has shape {_dims(shape) or 'scalar'}; the fitted preprocessing "
                                 f"holds vectors and matrices of at most the {bands} bands of the scene", hint=hint)
            check_array(node, path, Expected(what, shape, np.dtype(node.dtype).str), hint)


def check_layer(node, path: Path, kind: str, name: str, scene_shape: tuple[int, ...]):
    """A split (uint8) or pseudo-label (uint16) layer covering the scene in spatial tiles."""
    dtype = "uint8" if kind == "splits" else "uint16"
    return check_array(node, path, Expected(f"{kind} layer {name!r}", tuple(scene_shape[:2]), dtype, 2), LAYER_HINT)


# -- prediction stores -------------------------------------------------------------------------------

def check_prediction(group, attrs: dict, path: Path) -> None:
    """Class map, entropy, probabilities and embeddings against the recorded shape and classes."""
    hint = PREDICTION_HINT
    height, width = _check_shape_attribute(attrs, path, 2, hint)
    n_classes = _check_class_table(attrs, path, hint, ("class_colors",) if "class_colors" in attrs else ())
    present = _entries(path)
    expected = [Expected("classes", (height, width), "uint16", 2),
                Expected("entropy", (height, width), "float32", 2)]
    if "probabilities" in present:
        expected.append(Expected("probabilities", (height, width, n_classes), "float32", 2))
    if {"embeddings", "embedding_index"} & present:
        index, embeddings = (_child(group, path, name, hint) for name in ("embedding_index", "embeddings"))
        count = index.shape[0] if isinstance(index, zarr.Array) and len(index.shape) == 1 else 0
        if count > height * width:
            raise StoreError(f"{path}: embedding_index lists {count} pixels, more than the {height * width} "
                             "of the map", hint=hint)
        dims = embeddings.shape[1] if isinstance(embeddings, zarr.Array) and len(embeddings.shape) == 2 else 1
        expected += [Expected("embedding_index", (count,), "int64"),
                     Expected("embeddings", (count, dims), "float32")]
    _check_members(group, path, expected, set(), hint)
