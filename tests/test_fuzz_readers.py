"""Hostile input for every reader (issue 9): each file ends in one clear HsiError or a correct
result, never another exception, a hang, or memory taken on a header's word.

- Mutated, truncated and re-magicked copies of valid files of every format (MATLAB v5, v7 and
  v7.3, NumPy .npy and .npz, ENVI, TIFF) through `read_scene` and `read_raster`: an HsiError
  naming the file, or a well-formed result.
- ENVI headers whose every field may lie (sizes, data type, byte order, interleave, header
  offset, wavelengths), .npy headers whose shape and dtype may lie, and MAT-files / .npz archives
  of random variables (no numeric array, several candidate cubes, object arrays, empty arrays,
  1-band and 1-pixel cubes, NaN and inf): an error exactly when an independent model of the
  format says so, else exactly the array the file declares.
- `hsi prep` on NaN / inf / huge values and degenerate shapes: an HsiError or a finite store.
- Huge declared shapes in a real process under RLIMIT_AS = 1 GiB: a one-line error, exit 1.

Every example runs in-process under a hypothesis deadline and a hard alarm, so a hang fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import struct
import tempfile
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness import assert_one_line_error, run_console
from hsicli.errors import HsiError
from hsicli.io import read_raster, read_scene
from test_readers import ENVI_CODES, write_envi, write_v73

EXAMPLES = 100  # per property below (the v7.3 one: half, it writes HDF5 files)
PREP_EXAMPLES = 12  # each writes a scene store
HARD_LIMIT_S = 30  # an example still running after this is a hang
# Derandomized: the same examples on every run, so a failure is reproducible and the fast tier stays
# deterministic (400 random examples per property were run by hand while writing these tests).
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
READERS = {"read_scene": read_scene, "read_raster": read_raster}


@contextlib.contextmanager
def bounded(seconds: int = HARD_LIMIT_S):
    def expire(signum, frame):
        raise TimeoutError(f"a reader ran for more than {seconds} s on one input (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def attempt(reader, path: Path, **options):
    """The reader's result, or None after checking its HsiError is one line naming the file.

    Any other exception propagates and fails the example. With HSI_FUZZ_LOG set, each input that
    ended so is tallied by reader and file suffix (the counts the README records)."""
    with bounded():
        try:
            result = reader(path, **options)
        except HsiError as error:
            assert error.message.strip() and "\n" not in error.message, repr(error.message)
            assert error.hint, error.message
            assert str(path.parent) in error.message, (path, error.message)  # names a file of the input
            result = None
    if log := os.environ.get("HSI_FUZZ_LOG"):
        with open(log, "a") as handle:
            handle.write(f"{reader.__name__}\t{''.join(path.suffixes) or path.name}\t{'error' if result is None else 'read'}\n")
    return result


def assert_well_formed_scene(scene) -> None:
    cube = scene.cube
    assert cube.ndim == 3 and min(cube.shape) >= 1, cube.shape
    assert cube.dtype.kind in "biuf" and cube.dtype.isnative and cube.flags.c_contiguous, cube.dtype
    if scene.gt is not None:
        assert scene.gt.shape == cube.shape[:2] and scene.gt.dtype.kind in "iu", (scene.gt.shape, scene.gt.dtype)
        assert scene.gt.size == 0 or scene.gt.min() >= 0


def assert_well_formed_raster(result) -> None:
    array, meta = result
    assert array.ndim in (2, 3) and min(array.shape) >= 1 and array.dtype.kind in "biuf", (array.shape, array.dtype)
    assert array.dtype.isnative and array.flags.c_contiguous


def check(reader_name: str, path: Path) -> None:
    result = attempt(READERS[reader_name], path)
    if result is not None:
        (assert_well_formed_scene if reader_name == "read_scene" else assert_well_formed_raster)(result)


# -- seeds: one valid file per format --------------------------------------------------------

CUBE = np.random.default_rng(0).integers(-300, 3000, size=(5, 4, 3)).astype(np.int16)
GT = np.random.default_rng(1).integers(0, 4, size=(5, 4)).astype(np.uint8)


def _saved(suffix: str, save) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"seed{suffix}"
        save(path)
        return path.read_bytes()


def _v73(path: Path) -> None:
    write_v73(path, {"cube": CUBE, "gt": GT, "name": "scene"})


def _tiff(path: Path) -> None:
    """A minimal little-endian baseline TIFF: 4 × 5 pixels, one uint8 band (rasterio is optional)."""
    pixels = GT.astype(np.uint8).tobytes()
    entries = [(256, 3, 1, 4), (257, 3, 1, 5), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, 5), (279, 4, 1, len(pixels))]
    ifd_at = 8 + len(pixels)
    body = struct.pack("<2sHI", b"II", 42, ifd_at) + pixels
    body += struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    path.write_bytes(body)


SEEDS = {
    # name in the temporary folder: bytes of a valid file
    "v5.mat": _saved(".mat", lambda p: scipy.io.savemat(p, {"cube": CUBE, "gt": GT, "note": "x"})),
    "v7.mat": _saved(".mat", lambda p: scipy.io.savemat(p, {"cube": CUBE, "gt": GT}, do_compression=True)),
    "v73.mat": _saved(".mat", _v73),
    "cube.npy": _saved(".npy", lambda p: np.save(p, CUBE)),
    "scene.npz": _saved(".npz", lambda p: np.savez(p, cube=CUBE, gt=GT)),
    "zipped.npz": _saved(".npz", lambda p: np.savez_compressed(p, cube=CUBE, gt=GT)),
    "map.npy": _saved(".npy", lambda p: np.save(p, GT)),
    "map.tif": _saved(".tif", _tiff),
}
MAGICS = [b"\x93NUMPY", b"PK\x03\x04", b"\x89HDF\r\n\x1a\n", b"MATLAB 7.3", b"MATLAB 5.0", b"II*\x00", b"MM\x00*",
          b"ENVI", b"\x89PNG\r\n\x1a\n", b"", b"\x00" * 16]

edits = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("zero"), st.floats(0, 1, exclude_max=True), st.integers(1, 256)),
        st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True), st.just(0)),
        st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    ),
    min_size=1,
    max_size=6,
)


def mutate(data: bytes, changes) -> bytes:
    data = bytearray(data)
    for action, where, value in changes:
        at = int(where * len(data)) if data else 0
        if action == "set":
            data[at : at + len(value)] = value
        elif action == "zero":
            data[at : at + value] = bytes(min(value, len(data) - at))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = value
    return bytes(data)


def write(folder: str, name: str, data: bytes) -> Path:
    path = Path(folder) / name
    path.write_bytes(data)
    return path


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), changes=edits, reader=st.sampled_from(sorted(READERS)))
def test_mutated_files(name, changes, reader):
    with tempfile.TemporaryDirectory() as folder:
        check(reader, write(folder, name, mutate(SEEDS[name], changes)))


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), keep=st.floats(0, 1, exclude_max=True),
       reader=st.sampled_from(sorted(READERS)))
def test_truncated_files(name, keep, reader):
    with tempfile.TemporaryDirectory() as folder:
        check(reader, write(folder, name, SEEDS[name][: int(keep * len(SEEDS[name]))]))


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), magic=st.one_of(st.sampled_from(MAGICS), st.binary(max_size=16)),
       reader=st.sampled_from(sorted(READERS)))
def test_wrong_magic(name, magic, reader):
    data = SEEDS[name]
    with tempfile.TemporaryDirectory() as folder:
        check(reader, write(folder, name, magic + data[len(magic):]))


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_read_back_and_empty_files_are_errors(name, tmp_path):
    """The seeds are valid (so the properties above start from real files), their zero-length
    versions are one clear error."""
    path = write(str(tmp_path), name, SEEDS[name])
    if name.endswith(".tif") and importlib.util.find_spec("rasterio") is None:
        assert attempt(read_raster, path) is None  # InputError naming the optional extra
    elif name.startswith("map"):
        assert np.array_equal(read_raster(path)[0], GT)
    else:
        scene = read_scene(path)
        assert np.array_equal(scene.cube, CUBE) and (scene.gt is None or np.array_equal(scene.gt, GT))
    empty = write(str(tmp_path), "empty-" + name, b"")
    for reader in READERS.values():
        assert attempt(reader, empty) is None


def test_error_naming_garbage_arrays_is_one_line(tmp_path, cli):
    """A v5 MAT-file whose first bytes were zeroed still carries v5's 'IM' marker, but scipy then
    reads it as MATLAB v4 and finds 'arrays' named by binary junk. The error lists them; it must
    stay one line."""
    path = write(str(tmp_path), "zeroed.mat", bytes(16) + SEEDS["v5.mat"][16:])
    with pytest.raises(HsiError) as raised:
        read_scene(path)
    assert "\n" not in raised.value.message and raised.value.message.isprintable()
    result = cli("prep", path)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 2, result.stderr


# -- ENVI headers that lie ---------------------------------------------------------------------

TO_HWT = {"bsq": (1, 2, 0), "bil": (0, 2, 1), "bip": (0, 1, 2)}
DISK = {"bsq": lambda l, s, b: (b, l, s), "bil": lambda l, s, b: (l, b, s), "bip": lambda l, s, b: (l, s, b)}


def field_value(truth, *alternatives):
    """The true value, one of the lies, or the field missing (None)."""
    return st.one_of(st.just(str(truth)), st.sampled_from([str(a) for a in alternatives]), st.none())


@st.composite
def envi_case(draw):
    shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)))
    code = draw(st.sampled_from(sorted(ENVI_CODES)))
    interleave = draw(st.sampled_from(sorted(TO_HWT)))
    order = draw(st.sampled_from([0, 1]))
    offset = draw(st.integers(0, 12))
    lines, samples, bands = shape
    fields = {
        "samples": draw(field_value(samples, samples + 1, samples - 1, lines, 0, -3, 2**40, "4.0", "x")),
        "lines": draw(field_value(lines, lines + 1, samples, 0, -1, 2**62, "")),
        "bands": draw(field_value(bands, bands + 1, 0, -2, 10**12, "two")),
        "data type": draw(field_value(code, *ENVI_CODES, 0, 6, 9, 16, 99, -1, "f")),
        "byte order": draw(field_value(order, 1 - order, 2, -1, "big")),
        "interleave": draw(field_value(interleave, *TO_HWT, "BIL", "bxx", "")),
        "header offset": draw(field_value(offset, 0, offset + 1, offset - 1, -8, 2**63, "z")),
    }
    wavelengths = draw(st.one_of(st.none(), st.integers(0, 4)))
    junk = draw(st.sampled_from(["", "description = {a = b,\n c}\n", "garbage line without equals\n", "= 5\n"]))
    return shape, code, interleave, order, offset, fields, wavelengths, junk


def declared_cube(fields: dict, wavelengths: int | None, data: bytes) -> np.ndarray | None:
    """An independent model of the ENVI format: the cube the header declares, or None if it
    declares nothing readable (missing or non-integer fields, impossible values, a size that
    is not the data file's)."""
    def integer(key, default=None):
        value = fields.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            return None

    samples, lines, bands, code = (integer(k) for k in ("samples", "lines", "bands", "data type"))
    offset = integer("header offset", 0) if "header offset" in fields else 0
    if fields.get("header offset") is not None and integer("header offset") is None:
        return None
    if None in (samples, lines, bands, code) or min(samples, lines, bands) < 1 or code not in ENVI_CODES:
        return None
    dtype = np.dtype(ENVI_CODES[code])
    if dtype.itemsize > 1:
        order = integer("byte order")
        if order not in (0, 1):
            return None
        dtype = dtype.newbyteorder("<" if order == 0 else ">")
    interleave = (fields.get("interleave") or "").lower()
    if interleave not in TO_HWT or offset < 0:
        return None
    if offset + lines * samples * bands * dtype.itemsize != len(data):
        return None
    if wavelengths is not None and wavelengths != bands:
        return None
    disk = np.frombuffer(data, dtype=dtype, offset=offset).reshape(DISK[interleave](lines, samples, bands))
    return disk.transpose(TO_HWT[interleave]).astype(dtype.newbyteorder("="))


@FUZZ
@given(case=envi_case(), reader=st.sampled_from(sorted(READERS)))
def test_lying_envi_headers(case, reader):
    shape, code, interleave, order, offset, fields, wavelengths, junk = case
    values = np.arange(np.prod(shape)).reshape(shape) % 113
    with tempfile.TemporaryDirectory() as folder:
        header, data = write_envi(Path(folder) / "scene", values, interleave=interleave, byte_order=order,
                                  offset=offset, code=code)
        text = "ENVI\n" + junk + "".join(f"{key} = {value}\n" for key, value in fields.items() if value is not None)
        if wavelengths is not None:
            text += "wavelength = {" + ", ".join(str(500 + 10 * i) for i in range(wavelengths)) + "}\n"
        header.write_text(text)
        expected = declared_cube(fields, wavelengths, data.read_bytes())
        result = attempt(READERS[reader], header)
    if expected is None:
        assert result is None, "the reader accepted a header that declares nothing readable"
        return
    assert result is not None, f"the reader refused a consistent header: {fields}"
    array = result.cube if reader == "read_scene" else result[0]
    if reader == "read_raster" and expected.shape[2] == 1:
        expected = expected[:, :, 0]  # a one-band raster is a map
    assert array.dtype == expected.dtype and np.array_equal(array, expected)


def test_header_text_that_is_not_utf8_or_huge(tmp_path):
    header, _ = write_envi(tmp_path / "scene", CUBE)
    header.write_bytes(header.read_bytes() + b"description = {\xff\xfe\x80 latin-1 \xe9}\n")
    assert np.array_equal(read_scene(header).cube, CUBE)
    header.write_bytes(b"ENVI\n" + b"x" * (17 * 2**20))  # larger than any header: refused unread
    assert attempt(read_scene, header) is None


# -- NumPy headers that lie ----------------------------------------------------------------------


@st.composite
def npy_case(draw):
    descr = draw(st.sampled_from(["<i2", ">i2", "<f4", ">f8", "|u1", "|b1", "<c8", "|O", "<U3", "|V4"]))
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)
                 | st.just((2**40, 2**40, 200)))
    fortran = draw(st.booleans())
    length = draw(st.integers(0, 600))
    return descr, shape, fortran, length


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy sizing a lying shape
@FUZZ
@given(case=npy_case())
def test_lying_npy_headers(case):
    descr, shape, fortran, length = case
    dtype = np.dtype(descr)
    data = bytes(np.random.default_rng(length).integers(0, 256, size=length, dtype=np.uint8))
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": fortran, "shape": shape})
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "cube.npy", stream.getvalue() + data)
        result = attempt(read_scene, path)
    count = int(np.prod(shape, dtype=object))
    readable = (dtype.kind in "biuf" and len(shape) == 3 and min(shape) >= 1 and count * dtype.itemsize <= length)
    if not readable:
        assert result is None
        return
    expected = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
    assert result is not None and np.array_equal(result.cube, expected)
    assert result.cube.dtype == dtype.newbyteorder("=")


# -- multi-array files of random variables -----------------------------------------------------

NAMES = ["cube", "img", "data", "gt", "labels", "map", "extra", "x1", "x2"]
NUMERIC = [np.int16, np.uint8, np.uint16, np.int32, np.float32, np.float64]


@st.composite
def variable(draw, height: int, width: int):
    kind = draw(st.sampled_from(["cube", "cube", "map", "map", "signed-map", "float-map", "vector", "scalar",
                                 "empty", "text", "cell", "struct", "nan-cube"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from(NUMERIC))
    if kind in ("cube", "nan-cube"):
        size = draw(st.sampled_from([(height, width), (height, width), (1, 1), (height, 1)]))
        cube = rng.integers(0, 100, size=(*size, draw(st.integers(1, 4)))).astype(dtype)
        if kind == "nan-cube":
            cube = cube.astype(np.float64)
            cube.flat[rng.integers(0, cube.size, 2)] = [np.nan, np.inf]
        return cube
    if kind == "map":
        return rng.integers(0, 4, size=(height, width)).astype(draw(st.sampled_from([np.uint8, np.uint16, np.int32])))
    if kind == "signed-map":
        return rng.integers(-2, 3, size=(height, width)).astype(np.int16)
    if kind == "float-map":
        return rng.random((height, width))
    if kind == "vector":
        return rng.random(draw(st.integers(1, 6)))
    if kind == "scalar":
        return np.array([[draw(st.sampled_from([3.0, np.nan, np.inf]))]])
    if kind == "empty":
        return np.zeros((0, 3))
    if kind == "text":
        return "a scene description"
    if kind == "cell":
        return np.array([[1, "x"]], dtype=object)
    return {"field": np.arange(3.0)}


@st.composite
def variables(draw):
    height, width = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=4, unique=True))
    return {name: draw(variable(height, width)) for name in names}


def numeric(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def expected_scene(found: dict):
    """(cube, gt) the reader must return from these variables, or None for an error."""
    cubes = [name for name, value in found.items() if numeric(value) and value.ndim == 3]
    if len(cubes) != 1 or 0 in found[cubes[0]].shape:
        return None
    cube = found[cubes[0]]
    maps = [name for name, value in found.items()
            if name != cubes[0] and numeric(value) and value.shape == cube.shape[:2] and value.dtype.kind in "biu"]
    opaque = [name for name, value in found.items()  # object / cell arrays: ground truth that cannot be read
              if isinstance(value, np.ndarray) and value.dtype == object and value.shape == cube.shape[:2]]
    if len(maps) > 1 or (opaque and not maps):
        return None
    gt = found[maps[0]] if maps else None
    if gt is not None and gt.dtype.kind == "i" and gt.size and gt.min() < 0:
        return None
    return cube, gt


def compare(result, expected) -> None:
    if expected is None:
        assert result is None, "the reader chose a cube or ground truth the file does not single out"
        return
    cube, gt = expected
    assert result is not None, "the reader refused a file with exactly one cube"
    assert np.array_equal(result.cube, cube, equal_nan=cube.dtype.kind == "f")
    assert (result.gt is None) == (gt is None) and (gt is None or np.array_equal(result.gt, gt))


@FUZZ
@given(found=variables(), compressed=st.booleans())
def test_mat_v5_of_random_variables(found, compressed):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.mat"
        scipy.io.savemat(path, found, do_compression=compressed)
        result = attempt(read_scene, path)
    compare(result, expected_scene(found))


@settings(FUZZ, max_examples=EXAMPLES // 2)  # each writes an HDF5 file
@given(found=variables())
def test_mat_v73_of_random_variables(found):
    assume(not any(isinstance(v, np.ndarray) and v.dtype == object for v in found.values()))
    with tempfile.TemporaryDirectory() as folder:
        path = write_v73(Path(folder) / "scene.mat", found)
        result = attempt(read_scene, path)
    compare(result, expected_scene({name: value for name, value in found.items() if not isinstance(value, dict)}))


@FUZZ
@given(found=variables())
def test_npz_of_random_variables(found):
    arrays = {name: np.asarray(value, dtype=object) if isinstance(value, dict) else np.asarray(value)
              for name, value in found.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.npz"
        np.savez(path, **arrays)  # object arrays are pickled: the reader must refuse, never unpickle
        result = attempt(read_scene, path)
    compare(result, expected_scene(arrays))


# -- `hsi prep` on non-finite values and degenerate shapes -------------------------------------


@settings(max_examples=PREP_EXAMPLES, deadline=timedelta(seconds=20), derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5)),
    dtype=st.sampled_from([np.int16, np.uint8, np.float32, np.float64, np.int64, np.uint64]),
    specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]), max_size=3),
    fill=st.sampled_from(["error", "zero", "mean"]),
    norm=st.sampled_from(["zscore", "minmax", "none"]),
    pca=st.sampled_from([None, 1, 2, 5]),
    offset=st.sampled_from([0, 2**40, 2**62]),  # 64-bit integers only: above 2^24 float32 rounds them
    step=st.sampled_from([1, 2**20]),
)
def test_prep_gives_an_error_or_a_finite_store(shape, dtype, specials, fill, norm, pca, offset, step):
    from hsicli.data.prepare import PrepRequest, prepare_scene
    from hsicli.store.scene import SceneStore

    rng = np.random.default_rng(sum(shape))
    cube = rng.integers(0, 200, size=shape).astype(dtype)
    if np.dtype(dtype).itemsize == 8 and np.dtype(dtype).kind in "iu":
        cube = cube * dtype(step) + dtype(offset)
    # A band whose distinct integers all round to one float32 value would be stored constant: refused.
    flattened = any(np.unique(band).size > 1 and np.unique(band.astype(np.float32)).size == 1
                    for band in cube.reshape(-1, shape[2]).T) if np.dtype(dtype).kind in "iu" else False
    if specials and dtype in (np.float32, np.float64):
        with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: another non-finite value
            cube.flat[rng.integers(0, cube.size, len(specials))] = specials
    as_float = cube.astype(np.float64)
    finite = bool(np.isfinite(as_float).all())
    # NaN and inf are --fill's business; finite values float32 cannot hold are refused whatever --fill says.
    beyond_float32 = bool((np.abs(as_float[np.isfinite(as_float)]) > np.finfo(np.float32).max).any())
    refused = (pca is not None and pca > shape[2]) or (not finite and fill == "error") or beyond_float32 or flattened
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "scene.npy"
        np.save(source, cube)
        request = PrepRequest(source=source, fill=fill, normalisation=norm, pca=pca)
        with bounded(), np.errstate(all="ignore"):
            try:
                result = prepare_scene(request, out=Path(folder) / "s.zarr", command="hsi prep")
            except HsiError as error:
                assert "\n" not in error.message and error.hint
                assert refused, f"prep refused a valid request: {error.message}"
                return
        assert not refused, "prep accepted non-finite values with --fill error, --pca beyond the bands, " \
                            "values beyond float32 or a band float32 cannot tell apart"
        stored = SceneStore.open(result.path).cube()
    assert stored.shape == (*shape[:2], pca or shape[2])
    assert np.isfinite(stored).all()
    if norm == "none" and pca is None and finite:  # stored as float32 rounds them, nothing else
        np.testing.assert_array_equal(stored, cube.astype(np.float32))


# -- huge declared shapes in a real process under a memory limit -----------------------------


def _huge_v73(path: Path, shape: tuple[int, ...], dtype: str) -> None:
    """An HDF5 cube whose chunks were never written: a tiny file declaring `shape`."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        node = handle.create_dataset("cube", shape=shape, dtype=dtype, chunks=(1, 64, 64))
        node.attrs["MATLAB_class"] = np.bytes_("double" if dtype == "<f8" else "int16")
    with path.open("r+b") as stream:
        stream.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM")


def _huge_npy(path: Path) -> None:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "<f8", "fortran_order": False, "shape": (2**20, 2**20, 200)})
    path.write_bytes(stream.getvalue() + bytes(64))


def _huge_v5(path: Path) -> None:
    scipy.io.savemat(path, {"cube": np.zeros((2, 2, 2), np.int16)})
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<II", 5, 12) + struct.pack("<iii", 2, 2, 2))
    data[at + 8 : at + 20] = struct.pack("<iii", 100_000, 100_000, 200)
    path.write_bytes(bytes(data))


HUGE = {
    "v73-160GB-unwritten": lambda p: _huge_v73(p, (200, 20_000, 20_000), "<i2"),
    "v73-3GB-unwritten": lambda p: _huge_v73(p, (100, 2000, 2000), "<f8"),
    "npy-1.6PB-declared": _huge_npy,
    "v5-dims-lie": _huge_v5,
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_declared_shapes_under_a_memory_limit(name, tmp_path):
    path = tmp_path / ("scene.npy" if name.startswith("npy") else "scene.mat")
    HUGE[name](path)
    assert path.stat().st_size < 64 * 1024
    run = run_console(["prep", path, "--out", tmp_path / "s.zarr"], tmp_path, address_space=2**30, timeout=120)
    assert_one_line_error(run, path.name)
    assert not (tmp_path / "s.zarr").exists()
