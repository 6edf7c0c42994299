"""Patches and windows cut from a cube on the fly, vectorised per batch (DESIGN.md §3).

The cube is padded once by the patch radius with reflect padding; a batch of P×P patches is then
one `np.take` of whole pixel spectra at precomputed flat offsets, so no patch is ever stored and
memory stays O(H·W·T) whatever P is. Rotations and flips (CLAReSNet §III-B) are applied by
permuting the offset grid per sample — the gather itself does them, at no extra cost.

Patches come out as (B, P, P, T) C-contiguous; viewed as (B, T, P, P) that is exactly PyTorch's
channels_last layout, so convolutional models consume them without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """CLAReSNet §III-B: Gaussian noise, rotation by 90/180/270°, horizontal and vertical flips,
    each applied with probability p; each switchable.

    The noise's σ is `noise` times each band's standard deviation over the scene. The paper's
    σ 0.05 is absolute, but its reference code adds it to PCA components of raw radiance, whose
    smallest standard deviation is in the tens (SalinasA: 11), so it perturbs every component by
    under 1 %; on z-scored data the same absolute σ would drown the minor components (SalinasA's
    30th: 0.07). Relative to each band, 0.05 perturbs every band alike and any input scaling.
    """

    noise: float = 0.05
    rotate: bool = True
    flip: bool = True
    p: float = 0.5

    @property
    def geometric(self) -> bool:
        return self.rotate or self.flip


def _dihedral_offsets(patch: int, row_stride: int) -> np.ndarray:
    """Flat pixel offsets of the 8 dihedral variants of a P×P grid: index 4·flip + k (rot90 k times)."""
    grid = np.arange(patch)[:, None] * row_stride + np.arange(patch)[None, :]
    variants = []
    for flipped in (False, True):
        base = grid[:, ::-1] if flipped else grid
        variants.extend(np.rot90(base, k) for k in range(4))
    return np.ascontiguousarray(np.stack(variants))


class PatchSampler:
    """Serves P×P patches (or large windows) centred on any pixel of a (H, W, T) cube."""

    def __init__(self, padded: np.ndarray, patch: int):
        """`padded`: a cube already padded by the patch radius on every side (see `reflect_pad`)."""
        if patch < 1 or patch % 2 == 0:
            raise ValueError(f"patch size must be odd and positive, got {patch}")
        self.patch = patch
        radius = patch // 2
        self.height, self.width = padded.shape[0] - 2 * radius, padded.shape[1] - 2 * radius
        self.bands = padded.shape[2]
        self._padded_width = padded.shape[1]
        self._pixels = np.ascontiguousarray(padded, dtype=np.float32).reshape(-1, self.bands)
        self._offsets = _dihedral_offsets(patch, self._padded_width)
        self._band_std: np.ndarray | None = None

    @property
    def band_std(self) -> np.ndarray:
        """(T,) standard deviation of each band over the sampler's pixels (the noise scale)."""
        if self._band_std is None:
            self._band_std = self._pixels.std(axis=0, dtype=np.float64).astype(np.float32)
        return self._band_std

    @classmethod
    def from_cube(cls, cube: np.ndarray, patch: int) -> PatchSampler:
        return cls(reflect_pad(cube, patch // 2), patch)

    def _corner(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # The top-left corner of pixel (r, c)'s window in the padded cube is (r, c) itself.
        return np.asarray(rows, dtype=np.int64) * self._padded_width + np.asarray(cols, dtype=np.int64)

    def patches(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        *,
        augment: Augment | None = None,
        rng: np.random.Generator | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """(B, P, P, T) float32 patches centred on (rows[i], cols[i])."""
        corner = self._corner(rows, cols)
        if augment is not None and augment.geometric:
            variant = np.zeros(len(corner), dtype=np.int64)
            if augment.rotate:
                rotate = rng.random(len(corner)) < augment.p
                variant += np.where(rotate, rng.integers(1, 4, len(corner)), 0)
            if augment.flip:
                # A vertical flip is a horizontal flip followed by a 180° rotation.
                hflip = rng.random(len(corner)) < augment.p
                vflip = rng.random(len(corner)) < augment.p
                variant = np.where(vflip, (variant + 2) % 4, variant) + 4 * (hflip ^ vflip)
            offsets = self._offsets[variant]
            index = corner[:, None, None] + offsets
        else:
            index = corner[:, None, None] + self._offsets[0]
        batch = np.take(self._pixels, index, axis=0, out=out)
        if augment is not None and augment.noise > 0:
            noisy = rng.random(len(corner)) < augment.p
            if noisy.any():
                sigma = augment.noise * self.band_std
                batch[noisy] += sigma * rng.standard_normal(batch[noisy].shape, dtype=np.float32)
        return batch

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(B, T) centre spectra."""
        radius = self.patch // 2
        return self._pixels[self._corner(rows, cols) + radius * self._padded_width + radius]


def reflect_index(n: int, radius: int) -> np.ndarray:
    """Source indices of an axis of length n reflect-padded by `radius` (numpy's "reflect")."""
    return np.pad(np.arange(n), radius, mode="reflect")


def reflect_pad(cube: np.ndarray, radius: int, rows: slice = slice(None)) -> np.ndarray:
    """Rows `rows` (in padded coordinates) of the reflect-padded cube, as one gather."""
    row_index = reflect_index(cube.shape[0], radius)[rows]
    return cube[row_index][:, reflect_index(cube.shape[1], radius)]


def block_sampler(read_rows, height: int, width: int, top: int, bottom: int, patch: int) -> PatchSampler:
    """A sampler for scene rows top..bottom whose patches equal the whole-scene sampler's.

    `read_rows(slice)` returns those rows of the (H, W, T) cube (e.g. from the store's chunks),
    so only the block plus its patch margin is ever in memory; sampler row 0 is scene row `top`.
    """
    radius = patch // 2
    rows_needed = reflect_index(height, radius)[top : bottom + 2 * radius]
    low = int(rows_needed.min())
    block = read_rows(slice(low, int(rows_needed.max()) + 1))
    return PatchSampler(block[rows_needed - low][:, reflect_index(width, radius)], patch)


def window_targets(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int, ignore: int = -1) -> np.ndarray:
    """(B, S, S) per-pixel targets of S×S windows; `labels` holds class indices or `ignore`.

    Padding is `ignore` (not reflected), so a pixel outside the scene never counts as a target.
    """
    radius = size // 2
    padded = np.pad(labels.astype(np.int64), radius, mode="constant", constant_values=ignore)
    grid = np.arange(size)[:, None] * padded.shape[1] + np.arange(size)[None, :]
    corner = np.asarray(rows, dtype=np.int64) * padded.shape[1] + np.asarray(cols, dtype=np.int64)
    return np.take(padded.ravel(), corner[:, None, None] + grid)
