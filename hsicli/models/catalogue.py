"""Registry rows for `hsi models`: each model's size and cost for a given input.

Counting means building and running every model (seconds each on a busy CPU, after seconds
of loading torch), so the rows for the default input (30 bands, 16 classes, each model's own
patch) are stored beside this module in catalogue.json and read without loading torch.
`python -m hsicli.models.catalogue` rewrites that file; tests/test_models_listing.py fails
when it disagrees with a live count. Any other input is counted live.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hsicli.models.registry import STORED_CATALOGUE, ModelSpec, create_model, get_model_spec, list_models, stored_facts

DEFAULT_BANDS = 30
DEFAULT_CLASSES = 16
STORED_ROWS = STORED_CATALOGUE

# Builder keywords that are not hyper-parameters: `--seed` sets the seed, `n_jobs` only the speed,
# and the window is the row's `patch`.
_NOT_ARGUMENTS = {"seed", "n_jobs", "patch"}


def paper_name(paper: str) -> str:
    """The paper's short name: its citation up to the first parenthesis or comma."""
    return re.split(r" \(|, ", paper, maxsplit=1)[0]


def model_arguments(spec: ModelSpec) -> dict[str, Any]:
    """The builder's own defaults for what `--model-args` may set (an SVM's C and γ, a forest's
    trees); architectures that keep theirs inside their module declare none here."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(spec.builder).parameters.items()
        if parameter.default is not inspect.Parameter.empty and name not in _NOT_ARGUMENTS
    }


def _count(name: str, bands: int, classes: int, patch: int | None, model_args: dict[str, Any],
           check: Callable[..., None]) -> dict[str, Any]:
    from hsicli.models.complexity import count_parameters, measure_macs

    spec = get_model_spec(name)
    size = patch or spec.defaults.patch
    parameters = macs = layer_macs = None
    if spec.kind.torch:
        check(spec, bands=bands, classes=classes, patch=size, model_args=model_args)
        model = create_model(name, bands, classes, **model_args).eval()
        parameters = count_parameters(model)
        counted = measure_macs(model, (bands + model.aux_bands, size, size))
        macs, layer_macs = counted.total, counted.layers
    return {"name": name, "kind": spec.kind.name, "paper": spec.paper, "description": spec.description, "patch": size,
            "parameters": parameters, "macs": macs, "layer_macs": layer_macs, "defaults": spec.defaults.to_dict(),
            "arguments": model_arguments(spec)}


def _unchecked(spec: ModelSpec, **sizes: Any) -> None:
    """No bound: the default input fits every model."""


def _stored_rows() -> dict[str, dict[str, Any]]:
    try:
        stored = json.loads(STORED_ROWS.read_text())
    except (OSError, ValueError):  # not installed with the package: count live
        return {}
    if (stored.get("bands"), stored.get("classes")) != (DEFAULT_BANDS, DEFAULT_CLASSES):
        return {}
    return {row["name"]: row for row in stored["models"]}


def describe_models(names: list[str] | None, *, bands: int = DEFAULT_BANDS, classes: int = DEFAULT_CLASSES,
                    patch: int | None = None, model_args: dict[str, Any] | None = None,
                    check: Callable[..., None] = _unchecked) -> list[dict[str, Any]]:
    """One row per model (all registered models by default), in JSON types. `check(spec, bands=,
    classes=, patch=, model_args=)` runs before a model is built to be counted (a memory bound)."""
    if (bands, classes, patch, model_args or None) == (DEFAULT_BANDS, DEFAULT_CLASSES, None, None):
        stored = _stored_rows()
        if stored and all(name in stored for name in names or ()):
            return [stored[name] for name in names or sorted(stored)]
    rows = [_count(name, bands, classes, patch, model_args or {}, check) for name in names or list_models()]
    return json.loads(json.dumps(rows))  # tuples as lists, as the stored rows have them


def write_stored_rows(path: Path = STORED_ROWS) -> None:
    """Count every registered model for the default input and store the rows, with the rest of
    each model's spec (registry.stored_model_spec reads them to check a run without torch)."""
    rows = [_count(name, DEFAULT_BANDS, DEFAULT_CLASSES, None, {}, _unchecked) for name in list_models()]
    specs = {name: stored_facts(get_model_spec(name)) for name in list_models()}
    path.write_text(json.dumps({"bands": DEFAULT_BANDS, "classes": DEFAULT_CLASSES, "models": rows, "specs": specs},
                               indent=1) + "\n")


if __name__ == "__main__":
    write_stored_rows()
