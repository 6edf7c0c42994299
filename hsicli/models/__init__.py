"""Models: the registry and one module per architecture.

Every module of this package except the support modules below is an architecture that
registers itself on import, so adding a file is all it takes to add a model.
"""

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

_SUPPORT_MODULES = {"registry", "complexity", "catalogue", "layers", "precision"}

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name not in _SUPPORT_MODULES:
        importlib.import_module(f"{__name__}.{_info.name}")
