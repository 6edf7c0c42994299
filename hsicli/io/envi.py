"""ENVI rasters: a plain-text `.hdr` header next to a headerless binary data file.

Follows the ENVI Header Format reference (L3Harris): `key = value` lines, `{...}` values that
may span lines, `interleave` bsq / bil / bip, `byte order` 0 (little-endian) or 1, `header
offset` bytes before the data, numeric `data type` codes. The data file's size is checked
against the header before anything is mapped or allocated, so a header that declares more
data than the file holds is a clear error, never a huge allocation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsicli.errors import InputError
from hsicli.io.container import ArrayInfo, Container, native, reading

# ENVI data type code -> numpy type (byte order applied separately). Codes 6 and 9 are complex.
DATA_TYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}
# On-disk axis order of each interleave, as the transpose that makes it (lines, samples, bands).
_TO_HWT = {"bsq": (1, 2, 0), "bil": (0, 2, 1), "bip": (0, 1, 2)}
_DATA_SUFFIXES = (".img", ".dat", ".raw", ".bin", ".bsq", ".bil", ".bip")
_MAX_HEADER_BYTES = 16 * 2**20  # headers are text; long wavelength lists stay far below this
_FIELD = re.compile(r"^[ \t]*([^=\r\n{}]+?)[ \t]*=[ \t]*(\{.*?\}|[^\r\n]*)", re.M | re.S)
_NANOMETRES = {"nanometers", "nanometer", "nanometres", "nanometre", "nm", "unknown", ""}
_MICROMETRES = {"micrometers", "micrometer", "micrometres", "micrometre", "microns", "micron", "um", "µm", "μm"}


@dataclass(frozen=True)
class _Layout:
    lines: int
    samples: int
    bands: int
    dtype: np.dtype  # with the file's byte order
    interleave: str
    offset: int

    @property
    def disk_shape(self) -> tuple[int, int, int]:
        return {
            "bsq": (self.bands, self.lines, self.samples),
            "bil": (self.lines, self.bands, self.samples),
            "bip": (self.lines, self.samples, self.bands),
        }[self.interleave]

    @property
    def nbytes(self) -> int:
        return self.offset + self.lines * self.samples * self.bands * self.dtype.itemsize


def is_header(head: bytes) -> bool:
    return head.removeprefix(b"\xef\xbb\xbf").startswith(b"ENVI")


def find_header(data: Path) -> Path | None:
    """The header of a data file: x.img.hdr or x.hdr (either case)."""
    for candidate in (
        data.with_name(data.name + ".hdr"),
        data.with_suffix(".hdr"),
        data.with_name(data.name + ".HDR"),
        data.with_suffix(".HDR"),
    ):
        if candidate != data and candidate.is_file():
            with reading(candidate, "ENVI header"), candidate.open("rb") as stream:
                if is_header(stream.read(8)):
                    return candidate
    return None


def find_data(header: Path) -> Path:
    """The data file of a header: x.img.hdr -> x.img; x.hdr -> x, x.img, x.dat, ..."""
    base = header.with_suffix("")
    suffixes = _DATA_SUFFIXES + tuple(s.upper() for s in _DATA_SUFFIXES)
    candidates = [base] + [base.with_name(base.name + suffix) for suffix in suffixes]
    for candidate in candidates:
        if candidate != header and candidate.is_file():
            return candidate
    raise InputError(
        f"ENVI header {header} has no data file next to it (looked for {base.name} and "
        f"{base.name}{{{','.join(_DATA_SUFFIXES)}}})",
        hint="keep the data file in the header's folder, named like the header without .hdr",
    )


def parse_header(text: str, path: Path) -> dict[str, str]:
    """Header fields, keys lower-cased with single spaces, values as written (braces kept)."""
    if not text.removeprefix("\ufeff").startswith("ENVI"):
        raise InputError(f"{path} is not an ENVI header (it does not start with 'ENVI')", hint="give the .hdr file")
    return {" ".join(key.lower().split()): value.strip() for key, value in _FIELD.findall(text)}


def split_list(value: str) -> list[str]:
    """`{a, b, c}` -> ['a', 'b', 'c']."""
    return [item.strip() for item in value.strip().removeprefix("{").removesuffix("}").split(",") if item.strip()]


@contextmanager
def open_envi(header: Path) -> Iterator[Container]:
    with reading(header, "ENVI header"):
        if header.stat().st_size > _MAX_HEADER_BYTES:
            raise InputError(f"{header} is too large to be an ENVI header", hint="give the .hdr file")
        text = header.read_text(encoding="utf-8", errors="replace")
    fields = parse_header(text, header)
    layout = _layout(fields, header)
    data = find_data(header)
    with reading(data, "ENVI data file"):
        size = data.stat().st_size
    if size != layout.nbytes:
        raise InputError(
            f"{data} holds {size:,} bytes but its header {header.name} declares {layout.nbytes:,} bytes "
            f"({layout.lines} lines × {layout.samples} samples × {layout.bands} bands × "
            f"{layout.dtype.itemsize} bytes + {layout.offset} header offset)",
            hint="the data file is truncated, or the header's dimensions, data type or offset are wrong",
        )
    wavelengths = _wavelengths(fields, layout.bands, header)
    info = ArrayInfo(data.name, (layout.lines, layout.samples, layout.bands), layout.dtype.name, True)

    def load(_name: str) -> np.ndarray:
        with reading(data, "ENVI data file"):
            mapped = np.memmap(data, dtype=layout.dtype, mode="r", offset=layout.offset, shape=layout.disk_shape)
            return native(mapped.transpose(_TO_HWT[layout.interleave]))

    yield Container(header, [info], load, single=True, geo=_geo(fields), wavelengths=wavelengths)


def _layout(fields: dict[str, str], header: Path) -> _Layout:
    samples = _integer(fields, "samples", header)
    lines = _integer(fields, "lines", header)
    bands = _integer(fields, "bands", header)
    if bands < 1:
        raise InputError(f"ENVI header {header} declares {bands} bands; a cube needs at least 1", hint="fix 'bands'")
    if samples < 1 or lines < 1:
        raise InputError(
            f"ENVI header {header} declares an empty image ({lines} lines × {samples} samples)",
            hint="fix 'lines' and 'samples'",
        )
    code = _integer(fields, "data type", header)
    if code not in DATA_TYPES:
        what = "complex data" if code in (6, 9) else "an unknown data type"
        raise InputError(
            f"ENVI header {header}: data type {code} is {what}",
            hint=f"supported data types: {', '.join(map(str, DATA_TYPES))}",
        )
    dtype = np.dtype(DATA_TYPES[code])
    if dtype.itemsize > 1:  # byte order only matters for multi-byte samples
        order = _integer(fields, "byte order", header)
        if order not in (0, 1):
            raise InputError(f"ENVI header {header}: byte order {order}, expected 0 or 1", hint="fix 'byte order'")
        dtype = dtype.newbyteorder("<" if order == 0 else ">")
    interleave = fields.get("interleave", "").lower()
    if interleave not in _TO_HWT:
        raise InputError(
            f"ENVI header {header}: interleave {interleave or '(missing)'!r}, expected bsq, bil or bip",
            hint="fix 'interleave'",
        )
    offset = _integer(fields, "header offset", header, default=0)
    if offset < 0:
        raise InputError(f"ENVI header {header}: negative header offset {offset}", hint="fix 'header offset'")
    return _Layout(lines, samples, bands, dtype, interleave, offset)


def _integer(fields: dict[str, str], key: str, header: Path, default: int | None = None) -> int:
    raw = fields.get(key)
    if raw is None:
        if default is None:
            raise InputError(f"ENVI header {header} has no '{key}' field", hint=f"add '{key} = ...' to the header")
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"ENVI header {header}: '{key} = {raw}' is not an integer", hint=f"fix '{key}'") from None


def _wavelengths(fields: dict[str, str], bands: int, header: Path) -> list[float] | None:
    """Band centres in nm; None when the header has none or gives them in non-length units."""
    if "wavelength" not in fields:
        return None
    try:
        values = [float(item) for item in split_list(fields["wavelength"])]
    except ValueError:
        raise InputError(f"ENVI header {header}: 'wavelength' holds non-numbers", hint="fix 'wavelength'") from None
    if len(values) != bands:
        raise InputError(
            f"ENVI header {header}: {len(values)} wavelengths for {bands} bands",
            hint="fix 'wavelength' or 'bands'",
        )
    units = fields.get("wavelength units", "").lower()
    if units in _MICROMETRES:
        return [value * 1000.0 for value in values]
    if units in _NANOMETRES:
        return values
    return None  # wavenumbers, band indices, GHz: not wavelengths in nm


def _geo(fields: dict[str, str]) -> dict | None:
    """'map info' and 'coordinate system string' as an affine transform plus the raw fields.

    map info = {projection, ref x, ref y, easting, northing, x size, y size, ...}; the
    reference pixel is 1-based with (1, 1) the upper-left corner of the upper-left pixel (as
    GDAL reads it). The transform (a, b, c, d, e, f) maps (column, row) to x = a·col + b·row + c,
    y = d·col + e·row + f, as in GeoTIFF / rasterio. A rotated grid keeps only the raw fields.
    """
    if "map info" not in fields and "coordinate system string" not in fields:
        return None
    geo: dict = {"transform": None, "crs": None}
    if "coordinate system string" in fields:
        geo["crs"] = fields["coordinate system string"].strip().removeprefix("{").removesuffix("}").strip()
    if "map info" in fields:
        items = split_list(fields["map info"])
        geo["envi_map_info"] = items
        tie = [_float(item) for item in items[1:7]]
        rotation = next((_float(i.partition("=")[2]) for i in items if i.lower().startswith("rotation")), 0.0)
        if len(tie) == 6 and None not in tie and rotation == 0.0:  # 'Arbitrary' grids have no tie point
            ref_x, ref_y, easting, northing, size_x, size_y = tie
            geo["transform"] = [
                size_x, 0.0, easting - (ref_x - 1.0) * size_x,
                0.0, -size_y, northing + (ref_y - 1.0) * size_y,
            ]  # fmt: skip
        geo["crs"] = geo["crs"] or _crs_from_map_info(items)
    return geo


def _crs_from_map_info(items: list[str]) -> str | None:
    """The EPSG code GDAL infers from a 'map info' without a coordinate system string: WGS-84
    UTM zones (EPSG:326zz north, 327zz south) and geographic WGS-84 (EPSG:4326); None otherwise."""
    words = [item.strip().lower() for item in items]
    if "wgs-84" not in words:
        return None
    if words[0] == "geographic lat/lon":
        return "EPSG:4326"
    if words[0] == "utm" and len(words) > 8 and words[7].isdigit() and 1 <= int(words[7]) <= 60:
        hemisphere = {"north": 326, "south": 327}.get(words[8])
        return f"EPSG:{hemisphere}{int(words[7]):02d}" if hemisphere else None
    return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
