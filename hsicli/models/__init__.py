"""Models: the registry and one module per architecture.

Every module of this package except the support modules below is an architecture that
registers itself when imported, so adding a file is all it takes to add a model. The registry
imports them on first use (`load_architectures`), not this package, so that reading the stored
catalogue (`hsi models`) or a support module does not load torch.
"""

import functools
import importlib
import pkgutil

from hsicli.models.registry import (  # noqa: F401
    ModelSpec,
    TrainDefaults,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

_SUPPORT_MODULES = {"registry", "complexity", "catalogue", "layers", "precision", "thresholds"}


@functools.cache
def load_architectures() -> None:
    """Import every architecture module, which registers it (once per process)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _SUPPORT_MODULES:
            importlib.import_module(f"{__name__}.{info.name}")
