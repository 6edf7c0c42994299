"""Shell completion: what <TAB> offers for each argument and option (typer's `autocompletion=`).

A completer runs in a fresh `hsi` process on every <TAB>, so it reads directories and stored
files only, never loading torch or zarr: model names come from the stored catalogue, layer
names from the store's folders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import typer

Completer = Callable[..., list[str]]


def model_names(incomplete: str) -> list[str]:
    from hsicli.models.catalogue import describe_models

    return [row["name"] for row in describe_models(None) if row["name"].startswith(incomplete)]


def plot_kinds(incomplete: str) -> list[str]:
    from hsicli.plot import KINDS

    return [kind for kind in KINDS if kind.startswith(incomplete)]


def dataset_names(incomplete: str) -> list[str]:
    from hsicli.data.datasets import list_datasets

    return [info.name for info in list_datasets() if info.name.lower().startswith(incomplete.lower())]


def _store_on_line(ctx: typer.Context) -> Path | None:
    """The last scene store given earlier on the line: STORE or STORE/KIND/NAME. typer hands
    completers no words, so they come from the values parsed so far and the words left over (an
    option still waiting for its value stops the parse before the positional arguments)."""
    from hsicli.store.names import split_layer_path

    words = list(ctx.args)
    for value in ctx.params.values():
        words += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    for word in reversed(words):
        store = split_layer_path(Path(word).expanduser())[0]
        if store.suffix == ".zarr" and (store / "zarr.json").is_file():
            return store
    return None


def _layer_names(kind: str) -> Completer:
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        from hsicli.store.names import layer_entries, name_problem

        store = _store_on_line(ctx)
        if store is None:
            return []
        return sorted(name for name in layer_entries(store, kind)
                      if name.startswith(incomplete) and name_problem(name) is None)

    return complete


split_names = _layer_names("splits")
label_layer_names = _layer_names("labels")


def paths(*suffixes: str, layers: bool = False) -> Completer:
    """Files and directories (stores) ending in one of `suffixes`, and folders to descend into;
    with `layers`, also the layers inside a store (STORE/splits/NAME)."""

    def complete(incomplete: str) -> list[str]:
        from hsicli.store.names import LAYER_KINDS

        head, _, prefix = incomplete.rpartition("/")
        head = head + "/" if "/" in incomplete else ""
        folder = Path(head or ".").expanduser()
        inside_layers = layers and folder.name in LAYER_KINDS and folder.parent.suffix == ".zarr"
        try:
            entries = [entry for entry in os.scandir(folder) if entry.name.startswith(prefix)
                       and (prefix.startswith(".") or not entry.name.startswith("."))]
        except OSError:
            return []
        offered = []
        for entry in entries:
            if entry.name.lower().endswith(suffixes) or inside_layers:
                offered.append(head + entry.name)
            elif entry.is_dir():
                offered.append(head + entry.name + "/")
        return sorted(offered)

    return complete


def scene_files(incomplete: str) -> list[str]:
    from hsicli.io.readers import SCENE_FORMATS

    return paths(*SCENE_FORMATS)(incomplete)


stores = paths(".zarr")
stores_or_layers = paths(".zarr", layers=True)
checkpoints = paths(".safetensors")
json_files = paths(".json")
json_lines_files = paths(".jsonl")
artifacts = paths(".zarr", ".safetensors", ".json", layers=True)
