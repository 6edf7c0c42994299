"""The model contract: everything the engine asks of a torch model, in one place.

Every torch model (kinds `PATCH` and `SEGMENTER`, hsicli.models.kinds) is a `TorchModel`: a
`torch.nn.Module` whose `forward(x)` maps a batch of windows (B, T, P, P) to logits as its kind
says, plus the hooks below. Each hook has its default here, so a model overrides only what it
has, and the engine calls the hooks directly instead of probing a model for attributes.
tests/test_every_model.py checks that every registered torch model is a `TorchModel` and that
its hooks keep their promises.

- `aux_bands` (default 0): how many auxiliary rasters (`hsi prep --aux`) the model reads, as
  channels after the T spectral bands: training and prediction feed it (B, T + aux_bands, P, P)
  (hsicli.engine.windows.scene_inputs).
- `pixel_stage` (default None): the leading layers that see one pixel at a time, as a map
  (N, T, H, W) -> (N, D, H, W). `hsi predict` runs it once over each block of scene rows, cuts
  the patches from its output and passes them as `forward(x, staged=True)` (and
  `forward_features(x, staged=True)`), which must then equal the raw patches' result.
- `forward_features(x) -> (B, D)` and `forward_head(features) -> (B, C)`: the embedding that
  `hsi predict --embeddings` exports, and the logits from it (`forward` is their composition).
  `has_embedding` is true when a model overrides them; by default it has none and
  `--embeddings` is refused.
- `training_loss(logits, target, class_weights)`: the loss `hsi train` minimises, called right
  after each training batch's forward pass (so a model may use what that pass kept). `target`
  is (B,) class indices, or (B, S, S) for a segmenter with `IGNORE` at pixels that are not
  training pixels; `class_weights` is the (C,) tensor of `--class-weights`, or None. Default:
  cross-entropy of the float logits, class-weighted, ignoring `IGNORE`.
- `history_extras()` (default {}): values added to each epoch's entry of the training history
  after the epoch (e.g. learned loss weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsicli.models.kinds import IGNORE


class TorchModel(nn.Module):
    """Base of every torch model the registry builds; see the module docstring for the hooks."""

    aux_bands: int = 0

    @property
    def pixel_stage(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return None

    @property
    def has_embedding(self) -> bool:
        return type(self).forward_features is not TorchModel.forward_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no embedding")

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no embedding")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from windows: the head on the embedding (a model without one overrides this)."""
        return self.forward_head(self.forward_features(x))

    def training_loss(self, logits: torch.Tensor, target: torch.Tensor,
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=IGNORE)

    def history_extras(self) -> dict[str, Any]:
        return {}
