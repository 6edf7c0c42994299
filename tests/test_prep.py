"""`hsi prep`: the fitted preprocessing (band removal, fill, normalisation, PCA, whitening) checked
against independent references (scikit-learn, plain numpy), `--like`, auxiliary rasters, the RGB
preview and the real SalinasA and Jasper Ridge files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from hsicli.store.scene import SceneStore


def latent_cube(height: int, width: int, bands: int, seed: int, gain: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """An int16 cube whose band covariance has well-separated eigenvalues (ratio 0.7 between
    neighbours), so principal components are unique up to sign even after float32 rounding."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(bands, bands)))
    scores = rng.normal(size=(height * width, bands)) * (900.0 * 0.7 ** np.arange(bands))
    pixels = 5000.0 + 300.0 * np.arange(bands) + scores @ basis.T
    return np.rint(gain * pixels + shift).reshape(height, width, bands).astype(np.int16)


def prep(cli, *args) -> SceneStore:
    result = cli("prep", *args)
    assert result.exit_code == 0, result.stderr
    return SceneStore.open(result.stdout.strip())


def aligned(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-component signs (+1/-1) that align the rows of `reference` with those of `ours`."""
    signs = np.sign(np.sum(ours * reference, axis=1))
    assert np.all(signs != 0)
    return signs


def test_pca_matches_scikit_learn(synthetic_scene, cli, tmp_path):
    raw = latent_cube(30, 28, 12, seed=0)
    scene = synthetic_scene("scene.mat", cube=raw, with_gt=False)
    store = prep(cli, scene, "--pca", "8", "--out", tmp_path / "s.zarr")
    arrays, settings = store.transform()
    assert settings["pca"] == 8 and settings["normalisation"] == "zscore"

    pixels = raw.reshape(-1, 12).astype(np.float64)
    scaler = StandardScaler().fit(pixels)
    z = scaler.transform(pixels)
    reference = PCA(n_components=8, svd_solver="full").fit(z)
    np.testing.assert_allclose(arrays["offset"], scaler.mean_, rtol=1e-6)
    np.testing.assert_allclose(arrays["scale"], scaler.scale_, rtol=1e-5)

    components = arrays["pca_components"]
    assert components.shape == (8, 12)
    signs = aligned(components, reference.components_)
    np.testing.assert_allclose(components, signs[:, None] * reference.components_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(arrays["pca_explained_variance"], reference.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(
        arrays["pca_explained_variance_ratio"], reference.explained_variance_ratio_, rtol=1e-4
    )
    # Deterministic signs: the largest |loading| of every component is positive.
    assert np.all(components[np.arange(8), np.abs(components).argmax(axis=1)] > 0)

    cube = store.cube()
    assert cube.dtype == np.float32 and cube.shape == (30, 28, 8)
    expected = reference.transform(z) * signs
    scale = np.abs(expected).max()
    np.testing.assert_allclose(cube.reshape(-1, 8), expected, rtol=1e-4, atol=1e-4 * scale)


def test_like_applies_the_stored_transform_unchanged(synthetic_scene, cli, tree, tmp_path):
    raw_a = latent_cube(20, 18, 12, seed=1)
    raw_b = latent_cube(16, 22, 12, seed=2, gain=1.3, shift=-700)
    scene_a = synthetic_scene("a.mat", cube=raw_a, with_gt=False)
    scene_b = synthetic_scene("b.mat", cube=raw_b, with_gt=False)
    store_a = prep(cli, scene_a, "--pca", "5", "--drop-bands", "3,9", "--out", tmp_path / "a.zarr")
    store_b = prep(cli, scene_b, "--like", tmp_path / "a.zarr", "--out", tmp_path / "b.zarr")

    arrays, _ = store_a.transform()
    kept = arrays["kept_bands"]
    assert kept.tolist() == [0, 1, 3, 4, 5, 6, 7, 9, 10, 11]
    pixels = raw_b.reshape(-1, 12)[:, kept].astype(np.float64)
    expected = ((pixels - arrays["offset"]) / arrays["scale"] - arrays["pca_mean"]) @ arrays["pca_components"].T
    cube_b = store_b.cube()
    assert cube_b.shape == (16, 22, 5)
    np.testing.assert_allclose(cube_b.reshape(-1, 5), expected, rtol=1e-5, atol=1e-4)
    assert store_b.attrs["transform_fingerprint"] == store_a.attrs["transform_fingerprint"]
    arrays_b, _ = store_b.transform()
    assert sorted(arrays_b) == sorted(arrays)
    for name in arrays:
        np.testing.assert_array_equal(arrays_b[name], arrays[name])

    # Fitting on B instead gives another cube (B's statistics differ from A's).
    fitted_b = prep(cli, scene_b, "--pca", "5", "--drop-bands", "3,9", "--out", tmp_path / "fitted.zarr").cube()
    assert np.abs(np.abs(fitted_b) - np.abs(cube_b)).max() > 0.1 * np.abs(cube_b).max()

    # --like fixes the preprocessing: fitting options and another band count are errors.
    before = tree(tmp_path)
    conflicting = cli("prep", scene_b, "--like", tmp_path / "a.zarr", "--pca", "3", "--out", tmp_path / "c.zarr")
    assert conflicting.exit_code == 1 and "--like" in conflicting.stderr
    assert tree(tmp_path) == before
    other_bands = synthetic_scene("c.mat", cube=latent_cube(8, 8, 10, seed=3), with_gt=False)
    before = tree(tmp_path)
    wrong = cli("prep", other_bands, "--like", tmp_path / "a.zarr", "--out", tmp_path / "c.zarr")
    assert wrong.exit_code == 1 and "10 bands" in wrong.stderr and "12" in wrong.stderr
    assert tree(tmp_path) == before


def test_drop_bands_removes_exactly_those_bands(synthetic_scene, cli, tmp_path):
    raw = latent_cube(10, 9, 12, seed=4)
    scene = synthetic_scene("scene.mat", cube=raw, with_gt=False)
    store = prep(cli, scene, "--drop-bands", "2-4, 7,12", "--norm", "none", "--out", tmp_path / "s.zarr")
    kept = [0, 4, 5, 7, 8, 9, 10]
    np.testing.assert_array_equal(store.cube(), raw[:, :, kept].astype(np.float32))
    assert store.attrs["preprocessing"]["dropped_bands_1based"] == [2, 3, 4, 7, 12]
    assert store.transform()[0]["kept_bands"].tolist() == kept


def test_rgb_preview_comes_from_the_raw_bands(synthetic_scene, cli, tmp_path):
    raw = latent_cube(14, 11, 12, seed=5)
    scene = synthetic_scene("scene.mat", cube=raw, with_gt=False)
    # Bands 2-4 are dropped, yet the preview (bands at 25/15/5 % of the range: 3, 2, 1) uses them.
    store = prep(cli, scene, "--drop-bands", "2-4", "--pca", "3", "--out", tmp_path / "s.zarr")
    rgb = store.rgb()
    assert rgb.dtype == np.uint8 and rgb.shape == (14, 11, 3)
    bands = store.attrs["rgb_bands"]
    assert bands == [3, 2, 1]
    for channel, band in enumerate(bands):
        values = raw[:, :, band].ravel()
        order = np.argsort(values, kind="stable")
        assert np.all(np.diff(rgb[:, :, channel].ravel()[order].astype(int)) >= 0)  # monotone in the raw band
        assert rgb[:, :, channel].min() == 0 and rgb[:, :, channel].max() == 255  # 2-98 % stretch


def test_non_finite_values(synthetic_scene, cli, tree, tmp_path):
    raw = latent_cube(9, 8, 6, seed=6).astype(np.float32) / 10
    bad = [(0, 0, 0), (3, 4, 0), (8, 7, 5)]
    raw[bad[0]], raw[bad[1]], raw[bad[2]] = np.nan, np.nan, np.inf
    scene = synthetic_scene("scene.mat", cube=raw, with_gt=False)

    before = tree(tmp_path)
    refused = cli("prep", scene, "--out", tmp_path / "e.zarr")
    assert refused.exit_code == 1
    assert "3 non-finite values" in refused.stderr and "--fill" in refused.stderr
    assert tree(tmp_path) == before

    zero = prep(cli, scene, "--fill", "zero", "--norm", "none", "--out", tmp_path / "z.zarr").cube()
    mean = prep(cli, scene, "--fill", "mean", "--norm", "none", "--out", tmp_path / "m.zarr").cube()
    finite = np.isfinite(raw)
    np.testing.assert_array_equal(zero[finite], raw[finite])
    np.testing.assert_array_equal(mean[finite], raw[finite])
    for index in bad:
        band = raw[:, :, index[2]]
        assert zero[index] == 0
        np.testing.assert_allclose(mean[index], band[np.isfinite(band)].mean(dtype=np.float64), rtol=1e-6)
    # Normalised with the filled values: no NaN reaches the stored cube.
    assert np.isfinite(prep(cli, scene, "--fill", "mean", "--pca", "3", "--out", tmp_path / "p.zarr").cube()).all()


def npy_scene(tmp_path, cube: np.ndarray, name: str = "scene.npy"):
    path = tmp_path / name
    np.save(path, cube)
    return path


def test_integers_float32_cannot_hold_are_refused_or_their_loss_stated(cli, tree, tmp_path):
    """A uint64 cube near 2^63 became an all-zero store without a word (issue 17)."""
    rng = np.random.default_rng(0)
    near_top = np.uint64(2**63) - rng.integers(0, 1000, (6, 5, 3)).astype(np.uint64)
    source = npy_scene(tmp_path, near_top)
    before = tree(tmp_path)
    refused = cli("prep", source, "--out", "s.zarr")
    assert refused.exit_code == 1 and refused.stdout == ""
    [error] = [line for line in refused.stderr.splitlines() if line.startswith("Error: ")]
    assert "3 band(s)" in error and "band 1" in error and "one float32 value" in error, error
    assert "2^24" in refused.stderr and tree(tmp_path) == before

    # Values far apart above 2^24: some merge, the others are kept; one warning says how many.
    spread = rng.integers(0, 100, (6, 5, 3)).astype(np.int64)
    spread[:, :, 1] = 2**30 + np.arange(30).reshape(6, 5) * 1000  # 1000 apart; float32 steps by 128 up there
    spread[0, 0, 1] = spread[0, 1, 1] + 1  # one pair 1 apart: merged
    converted = cli("prep", npy_scene(tmp_path, spread, "spread.npy"), "--norm", "none", "--out", "w.zarr")
    assert converted.exit_code == 0, converted.stderr
    warnings = [line for line in converted.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and "band 2, 30 distinct values became 29" in warnings[0], converted.stderr
    stored = SceneStore.open(tmp_path / "w.zarr").cube()
    np.testing.assert_array_equal(stored, spread.astype(np.float32))
    # Integers below 2^24 convert exactly: no warning.
    exact = cli("prep", npy_scene(tmp_path, spread[:, :, [0, 2]], "small.npy"), "--out", "e.zarr")
    assert exact.exit_code == 0 and "Warning" not in exact.stderr, exact.stderr


@pytest.mark.parametrize("norm, pca, values, phrases", [
    ("zscore", None, [1e300], ("the cube holds 1 value(s) beyond float32's range", "bands [2]", "1e+300")),
    ("none", None, [-1e39, 1e40], ("the cube holds 2 value(s)", "1e+40")),
    ("minmax", None, [3e38, -3e38], ("the minmax scale", "6e+38")),
    ("none", 1, [3e38, -3e38], ("PCA variance",)),
], ids=["float64-1e300", "float64-both-signs", "minmax-range", "pca-variance"])
def test_values_beyond_float32_are_refused_naming_them(cli, tmp_path, norm, pca, values, phrases):
    """A float64 1e300 was reported as "NaN or inf" with a hint to --fill it (issue 17)."""
    cube = np.random.default_rng(1).normal(size=(6, 5, 3))
    cube.reshape(-1, 3)[: len(values), 1] = values
    args = ["prep", npy_scene(tmp_path, cube), "--norm", norm, "--fill", "zero", "--out", "s.zarr"]
    result = cli(*args, *(["--pca", str(pca)] if pca else []))
    assert result.exit_code == 1 and result.stdout == "" and not (tmp_path / "s.zarr").exists()
    lines = [line for line in result.stderr.splitlines() if line.startswith(("Error: ", "Hint: "))]
    assert len(lines) == 2 and lines[1].startswith("Hint: ") and "NaN or inf" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    # float32 extremes that stay in range after the normalisation are kept exactly.
    cube = np.random.default_rng(1).normal(size=(6, 5, 3)).astype(np.float32)
    cube.reshape(-1, 3)[:2, 1] = [3e38, -3e38]
    kept = cli("prep", npy_scene(tmp_path, cube, "f32.npy"), "--norm", "none", "--out", "f.zarr")
    assert kept.exit_code == 0, kept.stderr
    np.testing.assert_array_equal(SceneStore.open(tmp_path / "f.zarr").cube(), cube)


def test_whiten_gives_uncorrelated_unit_variance_components(synthetic_scene, cli, tmp_path):
    raw = latent_cube(20, 20, 10, seed=7)
    scene = synthetic_scene("scene.mat", cube=raw, with_gt=False)
    plain = prep(cli, scene, "--pca", "4", "--out", tmp_path / "plain.zarr").cube().reshape(-1, 4)
    white = prep(cli, scene, "--pca", "4", "--whiten", "--out", tmp_path / "white.zarr").cube().reshape(-1, 4)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(4), atol=2e-3)
    assert np.var(plain[:, 0], ddof=1) > 2 * np.var(plain[:, 3], ddof=1)  # without --whiten they are not
    unwhitened = cli("prep", scene, "--whiten", "--out", tmp_path / "x.zarr")
    assert unwhitened.exit_code == 1 and "--pca" in unwhitened.stderr


def test_salinas_a_is_recognised(salinas_a, cli, tmp_path):
    from hsicli.data.datasets import get_dataset

    cube, gt_file = salinas_a
    store = prep(cli, cube, "--gt", gt_file, "--norm", "none", "--out", tmp_path / "s.zarr")
    known = get_dataset("salinasA")
    assert store.attrs["dataset"] == "salinasA"
    assert store.attrs["class_ids"] == [1, 10, 11, 12, 13, 14]
    assert store.class_names == list(known.class_names)
    assert store.class_colors == list(known.class_colors)
    assert store.class_names[0].lower().startswith("broc") and "7wk" in store.class_names[5]
    raw_gt = scipy.io.loadmat(gt_file)["salinasA_gt"]
    lookup = np.zeros(15, dtype=np.uint16)
    lookup[[1, 10, 11, 12, 13, 14]] = np.arange(1, 7)
    np.testing.assert_array_equal(store.gt(), lookup[raw_gt])
    assert np.bincount(store.gt().ravel()).tolist()[1:] == [391, 1343, 616, 1525, 674, 799]
    raw = scipy.io.loadmat(cube)["salinasA_corrected"]
    np.testing.assert_array_equal(store.cube(), raw.astype(np.float32))


def test_auxiliary_rasters(synthetic_scene, cli, tmp_path):
    scene = synthetic_scene("scene.mat", height=12, width=10, bands=8)
    rng = np.random.default_rng(8)
    lidar = rng.normal(30.0, 5.0, (12, 10)).astype(np.float32)
    sar = rng.normal(0.0, 0.2, (12, 10, 2)).astype(np.float32)
    np.save(tmp_path / "lidar.npy", lidar)
    np.save(tmp_path / "sar.npy", sar)
    aux_args = ["--aux", tmp_path / "lidar.npy", "--aux", tmp_path / "sar.npy"]
    store = prep(cli, scene, *aux_args, "--out", tmp_path / "s.zarr")
    aux = store.aux()
    assert aux.shape == (12, 10, 3) and aux.dtype == np.float32
    stacked = np.concatenate([lidar[:, :, None], sar], axis=2).astype(np.float64)
    expected = (stacked - stacked.mean(axis=(0, 1))) / stacked.std(axis=(0, 1))
    np.testing.assert_allclose(aux, expected, rtol=1e-4, atol=1e-5)
    assert store.attrs["aux_sources"] == [str(tmp_path / "lidar.npy"), str(tmp_path / "sar.npy")]
    arrays, _ = store.transform()
    np.testing.assert_allclose(arrays["aux_offset"], stacked.mean(axis=(0, 1)), rtol=1e-5)
    assert SceneStore.open(tmp_path / "s.zarr").cube().shape == (12, 10, 8)

    without = prep(cli, scene, "--out", tmp_path / "plain.zarr")
    assert without.aux() is None

    np.save(tmp_path / "small.npy", np.zeros((12, 9), dtype=np.float32))
    wrong = cli("prep", scene, "--aux", tmp_path / "small.npy", "--out", tmp_path / "w.zarr")
    assert wrong.exit_code == 1 and "small.npy" in wrong.stderr and "12 × 9" in wrong.stderr
    assert not (tmp_path / "w.zarr").exists()


def test_like_applies_the_training_stores_auxiliary_normalisation(synthetic_scene, cli, tmp_path):
    """Issue 18: `--like` scales the new scene's auxiliary rasters with the training store's offset
    and scale (a LiDAR seen by the model on the same scale), not with statistics of its own."""
    rng = np.random.default_rng(3)
    trained, new = (synthetic_scene(f"{name}.mat", height=12, width=10, bands=8) for name in ("a", "b"))
    np.save(tmp_path / "lidar-a.npy", rng.normal(30.0, 5.0, (12, 10)).astype(np.float32))
    lidar = rng.normal(50.0, 2.0, (12, 10)).astype(np.float32)  # another mean and spread
    np.save(tmp_path / "lidar-b.npy", lidar)
    first = prep(cli, trained, "--aux", tmp_path / "lidar-a.npy", "--out", tmp_path / "a.zarr")
    second = prep(cli, new, "--like", first.path, "--aux", tmp_path / "lidar-b.npy", "--out", tmp_path / "b.zarr")
    stored, _ = first.transform()
    np.testing.assert_allclose(second.aux()[:, :, 0], (lidar - stored["aux_offset"][0]) / stored["aux_scale"][0],
                               rtol=1e-5, atol=1e-5)
    assert second.attrs["transform_fingerprint"] == first.attrs["transform_fingerprint"]
    np.save(tmp_path / "two.npy", np.zeros((12, 10, 2), np.float32))
    wrong = cli("prep", new, "--like", first.path, "--aux", tmp_path / "two.npy", "--out", tmp_path / "w.zarr")
    assert wrong.exit_code == 1 and "1 auxiliary raster" in wrong.stderr and not (tmp_path / "w.zarr").exists()
    missing = cli("prep", new, "--like", first.path, "--out", tmp_path / "m.zarr")
    assert missing.exit_code == 0 and "auxiliary rasters and this scene none" in missing.stderr


def test_jasper_ridge_matrix_layout(shared_data, cli, tmp_path):
    source = shared_data / "jasper-ridge" / "JasperRidge2_R198.mat"
    if not source.is_file():
        pytest.skip(f"{source} is not present")
    store = prep(cli, source, "--layout", "matrix", "--norm", "none", "--out", tmp_path / "j.zarr")
    matrix = scipy.io.loadmat(source)["Y"]  # bands × pixels, pixels in column-major order
    assert matrix.shape == (198, 10000)
    cube = store.cube()
    assert cube.shape == (100, 100, 198)
    expected = matrix.T.reshape(100, 100, 198, order="F")  # pixel p = row p mod 100, column p div 100
    np.testing.assert_array_equal(cube, expected.astype(np.float32))
    assert store.attrs["source"]["var"] == "Y" and store.attrs["source"]["raw_shape"] == [100, 100, 198]


# -- --class-names ------------------------------------------------------------------------------


def sparse_id_scene(synthetic_scene, name: str = "scene.mat", **shape):
    """A scene whose ground truth holds ids 3, 5, 8, 9 (not 1..K), which prep remaps to 1..4."""
    from conftest import synthetic_arrays

    cube, gt = synthetic_arrays(**{"height": 12, "width": 10, "bands": 8, **shape})
    return synthetic_scene(name, cube=cube, gt=np.array([0, 3, 5, 8, 9], dtype=np.uint8)[gt])


def one_line_error(result, code: int, *phrases: str) -> None:
    lines = result.stderr.splitlines()
    assert result.exit_code == code and result.stdout == "", result.stderr
    assert len(lines) == 2 and lines[0].startswith("Error: ") and lines[1].startswith("Hint: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


def test_class_names_reach_the_store_the_split_report_and_the_evaluate_table(synthetic_scene, cli, tmp_path):
    scene = sparse_id_scene(synthetic_scene)
    placeholder = prep(cli, scene, "--out", tmp_path / "plain.zarr")
    assert placeholder.class_names == ["class 3", "class 5", "class 8", "class 9"]
    store = prep(cli, scene, "--class-names", "tree, water,soil ,road", "--out", tmp_path / "s.zarr")
    assert store.class_names == ["tree", "water", "soil", "road"]
    assert store.attrs["class_ids"] == [3, 5, 8, 9] and store.class_colors == placeholder.class_colors
    np.testing.assert_array_equal(store.gt(), placeholder.gt())

    split = cli("split", tmp_path / "s.zarr", "--ratio", "0.5", "--name", "a")
    assert split.exit_code == 0, split.stderr
    lines = split.stderr.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["class", "train"])
    report = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 5]}
    counts = np.bincount(store.gt().ravel(), minlength=5)[1:]
    assert list(report) == ["tree", "water", "soil", "road"]
    assert [sum(map(int, row)) for row in report.values()] == counts.tolist()

    for command in (("train", "s.zarr", "--model", "svm", "--split", "a", "--out", "m.safetensors"),
                    ("predict", "m.safetensors", "--out", "p.zarr")):
        assert cli(*command).exit_code == 0
    table = cli("evaluate", "p.zarr", "--json")
    assert table.exit_code == 0, table.stderr
    import json

    per_class = json.loads(table.stdout)["per_class"]
    assert [row["name"] for row in per_class] == ["tree", "water", "soil", "road"]
    rows = [line.split("│")[1].strip() for line in table.stderr.splitlines() if line.startswith("│")]
    assert rows[:4] == ["tree", "water", "soil", "road"]


def test_class_names_from_a_file_may_hold_commas(synthetic_scene, cli, tmp_path):
    scene = sparse_id_scene(synthetic_scene)
    (tmp_path / "names.txt").write_text("Trees, mixed\nWater\n\nBare soil\nRoad\n")
    store = prep(cli, scene, "--class-names", "@names.txt", "--out", tmp_path / "s.zarr")
    assert store.class_names == ["Trees, mixed", "Water", "Bare soil", "Road"]
    missing = cli("prep", scene, "--class-names", "@absent.txt", "--out", tmp_path / "t.zarr")
    one_line_error(missing, 1, "--class-names @absent.txt", "absent.txt")
    assert not (tmp_path / "t.zarr").exists()


@pytest.mark.parametrize("names, phrases", [
    ("a,b,c", ["--class-names gives 3 names but the ground truth has 4 classes (ids 3, 5, 8, 9)"]),
    ("a,b,c,d,e", ["gives 5 names", "4 classes (ids 3, 5, 8, 9)"]),
    ("a,b,a,d", ["'a' twice"]),
    ("a,,c,d", ["name 2 of 4 is empty"]),
    ("a,b,c, ", ["name 4 of 4 is empty"]),
])
def test_wrong_class_names_are_one_line_usage_errors_that_write_nothing(synthetic_scene, cli, tree, tmp_path,
                                                                        names, phrases):
    scene = sparse_id_scene(synthetic_scene)
    before = tree(tmp_path)
    one_line_error(cli("prep", scene, "--class-names", names, "--out", tmp_path / "s.zarr"), 2, *phrases)
    # and without --out, where the store would get its default name
    one_line_error(cli("prep", scene, "--class-names", names), 2, *phrases)
    assert tree(tmp_path) == before


def test_class_names_need_a_ground_truth(synthetic_scene, cli, tree, tmp_path):
    scene = synthetic_scene("cube.mat", height=12, width=10, bands=8, with_gt=False)
    before = tree(tmp_path)
    one_line_error(cli("prep", scene, "--class-names", "a,b", "--out", tmp_path / "s.zarr"), 2,
                   "--class-names", "cube.mat has no ground truth")
    assert tree(tmp_path) == before


def test_class_names_replace_a_known_scenes_names_and_keep_its_colours(synthetic_scene, cli, tmp_path):
    from conftest import synthetic_arrays
    from hsicli.data.datasets import get_dataset

    cube, gt = synthetic_arrays(height=83, width=86, bands=4, classes=6)
    ids = np.array([0, 1, 10, 11, 12, 13, 14], dtype=np.uint8)  # SalinasA's class ids
    scene = synthetic_scene("SalinasA_corrected.mat", cube=cube, gt=ids[gt])
    known = get_dataset("salinasA")
    recognised = prep(cli, scene, "--out", tmp_path / "known.zarr")
    assert recognised.attrs["dataset"] == "salinasA" and recognised.class_names == list(known.class_names)
    named = prep(cli, scene, "--class-names", "b,l4,l5,l6,l7,corn", "--out", tmp_path / "named.zarr")
    assert named.attrs["dataset"] == "salinasA" and named.class_names == ["b", "l4", "l5", "l6", "l7", "corn"]
    assert named.class_colors == list(known.class_colors)


def test_class_names_replace_the_like_stores_names(synthetic_scene, cli, tmp_path):
    scene = sparse_id_scene(synthetic_scene)
    prep(cli, scene, "--class-names", "tree,water,soil,road", "--out", tmp_path / "source.zarr")
    assert prep(cli, scene, "--like", tmp_path / "source.zarr", "--out", tmp_path / "copied.zarr").class_names == [
        "tree", "water", "soil", "road"]
    target = prep(cli, scene, "--like", tmp_path / "source.zarr", "--class-names", "p,q,r,s",
                  "--out", tmp_path / "target.zarr")
    assert target.class_names == ["p", "q", "r", "s"]


def test_a_rerun_with_other_class_names_never_reuses_the_store(synthetic_scene, cli, tmp_path):
    scene = sparse_id_scene(synthetic_scene)
    out = tmp_path / "s.zarr"
    prep(cli, scene, "--class-names", "tree,water,soil,road", "--out", out)
    same = cli("prep", scene, "--class-names", "tree,water,soil,road", "--out", out)
    assert same.exit_code == 0 and "up to date" in same.stderr
    other = cli("prep", scene, "--class-names", "tree,lake,soil,road", "--out", out)
    one_line_error(other, 1, "already exists and was made from other inputs or options")
    assert SceneStore.open(out).class_names == ["tree", "water", "soil", "road"]
    unnamed = cli("prep", scene, "--out", out)
    one_line_error(unnamed, 1, "made from other inputs or options")
    assert prep(cli, scene, "--class-names", "tree,lake,soil,road", "--out", out, "--overwrite").class_names == [
        "tree", "lake", "soil", "road"]


def test_api_prep_takes_class_names(synthetic_scene, tmp_path):
    from hsicli import api
    from hsicli.errors import UsageError

    scene = sparse_id_scene(synthetic_scene)
    result = api.prep(scene, class_names=["tree", "water", "soil", "road"], out=tmp_path / "s.zarr")
    assert SceneStore.open(result.path).class_names == ["tree", "water", "soil", "road"]
    with pytest.raises(UsageError, match="list of strings"):
        api.prep(scene, class_names="tree,water,soil,road", out=tmp_path / "t.zarr")
    with pytest.raises(UsageError, match="gives 2 names"):
        api.prep(scene, class_names=["tree", "water"], out=tmp_path / "t.zarr")
    assert not (tmp_path / "t.zarr").exists()
