"""Sharded `hsi predict` on the local SLURM cluster: a 4× Salinas-sized scene in 1, 2 and 4 shards.

The scene is 1024 × 434 × 30 (Salinas' label layout tiled 2 × 2, synthetic spectra). Each run is
examples/slurm/submit-predict.sh unchanged — `--init-shards` here, an array of N shard tasks (1 CPU, 1
thread each), the finalize job — timed from submission until the finalize job is done; every hsi
process runs under /usr/bin/time for its peak resident memory. An unsharded `hsi predict` is the
reference, and each sharded store is checked against it (identical class maps).
Usage: python bench_shards.py [MODEL] [SHARDS…]   (default: litec2anet, 1 2 4; needs sbatch)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import HSI, ROOT, env_note, run_measured, salinas_like_labels, synthetic_cube

SUBMIT = ROOT / "examples" / "slurm" / "submit-predict.sh"
# Each hsi process of a job appends "<job>_<task> <peak kB> <wall s>" to $TIME_LOG.
WRAPPER = """#!/bin/sh
exec /usr/bin/time -a -o "$TIME_LOG" -f "${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-here}}_${SLURM_ARRAY_TASK_ID:-0} %M %e" "$HSI_REAL" "$@"
"""


def wait(jobs: list[str]) -> None:
    while subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)
    for job in jobs:
        shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
        states = re.findall(r"JobState=(\S+)", shown)
        if not states or set(states) != {"COMPLETED"}:
            raise SystemExit(f"job {job} did not complete: {states}")


def sharded(folder: Path, checkpoint: str, store: str, count: int, env: dict[str, str]) -> dict:
    out = folder / f"pred-{count}.zarr"
    log = folder / f"time-{count}.log"
    start = time.perf_counter()
    done = subprocess.run([str(SUBMIT), checkpoint, str(count), "--store", store, "--out", str(out), "--device",
                           "cpu", "--quiet"], cwd=folder, capture_output=True, text=True,
                          env={**env, "TIME_LOG": str(log), "SBATCH_ARGS": "--cpus-per-task=1 --time=01:00:00"})
    if done.returncode != 0:
        raise SystemExit(f"submit-predict.sh failed:\n{done.stderr}")
    _, shards_job, final_job = done.stdout.split()
    wait([shards_job, final_job])
    wall = time.perf_counter() - start
    tasks = [line.split() for line in log.read_text().splitlines() if line.startswith(f"{shards_job}_")]
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    return {
        "shards": count,
        "wall_s": round(wall, 1),
        "inference_s_summed": attrs["inference_seconds"],
        "task_wall_s": [float(t[2]) for t in tasks],
        "task_peak_mb": [round(int(t[1]) / 1024, 1) for t in tasks],
        "path": out,
    }


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "litec2anet"
    counts = [int(c) for c in sys.argv[2:]] or [1, 2, 4]
    if shutil.which("sbatch") is None or shutil.which("/usr/bin/time") is None:
        print(json.dumps({"benchmark": "sharded predict", "skipped": "needs SLURM (sbatch) and /usr/bin/time"}))
        return
    labels = np.tile(salinas_like_labels(), (2, 2))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        scene = folder / "salinas_x4.npz"
        np.savez(scene, cube=synthetic_cube(labels, 30, dtype=np.float32), gt=labels)
        _, _, store = run_measured([HSI, "prep", str(scene), "--norm", "none", "-q"], folder)
        _, _, split = run_measured([HSI, "split", store, "--ratio", "0.002", "--val", "0.002", "-q"], folder)
        _, _, ckpt = run_measured([HSI, "train", split, "--model", model, "--epochs", "1", "-q"], folder)
        wrapper = folder / "hsi-timed"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        env = {**os.environ, "HSI": str(wrapper), "HSI_REAL": HSI, "OMP_NUM_THREADS": "1",
               "PATH": f"{Path(HSI).parent}{os.pathsep}{os.environ['PATH']}"}
        # The reference: one process, one thread, no SLURM.
        reference = folder / "whole.zarr"
        log = folder / "time-whole.log"
        start = time.perf_counter()
        subprocess.run([str(wrapper), "predict", ckpt, "--store", store, "--out", str(reference), "--device", "cpu",
                        "--threads", "1", "--quiet"], check=True, stdout=subprocess.DEVNULL,
                       env={**env, "TIME_LOG": str(log)})
        whole = {"shards": 0, "wall_s": round(time.perf_counter() - start, 1),
                 "task_peak_mb": [round(int(log.read_text().split()[1]) / 1024, 1)]}
        runs = [whole]
        expected = subprocess.run([sys.executable, "-c", _CLASSES, str(reference)], capture_output=True).stdout
        for count in counts:
            run = sharded(folder, ckpt, store, count, env)
            got = subprocess.run([sys.executable, "-c", _CLASSES, str(run.pop("path"))], capture_output=True).stdout
            run["equals_unsharded"] = got == expected
            runs.append(run)
    nodes = subprocess.run(["sinfo", "-h", "-o", "%c CPUs"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"benchmark": f"sharded predict, 1024x434x30 scene ({model})", "env": env_note(),
                      "cluster": f"local SLURM, one node, {nodes}, 1 CPU and 1 thread per task",
                      "runs (shards 0 = plain hsi predict)": runs}, indent=1))


# The class map's digest, in a fresh interpreter (so the benchmark process stays small).
_CLASSES = """
import hashlib, sys
from hsicli.store.prediction import PredictionStore
print(hashlib.sha256(PredictionStore.open(sys.argv[1]).classes().tobytes()).hexdigest())
"""

if __name__ == "__main__":
    main()
