"""Registry rows for `hsi models`: each model's size and cost for a given input."""

from __future__ import annotations

from typing import Any

from hsicli.models.registry import create_model, get_model_spec, list_models


def describe_models(names: list[str] | None, *, bands: int, classes: int, patch: int | None = None,
                    model_args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from hsicli.models.complexity import count_parameters, measure_macs

    rows = []
    for name in names or list_models():
        spec = get_model_spec(name)
        size = patch or spec.defaults.patch
        parameters = macs = layer_macs = None
        if spec.kind != "spectral":
            model = create_model(name, bands, classes, **(model_args or {})).eval()
            parameters = count_parameters(model)
            channels = getattr(model, "input_channels", bands)  # HSIseg: bands + auxiliary bands
            counted = measure_macs(model, (channels, size, size))
            macs, layer_macs = counted.total, counted.layers
        rows.append({"name": name, "kind": spec.kind, "paper": spec.paper, "patch": size, "parameters": parameters,
                     "macs": macs, "layer_macs": layer_macs, "defaults": spec.defaults.to_dict(), "description": spec.description})
    return rows
