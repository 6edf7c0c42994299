"""Options shared by the commands: the range every numeric option declares, and the options of
the commands that run models (train, predict)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hsicli.errors import HsiError, InputError, UsageError
from hsicli.store.record import SEED_MAX


@dataclass(frozen=True)
class Range:
    """The values a numeric option allows (pydantic's ge / gt / le / lt), checked while the command
    line is parsed, so an out-of-range value is a usage error (exit 2) before any data is read."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: float) -> bool:
        # Every comparison is False for NaN; floats must also be finite.
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def __str__(self) -> str:
        """typer's notation, lower bound first: 0<x<1, 10<=x<=2400, 1<=x. Starting with a digit
        also keeps rich (typer's help) from taking `[1<=x]` for a markup tag."""
        low = f"{_number(self.ge)}<=" if self.ge is not None else f"{_number(self.gt)}<" if self.gt is not None else ""
        high = f"<={_number(self.le)}" if self.le is not None else f"<{_number(self.lt)}" if self.lt is not None else ""
        return f"{low}x{high}"

    def check(self, ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        """typer's option callback: the value unchanged, or a UsageError naming the option and the range."""
        if value is None or value in self:
            return value
        flag = max(param.opts, key=len)
        raise UsageError(f"{flag} {value} is outside its range {self}",
                         hint=f"`{ctx.command_path} --help` shows every option's range")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def ranged_option(*names: str, help: str, ge: float | None = None, gt: float | None = None,
                  le: float | None = None, lt: float | None = None, **options: Any) -> Any:
    """`typer.Option(*names, ...)` of an int or float whose value must lie in the given range;
    the help text ends with the range."""
    allowed = Range(ge=ge, gt=gt, le=le, lt=lt)
    return typer.Option(*names, help=f"{help} [{allowed}]", callback=allowed.check, **options)



DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
ThreadsOpt = Annotated[
    Optional[int], ranged_option("--threads", ge=1, help="CPU threads for torch (default: all cores).")
]
AmpOpt = Annotated[bool, typer.Option("--amp", help="bfloat16 autocast (faster on CPUs with bf16 and on GPUs).")]
SeedOpt = Annotated[int, ranged_option("--seed", ge=0, le=SEED_MAX, help="Random seed.")]


def parse_json_object(text: str | None, option: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HsiError(f"{option} is not valid JSON: {exc}", hint='write it like \'{"layers": 1}\'') from None
    if not isinstance(value, dict):
        raise HsiError(f"{option} must be a JSON object, got {type(value).__name__}", hint='e.g. \'{"layers": 1}\'')
    return value


def parse_name_list(text: str | None, option: str) -> list[str] | None:
    """Names given as `a,b,c`, or as `@FILE` with one name per line (for names holding commas;
    blank lines skipped), each stripped of surrounding spaces. Whether they are usable is the
    caller's check."""
    if text is None:
        return None
    if not text.startswith("@"):
        return [name.strip() for name in text.split(",")]
    path = Path(text[1:])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is not UTF-8 text"
        raise InputError(f"{option} {text}: cannot read {path}: {reason}",
                         hint="give a text file with one name per line, or the names comma-separated") from None
    return [line.strip() for line in lines if line.strip()]


def check_layer_name(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """typer's option callback for a layer name: the name, or a UsageError (exit 2) saying why not."""
    from hsicli.store.names import RULE, name_problem

    problem = None if value is None else name_problem(value)
    if problem is None:
        return value
    raise UsageError(f"{max(param.opts, key=len)} {ascii(value)} cannot name a layer: {problem}", hint=f"use {RULE}")


def layer_name_option(*names: str, help: str, autocompletion: Callable[..., list[str]] | None = None) -> Any:
    """`typer.Option(*names, ...)` of a split or label layer name, checked while the command line is parsed."""
    return typer.Option(*names, help=help, callback=check_layer_name, autocompletion=autocompletion)
