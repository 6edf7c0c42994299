"""Provenance records and content fingerprints shared by every artifact (DESIGN.md §1)."""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hsicli import __version__


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def arrays_fingerprint(arrays: Iterable[np.ndarray]) -> str:
    """sha256 over dtype, shape and bytes of each array, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


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
