"""The pipe protocol (DESIGN.md §1) and issue 2's acceptance lines for `hsi prep`, `hsi split`
and `hsi info`: real shell pipes for the acceptance, the in-process entry point for the error
matrix (same code path, no start-up cost), real processes wherever the process boundary matters
(stdout cleanliness, exit status, tracebacks, what gets imported)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from hsicli.store.scene import SceneStore

SALINAS_A_SIZES = (391, 1343, 616, 1525, 674, 799)


def expected_counts(sizes, train: str, val: str) -> dict[str, list[int]]:
    """Per-class counts of a stratified split: round half up of ratio·n; the rest is test."""

    def half_up(fraction: str, n: int) -> int:
        return int(Decimal(fraction) * n + Decimal("0.5"))

    n_train = [half_up(train, n) for n in sizes]
    n_val = [half_up(val, n) for n in sizes]
    return {"train": n_train, "val": n_val, "test": [n - a - b for n, a, b in zip(sizes, n_train, n_val)]}


def assert_one_error(result, *, names: str | None = None, exit_code: int = 1) -> None:
    """Exit 1 (2: a usage error), nothing on stdout, one `Error:` line (naming `names` if given),
    one `Hint:`, no traceback."""
    stderr = result.stderr
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert code == exit_code, f"exit {code}, stderr:\n{stderr}"
    assert result.stdout == ""
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    hints = [line for line in stderr.splitlines() if line.startswith("Hint: ")]
    assert len(errors) == 1, stderr
    assert len(hints) == 1, stderr
    assert "Traceback" not in stderr
    assert "internal error" not in errors[0], errors[0]
    if names is not None:
        assert names in errors[0], errors[0]


def nothing_temporary(folder: Path) -> bool:
    return not any(".tmp-" in path.name for path in folder.rglob("*"))


def one_line(stdout: str) -> str:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected one stdout line, got {lines!r}"
    assert stdout.endswith("\n")
    return lines[0]


# -- acceptance: SalinasA through a real shell pipe -------------------------------------------


@pytest.fixture(scope="module")
def salinas_pipe(salinas_a, hsi_env, tmp_path_factory):
    """The acceptance line, literally, in a folder whose ../shared is the shared data's parent."""
    root = tmp_path_factory.mktemp("accept")
    (root / "shared").symlink_to(salinas_a[0].parents[2], target_is_directory=True)
    work = root / "work"
    work.mkdir()
    command = (
        "hsi prep ../shared/data/salinasA/SalinasA_corrected.mat "
        "--gt ../shared/data/salinasA/SalinasA_gt.mat --pca 30 | hsi split --ratio 0.72"
    )
    result = subprocess.run(command, shell=True, cwd=work, env=hsi_env, capture_output=True, text=True, timeout=300)
    return work, result


def test_salinas_a_acceptance_pipe(salinas_pipe, hsi, cli):
    work, result = salinas_pipe
    assert result.returncode == 0, result.stderr
    line = one_line(result.stdout)
    path = Path(line)
    assert path.is_absolute() and path.is_dir()
    assert path == work / "salinasA-pca30.zarr" / "splits" / "ratio0.72-val0.08-seed0"

    info = hsi("info", "--json", line)
    assert info.returncode == 0, info.stderr
    description = json.loads(one_line(info.stdout))
    assert description["path"] == str(work / "salinasA-pca30.zarr")
    assert description["shape"] == [83, 86, 30]
    assert len(description["classes"]) == 6
    assert description["labelled_pixels"] == 5348
    assert [c["pixels"] for c in description["classes"]] == list(SALINAS_A_SIZES)
    expected = expected_counts(SALINAS_A_SIZES, "0.72", "0.08")
    assert expected["train"][0] == 282  # 0.72 · 391 = 281.52
    split = description["splits"]["ratio0.72-val0.08-seed0"]
    assert split["counts"] == expected

    # The recorded counts are those of the layer itself.
    store = SceneStore.open(path)
    layer, gt = store.read_layer("splits", path.name).data, store.gt()
    for set_index, set_name in enumerate(("train", "val", "test"), start=1):
        actual = np.bincount(gt[layer == set_index], minlength=7)[1:].tolist()
        assert actual == expected[set_name]
    assert not ((layer > 0) & (gt == 0)).any()

    # The human description (stderr) shows the same figures; stdout is the path alone.
    human = cli("info", line)
    assert human.exit_code == 0, human.stderr
    assert one_line(human.stdout) == str(work / "salinasA-pca30.zarr")
    assert "classes: 6, labelled pixels: 5348" in human.stderr
    for index in range(6):
        assert f"{expected['train'][index]}/{expected['val'][index]}/{expected['test'][index]}" in human.stderr


def test_class_smaller_than_per_class_is_an_error(salinas_pipe, cli, tree):
    work, result = salinas_pipe
    assert result.returncode == 0, result.stderr
    store = work / "salinasA-pca30.zarr"
    before = tree(store)
    failed = cli("split", store, "--per-class", "10000", "--val", "0")
    assert_one_error(failed)
    assert "10000" in failed.stderr
    assert tree(store) == before


# -- the literal mission line on a synthetic ip.mat ------------------------------------------


def test_mission_line_on_synthetic_scene(synthetic_scene, shell, hsi, cli, tmp_path):
    synthetic_scene("ip.mat", bands=40)  # holds `cube` and `gt`
    piped = shell("hsi prep ip.mat --pca 30 | hsi split --ratio 0.72")
    assert piped.returncode == 0, piped.stderr
    line = one_line(piped.stdout)
    store_path = tmp_path / "ip-pca30.zarr"
    assert line == str(store_path / "splits" / "ratio0.72-val0.08-seed0")
    # Human text goes to stderr; off a terminal as plain timestamped lines.
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d wrote ip-pca30\.zarr", piped.stderr, re.MULTILINE)
    store = SceneStore.open(store_path)
    assert store.shape == (24, 20, 30)
    gt = store.gt()
    layer = store.read_layer("splits", "ratio0.72-val0.08-seed0").data
    sizes = np.bincount(gt.ravel())[1:].tolist()
    train = np.bincount(gt[layer == 1], minlength=len(sizes) + 1)[1:].tolist()
    assert train == expected_counts(sizes, "0.72", "0.08")["train"]

    # Re-running the split is a no-op: same path, the layer untouched.
    layer_files = {p: p.stat().st_mtime_ns for p in Path(line).rglob("*")}
    rerun = cli("split", store_path, "--ratio", "0.72")
    assert rerun.exit_code == 0 and one_line(rerun.stdout) == line
    assert {p: p.stat().st_mtime_ns for p in Path(line).rglob("*")} == layer_files

    # The same prep again with --json: one JSON object holding the (unchanged) path.
    again = hsi("prep", "ip.mat", "--pca", "30", "--json")
    assert again.returncode == 0, again.stderr
    payload = json.loads(one_line(again.stdout))
    assert payload["path"] == str(store_path)
    assert payload["shape"] == [24, 20, 30]
    assert "up to date" in again.stderr

    # A JSON line on stdin is accepted (its "path"), as is a path with "-" or no argument.
    from_json = cli("info", "-", input=again.stdout)
    assert from_json.exit_code == 0, from_json.stderr
    assert one_line(from_json.stdout) == str(store_path)
    assert "classes: 4" in from_json.stderr
    from_path = cli("info", "--json", input=line + "\n")
    assert from_path.exit_code == 0, from_path.stderr
    described = json.loads(one_line(from_path.stdout))
    assert described["path"] == str(store_path) and described["shape"] == [24, 20, 30]
    split_json = cli("split", "-", "--ratio", "0.5", "--val", "0.1", "--json", input=str(store_path) + "\n")
    assert split_json.exit_code == 0, split_json.stderr
    split_payload = json.loads(one_line(split_json.stdout))
    assert split_payload["path"] == str(store_path / "splits" / "ratio0.5-val0.1-seed0")
    assert split_payload["counts"]["train"] == expected_counts(sizes, "0.5", "0.1")["train"]


# -- errors: exit 1, one Error line, nothing written -----------------------------------------


def _png() -> bytes:
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + bytes(12) for _ in range(4))  # 4 × 4 RGB, filter byte per row
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
def inputs(synthetic_scene, tmp_path):
    """Input files for the error matrix, in tmp_path/in (the commands run in tmp_path)."""
    folder = tmp_path / "in"
    scene = synthetic_scene("scene.mat", directory=folder, bands=16)
    synthetic_scene("bare.mat", directory=folder, bands=16, with_gt=False)
    scipy.io.savemat(folder / "small_gt.mat", {"gt": np.ones((10, 10), dtype=np.uint8)})
    (folder / "x.mat").write_text("this is a text file, not a MATLAB file\n")
    (folder / "picture.png").write_bytes(_png())
    np.save(folder / "aux_bad.npy", np.zeros((5, 5), dtype=np.float32))
    return folder, scene


PREP_ERRORS = {
    "missing file": (["in/missing.mat"], "missing.mat"),
    "text file named .mat": (["in/x.mat"], "x.mat"),
    "PNG image": (["in/picture.png"], "picture.png"),
    "ground truth of another shape": (["in/bare.mat", "--gt", "in/small_gt.mat"], "small_gt.mat"),
    "--pca above the band count": (["in/scene.mat", "--pca", "17"], "17"),
    "--drop-bands 0": (["in/scene.mat", "--drop-bands", "0"], "out of range"),
    "--drop-bands past the end": (["in/scene.mat", "--drop-bands", "3-17"], "out of range"),
    "--drop-bands every band": (["in/scene.mat", "--drop-bands", "1-16"], "every band"),
    "--drop-bands backwards": (["in/scene.mat", "--drop-bands", "5-3"], "5-3"),
    "--drop-bands not a number": (["in/scene.mat", "--drop-bands", "4,x"], "'x'"),
    "aux of another size": (["in/scene.mat", "--aux", "in/aux_bad.npy"], "aux_bad.npy"),
    "--like a non-store": (["in/scene.mat", "--like", "in"], "not an hsi store"),
}


@pytest.mark.parametrize("args, names", PREP_ERRORS.values(), ids=PREP_ERRORS.keys())
def test_prep_errors_write_nothing(inputs, cli, tree, tmp_path, args, names):
    before = tree(tmp_path)
    result = cli("prep", *args)
    assert_one_error(result, names=names)
    assert tree(tmp_path) == before
    assert not list(tmp_path.glob("*.zarr")) and nothing_temporary(tmp_path)


def test_empty_stdin_is_an_error(cli, tree, tmp_path):
    before = tree(tmp_path)
    for command in ("prep", "split", "info"):
        result = cli(command, input="")
        assert_one_error(result, names="found nothing")
        assert cli(command, "-", input="\n").exit_code == 1
    assert tree(tmp_path) == before


def test_pca_below_one_is_reported_as_such(inputs, cli):
    for value in ("0", "-3"):
        result = cli("prep", "in/scene.mat", "--pca", value)
        assert_one_error(result, names=f"--pca {value} is outside its range 1<=x", exit_code=2)


@pytest.fixture
def stores(synthetic_scene, cli, tmp_path):
    """A real scene store plus things that are not hsi stores."""
    scene = synthetic_scene("scene.mat", bands=8)
    made = cli("prep", scene, "--out", tmp_path / "scene.zarr")
    assert made.exit_code == 0, made.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hello\n")
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3).attrs["owner"] = "someone else"
    return tmp_path / "scene.zarr"


NOT_STORES = ("missing.zarr", "empty", "random", "plain.zarr", "scene.mat")


@pytest.mark.parametrize("command", ["split", "info"])
@pytest.mark.parametrize("target", NOT_STORES)
def test_not_an_hsi_store(stores, cli, tree, tmp_path, command, target):
    before = tree(tmp_path)
    args = ["--ratio", "0.72"] if command == "split" else []
    result = cli(command, tmp_path / target, *args)
    assert_one_error(result, names=target)
    assert tree(tmp_path) == before


def test_a_store_given_for_a_checkpoint_is_named_for_what_it_is(stores, cli, tree, tmp_path):
    made = cli("split", stores, "--ratio", "0.5", "--name", "half")
    assert made.exit_code == 0, made.stderr
    before = tree(tmp_path)
    for target, what, hint in ((stores, "is a scene store, not a checkpoint", "train first: hsi train"),
                               (stores / "splits" / "half", "is split half of scene store scene.zarr, not a checkpoint",
                                "train first: hsi train"),
                               (tmp_path / "empty", "is a directory, not a checkpoint", ".safetensors")):
        result = cli("predict", target)
        assert_one_error(result, names=what)
        assert hint in result.stderr
        assert "does not exist" not in result.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["prep", "split", "train", "predict", "evaluate", "info"])
def test_an_empty_path_argument_is_named_empty(command, cli, tree, tmp_path):
    before = tree(tmp_path)
    result = cli(command, "")
    assert_one_error(result, names="path is empty", exit_code=2)
    assert "directory" not in result.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.1", "nan"])
def test_ratio_outside_unit_interval(stores, cli, tree, ratio):
    before = tree(stores)
    result = cli("split", stores, "--ratio", ratio)
    assert_one_error(result, names="--ratio", exit_code=2)
    assert tree(stores) == before


def test_usage_errors_exit_2(stores, cli, tree, tmp_path):
    before = tree(tmp_path)
    for args in (["prep", "x.mat", "--no-such-option"], ["split", stores, "--ratio", "abc"], ["frobnicate"]):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
    # No input and no pipe (stdin is a terminal): a usage error, not a wait for input.
    terminal = io.StringIO("")
    terminal.isatty = lambda: True
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", terminal)
        from hsicli.cli.common import read_input_path
        from hsicli.errors import UsageError

        with pytest.raises(UsageError, match="no scene store given"):
            read_input_path(None, "scene store")
    conflicting = cli("split", stores, "--ratio", "0.5", "--per-class", "3")
    assert conflicting.exit_code == 2 and conflicting.stderr.startswith("Error: ")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["a\nb", "a b", ".hidden", "x/y", "tab\t", "", "n" * 101])
def test_layer_names_outside_the_allowlist_are_usage_errors(stores, cli, tree, tmp_path, name):
    """`hsi split --name $'a\\nb'` printed two stdout lines, breaking the pipe (issue 17)."""
    before = tree(tmp_path)
    for args in (["split", stores, "--ratio", "0.5", "--name", name], ["pseudolabel", "p.zarr", "--name", name],
                 ["train", stores, "--model", "svm", "--split", name], ["train", stores, "--labels", name],
                 ["evaluate", "p.zarr", "--split", name], ["plot", "split", stores, "--split", name]):
        result = cli(*args)
        assert_one_error(result, names="cannot name a layer", exit_code=2)
        assert ascii(name) in result.stderr and "letters, digits" in result.stderr
    assert tree(tmp_path) == before


def test_error_lines_from_a_real_process(hsi, shell, tmp_path):
    """Through the console script: exit status, stderr shape, empty pipes; HSI_DEBUG=1 adds the traceback."""
    missing = hsi("prep", "nowhere.mat")
    assert_one_error(missing, names="nowhere.mat")
    assert missing.stderr.splitlines()[0].startswith("Error: ")
    debug = hsi("prep", "nowhere.mat", env={"HSI_DEBUG": "1"})
    assert debug.returncode == 1 and debug.stdout == ""
    assert "Traceback (most recent call last)" in debug.stderr
    assert "InputError" in debug.stderr and "nowhere.mat" in debug.stderr
    for command in ("hsi split < /dev/null", "echo -n | hsi split --ratio 0.72"):
        result = shell(command)
        assert_one_error(result, names="found nothing")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ctrl_c_says_what_was_interrupted_and_kept(hsi_exe, hsi_env, tmp_path):
    """typer turns KeyboardInterrupt into a bare exit 130 before our handler sees it (issue 17)."""
    import signal
    import time

    # `hsi split` waiting for a path on stdin; Python leaves SIGINT ignored when its parent ignored it.
    process = subprocess.Popen([str(hsi_exe), "split", "--ratio", "0.5"], cwd=tmp_path, env=hsi_env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)  # past start-up, blocked on stdin
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stdout == "", stderr
    assert stderr.splitlines() == [
        "Error: hsi split interrupted (Ctrl-C); no half-written output was left (each output appears only when complete)"
    ]


def test_memory_and_library_failures_are_one_line_errors(cli, monkeypatch, tmp_path):
    from harness import run_console

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("hsicli.store.inspect.describe", exhausted)
    result = cli("info", tmp_path)
    assert result.exit_code == 1 and result.stderr.splitlines()[0] == "Error: out of memory", result.stderr
    assert_one_error(result)
    # Under a low `ulimit -v` libtorch cannot be mapped: the import fails, an ImportError. (Counting
    # a model for 103 bands loads torch; the default listing is stored and does not.)
    run = run_console(["models", "litec2anet", "--bands", "103"], tmp_path, address_space=300 * 2**20, timeout=120)
    assert run.code == 1 and run.stdout == "", run.describe()
    assert "Error: a library could not be loaded: libtorch" in run.stderr and "ulimit -v" in run.stderr
    assert "internal error" not in run.stderr


# -- outputs are never overwritten silently --------------------------------------------------


def test_outputs_never_overwritten_silently(synthetic_scene, cli, tree, tmp_path, monkeypatch):
    scene = synthetic_scene("scene.mat", bands=12)
    out = tmp_path / "s.zarr"
    first = cli("prep", scene, "--pca", "5", "--out", out)
    assert first.exit_code == 0, first.stderr
    assert one_line(first.stdout) == str(out)
    before, fingerprint = tree(out), SceneStore.open(out).fingerprint

    other = cli("prep", scene, "--pca", "6", "--out", out)
    assert_one_error(other, names=str(out))
    assert "--overwrite" in other.stderr
    assert tree(out) == before and SceneStore.open(out).fingerprint == fingerprint

    # Re-running the same step is a no-op: the store is found up to date, nothing is refitted.
    from hsicli.data.preprocess import SpectralTransform

    with monkeypatch.context() as patch:
        patch.setattr(SpectralTransform, "fit", lambda *a, **k: pytest.fail("prep refitted an up-to-date store"))
        same = cli("prep", scene, "--pca", "5", "--out", out)
    assert same.exit_code == 0, same.stderr
    assert one_line(same.stdout) == str(out)
    assert tree(out) == before

    replaced = cli("prep", scene, "--pca", "6", "--out", out, "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert SceneStore.open(out).shape == (24, 20, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr", "scene.mat"]


# -- start-up: no torch for help and prep ----------------------------------------------------


def test_help_and_prep_do_not_import_torch(salinas_a, hsi_env, tmp_path):
    cube, gt = salinas_a
    report = tmp_path / "modules.json"
    script = textwrap.dedent(
        f"""
        import json, sys
        from hsicli.cli import main

        def run(*args):
            sys.argv = ["hsi", *args]
            try:
                main()
            except SystemExit as exc:
                return exc.code
            return 0

        steps = {{}}
        for name, args in (("hsi --help", ["--help"]), ("hsi prep --help", ["prep", "--help"]),
                           ("hsi prep", ["prep", {str(cube)!r}, "--gt", {str(gt)!r}, "--pca", "30"])):
            print(f"--- {{name}}", flush=True)
            code = run(*args)
            steps[name] = [code, sorted(m for m in sys.modules if m.split(".")[0] == "torch")]
        with open({str(report)!r}, "w") as handle:
            json.dump(steps, handle)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=hsi_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    help_text, prep_output = done.stdout.split("--- hsi prep\n")
    assert "Usage: hsi" in help_text and "prep" in help_text
    assert prep_output == f"{tmp_path / 'salinasA-pca30.zarr'}\n"  # a fresh prep prints its path alone
    steps = json.loads(report.read_text())
    assert steps == {name: [0, []] for name in ("hsi --help", "hsi prep --help", "hsi prep")}
    assert (tmp_path / "salinasA-pca30.zarr").is_dir()
