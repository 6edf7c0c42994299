"""The patch store's sampler against naive numpy references: reflect-padded P×P patches, the
dihedral augmentations and their frequencies, noise, centres, windows, and the row-block tiling
that `hsi predict` uses."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hsicli.data.patches import Augment, PatchSampler, reflect_index, reflect_pad, window_targets
from hsicli.models.kinds import PATCH
from hsicli.store.record import RunRecord


def reference_patches(cube: np.ndarray, rows, cols, patch: int) -> np.ndarray:
    """Naive reference: pad the whole cube (numpy "reflect"), slice one window per pixel."""
    radius = patch // 2
    padded = np.pad(cube, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    return np.stack([padded[r : r + patch, c : c + patch] for r, c in zip(rows, cols)])


def border_and_random_pixels(height: int, width: int, rng: np.random.Generator, n: int = 40):
    corners = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)]
    edges = [(0, width // 2), (height - 1, width // 2), (height // 2, 0), (height // 2, width - 1)]
    inner = list(zip(rng.integers(0, height, n), rng.integers(0, width, n)))
    rows, cols = zip(*(corners + edges + inner))
    return np.array(rows), np.array(cols)


@pytest.mark.parametrize(
    "shape, patch",
    [((13, 10, 4), 1), ((13, 10, 4), 3), ((13, 10, 4), 11), ((6, 9, 3), 11), ((5, 4, 2), 15), ((1, 7, 2), 3)],
    ids=["P1", "P3", "P11", "P11 > height", "P15 > both sides", "one row"],
)
def test_patches_equal_the_naive_reference(shape, patch):
    rng = np.random.default_rng(0)
    cube = rng.normal(size=shape).astype(np.float32)
    rows, cols = border_and_random_pixels(*shape[:2], rng)
    sampler = PatchSampler.from_cube(cube, patch)
    patches = sampler.patches(rows, cols)
    assert patches.shape == (len(rows), patch, patch, shape[2]) and patches.dtype == np.float32
    assert patches.flags.c_contiguous
    np.testing.assert_array_equal(patches, reference_patches(cube, rows, cols, patch))
    assert (sampler.height, sampler.width, sampler.bands) == shape


def test_even_patch_sizes_are_refused():
    with pytest.raises(ValueError):
        PatchSampler.from_cube(np.zeros((5, 5, 2), dtype=np.float32), 4)


def test_centres_are_the_pixel_spectra():
    cube = np.random.default_rng(1).normal(size=(9, 7, 5)).astype(np.float32)
    rows, cols = border_and_random_pixels(9, 7, np.random.default_rng(2))
    for patch in (1, 5, 13):
        np.testing.assert_array_equal(PatchSampler.from_cube(cube, patch).centres(rows, cols), cube[rows, cols])


def test_reflect_pad_rows_match_the_full_padding():
    cube = np.random.default_rng(3).normal(size=(10, 6, 3)).astype(np.float32)
    for radius in (0, 2, 5, 12):
        full = np.pad(cube, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
        np.testing.assert_array_equal(reflect_pad(cube, radius), full)
        for a, b in ((0, 3), (4, 11), (full.shape[0] - 5, full.shape[0])):
            np.testing.assert_array_equal(reflect_pad(cube, radius, rows=slice(a, b)), full[a:b])
        np.testing.assert_array_equal(reflect_index(10, radius), np.pad(np.arange(10), radius, mode="reflect"))


def test_window_targets_pad_with_the_ignore_value():
    labels = np.random.default_rng(4).integers(0, 5, size=(8, 11))
    rows, cols = border_and_random_pixels(8, 11, np.random.default_rng(5), n=10)
    for size, ignore in ((1, -1), (5, -1), (9, 255)):
        radius = size // 2
        padded = np.pad(labels, radius, mode="constant", constant_values=ignore)
        expected = np.stack([padded[r : r + size, c : c + size] for r, c in zip(rows, cols)])
        np.testing.assert_array_equal(window_targets(labels, rows, cols, size, ignore=ignore), expected)


# -- augmentation ----------------------------------------------------------------------------


def dihedral(patch: np.ndarray) -> np.ndarray:
    """The 8 distinct rotations/flips of a (P, P) patch: rot90 k times, then optionally fliplr."""
    return np.stack([np.fliplr(np.rot90(patch, k)) if f else np.rot90(patch, k) for f in (0, 1) for k in range(4)])


def expected_variant_distribution(rotate: bool, flip: bool, p: float) -> np.ndarray:
    """CLAReSNet §III-B applied literally: rotate by 90/180/270° (one of them) with probability p,
    then a horizontal flip with probability p, then a vertical flip with probability p, independently.
    Returns the probability of each of the 8 variants of `dihedral` (found by applying the
    operations to an asymmetric test patch)."""
    probe = np.arange(9).reshape(3, 3)
    variants = dihedral(probe)
    rotations = [(0, 1.0)] if not rotate else [(0, 1 - p)] + [(k, p / 3) for k in (1, 2, 3)]
    flips = [(0, 1.0)] if not flip else [(0, 1 - p), (1, p)]
    distribution = np.zeros(8)
    for (k, pk), (h, ph), (v, pv) in itertools.product(rotations, flips, flips):
        image = np.rot90(probe, k)
        image = np.fliplr(image) if h else image
        image = np.flipud(image) if v else image
        distribution[np.flatnonzero((variants == image).all(axis=(1, 2)))[0]] += pk * ph * pv
    return distribution


def test_expected_distribution_is_what_we_think():
    both = expected_variant_distribution(True, True, 0.5)
    # Identity: no rotation and no flip, or a 180° rotation undone by both flips.
    np.testing.assert_allclose(both, [1 / 6, 1 / 12, 1 / 6, 1 / 12] * 2)
    np.testing.assert_allclose(expected_variant_distribution(True, False, 0.5), [0.5] + [1 / 6] * 3 + [0] * 4)


@pytest.mark.parametrize("rotate, flip", [(True, True), (True, False), (False, True)])
def test_augmented_variants_occur_with_the_right_frequencies(rotate, flip):
    draws = 40_000
    cube = np.arange(25 * 2, dtype=np.float32).reshape(5, 5, 2)  # all 8 variants of the centre patch differ
    sampler = PatchSampler.from_cube(cube, 3)
    rows, cols = np.full(draws, 2), np.full(draws, 2)
    patches = sampler.patches(
        rows, cols, augment=Augment(noise=0.0, rotate=rotate, flip=flip, p=0.5), rng=np.random.default_rng(6)
    )
    reference = reference_patches(cube, [2], [2], 3)[0]
    variants = np.stack([dihedral(reference[:, :, band]) for band in range(2)], axis=-1)  # (8, 3, 3, 2)
    matches = (patches[:, None] == variants[None]).all(axis=(2, 3, 4))  # (draws, 8)
    assert np.all(matches.sum(axis=1) == 1), "every augmented patch is exactly one dihedral variant"
    frequencies = matches.mean(axis=0)
    np.testing.assert_allclose(frequencies, expected_variant_distribution(rotate, flip, 0.5), atol=0.01)


def test_augmentation_is_per_sample_and_keeps_the_pixel():
    cube = np.random.default_rng(7).normal(size=(12, 12, 3)).astype(np.float32)
    rows, cols = border_and_random_pixels(12, 12, np.random.default_rng(8), n=200)
    patches = PatchSampler.from_cube(cube, 5).patches(
        rows, cols, augment=Augment(noise=0.0), rng=np.random.default_rng(9)
    )
    reference = reference_patches(cube, rows, cols, 5)
    np.testing.assert_array_equal(patches[:, 2, 2], cube[rows, cols])  # the centre never moves
    kinds = set()
    for patch, ref in zip(patches, reference):
        candidates = np.stack([dihedral(ref[:, :, b]) for b in range(3)], axis=-1)
        hits = np.flatnonzero((candidates == patch).all(axis=(1, 2, 3)))
        assert hits.size >= 1
        kinds.add(int(hits[0]))
    assert kinds == set(range(8))


def test_noise_is_0_05_of_each_band_std_on_about_half_the_samples():
    draws = 4000
    band_scale = np.array([1.0, 10.0, 0.1, 3.0], dtype=np.float32)  # bands of very different spread
    cube = (np.random.default_rng(10).normal(size=(6, 6, 4)) * band_scale).astype(np.float32)
    rng = np.random.default_rng(11)
    rows, cols = rng.integers(0, 6, draws), rng.integers(0, 6, draws)
    augment = Augment(noise=0.05, rotate=False, flip=False, p=0.5)
    sampler = PatchSampler.from_cube(cube, 3)
    noisy = sampler.patches(rows, cols, augment=augment, rng=np.random.default_rng(12))
    difference = noisy - reference_patches(cube, rows, cols, 3)
    touched = np.any(difference.reshape(draws, -1) != 0, axis=1)
    assert abs(touched.mean() - 0.5) < 0.03
    assert np.all(np.abs(difference[~touched]) == 0)
    padded = np.pad(cube, ((1, 1), (1, 1), (0, 0)), mode="reflect").reshape(-1, 4)
    np.testing.assert_allclose(sampler.band_std, padded.std(axis=0), rtol=1e-5)
    for band in range(4):
        noise = difference[touched][..., band].ravel()
        assert abs(noise.std() - 0.05 * sampler.band_std[band]) < 0.05 * sampler.band_std[band] * 0.03
        assert abs(noise.mean()) < 0.002 * sampler.band_std[band]
    # Independent per value, not one offset per patch.
    flat = difference[touched].reshape(int(touched.sum()), -1)
    assert abs(np.corrcoef(flat[:, :2].T)[0, 1]) < 0.1


# -- the tiling path of `hsi predict` --------------------------------------------------------


def test_predict_tiles_give_the_whole_scene_patches(tmp_path, monkeypatch):
    """`hsi predict` pads row blocks with `reflect_index`; its patches must be exactly those of
    the whole-scene sampler for every pixel, across block edges and the scene border."""
    import hsicli.engine.predict as engine
    import hsicli.store.prediction as prediction
    from hsicli.store.scene import SceneStore

    height, width, bands, patch, block = 23, 7, 3, 11, 6  # blocks 0-6, 6-12, 12-18, 18-23; radius 5
    cube = np.random.default_rng(13).normal(size=(height, width, bands)).astype(np.float32)
    store = SceneStore.create(
        tmp_path / "s.zarr",
        cube=cube,
        gt=np.zeros((height, width), dtype=np.uint16),
        rgb=np.zeros((height, width, 3), dtype=np.uint8),
        attrs={"class_names": ["a", "b"], "class_colors": ["#000000", "#ffffff"]},
        transform={},
        transform_attrs={},
    )
    checkpoint = tmp_path / "fake.safetensors"
    checkpoint.write_bytes(b"not read by the fake classifier")
    seen = []

    class FakeClassifier:
        """Stands in for a model: records the patches predict() hands it."""

        def __init__(self, path, options):
            self.path, self.patch, self.bands, self.n_classes = Path(path), patch, bands, 2
            self.spec = SimpleNamespace(name="fake", kind=PATCH)
            self.checkpoint = SimpleNamespace(  # the fields of store.checkpoint.Checkpoint that predict reads
                source_store=store.describe(), input=SimpleNamespace(transform_fingerprint=None),
                record=RunRecord(model="fake"), provenance={}, class_names=["a", "b"],
                class_colors=["#000000", "#ffffff"], split_fingerprint=None, results={},
            )

        def rows_reader(self, read_rows):  # no per-pixel stage: patches of the cube itself
            return read_rows

        def predict(self, sampler, rows, cols, embed, on_batch=lambda done: None):
            seen.append(sampler.patches(rows, cols))
            probabilities = np.full((rows.size, 2), 0.5, dtype=np.float32)
            return np.zeros(rows.size, dtype=np.int64), probabilities, None

    monkeypatch.setattr(engine, "Classifier", FakeClassifier)
    monkeypatch.setattr(engine, "ROW_BLOCK", block)
    monkeypatch.setattr(prediction, "ROW_BLOCK", block)
    engine.predict(checkpoint, engine.PredictOptions(out=tmp_path / "p.zarr"), command="hsi predict")

    assert len(seen) == 4  # several row blocks, the last one partial
    tiled = np.concatenate(seen)
    rows, cols = np.divmod(np.arange(height * width), width)
    np.testing.assert_array_equal(tiled, PatchSampler.from_cube(cube, patch).patches(rows, cols))
    np.testing.assert_array_equal(tiled, reference_patches(cube, rows, cols, patch))
