"""Reading scenes and rasters from MATLAB, ENVI, NumPy and GeoTIFF files (see `readers`)."""

from __future__ import annotations

from hsicli.io.readers import LAYOUTS, SUPPORTED, RawScene, read_raster, read_scene

__all__ = ["LAYOUTS", "SUPPORTED", "RawScene", "read_raster", "read_scene"]
