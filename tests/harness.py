"""Helpers for the hardening tests (issue 9): run `hsi` in a process that can be killed at any
moment, starved of disk, or crashed at a chosen rename; snapshot folders; digest artifacts.

Two ways to run a command:

- `Runner` (fast): children forked from a multiprocessing fork server that has already imported
  hsicli, numpy, zarr, scikit-learn, torch and matplotlib, so a child starts in milliseconds and
  many kill trials fit in the fast tier. The child runs the console script's entry point
  (`hsicli.cli.main`) with its own argv, working directory, stdin and environment.
- `run_console` (faithful): the installed `hsi` console script as a real subprocess, for the
  slow tier and wherever the process boundary itself matters.

Both can lower RLIMIT_FSIZE in the child (SIGXFSZ ignored, so an oversized write fails with
EFBIG, as a full disk fails with ENOSPC) and both can SIGKILL the child after a delay.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
PRELOAD = [
    "hsicli.cli", "hsicli.io", "hsicli.io.matlab", "hsicli.data.prepare", "hsicli.data.preprocess",
    "hsicli.data.splitting", "hsicli.store.inspect", "hsicli.engine.predict", "hsicli.engine.train",
    "hsicli.engine.evaluate", "hsicli.models.classical", "scipy.io", "sklearn.svm", "torch",
    "matplotlib", "hsicli.plot.maps", "__main__",
]  # fmt: skip
TMP_MARK = ".tmp-"
PREV_MARK = ".prev-"  # a replaced store moved aside (hsicli.store.atomic)


@dataclass
class Run:
    """How one command ended: `code` is None when it was killed (or crashed on purpose)."""

    args: list[str]
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    renames: int | None = None  # os.rename / os.replace calls made (fork-server runs only)
    cpu_seconds: float | None = None  # user + system time of the command itself (fork-server runs only)

    @property
    def killed(self) -> bool:
        return self.code is None

    def describe(self) -> str:
        ended = "killed" if self.killed else f"exit {self.code}"
        return f"hsi {' '.join(self.args)}: {ended} after {self.seconds:.2f} s\n{self.stderr[-2000:]}"


# -- the fork-server runner ------------------------------------------------------------------


def _count_renames(crash: tuple[int, str] | None) -> list[int]:
    """Count os.rename / os.replace calls (zarr's chunk writes and every publish are renames);
    with `crash` = (n, "before" | "after"), SIGKILL this process at the n-th one."""
    index, when = crash or (0, "")
    calls = [0]

    def wrap(original):
        def renamed(*args, **kwargs):
            calls[0] += 1
            if calls[0] == index and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if calls[0] == index and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return renamed

    os.rename, os.replace = wrap(os.rename), wrap(os.replace)
    return calls


def _child(args: list[str], cwd: str, stdin: str, fsize: int | None, crash, result: str) -> None:
    """Run `hsi ARGS` as the console script would; write (code, stdout, stderr) to `result`."""
    os.chdir(cwd)
    os.environ.pop("HSI_DEBUG", None)
    os.environ.update(CHILD_ENV)
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO(stdin)
    sys.argv = ["hsi", *args]
    renames = _count_renames(crash)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if fsize is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))  # the soft limit only: raised again below
    code = 0
    try:
        from hsicli.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # escaped the entry point: Python would print a traceback
        import traceback

        traceback.print_exc(file=err)
        code = 1
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    usage = resource.getrusage(resource.RUSAGE_SELF)  # counted from the fork: this command alone
    Path(result).write_text(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                                        "renames": renames[0], "cpu": usage.ru_utime + usage.ru_stime}))
    os._exit(0)


class Handle:
    def __init__(self, process, args: list[str], result: Path):
        self.process, self.args, self.result = process, args, result
        self.started = time.monotonic()

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()

    def wait(self, timeout: float = 120) -> Run:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise AssertionError(f"hsi {' '.join(self.args)} did not finish within {timeout} s (a hang)")
        seconds = time.monotonic() - self.started
        if self.process.exitcode != 0 or not self.result.is_file():
            return Run(self.args, None, "", "", seconds)
        outcome = json.loads(self.result.read_text())
        self.result.unlink()
        return Run(self.args, outcome["code"], outcome["stdout"], outcome["stderr"], seconds, outcome["renames"],
                   outcome["cpu"])


class Runner:
    """Start `hsi` commands as children of a preloaded fork server."""

    def __init__(self, scratch: Path):
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.scratch = Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def start(self, args, cwd: Path, *, stdin: str = "", fsize: int | None = None,
              crash: tuple[int, str] | None = None) -> Handle:
        self._count += 1
        result = self.scratch / f"result-{self._count}.json"
        args = [str(a) for a in args]
        process = self.context.Process(target=_child, args=(args, str(cwd), stdin, fsize, crash, str(result)))
        process.start()
        return Handle(process, args, result)

    def run(self, args, cwd: Path, *, timeout: float = 120, **options) -> Run:
        return self.start(args, cwd, **options).wait(timeout)

    def run_killed(self, args, cwd: Path, delay: float, **options) -> Run:
        """Start, SIGKILL after `delay` seconds (unless it ended before), wait."""
        handle = self.start(args, cwd, **options)
        handle.process.join(delay)
        handle.kill()
        return handle.wait()


# -- the real console script -----------------------------------------------------------------


def _limits(fsize: int | None, address_space: int | None):
    def apply() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return apply


def run_console(args, cwd: Path, *, stdin: str = "", kill_after: float | None = None, fsize: int | None = None,
                address_space: int | None = None, timeout: float = 300) -> Run:
    """The installed `hsi` script in a real process, optionally SIGKILLed after `kill_after` s."""
    env = {k: v for k, v in os.environ.items() if k != "HSI_DEBUG"} | CHILD_ENV
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    args = [str(a) for a in args]
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "hsi"), *args], cwd=cwd, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_limits(fsize, address_space))
    if kill_after is not None:
        try:
            process.wait(kill_after)
        except subprocess.TimeoutExpired:
            process.kill()
    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"hsi {' '.join(args)} did not finish within {timeout} s (a hang)") from None
    code = None if process.returncode == -signal.SIGKILL else process.returncode
    return Run(args, code, stdout, stderr, time.monotonic() - started)


# -- a small workspace ---------------------------------------------------------------------------

WORKSPACE_STEPS = (
    ("prep", "s.mat", "--pca", "5", "--out", "s.zarr"),
    ("prep", "s.mat", "--pca", "5", "--norm", "minmax", "--out", "old.zarr"),
    ("split", "s.zarr", "--ratio", "0.5", "--name", "a"),
    ("train", "s.zarr", "--model", "svm", "--split", "a", "--out", "m.safetensors"),
    ("predict", "m.safetensors", "--out", "p.zarr"),
    ("plot", "gt", "s.zarr", "--out", "g.png"),
)


def build_workspace(runner: Runner, folder: Path, commands: set[str]) -> Path:
    """s.mat (70 × 20 × 16, three classes: two row tiles), then WORKSPACE_STEPS whose command is
    in `commands`: scene stores s.zarr (split a) and old.zarr, SVM checkpoint, prediction, figure."""
    import scipy.io

    from conftest import synthetic_arrays

    cube, gt = synthetic_arrays(height=70, width=20, bands=16, classes=3)
    scipy.io.savemat(folder / "s.mat", {"cube": cube, "gt": gt})
    for step in WORKSPACE_STEPS:
        if step[0] in commands:
            run = runner.run(step, folder)
            assert run.code == 0, run.describe()
    return folder


def copy_workspace(base: Path, folder: Path) -> None:
    """A copy of the workspace whose prediction names the copy's scene store (as `hsi predict`
    run in the copy would), so that pseudolabel writes into the copy."""
    import shutil

    shutil.copytree(base, folder)
    meta = folder / "p.zarr" / "zarr.json"
    if meta.is_file():
        document = json.loads(meta.read_text())
        document["attributes"]["scene_store"]["path"] = str(folder / "s.zarr")
        meta.write_text(json.dumps(document))


def registered_commands() -> set[str]:
    from hsicli.cli.commands import COMMANDS

    return {name for name, _ in COMMANDS}


# -- checks ------------------------------------------------------------------------------------


def assert_one_line_error(run: Run, *phrases: str, code: int = 1) -> str:
    """Exit `code`, nothing on stdout, one `Error:` line (not an internal error) and one `Hint:`."""
    lines = run.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert run.code == code, run.describe()
    assert run.stdout == "", run.describe()
    assert len(errors) == 1 and sum(line.startswith("Hint: ") for line in lines) == 1, run.describe()
    assert "Traceback" not in run.stderr and "internal error" not in errors[0], run.describe()
    for phrase in phrases:
        assert phrase in errors[0], (phrase, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256 of the bytes} of every file below `folder` (directories as 'dir')."""
    root = Path(folder)
    entries = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        entries[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return entries


def leftovers(folder: Path) -> list[Path]:
    """Temporary entries (hidden `.NAME.tmp-PID.START.HOST-XXXX`, or `.NAME.prev-…` for a replaced
    store moved aside) anywhere below `folder`, outermost only."""

    def marked(name: str) -> bool:
        return TMP_MARK in name or PREV_MARK in name

    found = [p for p in Path(folder).rglob(".*") if marked(p.name)]
    return sorted(p for p in found if not any(marked(part) for part in p.relative_to(folder).parts[:-1]))


def digest_arrays(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        import numpy as np

        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def artifact_digest(path: Path) -> str:
    """A digest of an artifact's content, read back from its data (never from recorded hashes).

    Raises if the artifact is incomplete or unreadable. Times and durations recorded in the
    attributes are left out, so the same request made twice has the same digest.
    """
    import numpy as np

    path = Path(path)
    if path.suffix == ".safetensors":
        from hsicli.store.checkpoint import load_arrays

        arrays, metadata = load_arrays(path)
        return digest_arrays(*(arrays[k] for k in sorted(arrays))) + str(metadata.get("request_key"))
    if path.suffix in (".png", ".svg", ".pdf"):
        import matplotlib.image

        return digest_arrays(matplotlib.image.imread(path))
    if path.parent.name in ("splits", "labels"):
        from hsicli.store.scene import SceneStore

        layer = SceneStore.open(path).read_layer(path.parent.name, path.name)  # checks its fingerprint
        return digest_arrays(layer.data)
    kind = json.loads((path / "zarr.json").read_text())["attributes"]["kind"]
    if kind == "prediction":
        from hsicli.store.prediction import PredictionStore

        store = PredictionStore.open(path)
        assert store.attrs.get("inference_seconds") is not None, f"{path} lacks the attributes written last"
        probabilities = store.probabilities()
        parts = [store.classes(), store.entropy()] + ([] if probabilities is None else [probabilities])
        return digest_arrays(*parts) + str(store.attrs.get("request_key"))
    from hsicli.store.scene import SceneStore

    store = SceneStore.open(path)
    transform, _ = store.transform()
    parts = [store.cube(), store.gt(), store.rgb(), *(transform[k] for k in sorted(transform))]
    assert np.isfinite(parts[0]).all()
    return digest_arrays(*parts) + str(store.attrs.get("request_key"))
