"""Help texts that read well at any width: set once for every command as it is registered.

typer's rich help keeps every line break of a docstring, so hard-wrapped paragraphs come out
ragged at 80 columns, and it prints the Python type as an option's metavar: `<bool>` beside plain
flags, `<list[str]>`, and a choice list long enough to be folded mid-word. Here each prose
paragraph becomes one line for rich to wrap (indented lines and `\\b` blocks are kept as written),
flag options get no metavar, repeatable ones `<path>...` (or `<NAME>...`), long choice lists
`<NAME>`. (Arguments keep typer's: their metavar would replace their name.)
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path

import typer.models

_LONGEST_CHOICES = 24  # characters of `a|b|c` shown in full; a longer list is named by its parameter


def tidy(function: Callable[..., object]) -> None:
    """Unwrap `function`'s docstring and give its options and arguments clean metavars, in place."""
    if function.__doc__:
        function.__doc__ = unwrap(function.__doc__)
    # The modules use `from __future__ import annotations`: each reading of the annotation strings
    # makes new option objects, so the resolved ones are kept for typer to read.
    function.__annotations__ = typing.get_type_hints(function, include_extras=True)
    for name, annotation in function.__annotations__.items():
        if typing.get_origin(annotation) is not typing.Annotated:
            continue
        kind, *metadata = typing.get_args(annotation)
        for info in metadata:
            if isinstance(info, typer.models.OptionInfo) and info.metavar is None:
                flag = next((decl for decl in info.param_decls or () if decl.startswith("--")), None)
                info.metavar = _metavar(flag.removeprefix("--") if flag else name, kind)


def unwrap(text: str) -> str:
    """Each paragraph of plain prose on one line; indented lines and `\\b` paragraphs as they are."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        paragraph if paragraph.startswith("\b") or any(line.startswith(" ") for line in paragraph.splitlines())
        else " ".join(line.strip() for line in paragraph.splitlines())
        for paragraph in paragraphs
    )


def _metavar(name: str, kind: object) -> str | None:
    kind = _unoptional(kind)
    if kind is bool:
        return ""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return "<path>..." if item is Path or name in ("inputs", "predictions", "paths") else f"<{name}>..."
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        if len("|".join(str(member.value) for member in kind)) > _LONGEST_CHOICES:
            return f"<{name}>"
    return None


def _unoptional(kind: object) -> object:
    """X for Optional[X]."""
    arguments = [argument for argument in typing.get_args(kind) if argument is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(arguments) == 1:
        return arguments[0]
    return kind
