"""`hsi plot map` of a full Salinas-sized prediction store (512 × 217, 16 classes).

Goal (issue 7): the map renders in ≤ 5 s, wall time of the `hsi` process including start-up,
best of 3, at the default 300 dpi; also with the ground truth beside it and masked to labelled
pixels (`--with-gt --masked`). The prediction store is built directly with the store API (real
Salinas labels when ../shared/data is present, a noisy copy of them as the prediction), so the
benchmark needs no training. `hsi --version` is timed too: the start-up every command pays.
Usage: python bench_plot.py
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import HSI, env_note, salinas_like_labels

from hsicli.data.datasets import get_dataset
from hsicli.store.prediction import PredictionStore
from hsicli.store.scene import SceneStore

CASES = {"map": [], "map --with-gt --masked": ["--with-gt", "--masked"]}
REPEATS = 3


def salinas_prediction(folder: Path) -> Path:
    """A scene store (30 bands) and a prediction of it: 5 % of the pixels in a wrong class."""
    info = get_dataset("salinas")
    labels = salinas_like_labels().astype(np.uint16)
    height, width = labels.shape
    n_classes = len(info.class_names)
    rng = np.random.default_rng(0)
    scene = SceneStore.create(
        folder / "salinas.zarr", cube=rng.normal(size=(height, width, 30)).astype(np.float32), gt=labels,
        rgb=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        attrs={"class_names": list(info.class_names), "class_colors": list(info.class_colors)},
        transform={"offset": np.zeros(30, np.float32)}, transform_attrs={},
    )
    # Unlabelled pixels get a class too, as in a real whole-scene prediction.
    truth = np.where(labels > 0, labels, rng.integers(1, n_classes + 1, labels.shape))
    classes = np.where(rng.random(labels.shape) < 0.05, rng.integers(1, n_classes + 1, labels.shape), truth)
    logits = rng.normal(size=(height, width, n_classes)).astype(np.float32)
    np.put_along_axis(logits, (classes - 1)[..., None].astype(np.int64), 5.0, axis=-1)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    entropy = -(probabilities * np.log(probabilities)).sum(-1)
    attrs = {"model": "synthetic", "class_names": list(info.class_names), "class_colors": list(info.class_colors),
             "scene_store": scene.describe()}
    path = folder / "salinas.pred.zarr"
    with PredictionStore.build(path, height=height, width=width, n_classes=n_classes, probabilities=True,
                               attrs=attrs) as writer:
        writer.write_rows(0, classes.astype(np.uint16), probabilities, entropy.astype(np.float32))
    return path


def wall(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return seconds


def main() -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prediction = salinas_prediction(folder)
        startup = [round(wall([HSI, "--version"], folder), 3) for _ in range(REPEATS)]
        results = {}
        for case, options in CASES.items():
            out = folder / "map.png"
            runs = []
            for _ in range(REPEATS):
                out.unlink(missing_ok=True)  # the same figure again would be a no-op, not a render
                runs.append(round(wall([HSI, "plot", "map", str(prediction), *options, "--out", str(out)], folder), 3))
            results[case] = {"runs_s": runs, "best_s": min(runs), "png_bytes": out.stat().st_size}
    print(json.dumps({
        "benchmark": "hsi plot map, Salinas-sized prediction (512 x 217, 16 classes), 300 dpi, wall incl. start-up",
        "goal_s": 5.0, "env": env_note(), "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()], "hsi_version_startup_s": startup,
        "cases": results,
    }, indent=1))


if __name__ == "__main__":
    main()
