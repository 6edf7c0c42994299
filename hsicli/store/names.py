"""Layer names (splits, pseudo-label layers): an allowlist, because a name becomes a directory and
is printed as part of one stdout line (`STORE/splits/NAME`). Light: the CLI checks flags with it."""

from __future__ import annotations

import re
from pathlib import Path

MAX_LENGTH = 100
RULE = "letters, digits, '-', '_' and '.' (not first), at most 100 characters"
_ALLOWED = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_ALLOWED_CHARACTER = re.compile(r"[A-Za-z0-9._-]")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a layer, or None if it can."""
    if not name:
        return "it is empty"
    if len(name) > MAX_LENGTH:
        return f"it has {len(name)} characters, more than {MAX_LENGTH}"
    if name.startswith("."):
        return "it starts with '.'"
    if not _ALLOWED.fullmatch(name):
        bad = next(character for character in name if not _ALLOWED_CHARACTER.fullmatch(character))
        return f"it holds {ascii(bad)}"
    return None


LAYER_KINDS = ("splits", "labels")  # a scene store's layer folders: STORE/KIND/NAME


def split_layer_path(path: Path) -> tuple[Path, str | None, str | None]:
    """`X.zarr/splits/NAME` -> (X.zarr, "splits", NAME); a plain store path -> (path, None, None)."""
    path = Path(path)
    if path.parent.name in LAYER_KINDS and path.parent.parent.suffix == ".zarr":
        return path.parent.parent, path.parent.name, path.name
    return path, None, None


def layer_entries(store: Path, kind: str) -> list[str]:
    """The complete layers of one kind in a store's folder (each has its zarr.json; temporaries
    start with '.'), names not yet checked against the allowlist."""
    folder = Path(store) / kind
    if not folder.is_dir():
        return []
    return [entry.name for entry in folder.iterdir()
            if not entry.name.startswith(".") and (entry / "zarr.json").is_file()]
