"""Scene readers: real benchmark files when present, synthetic round trips for every format,
and one clear HsiError naming the file for every kind of bad input."""

from __future__ import annotations

import importlib.util
import tempfile
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from hypothesis import given, settings
from hypothesis import strategies as st

from hsicli.errors import HsiError, InputError, UsageError
from hsicli.io import read_raster, read_scene

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ENVI_CODES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}
MATLAB_CLASSES = {"float64": "double", "float32": "single", "bool": "logical"}


def shared(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (see ../shared/data/README.md)")
    return path


@pytest.fixture
def cube() -> np.ndarray:
    # H != W != T, so any swapped axis changes the shape or the values.
    return np.random.default_rng(0).integers(-2000, 9000, size=(7, 5, 4), dtype=np.int16)


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 5, size=(7, 5), dtype=np.uint8)


def write_envi(
    base: Path,
    cube: np.ndarray,
    *,
    interleave: str = "bsq",
    byte_order: int = 0,
    offset: int = 0,
    code: int = 2,
    extra: str = "",
) -> tuple[Path, Path]:
    """Write cube (H, W, T) as ENVI: base.hdr + base.img."""
    lines, samples, bands = cube.shape
    disk = {"bsq": (2, 0, 1), "bil": (0, 2, 1), "bip": (0, 1, 2)}[interleave]
    dtype = np.dtype(ENVI_CODES[code]).newbyteorder("<" if byte_order == 0 else ">")
    data = base.with_suffix(".img")
    data.write_bytes(b"\xab" * offset + np.ascontiguousarray(cube.transpose(disk)).astype(dtype).tobytes())
    header = base.with_suffix(".hdr")
    header.write_text(
        f"ENVI\ndescription = {{synthetic\n  test, cube = yes}}\nsamples = {samples}\nlines   = {lines}\n"
        f"bands = {bands}\nheader offset = {offset}\nfile type = ENVI Standard\ndata type = {code}\n"
        f"interleave = {interleave}\nbyte order = {byte_order}\n{extra}"
    )
    return header, data


def write_v73(path: Path, variables: dict, *, user_block: bool = True) -> Path:
    """Write variables as MATLAB v7.3 does: HDF5, axes reversed, MATLAB_class attributes."""
    with h5py.File(path, "w", userblock_size=512 if user_block else None) as handle:
        for name, value in variables.items():
            if isinstance(value, str):  # MATLAB char: uint16 code units
                node = handle.create_dataset(name, data=np.frombuffer(value.encode("utf-16-le"), "<u2")[:, None])
                node.attrs["MATLAB_class"] = np.bytes_("char")
            elif isinstance(value, dict):  # MATLAB struct: a group
                node = handle.create_group(name)
                node.attrs["MATLAB_class"] = np.bytes_("struct")
                for field, item in value.items():
                    node.create_dataset(field, data=np.asarray(item).T)
            else:
                node = handle.create_dataset(name, data=value.T)
                node.attrs["MATLAB_class"] = np.bytes_(MATLAB_CLASSES.get(value.dtype.name, value.dtype.name))
    if user_block:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        with path.open("r+b") as stream:
            stream.write(text.ljust(116) + bytes(8) + b"\x00\x02" + b"IM")
    return path


def matlab_matrix(cube: np.ndarray) -> np.ndarray:
    """bands × pixels, pixels in MATLAB's column-major order (pixel p = row + col · nRow)."""
    height, width, bands = cube.shape
    return cube.transpose(1, 0, 2).reshape(width * height, bands).T


def assert_error(call, path: Path, *fragments: str, kind: type[HsiError] = InputError) -> HsiError:
    with pytest.raises(kind) as caught:
        call()
    error = caught.value
    assert str(path) in error.message, error.message
    assert "\n" not in error.message and error.hint
    for fragment in fragments:
        assert fragment in error.message + " | " + error.hint, (fragment, error.message, error.hint)
    return error


# --- real data ---------------------------------------------------------------------------------


def test_jasper_ridge_mat_matrix_is_abs_of_envi_cube():
    header = shared("jasper-ridge/jasperRidge2_R198.hdr")
    envi = read_scene(header)
    assert envi.cube.shape == (100, 100, 198) and envi.cube.dtype == np.int16
    assert int((envi.cube < 0).sum()) == 16_017
    assert envi.source == header and envi.cube_var is None and envi.gt is None

    wavelengths = np.array(envi.wavelengths)
    assert wavelengths.shape == (198,)
    assert wavelengths[0] == pytest.approx(399.369995) and 2400 < wavelengths[-1] < 2500
    # AVIRIS: increasing within each of its spectrometers; they overlap at bands 29/30 and 93/94.
    assert np.flatnonzero(np.diff(wavelengths) <= 0).tolist() == [28, 92]

    by_data_file = read_scene(header.with_suffix(".img"))
    assert by_data_file.source == header and np.array_equal(by_data_file.cube, envi.cube)

    matrix = read_scene(shared("jasper-ridge/JasperRidge2_R198.mat"), layout="matrix")
    assert matrix.cube.shape == (100, 100, 198) and matrix.cube.dtype == np.uint16
    assert matrix.cube_var == "Y"
    assert np.array_equal(matrix.cube.astype(np.int32), np.abs(envi.cube.astype(np.int32)))


def test_jasper_ridge_mat_without_layout_points_to_matrix_option():
    path = shared("jasper-ridge/JasperRidge2_R198.mat")
    error = assert_error(lambda: read_scene(path), path, "Y (198, 10000) uint16", "Region (1, 1) struct")
    assert "--layout matrix" in error.hint


def test_salinas_a_finds_its_sibling_ground_truth():
    path = shared("salinasA/SalinasA_corrected.mat")
    scene = read_scene(path)
    assert scene.cube.shape == (83, 86, 204) and scene.cube.dtype == np.int16
    assert scene.cube_var == "salinasA_corrected"
    assert scene.gt_source == path.with_name("SalinasA_gt.mat") and scene.gt_var == "salinasA_gt"
    ids, counts = np.unique(scene.gt[scene.gt > 0], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == {1: 391, 10: 1343, 11: 616, 12: 1525, 13: 674, 14: 799}
    assert int((scene.gt > 0).sum()) == 5348

    explicit = read_scene(path, gt=path.with_name("SalinasA_gt.mat"))
    assert np.array_equal(explicit.gt, scene.gt) and np.array_equal(explicit.cube, scene.cube)


def test_real_ground_truth_and_auxiliary_rasters():
    houston = shared("groundtruth/houston_gt.mat")
    assert_error(lambda: read_raster(houston), houston, "houston_gt_tr (349, 1905) uint8", "houston_gt_te", "--var")
    test_map, meta = read_raster(houston, var="houston_gt_te")
    assert test_map.shape == (349, 1905) and int((test_map > 0).sum()) == 12_197
    assert meta == {"source": houston, "var": "houston_gt_te", "geo": None}

    lidar, meta = read_raster(shared("groundtruth/Italy_lidar.mat"))
    assert lidar.shape == (166, 600, 2) and lidar.dtype == np.float32 and meta["var"] == "data"


# --- synthetic round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["v5", "v7-compressed"])
def test_mat_v5_cube_and_gt_in_one_file(tmp_path, cube, labels, compress):
    path = tmp_path / "ip.mat"
    extras = {"note": "text", "meta": {"a": 1}, "cells": np.array([[1, "x"]], dtype=object), "bands": np.arange(4.0)}
    scipy.io.savemat(path, {"indian_pines": cube, "gt": labels, **extras}, do_compression=compress)
    scene = read_scene(path)
    assert scene.cube.dtype == np.int16 and np.array_equal(scene.cube, cube)
    assert scene.cube.flags.c_contiguous
    assert np.array_equal(scene.gt, labels) and scene.gt.dtype == np.uint8
    assert (scene.cube_var, scene.gt_var, scene.gt_source, scene.source) == ("indian_pines", "gt", path, path)
    assert scene.wavelengths is None and scene.geo is None


@pytest.mark.parametrize("user_block", [True, False], ids=["matlab", "plain-hdf5"])
def test_mat_v73_transposed_layout(tmp_path, cube, labels, user_block):
    path = write_v73(
        tmp_path / "scene.mat",
        {"img": cube, "map": labels, "name": "Indian Pines", "info": {"x": [1, 2]}, "scale": np.array([[2.0]])},
        user_block=user_block,
    )
    with path.open("rb") as stream:
        assert (stream.read(10) == b"MATLAB 7.3") == user_block
    scene = read_scene(path)
    assert scene.cube.shape == (7, 5, 4) and scene.cube.dtype == np.int16
    assert np.array_equal(scene.cube, cube) and np.array_equal(scene.gt, labels)
    assert (scene.cube_var, scene.gt_var) == ("img", "map")


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("byte_order", [0, 1])
def test_envi_interleaves_and_byte_orders(tmp_path, cube, interleave, byte_order):
    extra = (
        "wavelength units = Micrometers\nwavelength = {0.45, 0.55,\n 0.65, 0.85}\n"
        "map info = {UTM, 1.000, 1.000, 500000.0, 4200000.0, 30.0, 30.0, 13, North, WGS-84, units=Meters}\n"
        "coordinate system string = {PROJCS[\"WGS_1984_UTM_Zone_13N\"]}\n"
    )
    header, data = write_envi(
        tmp_path / "scene", cube, interleave=interleave, byte_order=byte_order, offset=37, extra=extra
    )
    for given in (header, data):
        scene = read_scene(given)
        assert scene.source == header and scene.cube_var is None
        assert scene.cube.dtype == np.dtype(np.int16) and scene.cube.dtype.isnative
        assert np.array_equal(scene.cube, cube)
        assert scene.wavelengths == pytest.approx([450.0, 550.0, 650.0, 850.0])
        assert scene.geo["transform"] == [30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0]
        assert scene.geo["crs"] == 'PROJCS["WGS_1984_UTM_Zone_13N"]'


@pytest.mark.parametrize("code", sorted(ENVI_CODES))
def test_envi_data_types(tmp_path, cube, code):
    values = np.abs(cube) % 200 if np.dtype(ENVI_CODES[code]).kind == "u" else cube % 200 - 100
    header, _ = write_envi(tmp_path / "scene", values, interleave="bil", byte_order=1, code=code)
    scene = read_scene(header)
    assert scene.cube.dtype == np.dtype(ENVI_CODES[code]).newbyteorder("=")
    assert np.array_equal(scene.cube, values)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5)),
    interleave=st.sampled_from(["bsq", "bil", "bip"]),
    byte_order=st.sampled_from([0, 1]),
    offset=st.integers(0, 64),
    code=st.sampled_from(sorted(ENVI_CODES)),
)
def test_envi_round_trip_property(shape, interleave, byte_order, offset, code):
    values = np.arange(np.prod(shape)).reshape(shape) % 97
    with tempfile.TemporaryDirectory() as folder:
        header, _ = write_envi(
            Path(folder) / "x", values, interleave=interleave, byte_order=byte_order, offset=offset, code=code
        )
        cube = read_scene(header).cube
    assert cube.shape == shape and np.array_equal(cube, values)


def test_envi_one_band_raster_is_a_map(tmp_path, labels):
    header, _ = write_envi(tmp_path / "classes", labels[:, :, None], code=1)
    array, meta = read_raster(header)
    assert array.shape == (7, 5) and np.array_equal(array, labels)
    assert meta == {"source": header, "var": None, "geo": None}


def test_npy_and_npz_round_trips(tmp_path, cube, labels):
    foreign = tmp_path / "foreign.npy"  # big-endian, Fortran order: comes back native, C order
    np.save(foreign, np.asfortranarray(cube.astype(">i2")))
    scene = read_scene(foreign)
    assert np.array_equal(scene.cube, cube) and scene.cube.dtype.isnative and scene.cube.flags.c_contiguous
    assert scene.cube_var is None and scene.gt is None

    archive = tmp_path / "scene.npz"
    np.savez_compressed(archive, cube=cube, gt=labels, wavelengths=np.linspace(400, 1000, 4))
    scene = read_scene(archive)
    assert np.array_equal(scene.cube, cube) and np.array_equal(scene.gt, labels)
    assert (scene.cube_var, scene.gt_var) == ("cube", "gt")


def test_sibling_ground_truth_naming(tmp_path, cube, labels):
    scipy.io.savemat(tmp_path / "Pines_corrected.mat", {"pines": cube})
    scipy.io.savemat(tmp_path / "Pines_gt.mat", {"pines_gt": labels})
    scene = read_scene(tmp_path / "Pines_corrected.mat")
    assert scene.gt_source == tmp_path / "Pines_gt.mat" and np.array_equal(scene.gt, labels)

    np.save(tmp_path / "plain.npy", cube)
    np.save(tmp_path / "plain_gt.npy", labels.astype(np.float64))  # floats holding integers are labels
    scene = read_scene(tmp_path / "plain.npy")
    assert scene.gt_source == tmp_path / "plain_gt.npy" and scene.gt_var is None
    assert scene.gt.dtype == np.int32 and np.array_equal(scene.gt, labels)

    header, data = write_envi(tmp_path / "flight", cube)
    header = header.rename(tmp_path / "flight.img.hdr")  # the other ENVI naming: DATA.hdr
    np.save(tmp_path / "flight_gt.npy", labels)
    scene = read_scene(data)
    assert scene.source == header and np.array_equal(scene.gt, labels)

    np.save(tmp_path / "alone.npy", cube)
    assert read_scene(tmp_path / "alone.npy").gt is None


def test_explicit_ground_truth_file_and_variable(tmp_path, cube, labels):
    scipy.io.savemat(tmp_path / "ip.mat", {"ip": cube, "gt": labels})
    np.save(tmp_path / "cube.npy", cube)
    scene = read_scene(tmp_path / "cube.npy", gt=tmp_path / "ip.mat")  # the one map of the cube's size
    assert np.array_equal(scene.gt, labels) and scene.gt_var == "gt" and scene.gt_source == tmp_path / "ip.mat"

    maps = tmp_path / "maps.mat"
    scipy.io.savemat(maps, {"train": labels, "test": labels[::-1].copy()})
    assert_error(lambda: read_scene(tmp_path / "cube.npy", gt=maps), maps, "train", "test", "--gt-var")
    scene = read_scene(tmp_path / "cube.npy", gt=maps, gt_var="test")
    assert np.array_equal(scene.gt, labels[::-1])


@pytest.mark.parametrize("orientation", ["bands-by-pixels", "pixels-by-bands"])
def test_matrix_layout(tmp_path, cube, orientation):
    matrix = matlab_matrix(cube)
    path = tmp_path / "unmixing.mat"
    scipy.io.savemat(path, {
        "Y": matrix if orientation == "bands-by-pixels" else matrix.T,
        "nRow": np.array([[7]], np.uint8), "nCol": np.array([[5]], np.uint8), "SlectBands": np.arange(1, 5)[:, None],
    })  # fmt: skip
    scene = read_scene(path, layout="matrix")
    assert np.array_equal(scene.cube, cube) and scene.cube_var == "Y"
    assert_error(lambda: read_scene(path), path, "--layout matrix")


def test_pixels_by_bands_matrix_is_never_guessed(tmp_path, cube):
    path = tmp_path / "pixels.npy"
    np.save(path, cube.reshape(-1, 4))
    assert_error(lambda: read_scene(path), path, "(35, 4)", "3-D")


# --- errors --------------------------------------------------------------------------------------


def test_missing_directory_and_empty_files(tmp_path):
    missing = tmp_path / "nope.mat"
    assert_error(lambda: read_scene(missing), missing, "does not exist")
    assert_error(lambda: read_raster(tmp_path), tmp_path, "directory")
    empty = tmp_path / "empty.mat"
    empty.touch()
    assert_error(lambda: read_scene(empty), empty, "empty (0 bytes)")


def test_truncated_files(tmp_path, cube, labels):
    scipy.io.savemat(tmp_path / "v5.mat", {"cube": cube, "gt": labels})
    write_v73(tmp_path / "v73.mat", {"cube": cube})
    np.save(tmp_path / "cube.npy", cube)
    np.savez(tmp_path / "cube.npz", cube=cube)
    for name in ("v5.mat", "v73.mat", "cube.npy", "cube.npz"):
        whole = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(whole[: len(whole) * 2 // 3])
        assert_error(lambda: read_scene(cut), cut)  # noqa: B023 - called at once


def test_files_that_are_no_scene(tmp_path):
    text = tmp_path / "notes.mat"
    text.write_text("samples,lines\n1,2\n")
    assert_error(lambda: read_scene(text), text, "not a hyperspectral scene", "MATLAB MAT-file", "text file")
    png = tmp_path / "map.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert_error(lambda: read_scene(png), png, "PNG image", "ENVI")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    assert_error(lambda: read_scene(blob), blob, "unrecognised binary data")
    fake_header = tmp_path / "scene.hdr"
    fake_header.write_text("samples = 3\n")
    assert_error(lambda: read_scene(fake_header), fake_header, "ENVI header")


def test_ground_truth_of_another_shape(tmp_path, cube):
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "wrong.npy", np.ones((7, 6), np.uint8))
    error = assert_error(lambda: read_scene(tmp_path / "cube.npy", gt=tmp_path / "wrong.npy"), tmp_path / "wrong.npy")
    assert "(7, 6)" in error.message and "(7, 5)" in error.message
    np.save(tmp_path / "cube_gt.npy", np.full((7, 5), 1.5))  # a sibling found on its own is checked too
    assert_error(lambda: read_scene(tmp_path / "cube.npy"), tmp_path / "cube_gt.npy", "non-integer")


def test_cube_without_bands(tmp_path):
    path = tmp_path / "flat.mat"
    scipy.io.savemat(path, {"cube": np.zeros((7, 5, 0), np.int16)})
    assert_error(lambda: read_scene(path), path, "0 bands")
    header, _ = write_envi(tmp_path / "flat", np.zeros((7, 5, 1), np.int16))
    header.write_text(header.read_text().replace("bands = 1", "bands = 0"))
    assert_error(lambda: read_scene(header), header, "0 bands")


def test_non_numeric_and_ambiguous_arrays(tmp_path, cube, labels):
    path = tmp_path / "odd.mat"
    scipy.io.savemat(path, {"name": "x", "meta": {"a": 1}, "cells": np.array([[1, "x"]], dtype=object)})
    listed = ("cells (1, 2) cell", "meta (1, 1) struct", "name (1,) char")
    assert_error(lambda: read_scene(path), path, "no 3-D numeric array", *listed, "--var")
    assert_error(lambda: read_scene(path, var="cells"), path, "cell, not a real-valued numeric array")
    assert_error(lambda: read_scene(path, var="absent"), path, "no array named 'absent'", "name (1,) char")

    several = tmp_path / "several.mat"
    scipy.io.savemat(several, {"a": cube, "b": cube[:, :, :2]})
    listed = ("a (7, 5, 4) int16", "b (7, 5, 2) int16")
    assert_error(lambda: read_scene(several), several, "2 3-D arrays", *listed, "--var")
    assert np.array_equal(read_scene(several, var="b").cube, cube[:, :, :2])

    two_maps = tmp_path / "two_maps.mat"
    scipy.io.savemat(two_maps, {"cube": cube, "train": labels, "test": labels})
    assert_error(lambda: read_scene(two_maps), two_maps, "cannot tell which is the ground truth", "--gt-var")
    assert read_scene(two_maps, gt_var="test").gt_var == "test"

    complex_cube = tmp_path / "complex.npy"
    np.save(complex_cube, cube.astype(np.complex64))
    assert_error(lambda: read_scene(complex_cube), complex_cube, "complex64")


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_error(lambda: read_scene(path), path, "Python objects")


def test_ground_truth_that_is_no_numeric_array_is_refused(tmp_path):
    """An object array (or MATLAB cell) of the cube's size was taken for "no ground truth" (issue 17)."""
    cube = np.zeros((4, 3, 2), np.int16)
    labels = np.empty((4, 3), dtype=object)
    labels[...] = 1
    npz = tmp_path / "scene.npz"
    np.savez(npz, cube=cube, gt=labels)  # the object array is pickled, and never unpickled on reading
    assert_error(lambda: read_scene(npz), npz, "'gt'", "object, not integer labels", "--gt FILE")
    mat = tmp_path / "scene.mat"
    scipy.io.savemat(mat, {"cube": cube, "gt": labels})
    assert_error(lambda: read_scene(mat), mat, "'gt'", "not integer labels")
    scipy.io.savemat(mat, {"cube": cube, "note": np.array(["text"], dtype=object)})  # another size: no labels
    assert read_scene(mat).gt is None


def test_a_fifo_is_refused_instead_of_read_for_ever(tmp_path):
    import os

    fifo = tmp_path / "scene.npy"
    os.mkfifo(fifo)  # no writer: opening it for reading would block
    assert_error(lambda: read_scene(fifo), fifo, "not a regular file")
    assert_error(lambda: read_raster(fifo), fifo, "not a regular file")


def test_lying_envi_header_errors_before_allocating(tmp_path, cube):
    header, data = write_envi(tmp_path / "liar", cube)
    text = header.read_text().replace("samples = 5", "samples = 50000")
    header.write_text(text.replace("lines   = 7", "lines = 50000"))
    tracemalloc.start()
    try:
        error = assert_error(lambda: read_scene(header), data, "declares 20,000,000,000 bytes", "truncated")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak
    assert header.name in error.message

    longer = data.read_bytes() + bytes(10)  # a file larger than declared is as wrong as a shorter one
    header2, data2 = write_envi(tmp_path / "long", cube)
    data2.write_bytes(longer)
    assert_error(lambda: read_scene(header2), data2, "holds 290 bytes", "declares 280")


def test_bad_envi_headers(tmp_path, cube):
    header, data = write_envi(tmp_path / "scene", cube)
    text = header.read_text()
    header.write_text(text.replace("data type = 2", "data type = 6"))
    assert_error(lambda: read_scene(header), header, "complex data")
    header.write_text(text.replace("interleave = bsq", "interleave = bxx"))
    assert_error(lambda: read_scene(header), header, "'bxx'")
    header.write_text(text.replace("byte order = 0\n", ""))
    assert_error(lambda: read_scene(header), header, "no 'byte order'")
    header.write_text(text + "wavelength = {1, 2}\n")
    assert_error(lambda: read_scene(header), header, "2 wavelengths for 4 bands")
    header.write_text(text)
    data.unlink()
    assert_error(lambda: read_scene(header), header, "no data file")


def test_options_that_do_not_apply(tmp_path, cube):
    path = tmp_path / "cube.npy"
    np.save(path, cube)
    assert_error(lambda: read_scene(path, var="x"), path, "--var", kind=UsageError)
    assert_error(lambda: read_scene(path, gt_var="gt"), path, "--gt-var 'gt'", "--gt FILE")
    with pytest.raises(UsageError):
        read_scene(path, layout="columns")
    assert_error(lambda: read_scene(path, layout="matrix"), path, "single raster")


@pytest.mark.skipif(importlib.util.find_spec("rasterio") is not None, reason="rasterio is installed")
def test_geotiff_without_rasterio_names_the_extra(tmp_path):
    path = tmp_path / "lidar.tif"
    path.write_bytes(b"II*\x00\x08\x00\x00\x00" + bytes(64))
    assert_error(lambda: read_raster(path), path, "rasterio", "pip install hsicli[geotiff]")


def test_geotiff_round_trip(tmp_path, cube):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    path = tmp_path / "scene.tif"
    transform = from_origin(500000.0, 4200000.0, 30.0, 30.0)
    profile = {"driver": "GTiff", "height": 7, "width": 5, "count": 4, "dtype": "int16"}
    profile |= {"crs": "EPSG:32613", "transform": transform}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.moveaxis(cube, -1, 0))
    scene = read_scene(path)
    assert np.array_equal(scene.cube, cube) and scene.cube.dtype == np.int16
    assert scene.geo["transform"] == [30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0] and "32613" in scene.geo["crs"]


@pytest.mark.parametrize("map_info, crs", [
    ("{UTM, 1, 1, 500000.0, 4200000.0, 30.0, 30.0, 10, North, WGS-84, units=Meters}", "EPSG:32610"),
    ("{UTM, 1, 1, 500000.0, 4200000.0, 30.0, 30.0, 5, South, WGS-84}", "EPSG:32705"),
    ("{Geographic Lat/Lon, 1, 1, -122.5, 37.8, 0.001, 0.001, WGS-84}", "EPSG:4326"),
    ("{UTM, 1, 1, 500000.0, 4200000.0, 30.0, 30.0, 10, North, NAD-27}", None),  # datum without an EPSG rule
])
def test_envi_map_info_without_coordinate_string_names_the_crs(tmp_path, cube, map_info, crs):
    """As GDAL does: WGS-84 UTM zones and geographic WGS-84 map to their EPSG codes."""
    header, _ = write_envi(tmp_path / "scene", cube, interleave="bsq", byte_order=0, extra=f"map info = {map_info}\n")
    assert read_scene(header).geo["crs"] == crs
