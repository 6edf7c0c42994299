"""Model registry in timm's style: `register_model`, `create_model`, `list_models`.

Each architecture lives in its own module and registers a builder with its paper's training
protocol beside it; the registry imports them all on first use, so that it is complete.

Each model is of a kind (`hsicli.models.kinds`: patch classifier, segmenter, classical
estimator on spectra) that says what goes in and out of it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hsicli.errors import HsiError
from hsicli.models.kinds import ModelKind, model_kind
from hsicli.store.record import TrainDefaults  # noqa: F401  (models declare their protocol with it)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    paper: str
    builder: Callable[..., Any]
    defaults: TrainDefaults = field(default_factory=TrainDefaults)
    # Settings the default ("adaptive") protocol uses instead of the paper's where the paper's do
    # not fit a small training set (hsicli.engine.budget); `--protocol paper` ignores them.
    adaptive: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Architectures whose layer sizes depend on the input window declare a `patch` argument;
    # the engine then builds them for the patch size it trains with.
    takes_patch: bool = False
    # Lower bounds of the activations autograd keeps for the backward pass, in floats per sample:
    # at least `activations_per_input` × T × P² and at least `activations_per_pixel` × P² (T bands,
    # P×P windows), measured on the meta device (tests/test_memory.py checks them). hsicli.engine.memory
    # refuses a training run whose batches could not fit.
    activations_per_input: float = 0.0
    activations_per_pixel: float = 0.0
    # Every architecture argument with its default: a checkpoint stores them all, so that a later
    # change of a default here does not change what an existing checkpoint builds.
    arguments: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}

# The registry's facts per model (and `hsi models`' rows), written by `python -m hsicli.models.catalogue`;
# tests/test_models_listing.py fails when they disagree with the live registry.
STORED_CATALOGUE = Path(__file__).with_name("catalogue.json")
STORED_FIELDS = ("adaptive", "takes_patch", "activations_per_input", "activations_per_pixel", "arguments")


def register_model(
    name: str,
    *,
    kind: ModelKind,
    paper: str,
    defaults: TrainDefaults | None = None,
    adaptive: dict[str, Any] | None = None,
    description: str = "",
    activations_per_input: float = 0.0,
    activations_per_pixel: float = 0.0,
    arguments: Callable[..., Any] | dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register `builder(bands, classes, **args)` under `name`.

    The architecture's arguments and defaults are the builder's keyword parameters; a builder that
    passes `**args` on names where they are declared in `arguments`: the class (or function) it
    builds with, whose keyword defaults are read, or a dict of them (a preset; `{}` for a classical
    estimator, whose other arguments are its library's and are stored with its fitted state)."""
    if not isinstance(kind, ModelKind):
        raise ValueError(f"model {name!r}: kind must be a ModelKind (hsicli.models.kinds), got {kind!r}")

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
        if passes_on and arguments is None:
            raise ValueError(f"model {name!r}: its builder passes **args on; declare where they are defined with "
                             "arguments= (the class it builds, or a dict of defaults)")
        first_doc_line = ((builder.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = ModelSpec(
            name=name,
            kind=kind,
            paper=paper,
            builder=builder,
            defaults=defaults or TrainDefaults(),
            adaptive=dict(adaptive or {}),
            description=description or first_doc_line,
            takes_patch="patch" in inspect.signature(builder).parameters,
            activations_per_input=activations_per_input,
            activations_per_pixel=activations_per_pixel,
            arguments=_json_values({**keyword_defaults(arguments), **keyword_defaults(builder)}
                                   if not isinstance(arguments, dict)
                                   else {**keyword_defaults(builder), **arguments}),
        )
        return builder

    return decorate


_NOT_ARGUMENTS = {"self", "bands", "classes", "seed"}  # given by the engine, not architecture arguments


def keyword_defaults(function: Callable[..., Any] | None) -> dict[str, Any]:
    if function is None:
        return {}
    target = function.__init__ if inspect.isclass(function) else function
    return {name: p.default for name, p in inspect.signature(target).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in _NOT_ARGUMENTS}


def _json_values(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments as they read back from a checkpoint's JSON (tuples become lists)."""
    return json.loads(json.dumps(arguments))


# Modules of the package that are not architectures (every other one registers a model).
_SUPPORT_MODULES = {"registry", "kinds", "contract", "complexity", "catalogue", "layers", "precision", "thresholds"}


@functools.cache
def load_architectures() -> None:
    """Import every architecture module, which registers it (once per process). Here rather than
    in the package's __init__, which imports this module: the registry never imports back up."""
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name not in _SUPPORT_MODULES:
            importlib.import_module(f"{package}.{info.name}")


def list_models(kind: ModelKind | None = None) -> list[str]:
    load_architectures()
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind is kind)


def get_model_spec(name: str) -> ModelSpec:
    load_architectures()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HsiError(
            f"unknown model {name!r}",
            hint=f"known models: {', '.join(sorted(_REGISTRY))} (see `hsi models`)",
        ) from None


@functools.cache
def _stored_facts() -> dict[str, dict[str, Any]]:
    try:
        stored = json.loads(STORED_CATALOGUE.read_text())
        return {row["name"]: {**row, **stored["specs"][row["name"]]} for row in stored["models"]}
    except (OSError, ValueError, KeyError, TypeError):  # not installed with the package: the live registry
        return {}


def stored_model_spec(name: str) -> ModelSpec:
    """`name`'s spec from the facts stored in catalogue.json, read without importing the
    architectures (hence torch), so that a run is checked (window size, memory, a checkpoint
    against its model) in milliseconds before anything is built; its builder goes through
    `create_model`. The live spec where the catalogue has none for `name`."""
    facts = _stored_facts().get(name)
    if facts is None:
        return get_model_spec(name)
    return ModelSpec(name=name, kind=model_kind(facts["kind"]), paper=facts["paper"], description=facts["description"],
                     builder=functools.partial(create_model, name), defaults=TrainDefaults.from_dict(facts["defaults"]),
                     **{key: facts[key] for key in STORED_FIELDS})


def stored_facts(spec: ModelSpec) -> dict[str, Any]:
    """What catalogue.json stores of `spec` beside its row, in JSON types."""
    return _json_values({key: getattr(spec, key) for key in STORED_FIELDS})


def create_model(name: str, bands: int, classes: int, **args: Any) -> Any:
    """Build model `name` for `bands` input bands and `classes` classes.

    `args` override the architecture's paper defaults (ablations via `--model-args`).
    An unknown argument is a clear error rather than a silent no-op.
    """
    spec = get_model_spec(name)
    try:
        return spec.builder(bands, classes, **args)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise HsiError(
                f"model {name!r} got an unknown argument: {exc}",
                hint=f"see the docstring of {spec.builder.__module__} for its arguments",
            ) from None
        raise


def architecture_args(spec: ModelSpec, patch: int, args: dict[str, Any]) -> dict[str, Any]:
    """Every argument of the model for training at `patch`: its registered defaults, `args` over
    them, and the window size when the architecture depends on it (a contradicting `patch` in
    `args` is an error)."""
    resolved = {**spec.arguments, **_json_values(args)}
    if not spec.takes_patch:
        return resolved
    if "patch" in args and args["patch"] != patch:
        raise HsiError(
            f"--model-args sets patch {args['patch']} but training uses patch {patch}",
            hint="give the patch size once, with --patch",
        )
    return {**resolved, "patch": patch}
