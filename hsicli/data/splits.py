"""Split strategies: which labelled pixels train, validate and test a model.

A split is a uint8 (H, W) layer: 0 = not used (unlabelled, or dropped by a guard margin),
1 = train, 2 = validation, 3 = test. Labels are (H, W) integer maps with 0 = unlabelled.

- `stratified`: a fraction of every class (CLAReSNet §III-B: 72/8/20; Lite-C2ANet §4.1: 1 %
  training, here 1/1/98 with at least one pixel per class).
- `per_class`: a fixed count per class (HSIseg §4.1: 10 per class, no validation set).
- `spatial_blocks`: whole square blocks per set plus a guard margin of the patch radius, so that
  no training patch sees a test pixel (`leakage(split, patch) == 0`).
- `controlled`: controlled random sampling (Liang et al., TGRS 2017; Lite-C2ANet [37]): per class,
  training regions grown from a random seed in every connected region, plus the guard margin.
- `drop_small_classes`: leave out the classes too small to sample (`hsi split --min-pixels`).
- `from_maps`: predefined train/test maps (Houston 2013's standard maps).

Every draw uses `numpy.random.default_rng(seed)`, so a seed fixes the split.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.ndimage import find_objects, maximum_filter
from scipy.ndimage import label as label_regions

from hsicli.errors import HsiError
from hsicli.store.splits import TEST, TRAIN, UNUSED, VAL

SET_NAMES = ("train", "val", "test")

# Fractions such as 0.7 are not exact in binary, so 0.7 * 5 may land just below 3.5; the nudge
# makes decimal halves round up as written on paper.
_HALF_UP = 0.5 + 1e-9
# Default spatial block: about this many blocks across the scene, fine enough to share out
# every class; see `default_block`.
_BLOCKS_TARGET = 1000


def check_fraction(name: str, value: float) -> None:
    """Raise HsiError unless `value` is a usable fraction for the option `name`.

    A validation fraction (`name` "val" or "--val") may be 0 (no validation set); any other
    fraction (train, "--ratio") must lie strictly between 0 and 1.
    """
    allow_zero = name.lstrip("-") == "val"
    low_ok = value >= 0 if allow_zero else value > 0
    # The chained comparison is also False for NaN.
    if not (low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise HsiError(
            f"{name} must be a fraction in {interval}, got {value}",
            hint="write fractions as decimals, e.g. --ratio 0.72 --val 0.08 (72/8/20)",
        )


def stratified(labels: np.ndarray, *, train: float, val: float, seed: int) -> np.ndarray:
    """Draw a fraction of every class for training and validation; the rest is test.

    For a class of n pixels: n_train = max(1, round(train·n)) and n_val = round(val·n), at least 1
    when val > 0 (rounding half up). The test set keeps at least one pixel: when rounding would
    leave none, validation is capped at n − 2 and then training gives way. A class therefore
    needs 2 pixels (3 with validation), else HsiError naming it.
    """
    labels = _check_labels(labels)
    n_train, n_val = _fraction_counts(_class_sizes(labels), train, val)
    return _draw(labels, n_train, n_val, _rng(seed))


def _fraction_counts(n: np.ndarray, train: float, val: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, n_val) per class id for the fractions `train` and `val` (rule: `stratified`)."""
    _check_fractions(train, val)
    present = n > 0
    min_val = 1 if val > 0 else 0
    _require_sizes(
        n,
        2 + min_val,
        f"--ratio {train:g} --val {val:g}",
        "one pixel each for train, val and test" if val else "one pixel each for train and test",
        hint="use --val 0 for classes this small",
    )
    n_val = np.clip(_round(val * n), min_val, np.maximum(n - 2, 0)) * present
    n_train = np.clip(_round(train * n), 1, np.maximum(n - n_val - 1, 1)) * present
    return n_train, n_val


def per_class(labels: np.ndarray, *, train: int, val: int, seed: int) -> np.ndarray:
    """Draw `train` training and `val` validation pixels from every class; the rest is test.

    HSIseg (§4.1) trains on 10 pixels per class with no validation set (`val=0`). Every
    class needs train + val + 1 pixels (one left for testing), else HsiError naming it.
    """
    _check_count("--per-class", train, minimum=1)
    _check_count("--val", val, minimum=0)
    labels = _check_labels(labels)
    n = _class_sizes(labels)
    _require_sizes(
        n,
        train + val + 1,
        f"--per-class {train} --val {val}",
        "train + val + at least 1 test",
        hint="lower --per-class or --val, or use a fraction per class (--ratio)",
    )
    present = n > 0
    return _draw(labels, np.full(n.shape, train) * present, np.full(n.shape, val) * present, _rng(seed))


def spatial_blocks(
    labels: np.ndarray, *, train: float, val: float, patch: int, seed: int, block: int | None = None
) -> np.ndarray:
    """Spatially disjoint split: whole square blocks per set, with a guard margin.

    1. The scene is cut into `block` × `block` squares on a grid whose origin the seed shifts
       (default size: `default_block(shape, patch)`; at least the guard radius patch // 2).
    2. Training blocks are added greedily while one still brings the per-class training counts
       closer to train·n_c (error sum_c |train_c − train·n_c| / n_c). Among those blocks the
       one chosen minimises that error plus sum_c lost_c / n_c, lost_c being the pixels of
       class c that its guard band (step 4) newly takes from other blocks, minus those it
       takes back by training on them. This grows compact training regions, which lose far
       less to the guard band than scattered blocks. Guard losses are estimated from block
       areas (a pixel within patch // 2 of a training block's square).
    3. A class the greedy left without training pixels then gets its cheapest block (whole,
       with the other classes in it), so every labelled class has at least one training pixel.
       Blocks are atomic, so a class confined to training blocks and their guard band has no
       validation or test pixels; `counts` shows it.
    4. Every other pixel within Chebyshev distance patch // 2 of a training pixel becomes
       UNUSED, so no training patch contains a validation or test pixel (reflect padding at
       the border only mirrors pixels inside the window): `leakage(split, patch) == 0`.
    5. Validation blocks are added greedily from the rest by their remaining pixels, towards
       val·n_c per class; the remaining blocks are test.

    Per-class fractions are approximate: finer for large scenes and small blocks, coarser for
    classes that occupy few blocks; validation and test also lose the guard band.
    """
    _check_fractions(train, val)
    _check_count("--patch", patch, minimum=1)
    labels = _check_labels(labels)
    radius = patch // 2
    if block is None:
        block = default_block(labels.shape, patch)
    _check_count("--block", block, minimum=1)
    if block < radius:
        raise HsiError(
            f"--block {block} is smaller than the guard radius {radius} of --patch {patch}",
            hint=f"use --block {radius} or more, or leave it out (default here: {default_block(labels.shape, patch)})",
        )
    rng = _rng(seed)

    # Padded coordinates: the seeded offset shifts the grid, blocks at the edges are partial.
    offset_y, offset_x = rng.integers(0, block, size=2)
    pos_y = np.arange(labels.shape[0]) + offset_y
    pos_x = np.arange(labels.shape[1]) + offset_x
    grid = (int(pos_y[-1]) // block + 1, int(pos_x[-1]) // block + 1)
    block_id = (pos_y // block)[:, None] * grid[1] + (pos_x // block)[None, :]
    # Guard zone of each pixel inside its block: bits up, down, left, right = within the
    # radius of that side, i.e. lost if the neighbouring block on that side trains.
    in_y, in_x = pos_y % block, pos_x % block
    zone = ((in_y < radius) * 1 + (in_y >= block - radius) * 2)[:, None] + (
        (in_x < radius) * 4 + (in_x >= block - radius) * 8
    )[None, :]

    n = _class_sizes(labels)
    labelled = labels > 0
    n_blocks = grid[0] * grid[1]
    zone_counts = np.bincount(
        (block_id[labelled] * 16 + zone[labelled]) * n.size + labels[labelled], minlength=n_blocks * 16 * n.size
    ).reshape(n_blocks, 16, n.size)  # [block, zone, class id]; class 0 stays empty
    # Only blocks with labelled pixels take part; the seeded order breaks ties between them.
    candidates = rng.permutation(np.flatnonzero(zone_counts.sum(axis=(1, 2))))
    weight = np.divide(1.0, n, out=np.zeros(n.shape), where=n > 0)

    is_train = _grow_train(zone_counts, _neighbours(grid), candidates, train * n, weight)
    split = np.where(labelled & is_train[block_id], TRAIN, UNUSED).astype(np.uint8)
    kept = labelled & ~_near(split == TRAIN, radius)
    kept_counts = np.bincount(block_id[kept] * n.size + labels[kept], minlength=n_blocks * n.size).reshape(
        n_blocks, n.size
    )
    rest = candidates[~is_train[candidates]]
    is_val = np.zeros(n_blocks, dtype=bool)
    if val > 0:
        is_val[rest[_greedy_blocks(kept_counts[rest], val * n, weight)]] = True
    split[kept] = np.where(is_val[block_id[kept]], VAL, TEST)
    return split


# The eight neighbour directions (dy, dx) of a block.
_DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _zone_hits() -> np.ndarray:
    """(8, 16) bool: zones (see `spatial_blocks`) of the neighbour in direction d that a training block reaches."""
    zones = np.arange(16)
    side = {-1: 1, 1: 2}  # seen from the neighbour, the training block lies on the opposite side
    hits = np.ones((8, 16), dtype=bool)
    for d, (dy, dx) in enumerate(_DIRECTIONS):
        if dy:
            hits[d] &= (zones & side[-dy]) > 0
        if dx:
            hits[d] &= (zones & (side[-dx] << 2)) > 0
    return hits


_HITS = _zone_hits()


def _neighbours(grid: tuple[int, int]) -> np.ndarray:
    """(blocks + 1, 8) indices of each block's neighbours; off the grid -> the dummy block `blocks`."""
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    table = np.full((grid[0] * grid[1] + 1, 8), grid[0] * grid[1], dtype=np.int64)
    for d, (dy, dx) in enumerate(_DIRECTIONS):
        y, x = rows + dy, cols + dx
        inside = (y >= 0) & (y < grid[0]) & (x >= 0) & (x < grid[1])
        table[:-1, d] = np.where(inside, y * grid[1] + x, grid[0] * grid[1])
    return table


def _grow_train(
    zone_counts: np.ndarray, neighbours: np.ndarray, candidates: np.ndarray, target: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Training blocks for `spatial_blocks` (steps 2 and 3): a bool per block.

    Keeps per block the pixels lost to the guard so far (`own_lost`) and those that turning it
    into a training block would newly take from its neighbours (`gain`); a move updates them
    for the blocks up to two steps away only.
    """
    n_blocks = len(zone_counts)
    zc = np.concatenate([zone_counts, np.zeros((1, *zone_counts.shape[1:]), zone_counts.dtype)])
    counts = zc.sum(axis=1)
    train = np.zeros(n_blocks + 1, dtype=bool)
    train[n_blocks] = True  # the dummy neighbour never loses pixels
    lost_zone = np.zeros((n_blocks + 1, 16), dtype=bool)
    own_lost = np.zeros(counts.shape)
    gain = np.zeros(counts.shape)
    total = np.zeros(target.shape)

    def newly_lost(blocks: np.ndarray) -> np.ndarray:
        near = neighbours[blocks]
        newly = _HITS & ~lost_zone[near] & ~train[near][..., None]
        return np.einsum("bds,bdsc->bc", newly, zc[near])

    def train_error(blocks: np.ndarray) -> np.ndarray:
        return np.abs(total + counts[blocks] - target) @ weight

    def cost(blocks: np.ndarray) -> np.ndarray:
        return train_error(blocks) + (gain[blocks] - own_lost[blocks]) @ weight

    def move(block: int) -> None:
        nonlocal total
        total = total + counts[block]
        train[block] = True
        near = neighbours[block]
        lost_zone[near] |= _HITS
        own_lost[near] = np.einsum("bs,bsc->bc", lost_zone[near], zc[near])
        affected = np.unique(np.concatenate([near, neighbours[near].ravel()]))
        gain[affected] = newly_lost(affected)

    gain[candidates] = newly_lost(candidates)
    error = float(weight @ target)
    free = candidates
    while free.size:
        errors = train_error(free)
        improving = np.flatnonzero(errors < error - 1e-12)
        if not improving.size:
            break
        best = int(improving[np.argmin(cost(free[improving]))])
        move(int(free[best]))
        error = float(errors[best])
        free = np.delete(free, best)
    for cls in np.flatnonzero(target):
        if total[cls] == 0:
            holders = free[counts[free, cls] > 0]
            pick = int(holders[np.argmin(cost(holders))])
            move(pick)
            free = free[free != pick]
    return train[:n_blocks]


def default_block(shape: tuple[int, int], patch: int) -> int:
    """Default block side for `spatial_blocks`: the scene cut into about `_BLOCKS_TARGET`
    blocks, but more than the guard radius patch // 2, so that a training block's guard band
    stays within its neighbours.

    Measured on Indian Pines, Pavia U, Salinas and Pavia C: smaller blocks follow the
    per-class fractions more closely and, grown into compact regions, lose no more to the
    guard band than large ones; the greedy slows with the block count.
    """
    height, width = shape
    return max(patch // 2 + 1, int(np.ceil(np.sqrt(height * width / _BLOCKS_TARGET))))


def controlled(
    labels: np.ndarray, *, train: float, val: float, patch: int, seed: int, guard: bool = True
) -> np.ndarray:
    """Controlled random sampling (Liang et al., "On the sampling strategy for evaluation of
    spectral-spatial methods in hyperspectral image classification", IEEE TGRS 55(2), 2017;
    the protocol of Lite-C2ANet's [37]).

    As in the authors' code (github.com/liangjiecn/ControlledRandomSampling,
    `createTrainingSamples.m`):

    1. Every class is cut into its 8-connected regions (`bwconncomp(gt == c, 8)`).
    2. In every region a seed pixel is drawn at random and a training region grown from it,
       breadth first over the region's 8-neighbours (their region growing on the ground truth
       with a maximum difference of 1, i.e. within the class region), until it holds the
       region's share of training pixels.
    3. The rest of the class is test. Training pixels form compact blobs, so only test pixels
       near a blob's border see a training pixel inside their patch.

    Deviations, each for the reason given:

    - Counts: the class's training count is the `stratified` rule's, max(1, round(train·n_c))
      (test keeps at least one pixel), shared among its regions by largest remainder in
      proportion to their sizes (ties broken at random). The authors round per region and
      always keep the seed, so every region, however small, trains on at least one pixel; at
      1 % that is several times the requested share on a fragmented ground truth. Here per-class
      counts follow the fraction exactly, and regions too small for a share train on nothing.
    - Guard (`guard=True`, the default): every other labelled pixel within Chebyshev distance
      patch // 2 of a training pixel is left out (UNUSED), as in `spatial_blocks`, so no test or
      validation patch holds a training pixel: `leakage(split, patch) == 0`. The authors keep
      these pixels as test (their `guard=False`); the guard costs test pixels around each blob.
    - Validation (the paper has none): round(val·n_c) per class (at least 1 when val > 0), shared
      among the regions by their pixels left after training and guard, grown breadth first from
      random seeds in the same way (a new seed when the grown piece runs out). With the guard
      the count may fall short, as may the test set of a class whose guard band eats it;
      `counts` shows both.
    """
    _check_count("--patch", patch, minimum=1)
    labels = _check_labels(labels)
    n = _class_sizes(labels)
    n_train, n_val = _fraction_counts(n, train, val)
    rng = _rng(seed)
    structure = np.ones((3, 3), dtype=bool)
    regions = {}
    for cls in np.flatnonzero(n):
        region_map, count = label_regions(labels == cls, structure=structure)
        regions[cls] = (region_map, find_objects(region_map), np.bincount(region_map.ravel(), minlength=count + 1)[1:])

    split = np.where(labels > 0, TEST, UNUSED).astype(np.uint8)
    for cls, (region_map, boxes, sizes) in regions.items():
        for index, count in enumerate(_apportion(n_train[cls], sizes, rng)):
            if count:
                box = boxes[index]
                _grow(region_map[box] == index + 1, split[box], count, TRAIN, rng)
    if guard:
        split[(split == TEST) & _near(split == TRAIN, patch // 2)] = UNUSED
    if val > 0:
        for cls, (region_map, boxes, _) in regions.items():
            free = [
                np.count_nonzero((region_map[box] == index + 1) & (split[box] == TEST))
                for index, box in enumerate(boxes)
            ]
            wanted = min(int(n_val[cls]), max(sum(free) - 1, 0))
            for index, count in enumerate(_apportion(wanted, np.asarray(free), rng)):
                if count:
                    box = boxes[index]
                    _grow((region_map[box] == index + 1) & (split[box] == TEST), split[box], count, VAL, rng)
    return split


def _apportion(total: int, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`total` shared among parts in proportion to `sizes` (largest remainder, ties at random);
    no part gets more than its size when total <= sizes.sum()."""
    if total <= 0 or sizes.sum() == 0:
        return np.zeros(len(sizes), dtype=np.int64)
    quota = total * sizes / sizes.sum()
    share = np.floor(quota).astype(np.int64)
    order = rng.permutation(len(sizes))
    ranked = order[np.argsort(-(quota - share)[order], kind="stable")]
    share[ranked[: total - int(share.sum())]] += 1
    return share


def _grow(allowed: np.ndarray, out: np.ndarray, count: int, value: int, rng: np.random.Generator) -> None:
    """Write `value` into `count` pixels of `out` grown breadth first over the 8-neighbours
    inside `allowed` (a bool view of the same shape) from a random seed; when the grown piece
    runs out, the next seed is drawn from the allowed pixels not reached yet."""
    height, width = allowed.shape
    unseen = allowed.copy()
    taken = 0
    while taken < count:
        candidates = np.flatnonzero(unseen)
        if not candidates.size:
            return
        seed = int(candidates[rng.integers(candidates.size)])
        unseen.flat[seed] = False
        queue = deque([divmod(seed, width)])
        while queue and taken < count:
            y, x = queue.popleft()
            out[y, x] = value
            taken += 1
            for dy, dx in _DIRECTIONS:
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and unseen[ny, nx]:
                    unseen[ny, nx] = False
                    queue.append((ny, nx))


def _near(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Chebyshev distance `radius` of a True pixel of `mask` (the mask included)."""
    if radius <= 0:
        return mask.copy()
    return maximum_filter(mask.view(np.uint8), size=2 * radius + 1, mode="constant", cval=0) > 0


def drop_small_classes(labels: np.ndarray, min_pixels: int) -> tuple[np.ndarray, dict[int, int]]:
    """(labels without the classes of fewer than `min_pixels` labelled pixels, {class id: pixels}
    of those dropped). Dropped pixels become unlabelled (0), so no strategy samples them."""
    _check_count("--min-pixels", min_pixels, minimum=1)
    labels = _check_labels(labels)
    n = _class_sizes(labels)
    small = np.flatnonzero((n > 0) & (n < min_pixels))
    if small.size == np.count_nonzero(n):
        raise HsiError(
            f"--min-pixels {min_pixels} drops every class (the largest has {int(n.max())} pixels)",
            hint=f"use --min-pixels {int(n.max())} or less",
        )
    return np.where(np.isin(labels, small), 0, labels), {int(c): int(n[c]) for c in small}


def from_maps(
    train_map: np.ndarray, test_map: np.ndarray, *, val: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Import predefined train/test maps (e.g. Houston 2013's `houston_gt_tr` / `houston_gt_te`).

    Returns (split, labels), labels being the union of both maps. A pixel labelled in both maps
    with different classes is an HsiError; with the same class it is a training pixel only (the
    test set never holds a training pixel). `val` > 0 moves a stratified fraction of every class
    of the train map to validation: round(val·n), at least 1, and at least 1 pixel stays in
    training (so such a class needs 2 training pixels).
    """
    check_fraction("val", val)
    train_map = _check_labels(train_map, "train map")
    test_map = _check_labels(test_map, "test map")
    if train_map.shape != test_map.shape:
        raise HsiError(
            f"the train map is {train_map.shape} but the test map is {test_map.shape}",
            hint="the two maps must cover the same scene pixel for pixel",
        )
    in_train, in_test = train_map > 0, test_map > 0
    clash = in_train & in_test & (train_map != test_map)
    if clash.any():
        y, x = np.argwhere(clash)[0]
        raise HsiError(
            f"the train and test maps give different classes to {int(clash.sum())} pixels "
            f"(first at row {y}, column {x}: {train_map[y, x]} vs {test_map[y, x]})",
            hint="the maps must come from the same ground truth",
        )
    labels = np.where(in_train, train_map, test_map)
    if val > 0:
        n = _class_sizes(train_map)
        _require_sizes(
            n,
            2,
            f"--val {val:g} taken from the train map",
            "one pixel each for train and val",
            hint="use --val 0 with these maps",
            droppable=False,
        )
        n_val = np.clip(_round(val * n), 1, np.maximum(n - 1, 1)) * (n > 0)
        split = _draw(train_map, n - n_val, n_val, _rng(seed))
    else:
        split = np.where(in_train, TRAIN, UNUSED).astype(np.uint8)
    split[in_test & ~in_train] = TEST
    return split, labels


def leakage(split: np.ndarray, patch: int) -> float:
    """Share of test pixels whose P×P window holds a training pixel (0.0 without test pixels).

    The window of pixel (y, x) spans rows y − P//2 … y + (P−1)//2 (centred for odd P) and the
    same columns, clipped at the border. A max filter over the training mask gives every
    pixel's answer at once.
    """
    split = _check_split(split)
    _check_count("--patch", patch, minimum=1)
    test = split == TEST
    n_test = int(np.count_nonzero(test))
    if n_test == 0:
        return 0.0
    sees_train = maximum_filter((split == TRAIN).view(np.uint8), size=patch, mode="constant", cval=0)
    return np.count_nonzero(sees_train[test]) / n_test


def counts(split: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, list[int]]:
    """Pixels per class (1..n_classes) in each set: {"train": [...], "val": [...], "test": [...]}."""
    split = _check_split(split)
    labels = _check_labels(labels)
    if split.shape != labels.shape:
        raise HsiError(
            f"the split is {split.shape} but the labels are {labels.shape}",
            hint="use the split made from this scene's labels",
        )
    if labels.max() > n_classes:
        raise HsiError(
            f"the labels hold class {int(labels.max())} but the scene has {n_classes} classes",
            hint="pass the scene's class count",
        )
    used = split > 0
    table = np.bincount(
        (split[used].astype(np.int64) - 1) * (n_classes + 1) + labels[used], minlength=3 * (n_classes + 1)
    ).reshape(3, n_classes + 1)[:, 1:]
    return {name: row.tolist() for name, row in zip(SET_NAMES, table)}


# -- helpers --------------------------------------------------------------------------------


def _draw(labels: np.ndarray, n_train: np.ndarray, n_val: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per class c: a random n_train[c] pixels to TRAIN, the next n_val[c] to VAL, the rest TEST.

    One random key per labelled pixel, sorted within its class, ranks every pixel at once
    (no per-class loop); `n_train`/`n_val` are indexed by class id (index 0 unused).
    """
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    cls = flat[index]
    order = np.lexsort((rng.random(index.size), cls))
    sorted_cls = cls[order]
    first = np.searchsorted(sorted_cls, sorted_cls, side="left")
    rank = np.arange(index.size) - first
    train_end = n_train[sorted_cls]
    chosen = np.where(rank < train_end, TRAIN, np.where(rank < train_end + n_val[sorted_cls], VAL, TEST))
    split = np.zeros(flat.size, dtype=np.uint8)
    split[index[order]] = chosen
    return split.reshape(labels.shape)


def _greedy_blocks(per_block: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Indices of blocks (rows of `per_block`) whose summed class counts approach `target`.

    Adds the block that lowers sum_c weight_c·|total_c − target_c| most, until none lowers it;
    ties go to the lower index (the caller shuffles blocks with the seed).
    """
    total = np.zeros(per_block.shape[1])
    free = np.ones(len(per_block), dtype=bool)
    error = float(weight @ np.abs(total - target))
    chosen: list[int] = []
    while free.any():
        options = np.flatnonzero(free)
        errors = np.abs(total + per_block[options] - target) @ weight
        best = int(np.argmin(errors))
        if errors[best] >= error - 1e-12:
            break
        pick = int(options[best])
        chosen.append(pick)
        free[pick] = False
        total += per_block[pick]
        error = float(errors[best])
    return np.asarray(chosen, dtype=np.int64)


def _round(values: np.ndarray) -> np.ndarray:
    return np.floor(values + _HALF_UP).astype(np.int64)


def _class_sizes(labels: np.ndarray) -> np.ndarray:
    """Pixels per class id, index 0 (unlabelled) set to 0, so arrays are indexed by class id."""
    n = np.bincount(labels.ravel())
    n[0] = 0
    return n


def _require_sizes(
    n: np.ndarray, need: int, request: str, reason: str, *, hint: str, droppable: bool = True
) -> None:
    """HsiError naming every class with fewer than `need` pixels (absent classes are skipped).

    `droppable`: `n` counts the scene's labelled pixels, so `--min-pixels need` would leave
    those classes out; the hint says so.
    """
    small = np.flatnonzero((n > 0) & (n < need))
    if small.size:
        listed = ", ".join(f"class {c} has {n[c]}" for c in small)
        raise HsiError(
            f"too few labelled pixels for {request}: {listed}; each class needs at least {need} ({reason})",
            hint=f"{hint}, or leave such classes out with --min-pixels {need}" if droppable else hint,
        )


def _check_fractions(train: float, val: float) -> None:
    check_fraction("--ratio", train)
    check_fraction("--val", val)
    if train + val >= 1:
        raise HsiError(
            f"--ratio {train:g} plus --val {val:g} leaves no test pixels",
            hint="train + validation must stay below 1, e.g. --ratio 0.72 --val 0.08",
        )


def _check_count(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise HsiError(f"{name} must be a whole number of at least {minimum}, got {value!r}", hint=f"e.g. {name} 10")


def _check_labels(labels: np.ndarray, name: str = "label map") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise HsiError(
            f"the {name} must be a 2-D integer array, got {labels.ndim}-D {labels.dtype}",
            hint="pass the (H, W) ground truth with 0 = unlabelled",
        )
    if labels.size and labels.min() < 0:
        raise HsiError(f"the {name} holds negative class ids", hint="use 0 for unlabelled and 1..C for classes")
    if not labels.any():
        raise HsiError(f"the {name} has no labelled pixels", hint="pass a ground truth with classes 1..C")
    return labels.astype(np.int64, copy=False)


def _check_split(split: np.ndarray) -> np.ndarray:
    split = np.asarray(split)
    if (
        split.ndim != 2
        or not np.issubdtype(split.dtype, np.integer)
        or (split.size and (split.min() < UNUSED or split.max() > TEST))
    ):
        raise HsiError(
            "a split must be a 2-D integer layer with values 0 (unused), 1 (train), 2 (val), 3 (test)",
            hint="make it with hsi split",
        )
    return split


def _rng(seed: int) -> np.random.Generator:
    _check_count("--seed", seed, minimum=0)
    return np.random.default_rng(seed)
