"""Whole-scene inputs and window prediction for segmenters, shared by training and prediction.

- `scene_inputs`: the model input of a scene, the cube with the auxiliary rasters appended as extra
  channels when the model reads them (`aux_bands` > 0).
- `predict_windows`: full-scene prediction by overlapping S×S windows on a grid anchored at the
  scene origin, blended with a smooth Hann weight. A row block reads only the halo its windows
  need, so predicting a scene block by block (or shard by shard) equals predicting it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hsicli.errors import HsiError, StoreError


def scene_inputs(store, aux_bands: int, rows: slice = slice(None)) -> np.ndarray:
    """Rows of the scene as the model reads them: (h, W, T) cube, or (h, W, T + K) with aux rasters.

    HSIseg's auxiliary branch (§3.4) receives the K co-registered rasters of `hsi prep --aux` as
    channels after the T reduced bands; the model splits them again (its `aux_bands` argument).
    """
    cube = store.cube(rows)
    if not aux_bands:
        return cube
    aux = store.aux()
    if aux is None:
        raise StoreError(
            f"the model reads {aux_bands} auxiliary band(s) but {store.path} has no auxiliary rasters",
            hint="prep the scene with --aux FILE, or train with sources 'hsi' and aux_bands 0",
        )
    if aux.shape[2] != aux_bands:
        raise StoreError(
            f"the model reads {aux_bands} auxiliary band(s), {store.path} has {aux.shape[2]}",
            hint=f'set --model-args \'{{"aux_bands": {aux.shape[2]}}}\'',
        )
    return np.concatenate([cube, aux[rows]], axis=2)


# -- window prediction --------------------------------------------------------------------------


def default_stride(window: int) -> int:
    """Half a window: every pixel is seen by about four windows, and Hann weights of windows
    half a period apart sum to a constant."""
    return max(1, window // 2)


def hann_weights(window: int) -> np.ndarray:
    """(S, S) blending weight sin²(π (i + ½) / S) ⊗ itself: largest at the centre, small but
    positive at the edges, so every pixel a window covers gets some weight."""
    ramp = np.sin(np.pi * (np.arange(window) + 0.5) / window) ** 2
    return np.outer(ramp, ramp).astype(np.float32)


def window_centres(length: int, stride: int) -> np.ndarray:
    """Centres 0, s, 2s, … up to the first at or past length − 1: a grid anchored at the scene's
    origin, so any block of rows finds the same windows, and the last row is covered."""
    return np.arange(math.ceil((length - 1) / stride) + 1) * stride


def reflect(index: np.ndarray, length: int) -> np.ndarray:
    """Scene coordinates of (possibly outside) indices under reflect padding (numpy's "reflect",
    the padding the training sampler uses), for any distance from the border."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    folded = np.mod(index, period)
    return np.where(folded >= length, period - folded, folded)


def predict_windows(
    model,
    read_rows: Callable[[slice], np.ndarray],
    *,
    height: int,
    width: int,
    top: int,
    bottom: int,
    window: int,
    stride: int,
    batch_size: int,
    device,
    amp: bool = False,
) -> np.ndarray:
    """Class probabilities (bottom − top, width, C) of scene rows [top, bottom) from a segmenter.

    `read_rows(rows)` returns a slice of scene rows as (h, width, bands) float32 — `store.cube`,
    or `scene_inputs` for a model with auxiliary bands — and is called once, for the rows the
    block's windows need (the block and its halo).
    Windows are S×S, centred on a grid of step `stride` anchored at the scene origin, reflect-padded
    at the border exactly like training windows; each window's softmax is weighted by
    `hann_weights` and the weighted sum is divided by the summed weights. Only windows that overlap
    the block are run, in a fixed order, so a block equals the same rows of a whole-scene call.
    """
    import torch
    import torch.nn.functional as F

    from hsicli.models.precision import autocast

    if window % 2 == 0 or window < 1:
        raise HsiError(f"window size must be odd and positive, got {window}", hint="use e.g. 33")
    if not 1 <= stride <= window:
        raise HsiError(f"window stride must be in 1..{window}, got {stride}",
                       hint="a stride below the window size makes windows overlap")
    radius = window // 2
    row_centres = window_centres(height, stride)
    row_centres = row_centres[(row_centres + radius >= top) & (row_centres - radius <= bottom - 1)]
    col_centres = window_centres(width, stride)
    offsets = np.arange(-radius, radius + 1)
    row_source = reflect(row_centres[:, None] + offsets, height)  # (n_r, S) scene rows per window
    col_source = reflect(col_centres[:, None] + offsets, width)  # (n_c, S)
    low, high = int(row_source.min()), int(row_source.max())
    block = np.ascontiguousarray(read_rows(slice(low, high + 1)), dtype=np.float32)
    row_local = row_source - low

    n_r, n_c = len(row_centres), len(col_centres)
    grid_r, grid_c = np.divmod(np.arange(n_r * n_c), n_c)  # windows in row-major order
    weights = torch.from_numpy(hann_weights(window)).to(device)
    weighted = []
    with torch.no_grad(), autocast(device, amp):
        for start in range(0, n_r * n_c, batch_size):
            sl = slice(start, start + batch_size)
            patches = block[row_local[grid_r[sl]][:, :, None], col_source[grid_c[sl]][:, None, :]]  # (B, S, S, T)
            x = torch.from_numpy(patches).permute(0, 3, 1, 2).to(device)
            probabilities = torch.softmax(model(x).float(), dim=1)
            weighted.append(probabilities * weights)
    stacked = torch.cat(weighted)  # (n_r·n_c, C, S, S)
    classes = stacked.shape[1]
    # col2im: the weighted windows summed into the canvas the window grid spans.
    canvas = ((n_r - 1) * stride + window, (n_c - 1) * stride + window)
    numerator = F.fold(stacked.flatten(1).T.unsqueeze(0), canvas, window, stride=stride)[0]
    coverage = weights.flatten()[:, None].expand(-1, n_r * n_c).unsqueeze(0)
    denominator = F.fold(coverage, canvas, window, stride=stride)[0]
    # The canvas starts at scene row (first centre − radius) and column −radius.
    first = int(row_centres[0]) - radius
    rows = slice(top - first, bottom - first)
    cols = slice(radius, radius + width)
    blended = numerator[:, rows, cols] / denominator[:, rows, cols]
    return blended.permute(1, 2, 0).cpu().numpy().reshape(bottom - top, width, classes)
