"""Concurrent writers on one scene store (issue 9): two `hsi split` (or `hsi pseudolabel`) started
together on a fresh copy of the same store either both succeed (different layer names, or the
very same layer) or one wins and the other exits 1 with one clear line; the layer that exists is
exactly one writer's data with that writer's own record, never a mix; nothing else changes.

Both writers are children of the harness's fork server started back to back, so they reach the
store within milliseconds of each other; tests/test_store.py races `add_layer` itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import (
    artifact_digest, assert_one_line_error, copy_workspace, leftovers, registered_commands, snapshot,
)

FAST_ROUNDS = 1
SLOW_ROUNDS = 20


def split(name: str, seed: int) -> tuple[str, ...]:
    return ("split", "s.zarr", "--ratio", "0.3", "--seed", str(seed), "--name", name)


def pseudolabel(name: str, evaluation: str) -> tuple[str, ...]:
    """--include-eval labels validation and test pixels too: another layer from one prediction."""
    return ("pseudolabel", "p.zarr", "--tau", "0.5", evaluation, "--name", name)


RACES = {
    # id: (writer 1, writer 2, layer each writes), the layers relative to the workspace
    "split-same-name": (split("b", 1), split("b", 2), "s.zarr/splits/b", "s.zarr/splits/b"),
    "split-same-layer": (split("b", 1), split("b", 1), "s.zarr/splits/b", "s.zarr/splits/b"),
    "split-other-names": (split("b", 1), split("c", 2), "s.zarr/splits/b", "s.zarr/splits/c"),
    "pseudolabel-same-name": (pseudolabel("q", "--exclude-eval"), pseudolabel("q", "--include-eval"),
                              "s.zarr/labels/q", "s.zarr/labels/q"),
    "pseudolabel-other-names": (pseudolabel("q", "--exclude-eval"), pseudolabel("r", "--include-eval"),
                                "s.zarr/labels/q", "s.zarr/labels/r"),
}


def race_params() -> list:
    commands = registered_commands()
    return [pytest.param(name, id=name, marks=[] if RACES[name][0][0] in commands else
                         [pytest.mark.skip(reason=f"`hsi {RACES[name][0][0]}` is not registered")])
            for name in RACES]


@pytest.fixture(scope="module")
def alone(runner, base, tmp_path_factory) -> dict[tuple[str, ...], tuple[str, str]]:
    """Each writer run alone on a copy: (digest of its layer, its command line as recorded)."""
    found = {}
    for writer_1, writer_2, layer_1, layer_2 in RACES.values():
        for args, layer in ((writer_1, layer_1), (writer_2, layer_2)):
            if args in found or args[0] not in registered_commands():
                continue
            folder = tmp_path_factory.mktemp("alone") / "w"
            copy_workspace(base, folder)
            run = runner.run(args, folder)
            assert run.code == 0, run.describe()
            found[args] = (artifact_digest(folder / layer), recorded_command(folder / layer))
    return found


def recorded_command(layer: Path) -> str:
    attrs = json.loads((layer / "zarr.json").read_text())["attributes"]
    return " ".join(attrs["provenance"]["command"].split()[1:])  # without the program name


def race(runner, base, alone, name: str, folder: Path) -> str:
    writer_1, writer_2, layer_1, layer_2 = RACES[name]
    copy_workspace(base, folder)
    before = snapshot(folder)
    handles = [runner.start(writer_1, folder), runner.start(writer_2, folder)]
    runs = [handle.wait() for handle in handles]
    layers = {folder / layer_1, folder / layer_2}

    succeeded = [(run, args) for run, args in zip(runs, (writer_1, writer_2)) if run.code == 0]
    for run, args, layer in zip(runs, (writer_1, writer_2), (layer_1, layer_2)):
        if run.code == 0:
            assert run.stdout == f"{folder / layer}\n", run.describe()
        else:
            assert_one_line_error(run, "already exists")
    if len(layers) == 2 or writer_1 == writer_2:
        assert len(succeeded) == 2, [run.describe() for run in runs]  # different names, or the same layer
    else:
        assert len(succeeded) == 1, [run.describe() for run in runs]  # one name, two contents: one wins
    for run, args in succeeded:
        layer = folder / (layer_1 if args == writer_1 else layer_2)
        digest, command = alone[args]
        assert artifact_digest(layer) == digest, f"{layer} is not {args}'s layer"
        assert recorded_command(layer) == command == " ".join(args), "data and record of different writers"

    def kept(entries: dict[str, str]) -> dict[str, str]:  # all but the layers written and the lock
        return {key: value for key, value in entries.items() if not key.endswith(".lock")
                and not any(key == layer or key.startswith(layer + "/") for layer in (layer_1, layer_2))}

    assert kept(snapshot(folder)) == kept(before)
    assert leftovers(folder) == []
    return "both" if len(succeeded) == 2 else "one"


@pytest.mark.parametrize("name", race_params())
def test_two_writers(name, runner, base, alone, tmp_path):
    for index in range(FAST_ROUNDS):
        race(runner, base, alone, name, tmp_path / f"r{index}")


@pytest.mark.slow
@pytest.mark.parametrize("name", race_params())
def test_two_writers_many_rounds(name, runner, base, alone, tmp_path):
    for index in range(SLOW_ROUNDS):
        race(runner, base, alone, name, tmp_path / f"r{index}")


TWINS = {  # a command, and the workspace's artifact the same request made alone
    "predict": (("predict", "m.safetensors", "--out", "twin.zarr"), "p.zarr"),
    "prep": (("prep", "s.mat", "--pca", "5", "--out", "twin.zarr"), "s.zarr"),
}


@pytest.mark.parametrize("name", TWINS)
def test_two_identical_runs_both_succeed(runner, base, tmp_path, name):
    """README: re-running a step with the same inputs is a no-op. The second of two identical
    `hsi predict` started together failed with "already exists" when the first published while it
    ran (issue 17); now whichever finishes second finds the very same artifact and succeeds."""
    args, alone = TWINS[name]
    folder = tmp_path / "w"
    copy_workspace(base, folder)
    for _ in range(3):
        first, second = runner.start(args, folder), runner.start(args, folder)
        for run in (first.wait(), second.wait()):
            assert run.code == 0 and run.stdout == f"{folder / 'twin.zarr'}\n", run.describe()
        assert artifact_digest(folder / "twin.zarr") == artifact_digest(base / alone)
        assert leftovers(folder) == []
        shutil.rmtree(folder / "twin.zarr")
