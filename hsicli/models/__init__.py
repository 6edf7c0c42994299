"""Models: the registry and one module per architecture.

Every module of this package except the support modules (listed in `registry`) is an
architecture that registers itself when imported, so adding a file is all it takes to add a
model. The registry imports them on first use (`registry.load_architectures`), not this package,
so that reading the stored catalogue (`hsi models`) or a support module does not load torch.
"""

from hsicli.models.registry import (  # noqa: F401
    ModelSpec,
    TrainDefaults,
    create_model,
    get_model_spec,
    list_models,
    load_architectures,
    register_model,
)
