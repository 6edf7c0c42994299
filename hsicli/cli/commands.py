"""The command table: (name, function) in the order `hsi --help` lists them.

Each module defines one command function named after it and keeps heavy imports inside it.
"""

from __future__ import annotations

import importlib

_MODULES = {
    # command name: module in hsicli.cli
    "prep": "prep",
    "split": "split",
    "train": "train",
    "predict": "predict",
    "pseudolabel": "pseudolabel",
    "evaluate": "evaluate",
    "plot": "plot",
    "info": "info",
    "models": "models",
    "datasets": "datasets",
    "fetch": "fetch",
}

COMMANDS = [
    (name, getattr(importlib.import_module(f"hsicli.cli.{module}"), module.replace("-", "_")))
    for name, module in _MODULES.items()
]
