"""The adaptive threshold of HSIseg (../shared/papers/002_e54cedfdb6e864cf.txt), shared by the DFS
masks of the model (eqs. 24-26) and the engine's pseudo-labels (eqs. 49-51).

The paper calls τ an "upper bound" (τ ≥ T ≥ μ + σ), yet its only stated rule is "if τ ≤ μ + σ,
T = μ + σ", its τ sweeps change the results, and τ grows by ζ every round (eq. 53): read together,
T = max(τ, μ + σ). σ is the population deviation (eq. 24). No torch import: numpy arrays and
torch tensors both work.
"""

from __future__ import annotations


def adaptive_threshold(confidence, tau: float, axis=None):
    """T = max(τ, μ + σ) of a map of maximum class probabilities, over `axis` (kept as size 1).

    Works on numpy arrays and torch tensors alike, so the DFS module (per window, in torch) and
    the pseudo-labels (whole scene, in numpy) share one rule.
    """
    mean = confidence.mean(axis=axis, keepdims=True)
    std = ((confidence - mean) ** 2).mean(axis=axis, keepdims=True) ** 0.5
    return (mean + std).clip(min=tau)
