"""`hsi info`: describe any artifact (scene store, split layer, checkpoint, prediction store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hsicli.cli.common import ArtifactArg, JsonOpt, Log, QuietOpt, VerboseOpt, read_input_path


def info(
    path: ArtifactArg = None,
    json_out: JsonOpt = False,
    verify: Annotated[bool, typer.Option("--verify", help="Recompute a scene store's content fingerprint.")] = False,
    clean: Annotated[
        bool,
        typer.Option("--clean", help="Remove the leftover temporaries whose writer has exited (never a running one's); a replaced "
                     "store left aside by a killed --overwrite is put back."),
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Describe a store, layer, checkpoint or prediction: shape, classes, splits, history.

    The description goes to stderr; stdout gets the path (or the whole description with --json).

    Example: hsi info salinasA-pca30.zarr
    """
    import sys

    from hsicli.store.atomic import restore_or_remove_abandoned
    from hsicli.store.inspect import describe, leftovers, render

    log = Log(quiet, verbose)
    target = read_input_path(path, "artifact")
    description = describe(target)
    if clean and description.get("kind") != "incomplete":
        cleaned = restore_or_remove_abandoned([Path(entry["path"]) for entry in description["temporaries"]])
        for entry, action in cleaned:
            log.info(f"{action} {entry} (its writer has exited)")
        for action in ("removed", "restored"):
            description[action] = [str(entry) for entry, done in cleaned if done == action]
        description["temporaries"] = leftovers(target)
    if verify and description.get("kind") == "scene":
        from hsicli.store.scene import SceneStore

        SceneStore.open(target).verify()
    if json_out:
        print(json.dumps(description, default=str))
    else:
        if not quiet:
            print(render(description), file=sys.stderr)
        print(description["path"])
