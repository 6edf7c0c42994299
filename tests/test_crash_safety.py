"""Crash safety (issue 9, DESIGN.md §1): every writing command killed with SIGKILL at any moment,
or starved of disk, leaves either the previous artifact intact or no artifact at all; whatever
temporary it leaves behind `hsi info` reports as incomplete; and running the command again
finishes with exactly the artifact an uninterrupted run writes.

Kills come three ways: at random times (uniform over the command's measured run time), at the
n-th rename the command makes (zarr writes every chunk and metadata file through a rename and
every artifact is published by one, so these are the moments where a store changes on disk),
and, in the slow tier, at random times in the real console script. A full disk is simulated with
RLIMIT_FSIZE (SIGXFSZ ignored, so an oversized write fails with EFBIG as a full disk fails with
ENOSPC). The fast tier runs a few trials per command; the bulk is marked `slow`.

Every trial works on a fresh copy of one small workspace (`harness.build_workspace`: scene file,
scene stores, SVM checkpoint, prediction, figure) and checks, besides the artifact, that nothing
else in the workspace changed and that the original workspace (which the copied artifacts'
recorded paths point to) was never written through.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import (
    WORKSPACE_STEPS, artifact_digest, assert_one_line_error, build_workspace, copy_workspace, leftovers,
    registered_commands, run_console, snapshot,
)

FAST_RANDOM_KILLS = 1  # per command (besides the kills at publication)
SLOW_RANDOM_KILLS = 8
SLOW_CONSOLE_KILLS = 2
SLOW_DISK_LIMITS = 6


@dataclass(frozen=True)
class Scenario:
    args: tuple[str, ...]
    output: str  # relative to the workspace
    replaces: bool = False  # --overwrite of an artifact the workspace already holds

    @property
    def command(self) -> str:
        return self.args[0]


SCENARIOS = {
    "prep": Scenario(("prep", "s.mat", "--pca", "4", "--out", "new.zarr"), "new.zarr"),
    "prep-overwrite": Scenario(("prep", "s.mat", "--pca", "4", "--out", "old.zarr", "--overwrite"), "old.zarr",
                               replaces=True),
    "split": Scenario(("split", "s.zarr", "--ratio", "0.3", "--seed", "1", "--name", "b"), "s.zarr/splits/b"),
    "train": Scenario(("train", "s.zarr", "--model", "svm", "--split", "a", "--seed", "1", "--out", "m1.safetensors"),
                      "m1.safetensors"),
    "train-overwrite": Scenario(("train", "s.zarr", "--model", "svm", "--split", "a", "--seed", "1",
                                 "--out", "m.safetensors", "--overwrite"), "m.safetensors", replaces=True),
    "predict": Scenario(("predict", "m.safetensors", "--store", "s.zarr", "--out", "p1.zarr"), "p1.zarr"),
    "predict-overwrite": Scenario(("predict", "m.safetensors", "--store", "s.zarr", "--no-probabilities",
                                   "--out", "p.zarr", "--overwrite"), "p.zarr", replaces=True),
    "pseudolabel": Scenario(("pseudolabel", "p.zarr", "--tau", "0.5", "--name", "q"), "s.zarr/labels/q"),
    "plot": Scenario(("plot", "gt", "s.zarr", "--out", "g1.png"), "g1.png"),
    "plot-overwrite": Scenario(("plot", "rgb", "s.zarr", "--out", "g.png", "--overwrite"), "g.png", replaces=True),
}


FRESH = [name for name, scenario in SCENARIOS.items() if not scenario.replaces]


def scenario_params(names=SCENARIOS) -> list:
    """One pytest param per scenario; commands not registered yet are skipped with the reason."""
    commands = registered_commands()
    return [pytest.param(name, id=name, marks=[] if SCENARIOS[name].command in commands else
                         [pytest.mark.skip(reason=f"`hsi {SCENARIOS[name].command}` is not registered")])
            for name in names]


@dataclass
class Reference:
    """What an uninterrupted run writes, and what was there before."""

    new: str  # digest of the artifact an uninterrupted run writes
    old: str | None  # digest of the artifact it replaces (replacing scenarios)
    seconds: float
    renames: int


@pytest.fixture(scope="module")
def base(runner, tmp_path_factory) -> Path:
    """The workspace every trial copies (harness.build_workspace)."""
    return build_workspace(runner, tmp_path_factory.mktemp("base"), registered_commands())


@pytest.fixture(scope="module")
def references(runner, base, tmp_path_factory) -> dict[str, Reference]:
    """Each registered scenario run once, uninterrupted, in its own copy of the workspace."""
    found = {}
    for name, scenario in SCENARIOS.items():
        if scenario.command not in registered_commands():
            continue
        folder = tmp_path_factory.mktemp("reference") / "w"
        copy_workspace(base, folder)
        old = artifact_digest(folder / scenario.output) if scenario.replaces else None
        run = runner.run(scenario.args, folder)
        assert run.code == 0, run.describe()
        assert run.stdout == f"{folder / scenario.output}\n", run.describe()
        found[name] = Reference(artifact_digest(folder / scenario.output), old, run.seconds, run.renames)
    return found


def _comparable(entries: dict[str, str], output: str) -> dict[str, str]:
    """A snapshot without the output's subtree, temporaries and lock files."""
    def kept(key: str) -> bool:
        parts = Path(key).parts
        return not (key == output or key.startswith(output + "/") or any(".tmp-" in p or ".prev-" in p for p in parts)
                    or parts[-1].endswith(".lock"))

    return {key: value for key, value in entries.items() if kept(key)}


def _digest_or_none(path: Path) -> str | None:
    return artifact_digest(path) if path.exists() else None


def trial(runner, cli, base, scenario: Scenario, reference: Reference, folder: Path, *, delay=None, crash=None,
          fsize=None, console_delay=None, rerun: str = "unfinished", litter: bool = False) -> str:
    """Run one interrupted trial in a copy of `base` and check every promise; returns how it ended.

    Then the command is run again and must write the new artifact: `rerun` "unfinished" when the
    trial left anything else, "always" also then (re-running a finished step is a no-op), "never".
    `litter`: a failed write may leave temporaries (reported as incomplete; see
    test_failed_writes_leave_no_temporaries)."""
    base_before = snapshot(base)
    copy_workspace(base, folder)
    before = snapshot(folder)
    output = folder / scenario.output
    if console_delay is not None:
        run = run_console(scenario.args, folder, kill_after=console_delay)
    elif fsize is not None:
        run = runner.run(scenario.args, folder, fsize=fsize)
    elif crash is not None:
        run = runner.run(scenario.args, folder, crash=crash)
    else:
        run = runner.run_killed(scenario.args, folder, delay)

    state = _digest_or_none(output)
    if run.killed:
        allowed = {None, reference.new} | ({reference.old} if scenario.replaces else set())
        assert state in allowed, f"{output} is neither absent, the old nor the new artifact\n{run.describe()}"
        ended = "killed: " + ("new" if state == reference.new else "old" if state is not None else "absent")
    elif run.code == 0:
        assert state == reference.new, run.describe()
        ended = "finished"
    else:  # only a full disk may fail it: one clean line, and the previous state kept
        assert fsize is not None, run.describe()
        assert_one_line_error(run)
        assert state == (reference.old if scenario.replaces else None), run.describe()
        assert litter or leftovers(folder) == [], f"a failed write left {leftovers(folder)}"
        ended = "failed cleanly"
    assert _comparable(snapshot(folder), scenario.output) == _comparable(before, scenario.output), (
        f"files other than {scenario.output} changed\n{run.describe()}")
    assert snapshot(base) == base_before, "a path recorded in a copied artifact was written through"

    for leftover in leftovers(folder):
        described = cli("info", "--json", leftover)
        assert described.exit_code == 0, described.stderr
        assert json.loads(described.stdout)["kind"] == "incomplete", (leftover, described.stdout)
        assert json.loads(described.stdout)["writer"] == "gone", (leftover, described.stdout)  # --clean may remove it
    if "/" in scenario.output:  # a layer: its store still opens, without the unfinished layer
        store = scenario.output.split("/")[0]
        described = cli("info", "--json", folder / store)
        assert described.exit_code == 0, described.stderr
        layers = json.loads(described.stdout)["splits"] | json.loads(described.stdout)["label_layers"]
        assert (Path(scenario.output).name in layers) == (state is not None)

    if run.killed and state is None and scenario.replaces:  # between moving the old one aside and the new one in
        cleaned = cli("info", "--clean", output)
        assert cleaned.exit_code == 0 and f"restored " in cleaned.stderr, cleaned.stderr
        assert artifact_digest(output) == reference.old and leftovers(folder) == [], "the replaced artifact is lost"
        state = reference.old

    finished = state == reference.new
    if rerun == "always" or (rerun == "unfinished" and not finished):
        again = runner.run(scenario.args, folder)
        assert again.code == 0, f"re-running after a trial that {ended}: {again.describe()}"
        assert again.stdout == f"{output}\n"
        assert artifact_digest(output) == reference.new
    _tally(scenario, "disk limit" if fsize is not None else "kill", ended)
    return ended


def _tally(scenario: Scenario, kind: str, ended: str) -> None:
    """With HSI_TRIAL_LOG set, one line per finished trial (the counts the README records)."""
    if log := os.environ.get("HSI_TRIAL_LOG"):
        with open(log, "a") as handle:
            handle.write(f"{scenario.command}\t{kind}\t{ended}\n")


# -- fast tier -------------------------------------------------------------------------------


def test_info_lists_and_cleans_what_killed_writers_left(runner, cli, base, tmp_path):
    """Temporaries left by SIGKILL were never cleaned, and `hsi info` did not list those inside
    splits/ (issue 17): it lists them with their writer's state, and `--clean` removes exactly
    those whose writer is gone, never a running writer's or one it cannot check."""
    from hsicli.store.atomic import temporary_sibling

    folder = tmp_path / "w"
    copy_workspace(base, folder)
    for name in ("split", "prep-overwrite"):  # killed at their first rename, inside the temporary
        assert runner.run(SCENARIOS[name].args, folder, crash=(1, "before")).killed
    in_splits = [p for p in leftovers(folder) if p.parent == folder / "s.zarr" / "splits"]
    beside = [p for p in leftovers(folder) if p.parent == folder and p.name.startswith(".old.zarr.tmp-")]
    assert len(in_splits) == 1 and len(beside) == 1, leftovers(folder)
    live = temporary_sibling(folder / "s.zarr" / "splits" / "c")  # this process: a writer still running
    live.mkdir()
    older = folder / "s.zarr" / "splits" / ".d.tmp-4242-0a1b2c3d"  # an older hsicli's name: no writer to check
    older.mkdir()

    def listed(store: str) -> dict[str, str]:
        described = cli("info", "--json", folder / store)
        assert described.exit_code == 0, described.stderr
        return {entry["path"]: entry["writer"] for entry in json.loads(described.stdout)["temporaries"]}

    assert listed("s.zarr") == {str(in_splits[0]): "gone", str(live): "running", str(older): "unknown"}
    assert listed("s.zarr/splits/a") == listed("s.zarr")  # a layer path lists its whole store's
    assert listed("old.zarr") == {str(beside[0]): "gone"}
    shown = cli("info", folder / "s.zarr")
    assert str(in_splits[0]) in shown.stderr and "--clean" in shown.stderr

    for store, removed in (("s.zarr", in_splits[0]), ("old.zarr", beside[0])):
        cleaned = cli("info", "--clean", folder / store)
        assert cleaned.exit_code == 0 and cleaned.stdout == f"{folder / store}\n", cleaned.stderr
        assert f"removed {removed}" in cleaned.stderr and not removed.exists()
    assert live.is_dir() and older.is_dir()
    assert listed("s.zarr") == {str(live): "running", str(older): "unknown"} and listed("old.zarr") == {}
    assert artifact_digest(folder / "old.zarr") == artifact_digest(base / "old.zarr")  # the previous store kept


def test_a_store_killed_between_its_two_renames_is_put_back_by_clean(runner, cli, base, references, tmp_path):
    """A store is replaced in two renames (old aside, new in). Killed between them, the old store
    waits under `.NAME.prev-*`: `hsi info` lists it although NAME is missing, and `--clean` puts it
    back instead of deleting it (it once removed both, losing the store)."""
    scenario, reference = SCENARIOS["prep-overwrite"], references["prep-overwrite"]
    folder = tmp_path / "w"
    copy_workspace(base, folder)
    assert runner.run(scenario.args, folder, crash=(reference.renames, "before")).killed
    output = folder / scenario.output
    assert not output.exists() and [p.name.startswith(".old.zarr.prev-") for p in leftovers(folder)] == [True, False]
    described = cli("info", "--json", output)
    assert described.exit_code == 0 and json.loads(described.stdout)["kind"] == "missing", described.stderr
    cleaned = cli("info", "--clean", "--json", output)
    assert cleaned.exit_code == 0, cleaned.stderr
    assert len(json.loads(cleaned.stdout)["restored"]) == 1 and len(json.loads(cleaned.stdout)["removed"]) == 1
    assert artifact_digest(output) == reference.old and leftovers(folder) == []


@pytest.mark.parametrize("name", scenario_params(FRESH))
def test_random_kill(name, runner, cli, base, references, tmp_path):
    reference = references[name]
    rng = random.Random(f"fast-{name}")
    for index in range(FAST_RANDOM_KILLS):
        delay = rng.uniform(0.0, 1.25 * reference.seconds)
        trial(runner, cli, base, SCENARIOS[name], reference, tmp_path / f"t{index}", delay=delay)


def publication_points(scenario: Scenario, reference: Reference, *, window: bool) -> list[tuple[int, str]]:
    """Around the last rename, which publishes the artifact: just before it (the temporary is
    complete) and just after. Replacing in two renames (the old artifact moved aside, then the new
    one in), also just before the first and, with `window`, the moment between the two."""
    last = reference.renames
    two_step = scenario.replaces and last > 1
    aside = [(last - 1, "before")] if two_step else []
    between = [(last, "before")] if window or not two_step else []
    return [*aside, *between, (last, "after")]


@pytest.mark.parametrize("name", scenario_params())
def test_kill_at_publication(name, runner, cli, base, references, tmp_path):
    scenario, reference = SCENARIOS[name], references[name]
    assert reference.renames >= 1, f"{name} published its artifact without a rename"
    endings = {point: trial(runner, cli, base, scenario, reference, tmp_path / f"{point[0]}-{point[1]}", crash=point,
                            rerun="never")  # the random kills and the slow tier re-run
               for point in publication_points(scenario, reference, window=False)}
    first, *_, last = endings.values()
    assert first == ("killed: old" if scenario.replaces else "killed: absent"), endings
    assert last == "killed: new", endings


@pytest.mark.parametrize("name", ["train-overwrite", "plot-overwrite"])
def test_replacing_a_file_artifact_is_one_atomic_step(name, runner, cli, base, references, tmp_path):
    """A file can be replaced by one rename (POSIX rename replaces its target atomically), so a
    kill at any moment leaves the old file or the new one, never none."""
    scenario, reference = SCENARIOS[name], references[name]
    for point in publication_points(scenario, reference, window=True):
        ended = trial(runner, cli, base, scenario, reference, tmp_path / f"{point[0]}-{point[1]}", crash=point,
                      rerun="never")
        assert ended in ("killed: old", "killed: new"), (point, ended)


@pytest.mark.parametrize("name", scenario_params([*FRESH, "prep-overwrite", "train-overwrite"]))
def test_full_disk_is_one_line_and_leaves_the_previous_state(name, runner, cli, base, references, tmp_path):
    """No file over 512 bytes can be written: a one-line error, exit 1, nothing half-written, the
    replaced store or file kept (the other replacing scenarios: the slow tier)."""
    ended = trial(runner, cli, base, SCENARIOS[name], references[name], tmp_path / "w", fsize=512)
    assert ended == "failed cleanly"


def test_full_disk_in_the_console_script(base, tmp_path):
    """The same through the installed script, with the limit set in the child by preexec_fn."""
    folder = tmp_path / "w"
    shutil.copytree(base, folder)
    before = snapshot(folder)
    run = run_console(["prep", "s.mat", "--pca", "4", "--out", "new.zarr"], folder, fsize=512)
    assert_one_line_error(run)
    assert snapshot(folder) == before


@pytest.mark.parametrize("args, output", [
    (("prep", "s.mat", "--pca", "4", "--out", "new.zarr"), "new.zarr"),
    (("split", "s.zarr", "--ratio", "0.3", "--name", "b"), "splits/b"),
], ids=["prep", "split"])
def test_full_disk_error_names_the_output(runner, base, tmp_path, args, output):
    folder = tmp_path / "w"
    shutil.copytree(base, folder)
    assert_one_line_error(runner.run(args, folder, fsize=512), output)


def test_rerunning_a_finished_plot_is_a_no_op(runner, base, tmp_path):
    """DESIGN.md §1: re-running a finished step with the same inputs is cheap or a no-op; a job
    killed after its figure was published must be able to run again."""
    folder = tmp_path / "w"
    shutil.copytree(base, folder)
    again = runner.run(WORKSPACE_STEPS[-1], folder)
    assert again.code == 0 and again.stdout == f"{folder / 'g.png'}\n", again.describe()


# -- slow tier -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario_params())
def test_kill_at_every_rename(name, runner, cli, base, references, tmp_path):
    """Just before each rename (just after one is just before the next), and after the last."""
    reference = references[name]
    points = [(n, "before") for n in range(1, reference.renames + 1)] + [(reference.renames, "after")]
    endings = [trial(runner, cli, base, SCENARIOS[name], reference, tmp_path / f"{n}-{when}", crash=(n, when))
               for n, when in points]
    assert endings[-1] == "killed: new" and endings[0] == ("killed: old" if SCENARIOS[name].replaces
                                                            else "killed: absent")


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario_params())
def test_many_random_kills(name, runner, cli, base, references, tmp_path):
    reference = references[name]
    rng = random.Random(f"slow-{name}")
    for index in range(SLOW_RANDOM_KILLS):
        delay = rng.uniform(0.0, 1.25 * reference.seconds)
        trial(runner, cli, base, SCENARIOS[name], reference, tmp_path / f"t{index}", delay=delay,
              rerun="always")


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario_params())
def test_random_kills_of_the_console_script(name, runner, cli, base, references, tmp_path):
    """The installed script in a real process: start-up (imports) plus the command's own time."""
    rng = random.Random(f"console-{name}")
    folder = tmp_path / "timing"
    copy_workspace(base, folder)
    whole = run_console(SCENARIOS[name].args, folder)
    assert whole.code == 0, whole.describe()
    for index in range(SLOW_CONSOLE_KILLS):
        trial(runner, cli, base, SCENARIOS[name], references[name], tmp_path / f"t{index}",
              console_delay=rng.uniform(0.0, 1.1 * whole.seconds), rerun="always")


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario_params())
def test_any_disk_limit_either_succeeds_or_fails_cleanly(name, runner, cli, base, references, tmp_path):
    rng = random.Random(f"disk-{name}")
    limits = [0] + [int(rng.uniform(0, 40_000)) for _ in range(SLOW_DISK_LIMITS - 1)]
    for index, limit in enumerate(limits):
        trial(runner, cli, base, SCENARIOS[name], references[name], tmp_path / f"t{index}", fsize=limit, litter=True)


@pytest.mark.slow
def test_failed_writes_leave_no_temporaries(runner, tmp_path):
    """A scene of five row tiles, written with a file-size limit that fails some chunk: the
    temporary store must be gone when the command has exited (about half the trials leak today)."""
    import scipy.io

    from conftest import synthetic_arrays

    cube, gt = synthetic_arrays(height=320, width=64, bands=16, classes=3)
    scipy.io.savemat(tmp_path / "s.mat", {"cube": cube, "gt": gt})
    for index in range(12):
        run = runner.run(["prep", "s.mat", "--pca", "4", "--out", f"s{index}.zarr"], tmp_path, fsize=8000)
        assert_one_line_error(run)
        assert leftovers(tmp_path) == [], f"trial {index} left {leftovers(tmp_path)}"
