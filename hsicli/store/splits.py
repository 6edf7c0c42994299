"""Split layers as stored: the code of each pixel, and what evaluating a prediction reads from one.

A split is a uint8 (H, W) layer of a scene store (`STORE/splits/NAME`): 0 = not used, 1 = train,
2 = validation, 3 = test. `hsicli.data.splits` draws them; predicting, evaluating and plotting
read them through here.
"""

from __future__ import annotations

import numpy as np

from hsicli.errors import StoreError

UNUSED, TRAIN, VAL, TEST = 0, 1, 2, 3


def dropped_classes(store, split: str | None) -> dict[int, int]:
    """{class id: labelled pixels} of the classes the store's split `split` left out
    (`hsi split --min-pixels`); {} for no split, a missing one, or one that dropped nothing."""
    attrs = store.layer_attrs("splits", split) if split else {}
    return {int(entry["class"]): int(entry["pixels"]) for entry in attrs.get("dropped", [])}


def labelled_test_mask(store, split: str, recorded_fingerprint: str | None, trained: str, hint: str) -> np.ndarray:
    """(H, W) mask of the labelled test pixels of the store's `split`; refused when the split was
    written again since the model `trained` (a file name) was trained on it, as its test pixels
    may then be that model's training pixels. No `recorded_fingerprint`: no check."""
    layer = store.read_layer("splits", split)
    if recorded_fingerprint and layer.attrs.get("fingerprint") != recorded_fingerprint:
        raise StoreError(f"split {split!r} of {store.path} was written again since {trained} was trained on it",
                         hint=hint)
    return (layer.data == TEST) & (store.gt() > 0)
