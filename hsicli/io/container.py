"""What every format reader opens a file into: a `Container` of `ArrayInfo` descriptions and a
loader, plus the helpers the format modules share (error wrapping, native-order copies).

Its own module, below `readers` (which chooses the format) and the format modules (`matlab`,
`envi`, `geotiff`), so that they all import it and nothing imports back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsicli.errors import HsiError, InputError


@dataclass(frozen=True)
class ArrayInfo:
    """One array a file holds, described without reading its data."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, or the MATLAB class of a non-numeric array (struct, cell, char)
    numeric: bool  # real-valued numbers (bool, integer, float) that can be a raster

    def describe(self) -> str:
        # Names come from the file: a damaged one may hold newlines or NULs, which would split the
        # one-line error that lists them.
        name = self.name if self.name.isprintable() else ascii(self.name)
        return f"{name} {self.shape} {self.dtype}"


@dataclass
class Container:
    """The arrays of one opened file and a loader for the one chosen."""

    path: Path  # the file to name in messages and provenance (for ENVI: the .hdr)
    arrays: list[ArrayInfo]
    load: Callable[[str], np.ndarray]
    single: bool = False  # one unnamed raster (ENVI, GeoTIFF, .npy): names and --var do not apply
    geo: dict | None = None
    wavelengths: list[float] | None = None

    def listing(self) -> str:
        return "; ".join(a.describe() for a in self.arrays) or "none"

    def named(self, name: str, option: str) -> ArrayInfo:
        for info in self.arrays:
            if info.name == name:
                return info
        raise InputError(
            f"{self.path} holds no array named {name!r}; arrays found: {self.listing()}",
            hint=f"pass one of the names above to {option}",
        )


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn whatever a library raises on a bad file into one InputError naming the file.

    Readers (scipy, h5py, numpy, zipfile, rasterio) report corrupt or truncated input with a
    zoo of exception types (MatReadError derives from Exception only), so anything but our own
    errors is caught here. Wrap library calls only, never our own logic.
    """
    try:
        yield
    except HsiError:
        raise
    except MemoryError:
        raise InputError(
            f"not enough memory to read {what} {path}",
            hint="free memory or use a machine with more; the file may also declare a wrong size",
        ) from None
    except Exception as exc:
        raise InputError(
            f"cannot read {what} {path}: {type(exc).__name__}: {exc}",
            hint="the file may be truncated or corrupt; compare its size or checksum with the original",
        ) from exc


def native(array: np.ndarray) -> np.ndarray:
    """An in-memory, C-contiguous, native-byte-order copy with the same dtype.

    One copy detaches the data from memory maps and open files, converts MATLAB's
    column-major order to C order (spectra contiguous per pixel) and swaps bytes if needed.
    """
    out = np.empty(array.shape, dtype=array.dtype.newbyteorder("="))
    np.copyto(out, array)
    return out


def is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf"
