"""GeoTIFF rasters through rasterio, an optional dependency (`pip install hsicli[geotiff]`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hsicli.errors import InputError
from hsicli.io.container import ArrayInfo, Container, is_numeric, native, reading


@contextmanager
def open_geotiff(path: Path) -> Iterator[Container]:
    try:
        import rasterio
        import rasterio.errors
    except ImportError:
        raise InputError(
            f"{path} is a (Geo)TIFF; reading it needs rasterio, which is not installed",
            hint="pip install hsicli[geotiff]",
        ) from None
    with reading(path, "GeoTIFF"), warnings.catch_warnings():
        # Plain TIFFs carry no georeferencing; that is expected here, not worth a warning.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        dataset = rasterio.open(path)
    try:
        dtype = np.dtype(dataset.dtypes[0])  # a TIFF has one sample format for all bands
        info = ArrayInfo(path.name, (dataset.height, dataset.width, dataset.count), dtype.name, is_numeric(dtype))
        georeferenced = dataset.crs is not None or not dataset.transform.is_identity
        geo = (
            {
                "transform": [float(v) for v in tuple(dataset.transform)[:6]],
                "crs": dataset.crs.to_wkt() if dataset.crs is not None else None,
            }
            if georeferenced
            else None
        )

        def load(_name: str) -> np.ndarray:
            with reading(path, "GeoTIFF"):
                return native(np.moveaxis(dataset.read(), 0, -1))  # (bands, H, W) -> (H, W, bands)

        yield Container(path, [info], load, single=True, geo=geo)
    finally:
        dataset.close()
