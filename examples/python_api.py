"""prep -> split -> train -> predict -> evaluate -> plot from Python (hsicli's API, docs/api.md).

    python examples/python_api.py [SCENE.mat [GT.mat]] [--out DIR] [--model rf]

Without a scene it runs on SalinasA from $HSI_DATA_DIR (default ../shared/data). Every step
writes the artifact its `hsi` command writes, so a second run reuses them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hsicli import api

DATA = Path(os.environ.get("HSI_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", nargs="?", type=Path, default=DATA / "salinasA" / "SalinasA_corrected.mat")
    parser.add_argument("gt", nargs="?", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs-python"))
    parser.add_argument("--model", default="rf")
    args = parser.parse_args()
    gt = args.gt or (DATA / "salinasA" / "SalinasA_gt.mat" if args.scene.name == "SalinasA_corrected.mat" else None)
    args.out.mkdir(parents=True, exist_ok=True)

    store = api.prep(args.scene, gt=gt, pca=10, out=args.out / "scene.zarr").path
    split = api.split(store, ratio=0.1, val=0.05, seed=0).path
    scene = api.load_scene(store)  # NumPy arrays, for your own analysis
    print(f"{store}: cube {scene.cube.shape}, {len(scene.class_names)} classes, splits {sorted(scene.splits)}")
    patches = api.patch_dataset(split, "train", patch=5)  # a torch Dataset, as the engine samples
    patch, label = patches[0]
    print(f"{len(patches)} training patches of shape {tuple(patch.shape)}; first is class {label}")

    checkpoint = api.train(split, model=args.model, seed=0).path
    prediction = api.predict(checkpoint).path
    metrics = api.evaluate(prediction).result
    figure = api.plot("map", prediction, with_gt=True, out=args.out / "map.png", overwrite=True)
    print(f"{args.model}: OA {metrics['oa']:.2%}, AA {metrics['aa']:.2%}, kappa {metrics['kappa']:.3f}; map {figure}")


if __name__ == "__main__":
    main()
