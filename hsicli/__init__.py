"""hsicli: composable command-line tools for hyperspectral image classification.

The Python API (`hsicli.api`, documented in docs/api.md) is re-exported here on first use, so
that `import hsicli` stays light: `hsicli.train(...)` loads the engine when it is called. Its
`plot` is `hsicli.api.plot`: `hsicli.plot` is the plotting package.
"""

from hsicli.about import __version__

_API = ("prep", "split", "train", "predict", "pseudolabel", "evaluate", "load_scene", "patch_dataset",
        "Scene", "PatchDataset", "sweep", "sweep_points", "run_point", "SweepPoint")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import hsicli.api

        return getattr(hsicli.api, name)
    raise AttributeError(f"module 'hsicli' has no attribute {name!r}")
