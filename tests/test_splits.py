"""Split strategies (hsicli.data.splits) on synthetic maps and real benchmark label layouts."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import distance_transform_cdt
from scipy.ndimage import label as label_regions

from hsicli.data import splits
from hsicli.data.splits import TEST, TRAIN, UNUSED, VAL
from hsicli.errors import HsiError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_gt(relative: str) -> np.ndarray:
    """The single 2-D array of a ground-truth .mat, class ids remapped to contiguous 1..C."""
    import scipy.io

    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data)")
    arrays = [v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__") and np.ndim(v) == 2]
    assert len(arrays) == 1, f"{path} holds {len(arrays)} 2-D arrays"
    ids, contiguous = np.unique(arrays[0], return_inverse=True)
    assert ids[0] == 0
    return contiguous.reshape(arrays[0].shape).astype(np.int64)


def class_sizes(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=labels.max() + 1)[1:]


def half_up(fraction: float, n: int) -> int:
    """round(fraction · n) with decimal halves rounded up, as a paper would write it."""
    return int((Decimal(str(fraction)) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_stratified(n: int, train: float, val: float) -> tuple[int, int, int]:
    """Reference rule for classes large enough that the test set never runs dry."""
    n_train = max(1, half_up(train, n))
    n_val = max(1, half_up(val, n)) if val > 0 else 0
    return n_train, n_val, n - n_train - n_val


def per_class_table(split: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(C, 3) counts of train / val / test per class, computed independently of `splits.counts`."""
    n_classes = int(labels.max())
    return np.stack(
        [[np.count_nonzero((labels == c) & (split == s)) for s in (TRAIN, VAL, TEST)] for c in range(1, n_classes + 1)]
    )


def assert_partition(split: np.ndarray, labels: np.ndarray) -> None:
    """Every labelled pixel is in exactly one of train / val / test; unlabelled pixels are 0."""
    assert split.dtype == np.uint8 and split.shape == labels.shape
    assert np.all(split[labels == 0] == UNUSED)
    assert np.all(np.isin(split[labels > 0], (TRAIN, VAL, TEST)))


def brute_leakage(split: np.ndarray, patch: int) -> float:
    """Per test pixel, scan its P×P window (rows y - P//2 .. y + (P-1)//2, clipped) for a training pixel."""
    height, width = split.shape
    test = np.argwhere(split == TEST)
    if len(test) == 0:
        return 0.0
    leaked = 0
    for y, x in test:
        rows = slice(max(0, y - patch // 2), y + (patch - 1) // 2 + 1)
        cols = slice(max(0, x - patch // 2), x + (patch - 1) // 2 + 1)
        leaked += bool((split[rows, cols] == TRAIN).any())
    return leaked / len(test)


# -- stratified -------------------------------------------------------------------------------


def test_stratified_salinasa_claresnet_protocol():
    labels = load_gt("salinasA/SalinasA_gt.mat")
    split = splits.stratified(labels, train=0.72, val=0.08, seed=0)
    assert_partition(split, labels)
    # SalinasA classes (ids 1, 10..14 -> 1..6): 391, 1343, 616, 1525, 674, 799 pixels.
    expected = [
        [282, 31, 78],
        [967, 107, 269],
        [444, 49, 123],
        [1098, 122, 305],
        [485, 54, 135],
        [575, 64, 160],
    ]
    assert per_class_table(split, labels).tolist() == expected
    counts = splits.counts(split, labels, 6)
    assert counts == {k: [row[i] for row in expected] for i, k in enumerate(("train", "val", "test"))}


@pytest.mark.parametrize(
    "relative",
    ["groundtruth/indian_pines_corrected_gt.mat", "groundtruth/salinas_gt.mat", "groundtruth/paviaU_gt.mat"],
)
@pytest.mark.parametrize("train,val", [(0.72, 0.08), (0.01, 0.01), (0.1, 0.0)])
def test_stratified_counts_exact_on_real_layouts(relative, train, val):
    labels = load_gt(relative)
    split = splits.stratified(labels, train=train, val=val, seed=3)
    assert_partition(split, labels)
    expected = [expected_stratified(int(n), train, val) for n in class_sizes(labels)]
    assert per_class_table(split, labels).tolist() == [list(row) for row in expected]


def test_stratified_lite_c2anet_keeps_one_pixel_per_class():
    labels = load_gt("groundtruth/indian_pines_corrected_gt.mat")
    split = splits.stratified(labels, train=0.01, val=0.01, seed=0)
    table = per_class_table(split, labels)
    assert table[:, :2].min() == 1  # classes of 20-93 pixels still get one train and one val pixel
    oats = int(np.argmin(class_sizes(labels)))  # 20 pixels
    assert table[oats].tolist() == [1, 1, 18]


def rows_of(*sizes: int) -> np.ndarray:
    """A label map whose class c (1-based) fills the first sizes[c-1] pixels of row c-1."""
    labels = np.zeros((len(sizes), max(sizes) + 2), dtype=np.int64)
    for cls, size in enumerate(sizes, start=1):
        labels[cls - 1, :size] = cls
    return labels


@pytest.mark.parametrize(
    "sizes,train,val,expected",
    [
        # 3: 2/1 would leave no test, train gives way; 4: 3/1/0 -> 2/1/1; 5: 4/1/0 -> 3/1/1.
        ((3, 4, 5, 10), 0.72, 0.08, [[1, 1, 1], [2, 1, 1], [3, 1, 1], [7, 1, 2]]),
        # Halves round up: 0.7 · 5 = 3.5 -> 4 (the float product lies just below 3.5).
        ((2, 5, 10), 0.7, 0.0, [[1, 0, 1], [4, 0, 1], [7, 0, 3]]),
        # 0.45 · 10 = 4.5 -> 5 validation pixels; 5 + 5 would leave no test, so train drops to 4.
        ((10,), 0.5, 0.45, [[4, 5, 1]]),
    ],
)
def test_stratified_small_classes_keep_a_test_pixel(sizes, train, val, expected):
    labels = rows_of(*sizes)
    split = splits.stratified(labels, train=train, val=val, seed=1)
    assert_partition(split, labels)
    assert per_class_table(split, labels).tolist() == expected


def test_stratified_seeded():
    labels = load_gt("groundtruth/indian_pines_corrected_gt.mat")
    a = splits.stratified(labels, train=0.72, val=0.08, seed=7)
    b = splits.stratified(labels, train=0.72, val=0.08, seed=7)
    c = splits.stratified(labels, train=0.72, val=0.08, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(per_class_table(a, labels), per_class_table(c, labels))


def test_stratified_draws_uniformly():
    # Two classes of 100 pixels at 50 %: over 200 seeds every pixel trains about half the time,
    # which fails for a draw that favours raster order or one region.
    labels = np.repeat(np.array([1, 2]), 100).reshape(10, 20)
    picked = np.mean([splits.stratified(labels, train=0.5, val=0.0, seed=s) == TRAIN for s in range(200)], axis=0)
    assert picked.mean() == pytest.approx(0.5)
    assert 0.3 < picked.min() and picked.max() < 0.7


# -- per class --------------------------------------------------------------------------------


def test_per_class_hsiseg_protocol():
    labels = load_gt("groundtruth/indian_pines_corrected_gt.mat")
    split = splits.per_class(labels, train=10, val=0, seed=0)
    assert_partition(split, labels)
    n = class_sizes(labels)
    assert per_class_table(split, labels).tolist() == [[10, 0, int(c) - 10] for c in n]
    with_val = per_class_table(splits.per_class(labels, train=10, val=5, seed=0), labels)
    assert with_val.tolist() == [[10, 5, int(c) - 15] for c in n]


def test_per_class_seeded():
    labels = load_gt("groundtruth/paviaU_gt.mat")
    a = splits.per_class(labels, train=10, val=3, seed=1)
    assert np.array_equal(a, splits.per_class(labels, train=10, val=3, seed=1))
    assert not np.array_equal(a, splits.per_class(labels, train=10, val=3, seed=2))


def test_per_class_too_small_names_the_class():
    labels = load_gt("groundtruth/indian_pines_corrected_gt.mat")
    oats = int(np.argmin(class_sizes(labels))) + 1  # 20 pixels
    with pytest.raises(HsiError) as caught:
        splits.per_class(labels, train=20, val=0, seed=0)
    assert f"class {oats} has 20" in caught.value.message
    assert "--per-class 20" in caught.value.message
    assert "needs at least 21" in caught.value.message
    assert caught.value.hint
    splits.per_class(labels, train=19, val=0, seed=0)  # 19 + 1 test fits exactly


# -- spatial blocks ---------------------------------------------------------------------------


def chebyshev_to_train(split: np.ndarray) -> np.ndarray:
    """Chessboard distance of every pixel to the nearest training pixel (independent of maximum_filter)."""
    return distance_transform_cdt(split != TRAIN, metric="chessboard")


@pytest.mark.parametrize("relative", ["groundtruth/indian_pines_corrected_gt.mat", "groundtruth/paviaU_gt.mat"])
@pytest.mark.parametrize("patch", [11, 25])
@pytest.mark.parametrize("train,val", [(0.1, 0.05), (0.72, 0.08)])
def test_spatial_blocks_zero_leakage_on_real_layouts(relative, patch, train, val):
    labels = load_gt(relative)
    split = splits.spatial_blocks(labels, train=train, val=val, patch=patch, seed=0)
    # Labelled pixels in the guard band are left out (0), the rest is train / val / test.
    assert_partition(split, np.where(split > 0, labels, 0))
    assert np.all(split[labels == 0] == UNUSED)
    assert splits.leakage(split, patch) == 0.0
    # No validation or test pixel lies within the patch radius of a training pixel.
    distance = chebyshev_to_train(split)
    assert distance[(split == VAL) | (split == TEST)].min() > patch // 2
    # Every class trains on at least one pixel.
    assert per_class_table(split, labels)[:, 0].min() >= 1


@pytest.mark.parametrize(
    "relative,patch,tolerance,kept",
    [
        # Pavia U (610 × 340): classes >= 200 px within 0.06 of 10 %, >= 75 % of pixels stay for val/test.
        ("groundtruth/paviaU_gt.mat", 11, 0.06, 0.75),
        ("groundtruth/paviaU_gt.mat", 25, 0.06, 0.70),
        # Indian Pines (145 × 145, small fields): within 0.12 at patch 11; at patch 25 the guard
        # radius (12 px) is about a field's width, so only the bound on the train share holds.
        ("groundtruth/indian_pines_corrected_gt.mat", 11, 0.12, 0.60),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_spatial_blocks_training_fractions(relative, patch, tolerance, kept, seed):
    labels = load_gt(relative)
    split = splits.spatial_blocks(labels, train=0.1, val=0.05, patch=patch, seed=seed)
    table = per_class_table(split, labels)
    n = class_sizes(labels)
    big = n >= 200
    assert np.abs(table[big, 0] / n[big] - 0.1).max() <= tolerance
    assert table[:, 0].sum() / n.sum() == pytest.approx(0.1, abs=0.02)
    assert table[:, 1].sum() / n.sum() == pytest.approx(0.05, abs=0.02)
    assert table[:, 1:].sum() / n.sum() >= kept


def test_spatial_blocks_indian_pines_patch_25_train_share():
    labels = load_gt("groundtruth/indian_pines_corrected_gt.mat")
    split = splits.spatial_blocks(labels, train=0.1, val=0.05, patch=25, seed=0)
    share = np.count_nonzero(split == TRAIN) / np.count_nonzero(labels)
    assert 0.1 <= share <= 0.2
    assert np.count_nonzero(split == TEST) > 0


def test_spatial_blocks_seeded():
    labels = load_gt("groundtruth/paviaU_gt.mat")
    a = splits.spatial_blocks(labels, train=0.1, val=0.05, patch=11, seed=4, block=20)
    assert np.array_equal(a, splits.spatial_blocks(labels, train=0.1, val=0.05, patch=11, seed=4, block=20))
    assert not np.array_equal(a, splits.spatial_blocks(labels, train=0.1, val=0.05, patch=11, seed=5, block=20))


def test_spatial_blocks_assigns_whole_blocks():
    # Fully labelled 100 × 100 scene, four class quadrants: the training pixels must be a union
    # of whole 20 × 20 cells of some shifted grid, and so must validation plus test plus guard.
    labels = np.ones((100, 100), dtype=np.int64)
    labels[:50, 50:], labels[50:, :50], labels[50:, 50:] = 2, 3, 4
    split = splits.spatial_blocks(labels, train=0.3, val=0.1, patch=5, seed=2, block=20)
    train = split == TRAIN
    assert 0.2 < train.mean() < 0.4

    def aligned(oy: int, ox: int) -> bool:
        cell = ((np.arange(100) + oy) // 20)[:, None] * 10 + ((np.arange(100) + ox) // 20)[None, :]
        size = np.bincount(cell.ravel())
        trained = np.bincount(cell.ravel(), weights=train.ravel())
        return bool(np.all((trained == 0) | (trained == size)))

    assert any(aligned(oy, ox) for oy in range(20) for ox in range(20))


def test_spatial_blocks_confined_class_still_trains():
    # Class 3 is a 3 × 3 patch: 20 % of it is 1.8 pixels, and any block holding it overshoots,
    # so only the rule "every class trains" gives it training pixels.
    labels = np.ones((60, 60), dtype=np.int64)
    labels[:, 30:] = 2
    labels[28:31, 10:13] = 3
    for seed in range(3):
        split = splits.spatial_blocks(labels, train=0.2, val=0.0, patch=5, seed=seed, block=10)
        table = per_class_table(split, labels)
        assert table[:, 0].min() >= 1
        assert table[:2, 2].min() > 0
        assert splits.leakage(split, 5) == 0.0


def test_spatial_blocks_rejects_block_below_guard_radius():
    labels = np.ones((40, 40), dtype=np.int64)
    with pytest.raises(HsiError, match="guard radius 12"):
        splits.spatial_blocks(labels, train=0.1, val=0.0, patch=25, seed=0, block=8)


# -- controlled random sampling ------------------------------------------------------------

SALINAS_A = "salinasA/SalinasA_gt.mat"
INDIAN_SUBSET = "indian-pines-subset/Indian_part.mat"


def load_subset_gt() -> np.ndarray:
    """The Indian Pines subset's `grd` (85 × 70, 4 classes), read directly (the file also holds the cube)."""
    import scipy.io

    path = DATA / INDIAN_SUBSET
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data)")
    return scipy.io.loadmat(path, variable_names=["grd"])["grd"].astype(np.int64)


def real_layout(name: str) -> np.ndarray:
    return load_subset_gt() if name == INDIAN_SUBSET else load_gt(name)


@pytest.mark.parametrize("relative", [SALINAS_A, INDIAN_SUBSET, "groundtruth/indian_pines_corrected_gt.mat"])
@pytest.mark.parametrize("patch,train,val", [(11, 0.01, 0.01), (11, 0.1, 0.05), (25, 0.05, 0.0)])
def test_controlled_separates_train_from_test(relative, patch, train, val):
    labels = real_layout(relative)
    split = splits.controlled(labels, train=train, val=val, patch=patch, seed=0)
    assert_partition(split, np.where(split > 0, labels, 0))
    # No validation or test pixel lies within the patch radius of a training pixel ...
    distance = chebyshev_to_train(split)
    assert distance[(split == VAL) | (split == TEST)].min() > patch // 2
    assert splits.leakage(split, patch) == 0.0
    # ... and only those within it are left out.
    assert np.all(distance[(labels > 0) & (split == UNUSED)] <= patch // 2)
    # Training counts are the stratified rule's, class by class.
    table, n = per_class_table(split, labels), class_sizes(labels)
    assert table[:, 0].tolist() == [expected_stratified(int(k), train, val)[0] for k in n]


@pytest.mark.parametrize("relative", [SALINAS_A, INDIAN_SUBSET])
def test_controlled_without_guard_is_the_papers_protocol(relative):
    # Liang et al.: the rest of each class is test; leakage falls well below a random split's.
    labels = real_layout(relative)
    split = splits.controlled(labels, train=0.05, val=0.0, patch=11, seed=1, guard=False)
    assert_partition(split, labels)
    table, n = per_class_table(split, labels), class_sizes(labels)
    assert table[:, 0].tolist() == [half_up(0.05, int(k)) for k in n]
    assert table[:, 2].tolist() == (n - table[:, 0]).tolist()
    random = splits.leakage(splits.stratified(labels, train=0.05, val=0.0, seed=1), 11)
    assert random > 0.95
    assert splits.leakage(split, 11) < 0.35


def test_controlled_grows_one_compact_region_per_connected_region():
    # Class 1 is two separate fields of 60 × 50 and 20 × 50 pixels (4 columns apart): 10 % of the
    # class (400 pixels) is shared 3 : 1 between them, each share grown as one 8-connected blob.
    labels = np.zeros((60, 120), dtype=np.int64)
    labels[:, :50], labels[:20, 54:104] = 1, 1
    labels[:, 110:] = 2  # 600 pixels, one region
    for seed in range(4):
        split = splits.controlled(labels, train=0.1, val=0.0, patch=5, seed=seed)
        for field, count, limit in [
            ((slice(None), slice(0, 50)), 300, 25),
            ((slice(0, 20), slice(54, 104)), 100, 20),
            ((slice(None), slice(110, None)), 60, 20),
        ]:
            train = split[field] == TRAIN
            assert train.sum() == count
            assert label_regions(train, structure=np.ones((3, 3)))[1] == 1
            # Breadth-first growth from a seed: within one Chebyshev ball around it, so the blob's
            # bounding box stays near sqrt(count) (a half ball where it meets a field's edge).
            rows, cols = np.nonzero(train)
            assert max(np.ptp(rows), np.ptp(cols)) < limit
        assert splits.leakage(split, 5) == 0.0


def test_controlled_validation_is_grown_outside_the_guard():
    labels = np.ones((40, 40), dtype=np.int64)
    labels[:, 20:] = 2
    split = splits.controlled(labels, train=0.05, val=0.1, patch=7, seed=3)
    table = per_class_table(split, labels)
    assert table[:, 0].tolist() == [40, 40] and table[:, 1].tolist() == [80, 80]
    assert chebyshev_to_train(split)[split == VAL].min() > 3
    for cls in (1, 2):  # one seed suffices in an open field: the validation region is one blob
        assert label_regions((split == VAL) & (labels == cls), structure=np.ones((3, 3)))[1] == 1


def test_controlled_seeded():
    labels = real_layout(SALINAS_A)
    a = splits.controlled(labels, train=0.01, val=0.01, patch=11, seed=4)
    assert np.array_equal(a, splits.controlled(labels, train=0.01, val=0.01, patch=11, seed=4))
    assert not np.array_equal(a, splits.controlled(labels, train=0.01, val=0.01, patch=11, seed=5))


def test_controlled_class_too_small_hints_min_pixels():
    with pytest.raises(HsiError) as caught:
        splits.controlled(rows_of(10, 2), train=0.1, val=0.1, patch=5, seed=0)
    assert "class 2 has 2" in caught.value.message
    assert "--min-pixels 3" in caught.value.hint


# -- small classes ----------------------------------------------------------------------------


def test_drop_small_classes():
    labels = rows_of(10, 2, 4, 6)
    kept, dropped = splits.drop_small_classes(labels, 5)
    assert dropped == {2: 2, 3: 4}
    assert np.array_equal(kept, np.where(np.isin(labels, [2, 3]), 0, labels))
    # The split of what is left samples no dropped pixel.
    split = splits.stratified(kept, train=0.5, val=0.0, seed=0)
    assert np.all(split[np.isin(labels, [2, 3])] == UNUSED)
    assert splits.drop_small_classes(labels, 2)[1] == {}
    with pytest.raises(HsiError, match="drops every class"):
        splits.drop_small_classes(labels, 11)
    with pytest.raises(HsiError, match="--min-pixels"):
        splits.drop_small_classes(labels, 0)


def test_too_small_classes_hint_min_pixels():
    with pytest.raises(HsiError) as caught:
        splits.stratified(rows_of(10, 2, 4), train=0.5, val=0.1, seed=0)
    assert "--min-pixels 3" in caught.value.hint
    with pytest.raises(HsiError) as caught:
        splits.per_class(rows_of(20, 2, 4), train=3, val=0, seed=0)
    assert "--min-pixels 4" in caught.value.hint


# -- leakage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("patch", [1, 2, 3, 4, 5, 9])
def test_leakage_matches_brute_force(seed, patch):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(5, 20, size=2))
    # Sparse training pixels so that the share is neither 0 nor 1 for most cases.
    split = rng.choice([UNUSED, TRAIN, VAL, TEST], p=[0.3, 0.05, 0.15, 0.5], size=shape).astype(np.uint8)
    assert splits.leakage(split, patch) == pytest.approx(brute_leakage(split, patch), abs=0)


def test_leakage_hand_case():
    split = np.zeros((20, 20), dtype=np.uint8)
    split[5, 5] = TRAIN
    split[5, 10] = TEST  # 5 columns away
    split[5, 17] = TEST  # 12 columns away
    assert splits.leakage(split, 11) == 0.5  # radius 5 reaches the first
    assert splits.leakage(split, 9) == 0.0
    assert splits.leakage(split, 25) == 1.0
    assert splits.leakage(np.zeros((4, 4), dtype=np.uint8), 11) == 0.0  # no test pixel


def test_leakage_of_random_split_is_high_and_fast():
    labels = load_gt("groundtruth/paviaC_gt.mat")  # 1096 × 715
    split = splits.stratified(labels, train=0.72, val=0.08, seed=0)
    start = time.perf_counter()
    value = splits.leakage(split, 25)
    elapsed = time.perf_counter() - start
    assert value > 0.99
    assert elapsed < 2.0


# -- predefined maps --------------------------------------------------------------------------


def load_houston() -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    path = DATA / "groundtruth" / "houston_gt.mat"
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data)")
    mat = scipy.io.loadmat(path)
    return mat["houston_gt_tr"].astype(np.int64), mat["houston_gt_te"].astype(np.int64)


def test_from_maps_houston():
    train_map, test_map = load_houston()
    split, labels = splits.from_maps(train_map, test_map)
    assert np.count_nonzero(split == TRAIN) == 2832
    assert np.count_nonzero(split == TEST) == 12197
    assert np.count_nonzero(split == VAL) == 0
    assert np.array_equal(labels, np.maximum(train_map, test_map))
    assert np.array_equal(split == TRAIN, train_map > 0)
    assert_partition(split, labels)
    counts = splits.counts(split, labels, 15)
    assert counts["train"] == np.bincount(train_map.ravel(), minlength=16)[1:].tolist()


def test_from_maps_houston_with_validation():
    train_map, test_map = load_houston()
    split, _ = splits.from_maps(train_map, test_map, val=0.1, seed=0)
    n = np.bincount(train_map.ravel(), minlength=16)[1:]
    expected_val = [max(1, half_up(0.1, int(c))) for c in n]
    table = per_class_table(split, train_map)
    assert table[:, 1].tolist() == expected_val
    assert table[:, 0].tolist() == (n - expected_val).tolist()
    assert np.count_nonzero(split == TEST) == 12197
    assert np.array_equal(split, splits.from_maps(train_map, test_map, val=0.1, seed=0)[0])


def test_from_maps_overlap():
    train_map = np.zeros((4, 4), dtype=np.int64)
    test_map = np.zeros((4, 4), dtype=np.int64)
    train_map[0, :2] = 1
    test_map[0, 1:3] = 1  # (0, 1) in both maps with the same class: training only
    split, labels = splits.from_maps(train_map, test_map)
    assert split[0, :3].tolist() == [TRAIN, TRAIN, TEST]
    assert labels[0, :3].tolist() == [1, 1, 1]
    test_map[0, 1] = 2
    with pytest.raises(HsiError, match="different classes to 1 pixels"):
        splits.from_maps(train_map, test_map)
    with pytest.raises(HsiError, match="train map is"):
        splits.from_maps(train_map, test_map[:3])


# -- validation of requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    "train,val",
    [
        (0.0, 0.08),
        (1.0, 0.0),
        (-0.1, 0.0),
        (1.5, 0.0),
        (float("nan"), 0.0),
        (0.5, -0.1),
        (0.5, 1.0),
        (0.9, 0.1),
        (0.95, 0.1),
    ],
)
def test_fractions_rejected(train, val):
    labels = np.repeat(np.arange(1, 3), 50).reshape(10, 10)
    for make in (splits.stratified, lambda lab, **kw: splits.spatial_blocks(lab, patch=3, **kw)):
        with pytest.raises(HsiError) as caught:
            make(labels, train=train, val=val, seed=0)
        assert "\n" not in caught.value.message and caught.value.hint


def test_check_fraction():
    splits.check_fraction("--val", 0.0)
    splits.check_fraction("val", 0.5)
    splits.check_fraction("--ratio", 0.72)
    for name, value in (("--ratio", 0.0), ("train", 1.0), ("--val", 1.0), ("--val", -0.01)):
        with pytest.raises(HsiError, match="must be a fraction"):
            splits.check_fraction(name, value)


def test_stratified_class_too_small():
    # Class 2 has 2 pixels: enough without validation, too few with it; class 3 has 1: too few either way.
    labels = rows_of(10, 2, 1)
    with pytest.raises(HsiError) as caught:
        splits.stratified(labels, train=0.72, val=0.08, seed=0)
    assert "class 2 has 2" in caught.value.message and "class 3 has 1" in caught.value.message
    with pytest.raises(HsiError) as caught:
        splits.stratified(labels, train=0.72, val=0.0, seed=0)
    assert "class 3 has 1" in caught.value.message and "class 2" not in caught.value.message


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"train": 0, "val": 0}, "--per-class"),
        ({"train": 2.5, "val": 0}, "--per-class"),
        ({"train": 5, "val": -1}, "--val"),
        ({"train": 5, "val": 0, "seed": -1}, "--seed"),
    ],
)
def test_per_class_rejects_bad_counts(kwargs, match):
    labels = np.ones((10, 10), dtype=np.int64)
    with pytest.raises(HsiError, match=match):
        splits.per_class(labels, **{"seed": 0, **kwargs})


def test_labels_rejected():
    with pytest.raises(HsiError, match="2-D integer"):
        splits.stratified(np.ones((3, 3, 3), dtype=np.int64), train=0.5, val=0.0, seed=0)
    with pytest.raises(HsiError, match="2-D integer"):
        splits.stratified(np.ones((3, 3)), train=0.5, val=0.0, seed=0)
    with pytest.raises(HsiError, match="no labelled pixels"):
        splits.stratified(np.zeros((3, 3), dtype=np.int64), train=0.5, val=0.0, seed=0)


# -- through the pipe ---------------------------------------------------------------------------


def test_controlled_and_min_pixels_through_the_pipe(synthetic_scene, shell, tmp_path):
    from conftest import synthetic_arrays
    from hsicli.store.scene import SceneStore

    cube, gt = synthetic_arrays(bands=16)
    gt[0, :2] = 5  # a class of 2 labelled pixels, too small for a split with validation
    synthetic_scene("ip.mat", cube=cube, gt=gt)

    refused = shell("hsi prep ip.mat --pca 8 | hsi split --controlled --ratio 0.1 --val 0.1 --window 5")
    assert refused.returncode == 1
    assert "class 5 has 2" in refused.stderr and "--min-pixels 3" in refused.stderr

    piped = shell("hsi prep ip.mat --pca 8 | hsi split --controlled --ratio 0.1 --val 0.1 --patch 5 --min-pixels 3")
    assert piped.returncode == 0, piped.stderr
    line = piped.stdout.strip()
    assert line == str(tmp_path / "ip-pca8.zarr" / "splits" / "controlled-p5-ratio0.1-val0.1-seed0-min3")
    assert "dropped (2 px" in piped.stderr
    store = SceneStore.open(tmp_path / "ip-pca8.zarr")
    layer = store.read_layer("splits", "controlled-p5-ratio0.1-val0.1-seed0-min3")
    labels = store.gt()
    assert layer.attrs["strategy"] == "controlled"
    assert layer.attrs["dropped"] == [{"class": 5, "name": store.class_names[4], "pixels": 2}]
    assert np.all(layer.data[labels == 5] == UNUSED)
    assert layer.attrs["leakage"]["share"] == 0.0
    assert chebyshev_to_train(layer.data)[(layer.data == VAL) | (layer.data == TEST)].min() > 2
    kept = class_sizes(np.where(labels == 5, 0, labels))[:4]
    expected = [expected_stratified(int(k), 0.1, 0.1)[0] for k in kept]
    assert per_class_table(layer.data, labels)[:4, 0].tolist() == expected
    info = shell("hsi info ip-pca8.zarr")
    assert info.returncode == 0, info.stderr
    described = "controlled-p5-ratio0.1-val0.1-seed0-min3: controlled, leakage 0.00% at 5×5"
    assert f"{described}; dropped {store.class_names[4]} (2 px)" in info.stderr
