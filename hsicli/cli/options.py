"""Options shared by the commands that run models (train, predict)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from hsicli.errors import HsiError

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch (default: all cores).")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="bfloat16 autocast (faster on CPUs with bf16 and on GPUs).")]


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
