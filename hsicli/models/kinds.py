"""Model kinds: what the engine needs to know of a model's family, one type each.

A registered model names its kind (`register_model(..., kind=PATCH)`); the engine asks the kind
how to feed, train, reduce and store the model instead of comparing names. The name is what
catalogue.json, `hsi models` and a checkpoint's `model_kind` store.

- `PATCH`: a torch module; input (B, T, P, P) float32 windows (bands first) centred on the
  pixels to classify, output logits (B, C) of those pixels.
- `SEGMENTER`: a torch module; input (B, T, S, S) windows, output logits (B, C, S, S) for every
  pixel of the window (dense). It trains on the labels of the whole window (`IGNORE` where a
  pixel is not a training pixel) and predicts a scene by blending overlapping windows.
- `SPECTRAL`: a classical estimator (scikit-learn style, `hsicli.models.classical`) fitted on
  the centre spectra (B, T); its fitted state is stored as arrays, not torch weights.

Torch models of either torch kind follow the model contract of `hsicli.models.contract`.
"""

from __future__ import annotations

from typing import Any, ClassVar

IGNORE = -1  # the target of a pixel that is not a training pixel (a dense kind's windows)


class ModelKind:
    """One model family. Each kind is a single instance (`PATCH`, `SEGMENTER`, `SPECTRAL`)."""

    name: ClassVar[str]  # as stored: catalogue.json, `hsi models`, a checkpoint's model_kind
    torch: ClassVar[bool] = True  # a torch module (trained by gradient descent), else a fitted estimator
    reads_windows: ClassVar[bool] = True  # reads a window centred on each pixel, so its size is odd
    dense: ClassVar[bool] = False  # logits for every pixel of its window, not only the centre
    tensors: ClassVar[str] = "model"  # the prefix of its tensors' names in a checkpoint

    def centre_logits(self, logits: Any) -> Any:
        """Logits (B, C) of the centre pixels from the model's output."""
        return logits

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<model kind {self.name}>"


class PatchKind(ModelKind):
    """Torch patch classifiers: a window in, the logits of its centre pixel out."""

    name = "patch"


class SegmenterKind(ModelKind):
    """Torch segmenters: a window in, the logits of each of its pixels out."""

    name = "segmenter"
    dense = True

    def centre_logits(self, logits: Any) -> Any:
        radius = logits.shape[-1] // 2
        return logits[:, :, radius, radius]


class SpectralKind(ModelKind):
    """Classical estimators on the centre spectrum; stored as their fitted arrays."""

    name = "spectral"
    torch = False
    reads_windows = False
    tensors = "est"


PATCH, SEGMENTER, SPECTRAL = PatchKind(), SegmenterKind(), SpectralKind()
KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (PATCH, SEGMENTER, SPECTRAL)}


def model_kind(name: str) -> ModelKind:
    """The kind stored as `name`."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; known: {', '.join(KINDS)}") from None
