"""Spectral preprocessing fitted on one scene and re-applied unchanged to others (`--like`).

Order: band removal -> non-finite fill -> per-band normalisation -> PCA -> optional whitening.
The fitted state is plain arrays plus JSON settings, stored in the scene store's `transform/`.
PCA is fitted on every pixel of the scene (unsupervised: no label information reaches it), with
the covariance accumulated in float64 over row blocks so memory stays near one float32 copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hsicli.errors import HsiError

NORMALISATIONS = ("zscore", "minmax", "none")
FILL_POLICIES = ("error", "zero", "mean")
_BLOCK_ROWS = 32768  # pixels per block for float64 accumulation


def parse_band_list(spec: str, n_bands: int) -> np.ndarray:
    """`"104-108,150-163,220"` (1-based, inclusive, as the literature writes them) -> 0-based indices."""
    indices: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            if "-" in part:
                start, stop = (int(v) for v in part.split("-", 1))
            else:
                start = stop = int(part)
        except ValueError:
            raise HsiError(
                f"cannot read band list {spec!r}: {part!r} is not a number or a range",
                hint="write 1-based inclusive bands like 104-108,150-163,220",
            ) from None
        if start > stop:
            raise HsiError(f"band range {part!r} runs backwards", hint="write ranges as low-high")
        if start < 1 or stop > n_bands:
            raise HsiError(
                f"band {start if start < 1 else stop} in {spec!r} is out of range: the scene has bands 1-{n_bands}",
                hint="band numbers are 1-based and refer to the bands of the input file",
            )
        indices.extend(range(start - 1, stop))
    kept = np.setdiff1d(np.arange(n_bands), indices)
    if kept.size == 0:
        raise HsiError(f"--drop-bands {spec} removes every band", hint="drop fewer bands")
    return np.unique(np.asarray(indices, dtype=np.int64))


@dataclass
class SpectralTransform:
    """The fitted preprocessing; `apply` maps a raw (H, W, T_raw) cube to the stored cube."""

    n_raw_bands: int
    kept_bands: np.ndarray  # 0-based indices into the raw bands
    fill: str = "error"
    fill_values: np.ndarray | None = None  # per kept band, for fill="mean"
    normalisation: str = "zscore"
    offset: np.ndarray | None = None  # per kept band: subtract ...
    scale: np.ndarray | None = None  # ... then divide
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None  # (N, T_kept)
    pca_explained_variance: np.ndarray | None = None
    pca_explained_variance_ratio: np.ndarray | None = None
    whiten: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    conversion_note: str | None = None  # precision the float32 conversion lost, for the user (not stored)

    @property
    def n_output_bands(self) -> int:
        return len(self.pca_components) if self.pca_components is not None else len(self.kept_bands)

    # -- fitting --------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        raw: np.ndarray,
        *,
        drop_bands: np.ndarray | None = None,
        fill: str = "error",
        normalisation: str = "zscore",
        pca: int | None = None,
        whiten: bool = False,
    ) -> tuple[SpectralTransform, np.ndarray]:
        """Fit on a raw cube and return (transform, transformed float32 cube)."""
        if fill not in FILL_POLICIES:
            raise HsiError(f"unknown fill policy {fill!r}", hint=f"use one of {', '.join(FILL_POLICIES)}")
        if normalisation not in NORMALISATIONS:
            raise HsiError(
                f"unknown normalisation {normalisation!r}", hint=f"use one of {', '.join(NORMALISATIONS)}"
            )
        n_raw = raw.shape[2]
        kept = np.setdiff1d(np.arange(n_raw), drop_bands if drop_bands is not None else [])
        if pca is not None and pca > len(kept):
            raise HsiError(
                f"--pca {pca} asks for more components than the {len(kept)} bands available",
                hint=f"choose --pca between 1 and {len(kept)}",
            )
        if whiten and pca is None:
            raise HsiError("--whiten needs --pca", hint="whitening scales the PCA components")
        transform = cls(n_raw_bands=n_raw, kept_bands=kept, fill=fill, normalisation=normalisation, whiten=whiten)
        pixels = transform._select_and_fill(raw, fit=True)
        transform._fit_normalisation(pixels)
        transform._normalise(pixels)
        if pca is not None:
            transform._fit_pca(pixels, pca)
            pixels = transform._project(pixels)
        return transform, pixels.reshape(*raw.shape[:2], -1)

    def _select_and_fill(self, raw: np.ndarray, fit: bool) -> np.ndarray:
        h, w, _ = raw.shape
        selected = raw[:, :, self.kept_bands] if len(self.kept_bands) != raw.shape[2] else raw
        selected = selected.reshape(h * w, -1)
        self.conversion_note = _float32_loss(selected, self.kept_bands)
        with np.errstate(over="ignore"):  # values beyond float32 were refused above; NaN/inf stay as they are
            pixels = np.array(selected, dtype=np.float32)  # one float32 copy, owned
        if not np.issubdtype(raw.dtype, np.floating):
            return pixels
        bad = ~np.isfinite(pixels)
        n_bad = int(bad.sum())
        if fit:
            if self.fill == "mean":
                finite = np.where(bad, 0.0, pixels)
                counts = np.maximum((~bad).sum(axis=0), 1)
                self.fill_values = (finite.sum(axis=0, dtype=np.float64) / counts).astype(np.float32)
            else:
                self.fill_values = None
        if n_bad:
            if self.fill == "error":
                bands = np.unique(np.nonzero(bad)[1])[:5] + 1
                raise HsiError(
                    f"the cube holds {n_bad} non-finite values (NaN or inf), e.g. in kept bands {bands.tolist()}",
                    hint="pass --fill zero or --fill mean to replace them, or --drop-bands to remove those bands",
                )
            replacement = 0.0 if self.fill == "zero" else np.broadcast_to(self.fill_values, pixels.shape)[bad]
            pixels[bad] = replacement
        return pixels

    def _fit_normalisation(self, pixels: np.ndarray) -> None:
        if self.normalisation == "zscore":
            mean, var = _blockwise_mean_var(pixels)
            offset, scale = mean, np.sqrt(var)
        elif self.normalisation == "minmax":
            offset = pixels.min(axis=0).astype(np.float64)
            scale = pixels.max(axis=0).astype(np.float64) - offset  # in float64: the range may exceed float32's
        else:
            return
        _refuse_beyond_float32(scale, self.kept_bands, f"the {self.normalisation} scale (the band's "
                               f"{'standard deviation' if self.normalisation == 'zscore' else 'range'})")
        self.offset, self.scale = offset.astype(np.float32), scale.astype(np.float32)
        self.scale[self.scale == 0] = 1.0  # constant bands stay constant instead of becoming NaN

    def _normalise(self, pixels: np.ndarray) -> None:
        if self.offset is not None:
            with np.errstate(over="ignore"):
                pixels -= self.offset
            if not np.isfinite(pixels).all():  # x − offset beyond float32: refused, never stored as inf
                bad = ~np.isfinite(pixels)
                bands = (self.kept_bands[np.unique(np.nonzero(bad)[1])[:5]] + 1).tolist()
                raise HsiError(
                    f"{int(bad.sum())} value(s) leave float32's range (±{_FLOAT32_MAX:.3g}) when the band's "
                    f"offset is subtracted ({self.normalisation} normalisation), e.g. in bands {bands}",
                    hint="rescale the data before hsi prep, or --drop-bands those bands",
                )
            pixels /= self.scale

    def _fit_pca(self, pixels: np.ndarray, n_components: int) -> None:
        mean, _ = _blockwise_mean_var(pixels)
        cov = np.zeros((pixels.shape[1], pixels.shape[1]), dtype=np.float64)
        for start in range(0, len(pixels), _BLOCK_ROWS):
            block = pixels[start : start + _BLOCK_ROWS].astype(np.float64) - mean
            cov += block.T @ block
        cov /= max(len(pixels) - 1, 1)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, eigenvectors = np.clip(eigenvalues[order], 0, None), eigenvectors[:, order]
        if eigenvalues[0] > _FLOAT32_MAX:
            raise HsiError(
                f"the largest PCA variance ({eigenvalues[0]:.3g}) lies beyond float32's range (±{_FLOAT32_MAX:.3g})",
                hint="normalise the bands (--norm zscore) or rescale the data before PCA",
            )
        components = eigenvectors[:, :n_components].T
        # Deterministic signs (as scikit-learn's svd_flip): the largest |loading| is positive.
        signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
        components *= np.where(signs == 0, 1, signs)[:, None]
        self.pca_mean = mean.astype(np.float32)
        self.pca_components = components.astype(np.float32)
        self.pca_explained_variance = eigenvalues[:n_components].astype(np.float32)
        total = eigenvalues.sum()
        self.pca_explained_variance_ratio = (eigenvalues[:n_components] / (total if total > 0 else 1)).astype(
            np.float32
        )

    def _project(self, pixels: np.ndarray) -> np.ndarray:
        out = np.empty((len(pixels), len(self.pca_components)), dtype=np.float32)
        for start in range(0, len(pixels), _BLOCK_ROWS):
            block = pixels[start : start + _BLOCK_ROWS] - self.pca_mean
            out[start : start + _BLOCK_ROWS] = block @ self.pca_components.T
        if self.whiten:
            out /= np.sqrt(np.maximum(self.pca_explained_variance, 1e-12))
        if not np.isfinite(out).all():
            raise HsiError(
                f"{int((~np.isfinite(out)).sum())} PCA component values leave float32's range",
                hint="normalise the bands (--norm zscore) or rescale the data before PCA",
            )
        return out

    # -- applying ---------------------------------------------------------------------------

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Transform another raw cube exactly as the fitted scene was transformed."""
        if raw.ndim != 3 or raw.shape[2] != self.n_raw_bands:
            raise HsiError(
                f"the scene has {raw.shape[-1]} bands but the stored preprocessing expects {self.n_raw_bands}",
                hint="--like needs a scene from the same sensor with the same bands",
            )
        pixels = self._select_and_fill(raw, fit=False)
        self._normalise(pixels)
        if self.pca_components is not None:
            pixels = self._project(pixels)
        return pixels.reshape(*raw.shape[:2], -1)

    # -- storage ------------------------------------------------------------------------------

    _ARRAYS = (
        "kept_bands",
        "fill_values",
        "offset",
        "scale",
        "pca_mean",
        "pca_components",
        "pca_explained_variance",
        "pca_explained_variance_ratio",
    )

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        settings = {
            "n_raw_bands": self.n_raw_bands,
            "fill": self.fill,
            "normalisation": self.normalisation,
            "pca": None if self.pca_components is None else len(self.pca_components),
            "whiten": self.whiten,
            **self.extra,
        }
        return arrays, settings

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> SpectralTransform:
        known = {"n_raw_bands", "fill", "normalisation", "pca", "whiten"}
        return cls(
            n_raw_bands=int(settings["n_raw_bands"]),
            fill=settings["fill"],
            normalisation=settings["normalisation"],
            whiten=bool(settings["whiten"]),
            extra={k: v for k, v in settings.items() if k not in known},
            **{k: arrays.get(k) for k in cls._ARRAYS},
        )


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_EXACT = 2**24  # every integer up to this magnitude is exact in float32


def _refuse_beyond_float32(values: np.ndarray, kept_bands: np.ndarray, what: str) -> None:
    """Refuse finite per-band `values` (a scale) or pixel values beyond float32's range, naming them."""
    beyond = np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX)
    if beyond.any():
        columns = np.unique(np.nonzero(beyond)[-1])
        raise HsiError(
            f"{what} holds {int(beyond.sum())} value(s) beyond float32's range (±{_FLOAT32_MAX:.3g}), in "
            f"{columns.size} band(s), e.g. bands {(kept_bands[columns[:5]] + 1).tolist()} "
            f"(largest magnitude {float(np.abs(values[beyond]).max()):.3g})",
            hint="rescale the data (e.g. to reflectance) before hsi prep, or --drop-bands those bands",
        )


def _float32_loss(pixels: np.ndarray, kept_bands: np.ndarray) -> str | None:
    """Check what converting (pixels, bands) to float32 loses: values beyond its range are refused, a
    band whose distinct integers all round to one float32 value is refused (it would become
    constant, then zero), and merged integers above 2^24 are described. None if nothing is lost."""
    kind = pixels.dtype.kind
    if kind == "f" and pixels.dtype.itemsize > 4:
        for start in range(0, len(pixels), _BLOCK_ROWS):
            _refuse_beyond_float32(pixels[start : start + _BLOCK_ROWS], kept_bands, "the cube")
        return None
    if kind not in "iu" or pixels.dtype.itemsize < 4:
        return None
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    large = np.nonzero((high.astype(np.float64) > _FLOAT32_EXACT) | (low.astype(np.float64) < -_FLOAT32_EXACT))[0]
    merged = []  # (column, distinct integers, distinct float32 values)
    for column in large:
        distinct = np.unique(pixels[:, column])
        rounded = np.unique(distinct.astype(np.float32)).size
        if rounded < distinct.size:
            merged.append((column, distinct.size, rounded))
    if not merged:
        return None
    flattened = [item for item in merged if item[2] == 1]
    if flattened:
        column, n, _ = flattened[0]
        raise HsiError(
            f"float32 cannot tell apart the values of {len(flattened)} band(s): e.g. the {n} distinct integers of "
            f"band {int(kept_bands[column]) + 1} (from {low[column]} to {high[column]}) all round to one float32 "
            "value, so the band would become constant",
            hint="subtract an offset or rescale the data before hsi prep (float32 holds integers exactly up to 2^24)",
        )
    column, n, r = min(merged, key=lambda item: item[2] / item[1])
    return (f"float32 holds integers exactly up to 2^24 only: distinct values merged in {len(merged)} band(s) "
            f"(worst: band {int(kept_bands[column]) + 1}, {n} distinct values became {r})")


def _blockwise_mean_var(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance in float64 without a float64 copy of the whole array."""
    n = len(pixels)
    total = np.zeros(pixels.shape[1], dtype=np.float64)
    for start in range(0, n, _BLOCK_ROWS):
        total += pixels[start : start + _BLOCK_ROWS].sum(axis=0, dtype=np.float64)
    mean = total / max(n, 1)
    squares = np.zeros_like(total)
    for start in range(0, n, _BLOCK_ROWS):
        block = pixels[start : start + _BLOCK_ROWS].astype(np.float64) - mean
        squares += (block * block).sum(axis=0)
    return mean, squares / max(n, 1)


def rgb_preview(raw: np.ndarray, wavelengths: list[float] | None = None) -> tuple[np.ndarray, list[int]]:
    """A uint8 false-colour preview from raw bands: near 640/550/460 nm when wavelengths are
    known, else bands at fixed fractions of the range; 2-98 % percentile stretch per channel."""
    n = raw.shape[2]
    if wavelengths is not None and len(wavelengths) == n:
        wl = np.asarray(wavelengths, dtype=float)
        bands = [int(np.abs(wl - target).argmin()) for target in (640.0, 550.0, 460.0)]
    else:
        bands = [min(n - 1, round(f * (n - 1))) for f in (0.25, 0.15, 0.05)] if n >= 3 else [0, n // 2, n - 1]
    rgb = np.empty((*raw.shape[:2], 3), dtype=np.uint8)
    for channel, band in enumerate(bands):
        values = raw[:, :, band].astype(np.float32)
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, (2, 98)) if finite.size else (0.0, 1.0)
        scaled = (np.nan_to_num(values, nan=low) - low) / (high - low if high > low else 1.0)
        rgb[:, :, channel] = np.clip(scaled * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb, bands
