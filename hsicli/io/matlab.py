"""MATLAB MAT-files: v5/v7 through scipy, v7.3 (HDF5) through h5py.

Layouts from MathWorks' "MAT-File Format" and "MAT-File Version 7.3" notes: a v5 file opens
with a 128-byte header whose last two bytes are the endian indicator 'IM'/'MI'; a v7.3 file
is HDF5 behind a 512-byte user block carrying the same text header. MATLAB stores arrays
column-major, so HDF5 (row-major) sees every v7.3 array with its axes reversed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hsicli.io.container import ArrayInfo, Container, is_numeric, native, reading

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NUMERIC_CLASSES = frozenset(
    {"double", "single", "logical", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
)


def mat_version(head: bytes, suffix: str) -> str | None:
    """'v5' (also v4-free v6/v7), 'v7.3', or None for a file that is no MAT-file."""
    if head.startswith(b"MATLAB 7.3") or head[512:520] == _HDF5_SIGNATURE:
        return "v7.3"
    if head.startswith(_HDF5_SIGNATURE) and suffix == ".mat":
        return "v7.3"  # HDF5 written without MATLAB's user block (h5py, hdf5storage)
    if head.startswith(b"MATLAB") or head[126:128] in (b"IM", b"MI"):
        return "v5"
    return None


@contextmanager
def open_v5(path: Path) -> Iterator[Container]:
    import scipy.io
    import scipy.sparse

    with reading(path, "MATLAB file"):
        # squeeze_me=False keeps MATLAB's dimensions; mat_dtype=False keeps int16 as int16.
        content = scipy.io.loadmat(path, squeeze_me=False, mat_dtype=False)
    arrays = {name: value for name, value in content.items() if not name.startswith("__")}
    infos = [_describe_v5(name, value, scipy.sparse.issparse(value)) for name, value in arrays.items()]
    yield Container(path, infos, lambda name: native(arrays[name]))


def _describe_v5(name: str, value: object, sparse: bool) -> ArrayInfo:
    if sparse or not isinstance(value, np.ndarray):
        return ArrayInfo(name, tuple(getattr(value, "shape", ())), "sparse" if sparse else type(value).__name__, False)
    if is_numeric(value.dtype):
        return ArrayInfo(name, value.shape, value.dtype.name, True)
    label = {"V": "struct", "O": "cell", "U": "char", "S": "char"}.get(value.dtype.kind, value.dtype.name)
    return ArrayInfo(name, value.shape, label, False)


@contextmanager
def open_v73(path: Path) -> Iterator[Container]:
    import h5py

    with reading(path, "MATLAB v7.3 (HDF5) file"):
        handle = h5py.File(path, "r")
    try:
        with reading(path, "MATLAB v7.3 (HDF5) file"):
            # '#refs#' and '#subsystem#' hold the contents of cells and objects, not variables.
            infos = [_describe_h5(name, handle[name]) for name in handle if not name.startswith("#")]

        def load(name: str) -> np.ndarray:
            with reading(path, f"array {name!r} of MATLAB v7.3 file"):
                return native(np.transpose(handle[name][()]))  # undo the reversed axes

        yield Container(path, infos, load)
    finally:
        handle.close()


def _describe_h5(name: str, node: object) -> ArrayInfo:
    import h5py

    matlab_class = node.attrs.get("MATLAB_class", b"")
    matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
    if not isinstance(node, h5py.Dataset):
        return ArrayInfo(name, (), matlab_class or "group", False)  # struct, sparse, object
    shape = tuple(reversed(node.shape))
    if node.attrs.get("MATLAB_empty", 0):
        return ArrayInfo(name, (0,), f"empty {matlab_class}".strip(), False)
    # A missing MATLAB_class means a plain HDF5 dataset; char is stored as uint16, cell as references.
    numeric = is_numeric(node.dtype) and (matlab_class in _NUMERIC_CLASSES or not matlab_class)
    return ArrayInfo(name, shape, node.dtype.name if numeric else (matlab_class or node.dtype.name), numeric)
