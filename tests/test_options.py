"""Usage errors are usage errors (issue 17 §3): every numeric option of every command declares its
range (hsicli.cli.options.Range), and a value outside it exits 2 with one `Error:` line naming the
option and the range, before any data is read, writing nothing.

The options are read from the command functions' declarations, so a new numeric option without a
range fails `test_every_numeric_option_declares_a_range`, and its out-of-range values join the
runs of `test_out_of_range_values_are_usage_errors` by themselves.
"""

from __future__ import annotations

import math
import typing
from types import NoneType, UnionType

import pytest
from typer.models import OptionInfo

from harness import Runner, assert_one_line_error, build_workspace, snapshot
from hsicli.cli.commands import COMMANDS
from hsicli.cli.options import Range


def _base_type(hint):
    """int for Optional[int], float for float, … (None for anything else)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, UnionType):
        args = [a for a in args if a is not NoneType]
        return args[0] if len(args) == 1 else None
    return hint if not args else None


def numeric_options() -> list[tuple[str, str, type, OptionInfo]]:
    """(command, --flag, int or float, its typer declaration) of every numeric option."""
    found = []
    for command, function in COMMANDS:
        for hint in typing.get_type_hints(function, include_extras=True).values():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            base, *metadata = typing.get_args(hint)
            kind = _base_type(base)
            for info in metadata:
                if isinstance(info, OptionInfo) and kind in (int, float):
                    names = [info.default, *info.param_decls]
                    flag = max((n for n in names if isinstance(n, str) and n.startswith("--")), key=len)
                    found.append((command, flag, kind, info))
    return found


def declared_range(info: OptionInfo) -> Range | None:
    owner = getattr(info.callback, "__self__", None)
    return owner if isinstance(owner, Range) else None


def outside(allowed: Range, kind: type) -> list[str]:
    """Values just outside each bound (the open bound itself), and NaN for floats (infinities:
    test_range_bounds_and_notation)."""
    below = (lambda v: math.nextafter(v, -math.inf)) if kind is float else (lambda v: v - 1)
    above = (lambda v: math.nextafter(v, math.inf)) if kind is float else (lambda v: v + 1)
    values = [below(allowed.ge) if allowed.ge is not None else None, allowed.gt,
              above(allowed.le) if allowed.le is not None else None, allowed.lt]
    values = [repr(v) for v in values if v is not None]
    return values + (["nan"] if kind is float else [])


OPTIONS = numeric_options()

# Arguments that would make each command read its inputs and write something, were the option
# not refused first (the workspace of harness.build_workspace).
VALID_ARGS = {
    "prep": ["s.mat", "--out", "new.zarr"],
    "split": ["s.zarr", "--ratio", "0.5", "--name", "new"],
    "train": ["s.zarr", "--split", "a", "--model", "svm", "--out", "new.safetensors"],
    "predict": ["m.safetensors", "--out", "new.zarr"],
    "pseudolabel": ["p.zarr", "--name", "new"],
    "plot": ["map", "p.zarr", "--out", "new.png"],
    "models": ["svm"],
    "fetch": ["salinasA", "--dest", "downloads"],
}


def test_every_numeric_option_declares_a_range():
    assert len(OPTIONS) >= 30 and {command for command, *_ in OPTIONS} == set(VALID_ARGS)
    missing = [f"hsi {command} {flag}" for command, flag, _, info in OPTIONS if declared_range(info) is None]
    assert not missing, f"numeric options without a range (use options.ranged_option): {missing}"
    for command, flag, _, info in OPTIONS:
        assert info.help.endswith(f"[{declared_range(info)}]"), (command, flag, info.help)


def test_range_bounds_and_notation():
    assert str(Range(gt=0.0, lt=1.0)) == "0<x<1" and str(Range(ge=10, le=2400)) == "10<=x<=2400"
    assert str(Range(ge=1)) == "1<=x" and str(Range(gt=0.0)) == "0<x" and str(Range(le=5)) == "x<=5"
    unit = Range(ge=0.0, lt=1.0)
    assert 0.0 in unit and 0.5 in unit and 1.0 not in unit and -1e-300 not in unit
    assert math.nan not in unit and math.inf not in Range(gt=0.0) and -math.inf not in Range(le=5)
    assert 1 in Range(ge=1) and 0 not in Range(ge=1) and 10**30 in Range(ge=1)


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    return Runner(tmp_path_factory.mktemp("runner"))


@pytest.fixture(scope="module")
def workspace(runner, tmp_path_factory):
    return build_workspace(runner, tmp_path_factory.mktemp("work"), {"prep", "split", "train", "predict"})


def assert_usage_error(runner: Runner, workspace, args: list[str], *phrases: str) -> None:
    """`hsi ARGS` exits 2 with one `Error:` line holding `phrases` and leaves the workspace as it was."""
    before = snapshot(workspace)
    run = runner.run(args, workspace)
    assert_one_line_error(run, *phrases, code=2)
    assert snapshot(workspace) == before, run.describe()


@pytest.mark.parametrize(("command", "flag", "kind", "info"), OPTIONS,
                         ids=[f"{command}{flag}" for command, flag, *_ in OPTIONS])
def test_out_of_range_values_are_usage_errors(runner, workspace, command, flag, kind, info):
    allowed = declared_range(info)
    assert allowed is not None, f"hsi {command} {flag} declares no range"
    for value in outside(allowed, kind):
        assert_usage_error(runner, workspace, [command, *VALID_ARGS[command], flag, value],
                           f"{flag} {float(value) if kind is float else value}", str(allowed))


@pytest.mark.parametrize(("args", "phrase"), [
    (["--model", "litec2anet", "--patch", "4"], "--patch 4: litec2anet reads a window centred on each pixel"),
    (["--model", "hsiseg", "--model-args", '{"patch": 32}'], "--model-args patch 32: hsiseg"),
    (["--model", "ssrn", "--model-args", '{"patch": "7"}'], "--model-args patch '7' is not a window size"),
])
def test_model_dependent_patch_is_checked_before_reading(runner, workspace, args, phrase):
    assert_usage_error(runner, workspace, ["train", "s.zarr", "--split", "a", "--out", "new.safetensors", *args], phrase)


@pytest.mark.parametrize(("args", "phrase"), [
    (["--ratio", "0.5", "--val", "0.5"], "--ratio 0.5 plus --val 0.5 leaves no test pixels"),
    (["--per-class", "3", "--val", "2.5"], "--val 2.5 with --per-class is a count"),
    (["--from-maps", "missing.mat", "--val", "1"], "--val 1 with --from-maps is the fraction"),
])
def test_split_option_combinations_are_usage_errors(runner, workspace, args, phrase):
    assert_usage_error(runner, workspace, ["split", "s.zarr", *args], phrase)
