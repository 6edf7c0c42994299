"""`hsi predict` peak memory on a Salinas-sized scene (512 × 217, 30 bands) and one 4× larger.

Goal (issue 3): peak ≤ 1.5 GB, and the same peak on the 4× scene (memory bounded by a tile).
Usage: python bench_predict.py [MODEL] [EPOCHS]   (default: litec2anet, 1 epoch)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import HSI, env_note, run_measured, salinas_like_labels, synthetic_cube


def scene(folder: Path, name: str, labels: np.ndarray) -> Path:
    path = folder / f"{name}.npz"
    np.savez(path, cube=synthetic_cube(labels, 30, dtype=np.float32), gt=labels)
    return path


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "litec2anet"
    epochs = sys.argv[2] if len(sys.argv) > 2 else "1"
    labels = salinas_like_labels()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small = scene(folder, "salinas_like", labels)
        large = scene(folder, "salinas_like_x4", np.tile(labels, (2, 2)))
        stores = {}
        for path in (small, large):
            _, _, out = run_measured([HSI, "prep", str(path), "--norm", "none", "-q"], folder)
            stores[path.stem] = out
        _, _, split = run_measured([HSI, "split", stores["salinas_like"], "--ratio", "0.01", "--val", "0.01", "-q"], folder)
        _, _, ckpt = run_measured([HSI, "train", split, "--model", model, "--epochs", epochs, "-q"], folder)
        for name in ("salinas_like", "salinas_like_x4"):
            # A fresh interpreter per measurement so each peak RSS is that run's own.
            probe = run_measured([sys.executable, "-c", _CHILD, HSI, ckpt, stores[name]], folder)
            wall, peak = json.loads(probe[2]).values()
            h, w = (512, 217) if name == "salinas_like" else (1024, 434)
            results.append({"scene": f"{h}x{w}x30", "pixels": h * w, "wall_s": wall, "peak_mb": peak})
    print(json.dumps({"benchmark": f"predict peak memory ({model})", "env": env_note(), "runs": results}, indent=1))


_CHILD = """
import json, resource, subprocess, sys, time
hsi, ckpt, store = sys.argv[1:4]
start = time.perf_counter()
subprocess.run([hsi, 'predict', ckpt, '--store', store, '--out', store + '.pred.zarr', '-q'], check=True,
               stdout=subprocess.DEVNULL)
print(json.dumps({'wall_s': round(time.perf_counter() - start, 2),
                  'peak_mb': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))
"""

if __name__ == "__main__":
    main()
