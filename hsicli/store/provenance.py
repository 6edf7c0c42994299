"""Provenance records and content fingerprints shared by every artifact (DESIGN.md §1)."""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hsicli.about import API_COMMAND, __version__  # noqa: F401  (API_COMMAND: for the engine)
from hsicli.errors import StoreError


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def arrays_fingerprint(arrays: Iterable[Any]) -> str:
    """sha256 over dtype, shape and bytes of each array, in order. A zarr array is read in blocks
    of its row chunks (the same bytes, in the same order), so a large cube is hashed without
    holding it in memory at once."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{np.dtype(array.dtype).str}{tuple(array.shape)}".encode())
        for block in _row_blocks(array):
            digest.update(memoryview(np.ascontiguousarray(block)).cast("B"))
    return digest.hexdigest()


def _row_blocks(array: Any) -> Iterator[np.ndarray]:
    if isinstance(array, np.ndarray) or array.ndim == 0:
        yield np.asarray(array[...])
        return
    step = max(1, array.chunks[0])
    for start in range(0, array.shape[0], step):
        yield array[start : start + step]


def now() -> str:
    # Microseconds, so layers written within one second still sort by creation.
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def describe_file(path: Path) -> dict:
    """An input file as provenance records it: absolute path and content hash."""
    return {"path": str(Path(path).absolute()), "sha256": file_sha256(Path(path))}


def record(command: str, inputs: dict[str, dict] | None = None, **extra) -> dict:
    """The provenance block every artifact carries: command line, version, inputs, time.

    `inputs` maps a role ("scene", "gt", "store", ...) to a description with a path and a
    content fingerprint (`describe_file`, or a store's own `describe()`).
    """
    return {
        "command": command,
        "hsicli_version": __version__,
        "time": now(),
        "inputs": {role: entry for role, entry in (inputs or {}).items() if entry},
        **extra,
    }


def check_schema(path: Path, what: str, schema: Any, supported: int) -> None:
    """An artifact's `hsi_schema` is a whole number this hsicli understands; anything else
    (`"1"`, `1.5`, `true`) is damage, not a newer version."""
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise StoreError(f"{path} has an invalid {what} schema {schema!r} (expected a whole number)",
                         hint="the file was edited or damaged; write it again with hsi")
    if schema > supported:
        raise StoreError(f"{path} has {what} schema {schema}, newer than this hsicli understands ({supported})",
                         hint="upgrade hsicli")
