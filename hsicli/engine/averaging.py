"""Exponential moving average of a model's weights, behind `hsi train --ema DECAY`."""

from __future__ import annotations

from typing import Any


class WeightAverage:
    """A shadow copy of a model's state that moves toward the live weights after every optimiser step.

    After n updates the shadow keeps min(decay, (1 + n) / (10 + n)) of itself, the warm-up of
    timm's ModelEmaV3: the random initial weights wash out within the first few hundred steps
    instead of lingering for about 1 / (1 - decay) of them, which at 5 % of SalinasA (34 steps an
    epoch) would be most of a run. Floating-point buffers (BatchNorm statistics) are averaged like
    the parameters; integer ones (BatchNorm's batch count) follow the live model.
    """

    def __init__(self, model, decay: float):
        self.decay = decay
        self.updates = 0
        self.state: dict[str, Any] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def keep(self) -> float:
        """The share of the shadow kept at the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self, model) -> None:
        import torch

        weight = 1.0 - self.keep()
        self.updates += 1
        with torch.no_grad():
            for name, live in model.state_dict().items():
                shadow = self.state[name]
                if shadow.is_floating_point():
                    shadow.lerp_(live.to(shadow.dtype), weight)
                else:
                    shadow.copy_(live)
