"""Scene readers: one entry point that chooses the format from the file's content and suffix.

Every format is opened into a `Container`: a description of the arrays the file holds (name,
shape, dtype) and a loader for the one chosen. The choice of cube and ground truth is made
on the descriptions, so nothing is read before it is known to be wanted and to fit, and the
same rules apply to every multi-array format (.mat v5 and v7.3, .npz).

Returned arrays are always in memory, C-contiguous and in native byte order, with their
original dtype (an int16 cube stays int16); conversion to float is `hsi prep`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsicli.errors import InputError, UsageError
from hsicli.io.container import ArrayInfo, Container, is_numeric, native, reading

LAYOUTS = ("auto", "matrix")
SUPPORTED = "MATLAB .mat (v5, v7, v7.3), ENVI .hdr + data file, NumPy .npy / .npz, GeoTIFF"
_FORMAT_HINT = f"supported formats: {SUPPORTED}; an ENVI data file needs its .hdr next to it"
_HEAD_BYTES = 1024  # enough for every signature we test, including HDF5's at offset 512
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_GT_SUFFIXES = (".mat", ".npy")  # sibling ground-truth files looked for next to a scene


@dataclass
class RawScene:
    """A scene as stored in its file, before any preprocessing."""

    cube: np.ndarray  # (H, W, T) in its native dtype
    gt: np.ndarray | None  # (H, W) integer labels, 0 = unlabelled
    wavelengths: list[float] | None  # nm
    source: Path  # the file read (for ENVI: the .hdr)
    cube_var: str | None  # which array was taken as cube (None for single-raster formats)
    gt_source: Path | None
    gt_var: str | None
    geo: dict | None  # JSON-serialisable: "transform" (affine a..f), "crs" (WKT), raw extras


# --- public API ------------------------------------------------------------------------------


def read_scene(
    path: Path,
    *,
    var: str | None = None,
    gt: Path | None = None,
    gt_var: str | None = None,
    layout: str = "auto",
) -> RawScene:
    """Read a hyperspectral cube (H, W, T) and its ground truth, if any.

    The cube is the single 3-D numeric array of the file (or `var`); with `layout="matrix"` a
    bands × pixels matrix plus scalars nRow, nCol is reshaped in MATLAB's column-major pixel
    order. Ground truth comes from `gt` if given, else from a 2-D integer array of the cube's
    height and width in the same file (or `gt_var`), else from a sibling `NAME_gt.mat` /
    `NAME_gt.npy` (`X_corrected.mat` also finds `X_gt.mat`).
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}", hint=f"use one of: {', '.join(LAYOUTS)}")
    with open_container(Path(path)) as box:
        if layout == "matrix":
            cube, cube_var = _matrix_cube(box, var)
        else:
            cube, cube_var = _load_cube(box, var)
        hw = cube.shape[:2]
        in_file = None if gt is not None else _gt_in_file(box, cube_var, hw, gt_var)
        source, geo, wavelengths, listing = box.path, box.geo, box.wavelengths, box.listing()

    labels, gt_source, gt_name = None, None, None
    if gt is not None:
        labels, gt_source, gt_name = _read_gt(Path(gt), gt_var, hw, source)
    elif in_file is not None:
        labels, gt_name = in_file
        gt_source = source
    else:
        sibling = sibling_gt(source)
        if sibling is not None:
            labels, gt_source, gt_name = _read_gt(sibling, gt_var, hw, source)
        elif gt_var is not None:
            raise InputError(
                f"--gt-var {gt_var!r}: {source} holds no such array and no sibling "
                f"ground-truth file exists; arrays found: {listing}",
                hint="give the ground-truth file with --gt FILE",
            )
    return RawScene(cube, labels, wavelengths, source, cube_var, gt_source, gt_name, geo)


def read_raster(path: Path, *, var: str | None = None) -> tuple[np.ndarray, dict]:
    """Read any 2-D or 3-D raster (ground truth, auxiliary LiDAR/SAR/MSI): (H, W) or (H, W, K).

    Returns the array and meta {"source", "var", "geo"}. A multi-array file must hold exactly
    one 3-D array or one 2-D array (vectors and scalars aside), unless `var` names it.
    """
    return _read_raster(Path(path), var, option="--var")


def open_container(path: Path) -> AbstractContextManager[Container]:
    """Open a file by its content (signatures), using the suffix only where content is silent."""
    head = _head(path)
    suffix = path.suffix.lower()
    if head.startswith(b"\x93NUMPY"):
        return _open_npy(path)
    if head.startswith(_ZIP_SIGNATURES) and suffix == ".npz":
        return _open_npz(path)
    from hsicli.io import matlab

    version = matlab.mat_version(head, suffix)
    if version == "v5":
        return matlab.open_v5(path)
    if version == "v7.3":
        return matlab.open_v73(path)
    if head.startswith(_TIFF_SIGNATURES):
        from hsicli.io import geotiff

        return geotiff.open_geotiff(path)
    from hsicli.io import envi

    if envi.is_header(head):
        return envi.open_envi(path)
    header = envi.find_header(path)
    if header is not None:
        return envi.open_envi(header)
    raise InputError(
        f"{path} is not a hyperspectral scene: {_expected(suffix)}, found {_sniff(head)}", hint=_FORMAT_HINT
    )


def sibling_gt(source: Path) -> Path | None:
    """The benchmark naming: X.mat -> X_gt.mat; X_corrected.mat -> X_gt.mat too (and .npy)."""
    stems = [source.stem, Path(source.stem).stem]  # an ENVI x.img.hdr names the scene x
    stems += [stem.removesuffix("_corrected") for stem in stems if stem.endswith("_corrected")]
    for base in dict.fromkeys(stems):
        for suffix in _GT_SUFFIXES:
            candidate = source.with_name(f"{base}_gt{suffix}")
            if candidate != source and candidate.is_file():
                return candidate
    return None


# --- choosing arrays -------------------------------------------------------------------------


def _load_cube(box: Container, var: str | None) -> tuple[np.ndarray, str | None]:
    if box.single:
        _no_names(box, var, "--var")
        info = box.arrays[0]
    elif var is not None:
        info = box.named(var, "--var")
    else:
        candidates = [a for a in box.arrays if a.numeric and len(a.shape) == 3]
        if len(candidates) > 1:
            raise InputError(
                f"{box.path} holds {len(candidates)} 3-D arrays, cannot tell which is the cube; "
                f"arrays found: {box.listing()}",
                hint="name the cube with --var NAME",
            )
        if not candidates:
            if _scalar_info(box, "nrow") and _scalar_info(box, "ncol"):
                raise InputError(
                    f"{box.path} holds no 3-D cube but a matrix with nRow/nCol; "
                    f"arrays found: {box.listing()}",
                    hint="read a bands × pixels matrix with --layout matrix",
                )
            raise InputError(
                f"{box.path} holds no 3-D numeric array to use as the cube; arrays found: {box.listing()}",
                hint="name the cube with --var NAME; a bands × pixels matrix needs --layout matrix",
            )
        info = candidates[0]
    _require_numeric(box, info)
    if len(info.shape) != 3:
        raise InputError(
            f"{_where(box, info)} has shape {info.shape}; a cube must be 3-D (height, width, bands)",
            hint="a bands × pixels matrix with nRow/nCol is read with --layout matrix",
        )
    _check_cube_shape(box, info.shape)
    return box.load(info.name), None if box.single else info.name


def _matrix_cube(box: Container, var: str | None) -> tuple[np.ndarray, str]:
    """Reshape a bands × pixels matrix (or pixels × bands) into (nRow, nCol, bands).

    The pixels are in MATLAB's column-major order (reshape(Y', nRow, nCol, bands)): pixel p
    lies at row p mod nRow, column p div nRow.
    """
    if box.single:
        raise InputError(
            f"{box.path} holds a single raster, not a matrix with nRow/nCol",
            hint="drop --layout matrix for this file",
        )
    n_row, n_col = _scalar(box, "nrow"), _scalar(box, "ncol")
    n = n_row * n_col
    if var is not None:
        info = box.named(var, "--var")
    else:
        candidates = [a for a in box.arrays if a.numeric and len(a.shape) == 2 and n in a.shape]
        if len(candidates) != 1:
            raise InputError(
                f"{box.path}: expected one 2-D matrix with nRow × nCol = {n} pixels on one axis, "
                f"found {len(candidates)}; arrays found: {box.listing()}",
                hint="name the matrix with --var NAME",
            )
        info = candidates[0]
    _require_numeric(box, info)
    if len(info.shape) != 2 or n not in info.shape:
        raise InputError(
            f"{_where(box, info)} has shape {info.shape}; expected a 2-D bands × pixels matrix "
            f"with nRow × nCol = {n_row} × {n_col} = {n} pixels",
            hint="check --var and the file's nRow, nCol",
        )
    bands_first = info.shape[1] == n
    bands = info.shape[0] if bands_first else info.shape[1]
    _check_cube_shape(box, (n_row, n_col, bands))
    matrix = box.load(info.name)
    pixels = matrix.T if bands_first else matrix  # (pixels, bands)
    cube = pixels.reshape(n_col, n_row, bands).transpose(1, 0, 2)
    return np.ascontiguousarray(cube), info.name


def _scalar_info(box: Container, lower_name: str) -> ArrayInfo | None:
    for info in box.arrays:
        if info.name.lower() == lower_name and info.numeric and math.prod(info.shape) == 1:
            return info
    return None


def _scalar(box: Container, lower_name: str) -> int:
    info = _scalar_info(box, lower_name)
    label = {"nrow": "nRow", "ncol": "nCol"}[lower_name]
    if info is None:
        raise InputError(
            f"{box.path} holds no scalar {label}, which --layout matrix needs; arrays found: {box.listing()}",
            hint="--layout matrix reads a bands × pixels matrix plus scalars nRow and nCol",
        )
    value = float(box.load(info.name).reshape(-1)[0])
    if not (value >= 1 and value.is_integer()):  # also rejects NaN and inf
        raise InputError(
            f"{box.path}: {label} = {value}, expected a positive integer",
            hint="check the file's nRow and nCol",
        )
    return int(value)


def _gt_in_file(
    box: Container, cube_var: str | None, hw: tuple[int, ...], gt_var: str | None
) -> tuple[np.ndarray, str] | None:
    """Ground truth stored next to the cube: `gt_var`, else the one 2-D integer array of shape hw."""
    if box.single:
        return None
    if gt_var is not None:
        if not any(a.name == gt_var for a in box.arrays):
            return None  # maybe in a sibling file; read_scene reports it if not
        info = box.named(gt_var, "--gt-var")
    else:
        candidates = [
            a
            for a in box.arrays
            if a.numeric and a.name != cube_var and a.shape == tuple(hw) and np.dtype(a.dtype).kind in "biu"
        ]
        if not candidates:
            _refuse_non_numeric_maps(box, cube_var, hw)
            return None
        if len(candidates) > 1:
            raise InputError(
                f"{box.path} holds {len(candidates)} integer maps of the cube's size {tuple(hw)}, "
                f"cannot tell which is the ground truth; arrays found: {box.listing()}",
                hint="name it with --gt-var NAME",
            )
        info = candidates[0]
    _require_numeric(box, info)
    return _as_labels(box.load(info.name), _where(box, info), hw, box.path), info.name


_OPAQUE_ARRAYS = ("object", "cell")  # pickled NumPy objects, MATLAB cell arrays: never read


def _refuse_non_numeric_maps(box: Container, cube_var: str | None, hw: tuple[int, ...]) -> None:
    """An object array or MATLAB cell array of the cube's height and width is ground truth that
    cannot be read: refused, not taken for a scene without labels."""
    for info in box.arrays:
        if info.dtype in _OPAQUE_ARRAYS and info.name != cube_var and tuple(info.shape) == tuple(hw):
            raise InputError(
                f"{_where(box, info)} has the cube's height and width but is {info.dtype}, not integer labels; "
                f"arrays found: {box.listing()}",
                hint="store the ground truth as an integer array, or give it with --gt FILE",
            )


def _read_gt(
    path: Path, gt_var: str | None, hw: tuple[int, ...], scene: Path
) -> tuple[np.ndarray, Path, str | None]:
    """Ground truth from a separate file: `gt_var`, else the one 2-D array of shape hw."""
    with open_container(path) as box:
        if box.single:
            _no_names(box, gt_var, "--gt-var")
            info = box.arrays[0]
        elif gt_var is not None:
            info = box.named(gt_var, "--gt-var")
        else:
            maps = [a for a in box.arrays if a.numeric and len(a.shape) == 2 and min(a.shape) > 1]
            matching = [a for a in maps if a.shape == tuple(hw)]
            if len(matching) > 1:
                raise InputError(
                    f"{box.path} holds {len(matching)} maps of the cube's size {tuple(hw)}, "
                    f"cannot tell which is the ground truth; arrays found: {box.listing()}",
                    hint="name it with --gt-var NAME",
                )
            if matching or len(maps) == 1:  # a single map of another size fails below, naming both
                info = (matching or maps)[0]
            else:
                raise InputError(
                    f"{box.path} holds no 2-D map of the cube's size {tuple(hw)} (cube in {scene}); "
                    f"arrays found: {box.listing()}",
                    hint="name the ground truth with --gt-var NAME",
                )
        _require_numeric(box, info)
        labels = _as_labels(box.load(info.name), _where(box, info), hw, scene)
        return labels, box.path, None if box.single else info.name


def _read_raster(path: Path, var: str | None, option: str) -> tuple[np.ndarray, dict]:
    with open_container(path) as box:
        if box.single:
            _no_names(box, var, option)
            info = box.arrays[0]
        elif var is not None:
            info = box.named(var, option)
        else:
            candidates = [
                a
                for a in box.arrays
                if a.numeric and (len(a.shape) == 3 or (len(a.shape) == 2 and min(a.shape) > 1))
            ]
            if len(candidates) != 1:
                raise InputError(
                    f"{box.path}: expected one 2-D or 3-D raster, found {len(candidates)}; "
                    f"arrays found: {box.listing()}",
                    hint=f"name the raster with {option} NAME",
                )
            info = candidates[0]
        _require_numeric(box, info)
        if len(info.shape) not in (2, 3) or 0 in info.shape:
            raise InputError(
                f"{_where(box, info)} has shape {info.shape}; expected a raster (H, W) or (H, W, K)",
                hint=f"name a 2-D or 3-D array with {option} NAME",
            )
        array = box.load(info.name)
        if box.single and array.shape[2:] == (1,):
            array = array[:, :, 0]  # one-band ENVI / GeoTIFF rasters are maps
        meta = {"source": box.path, "var": None if box.single else info.name, "geo": box.geo}
    return array, meta


def _as_labels(array: np.ndarray, where: str, hw: tuple[int, ...], scene: Path) -> np.ndarray:
    """Validate a ground-truth map against the cube: (H, W), non-negative integers (0 = unlabelled)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.shape != tuple(hw):
        raise InputError(
            f"ground truth {where} has shape {array.shape}, but the cube in {scene} is "
            f"{tuple(hw)} (height, width)",
            hint="give a ground-truth map of the cube's height and width (--gt FILE, --gt-var NAME)",
        )
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8)
    if kind == "f" and not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
        raise InputError(
            f"ground truth {where} holds non-integer values ({array.dtype})",
            hint="labels must be whole numbers, 0 for unlabelled pixels",
        )
    if kind not in "iuf":
        raise InputError(f"ground truth {where} is {array.dtype}, not integer labels", hint="labels must be integers")
    if array.size and kind != "u" and array.min() < 0:
        raise InputError(
            f"ground truth {where} holds negative labels (min {array.min()})",
            hint="labels must be 0 for unlabelled pixels and 1, 2, ... for classes",
        )
    if kind == "f":
        if array.max(initial=0) > np.iinfo(np.int32).max:
            raise InputError(f"ground truth {where} holds labels beyond int32", hint="labels must be small integers")
        return array.astype(np.int32)
    return array


def _require_numeric(box: Container, info: ArrayInfo) -> None:
    if not info.numeric:
        raise InputError(
            f"{_where(box, info)} is {info.dtype}, not a real-valued numeric array; arrays found: {box.listing()}",
            hint="name a numeric array (--var / --gt-var); complex data needs converting first",
        )


def _check_cube_shape(box: Container, shape: tuple[int, ...]) -> None:
    if shape[2] < 1:
        raise InputError(
            f"the cube in {box.path} has {shape[2]} bands {shape}; expected at least 1", hint="check the file"
        )
    if shape[0] < 1 or shape[1] < 1:
        raise InputError(f"the cube in {box.path} is empty {shape}", hint="check the file")


def _no_names(box: Container, name: str | None, option: str) -> None:
    if name is not None:
        raise UsageError(
            f"{option} {name!r} does not apply to {box.path}, which holds a single raster",
            hint=f"drop {option} for this file",
        )


def _where(box: Container, info: ArrayInfo) -> str:
    return str(box.path) if box.single else f"{info.name!r} in {box.path}"


# --- NumPy formats -----------------------------------------------------------------------------


@contextmanager
def _open_npy(path: Path) -> Iterator[Container]:
    with reading(path, "NumPy file"):
        # Memory-mapped: a header declaring more data than the file holds fails here, before any
        # allocation; allow_pickle=False so no object array is ever unpickled.
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    info = ArrayInfo(path.name, mapped.shape, mapped.dtype.name, is_numeric(mapped.dtype))

    def load(_name: str) -> np.ndarray:
        with reading(path, "NumPy file"):
            return native(mapped)

    yield Container(path, [info], load, single=True)


@contextmanager
def _open_npz(path: Path) -> Iterator[Container]:
    with reading(path, "NumPy .npz archive"):
        archive = np.load(path, allow_pickle=False)
    try:
        with reading(path, "NumPy .npz archive"):
            infos = [_npz_member(archive, name, path) for name in archive.files]

        def load(name: str) -> np.ndarray:
            with reading(path, f"array {name!r} of NumPy .npz archive"):
                return native(archive[name])

        yield Container(path, infos, load)
    finally:
        archive.close()


def _npz_member(archive: np.lib.npyio.NpzFile, name: str, path: Path) -> ArrayInfo:
    """Describe one member from its .npy header, checking the declared size against the member's.

    numpy allocates the declared shape before reading a zipped member, so a lying header must
    be caught here.
    """
    members = set(archive.zip.namelist())
    member = f"{name}.npy" if f"{name}.npy" in members else name
    with archive.zip.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)
        header_end = stream.tell()
    declared = header_end + math.prod(shape) * dtype.itemsize
    size = archive.zip.getinfo(member).file_size
    if declared > size and not dtype.hasobject:  # an object array's data is a pickle (never loaded) of any size
        raise InputError(
            f"{path}: array {name!r} declares {shape} {dtype} ({declared:,} bytes) but holds {size:,} bytes",
            hint="the archive is truncated or corrupt; write it again",
        )
    return ArrayInfo(name, tuple(shape), dtype.name, is_numeric(dtype))


# --- recognising what a file is ----------------------------------------------------------------


def _head(path: Path) -> bytes:
    if not path.exists():
        raise InputError(
            f"{path} does not exist", hint="check the path (relative paths start from the current directory)"
        )
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a scene file", hint="give the path of the scene file")
    if not path.is_file():  # a FIFO without a writer would block the read below for ever
        raise InputError(f"{path} is not a regular file (a pipe, socket or device)",
                         hint="save the data to a file first, then give its path")
    with reading(path, "file"):
        with path.open("rb") as stream:
            head = stream.read(_HEAD_BYTES)
    if not head:
        raise InputError(
            f"{path} is empty (0 bytes)",
            hint="the file was probably truncated by an interrupted download or copy; fetch it again",
        )
    return head


# The files `hsi prep` reads, by suffix (shell completion offers these).
SCENE_FORMATS = {
    ".mat": "a MATLAB MAT-file",
    ".npy": "a NumPy .npy file",
    ".npz": "a NumPy .npz archive",
    ".hdr": "an ENVI header",
    ".tif": "a GeoTIFF",
    ".tiff": "a GeoTIFF",
}


def _expected(suffix: str) -> str:
    expected = SCENE_FORMATS.get(suffix)
    return f"expected {expected}" if expected else "unrecognised format"


def _sniff(head: bytes) -> str:
    """Name what a file looks like, for the error message."""
    signatures = {
        b"\x89PNG\r\n\x1a\n": "a PNG image",
        b"\xff\xd8\xff": "a JPEG image",
        b"GIF8": "a GIF image",
        b"%PDF": "a PDF document",
        b"\x1f\x8b": "a gzip archive",
        b"BZh": "a bzip2 archive",
        b"\xfd7zXZ": "an xz archive",
        _HDF5_SIGNATURE: "an HDF5 file that is not a MATLAB v7.3 MAT-file",
        b"PK\x03\x04": "a ZIP archive",
        b"PK\x05\x06": "a ZIP archive",
    }
    for signature, name in signatures.items():
        if head.startswith(signature):
            return name
    if not any(byte < 9 or 13 < byte < 32 for byte in head):
        return "a text file"
    return f"unrecognised binary data (first bytes {head[:8].hex(' ')})"
