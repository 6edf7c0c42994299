"""Fixtures shared by the whole test suite.

- `shared_data`, `salinas_a`: the real benchmark files in ../shared/data (skip when absent).
- `synthetic_scene`: writes a small learnable `.mat` scene (cube + ground truth).
- `hsi`, `shell`, `hsi_env`: run the real console script in a subprocess (pipes, exit codes).
- `cli`: run the same entry point in-process (cheap; for error matrices and monkeypatching).
- `tree`: a snapshot of a directory, to prove that a failed command wrote nothing.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent  # the virtual environment's bin/ holds the `hsi` script


# -- real data -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def salinas_a(shared_data: Path) -> tuple[Path, Path]:
    """(cube, ground truth) of SalinasA: 83 × 86 × 204 int16, 6 classes, 5348 labelled pixels."""
    cube = shared_data / "salinasA" / "SalinasA_corrected.mat"
    gt = shared_data / "salinasA" / "SalinasA_gt.mat"
    for path in (cube, gt):
        if not path.is_file():
            pytest.skip(f"real data file {path} is not present")
    return cube, gt


# -- synthetic scenes ------------------------------------------------------------------------


def synthetic_arrays(
    height: int = 24,
    width: int = 20,
    bands: int = 40,
    classes: int = 4,
    seed: int = 0,
    unlabelled: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """A learnable scene: (H, W, T) int16 cube and (H, W) uint8 ground truth with ids 1..K.

    Classes occupy rectangular patches (so spatial models see texture); each has its own smooth
    spectrum plus noise far below the class contrast; a share of pixels is unlabelled (0) but
    keeps its class spectrum, as in real scenes.
    """
    rng = np.random.default_rng(seed)
    block_rows, block_cols = max(1, height // 4), max(1, width // 3)
    rows, cols = np.indices((height, width))
    truth = ((rows // block_rows) * 3 + cols // block_cols) % classes + 1
    wavelengths = np.linspace(0.0, 1.0, bands)
    centres = rng.uniform(0.0, 1.0, classes)
    spectra = 2000 + 1500 * np.exp(-((wavelengths[None, :] - centres[:, None]) ** 2) / 0.05)
    spectra += 800 * np.arange(classes)[:, None] / max(classes - 1, 1)
    cube = spectra[truth - 1] + rng.normal(0.0, 40.0, (height, width, bands))
    gt = np.where(rng.random((height, width)) < unlabelled, 0, truth).astype(np.uint8)
    return np.rint(cube).astype(np.int16), gt


@pytest.fixture
def synthetic_scene(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make(name="ip.mat", *, cube=None, gt=None, with_gt=True, directory=None, **shape)`.

    Writes a MATLAB v5 file holding `cube` and (unless with_gt=False) `gt`; arrays default to
    `synthetic_arrays(**shape)` (height, width, bands, classes, seed, unlabelled). Returns its path.
    """
    import scipy.io

    def make(
        name: str = "ip.mat",
        *,
        cube: np.ndarray | None = None,
        gt: np.ndarray | None = None,
        with_gt: bool = True,
        directory: Path | None = None,
        **shape,
    ) -> Path:
        if cube is None or (gt is None and with_gt):
            made_cube, made_gt = synthetic_arrays(**shape)
            cube = made_cube if cube is None else cube
            gt = made_gt if gt is None else gt
        folder = directory or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        arrays = {"cube": cube}
        if with_gt:
            arrays["gt"] = gt
        scipy.io.savemat(path, arrays)
        return path

    return make


# -- running the command ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def hsi_env() -> dict[str, str]:
    """Environment for subprocesses: `hsi` on PATH, HSI_DATA_DIR at the shared data, no debug."""
    env = {key: value for key, value in os.environ.items() if key != "HSI_DEBUG"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if SHARED_DATA.is_dir():
        env["HSI_DATA_DIR"] = str(SHARED_DATA)
    return env


@pytest.fixture(scope="session")
def hsi_exe() -> Path:
    exe = BIN / "hsi"
    if not exe.is_file():
        pytest.fail(f"console script {exe} is missing: install the package (pip install -e .)")
    return exe


@pytest.fixture
def hsi(hsi_exe: Path, hsi_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`hsi(*args, input=None, cwd=tmp_path, env=None)`: run the console script, capture text output."""

    def run(*args, input: str | None = None, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
        return _run_in(tmp_path, hsi_env, [str(hsi_exe), *map(str, args)], input=input, cwd=cwd, env=env,
                       timeout=timeout)

    return run


def _run_in(tmp_path: Path, hsi_env: dict[str, str], command, *, cwd: Path | None, env: dict | None,
            timeout: float, input: str | None = None, shell: bool = False) -> subprocess.CompletedProcess:
    """Run a command (argv, or a shell line) in the test's folder with `hsi` on PATH."""
    return subprocess.run(command, shell=shell, input=input, capture_output=True, text=True,
                          cwd=cwd or tmp_path, env={**hsi_env, **(env or {})}, timeout=timeout)


@pytest.fixture
def shell(hsi_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`shell(command_line, cwd=tmp_path, env=None)`: run a real shell pipe (`sh -c`) with `hsi` on PATH."""

    def run(command: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
        return _run_in(tmp_path, hsi_env, command, shell=True, cwd=cwd, env=env, timeout=timeout)

    return run


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path: Path) -> Callable[..., CliResult]:
    """`cli(*args, input="")`: run `hsicli.cli.main` in-process, as the console script would.

    The working directory is tmp_path; stdin is `input` (a pipe, never a terminal); HSI_DEBUG is
    unset. Use `hsi`/`shell` where the process boundary itself is under test.
    """
    from hsicli.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSI_DEBUG", raising=False)

    def run(*args, input: str = "") -> CliResult:
        monkeypatch.setattr(sys, "argv", ["hsi", *map(str, args)])
        monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def tree() -> Callable[[Path], dict[str, tuple[int, int]]]:
    """`tree(folder)`: {relative path: (size, mtime_ns)} of folder and everything below it, hidden entries too."""

    def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
        root = Path(folder)
        entries = {".": (0, root.stat().st_mtime_ns)}
        for path in sorted(root.rglob("*")):
            stat = path.lstat()
            entries[str(path.relative_to(root))] = (stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
        return entries

    return snapshot


# -- the fork-server runner (tests/harness.py) ------------------------------------------------


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """`hsi` commands as children of a fork server with hsicli preloaded (milliseconds each)."""
    from harness import Runner

    return Runner(tmp_path_factory.mktemp("runner"))


@pytest.fixture(scope="module")
def base(runner, tmp_path_factory) -> Path:
    """The workspace (harness.build_workspace) without its second store and figure: s.zarr with
    split a, an SVM checkpoint m.safetensors and its prediction p.zarr."""
    from harness import build_workspace

    return build_workspace(runner, tmp_path_factory.mktemp("base"), {"prep", "split", "train", "predict"})
