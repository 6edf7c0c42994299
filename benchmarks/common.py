"""Helpers shared by the benchmarks: synthetic scenes of benchmark size and process measurements."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
HSI = str(Path(sys.executable).parent / "hsi")


def salinas_like_labels() -> np.ndarray:
    """Salinas' real label layout (512 × 217, 16 classes) when available, else random blocks."""
    import scipy.io

    path = SHARED_DATA / "groundtruth" / "salinas_gt.mat"
    if path.exists():
        return scipy.io.loadmat(path)["salinas_gt"].astype(np.uint8)
    rng = np.random.default_rng(0)
    return np.kron(rng.integers(0, 17, (32, 14)), np.ones((16, 16), dtype=np.uint8))[:512, :217].astype(np.uint8)


def synthetic_cube(labels: np.ndarray, bands: int, dtype=np.int16, seed: int = 0) -> np.ndarray:
    """A cube whose spectra depend on the class (so models can learn it), with noise."""
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1
    signatures = rng.uniform(1000, 4000, (n_classes, bands)).astype(np.float32)
    cube = signatures[labels] + rng.normal(0, 150, (*labels.shape, bands)).astype(np.float32)
    return cube.astype(dtype)


def run_measured(args: list[str], cwd: Path, stdin: str | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the child, stdout) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the maximum over all children so far: run each measured command first.
    return wall, max(peak, before) / 1024, proc.stdout.strip()


def env_note() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


BF16_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags that decide bf16 speed


def cpu_note() -> dict:
    """The CPU as torch runs on it: ATen's kernel level, whether oneDNN has bf16 kernels (both honour
    the simulation variables ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA, recorded when set) and the
    bf16-relevant flags the processor reports."""
    import torch

    from hsicli.models.precision import cpu_bf16_kernels

    cpuinfo = Path("/proc/cpuinfo")
    flags = set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_bf16": cpu_bf16_kernels(),
        "cpu_flags": [flag for flag in BF16_FLAGS if flag in flags],
        **{name: os.environ[name] for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if name in os.environ},
    }


def cpu_summary(note: dict) -> str:
    """`cpu_note` in a few words, for table headings."""
    simulated = [f"{name}={note[name]}" for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if name in note]
    return (f"CPU {note['torch_cpu_capability']}, {'' if note['onednn_bf16'] else 'no '}oneDNN bf16 kernels "
            f"(flags: {' '.join(note['cpu_flags']) or 'none of ' + ' '.join(BF16_FLAGS)}"
            f"{'; simulated by ' + ' '.join(simulated) if simulated else ''})")
