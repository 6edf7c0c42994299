"""Accuracy on SalinasA, 5 % of each class for training, 3 seeds: svm, rf, hybridsn, ssrn, spectralformer,
ssftt, a2s2k, els2t.

Goal (issue 3): every spatial model above SVM, HybridSN ≥ 99 % OA. The script runs the real CLI
(`hsi prep … --pca 30`, `hsi split`, `hsi train`, `hsi predict`, `hsi evaluate A B C --json` for
mean ± std over the seeds) in WORKDIR (default: a temporary folder) and prints one JSON document
(settings, per-seed OA, mean ± std OA/AA/κ, seconds); a Markdown table for the README goes to stderr.

Protocol: one PCA-30 store; per seed one split, 5 % of every class for training and all other
labelled pixels for testing (`--val 0`: no validation pixels, so every model keeps its last epoch,
as HybridSN's and SpectralFormer's fixed-epoch protocols do; `hsi train` keeps the *first* epoch
with the best validation accuracy, and a few hundred validation pixels reach 100 % within a few
epochs, which kept under-trained SSRN and SpectralFormer weights). The 5 % split of seed S has
the same training pixels whatever the validation share, so `--val` changes only the test set.

Settings that differ from the papers (the 2 shared CPU cores cannot run the papers' schedules
for 15 runs within an hour):
- epochs: HybridSN 10 of 100, SSRN 10 of 200, SpectralFormer 20 of 300 (its ×0.9 learning-rate
  step every epochs/10 keeps its shape over the shorter run), SSFTT 30 of 100 (100 took 194 s on
  one loaded core), A2S2K-ResNet 20 of 200, ELS2T 50 of 100;
- batch 32 for HybridSN (paper 256) and SpectralFormer (paper 64): 5 % of SalinasA is 268 pixels,
  so the papers' batches make 2 and 5 updates per epoch, too few for the shortened runs (HybridSN,
  seed 0, 10 epochs, best of 2 % validation: 96.5 % OA at batch 256, 99.6 % at 32; SpectralFormer,
  seed 2, 20 epochs: 98.1 % at batch 64, below SVM's 98.5 %, and 99.5 % at 32);
- HybridSN input: 25 × 25 windows (the paper's) of 30 PCA components; the paper uses 30 for
  Indian Pines and 15 for the other scenes, the store here is PCA 30 for every model.
SSRN and SpectralFormer use their papers' 7 × 7 patches; SVM and RF their registry defaults.

Usage: python benchmarks/bench_accuracy.py [WORKDIR] [--models svm rf …] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import HSI, SHARED_DATA, env_note, run_measured

SCENE = SHARED_DATA / "salinasA" / "SalinasA_corrected.mat"
PCA = 30
RATIO = 0.05
VAL = 0.0
SEEDS = (0, 1, 2)
THREADS = 2  # default of --threads

# Per model: `hsi train` options beyond --model/--seed/--threads, and the paper's values they replace.
MODELS: dict[str, dict] = {
    "svm": {"patch": 1, "options": [], "paper": "RBF SVM, C 100, gamma 'scale' (registry defaults)"},
    "rf": {"patch": 1, "options": [], "paper": "random forest, 200 trees (registry defaults)"},
    "hybridsn": {
        "patch": 25,
        "epochs": 10,
        "options": ["--batch-size", "32"],
        "paper": "25x25 windows, PCA 15 for Salinas (30 here), Adam 1e-3, batch 256, 100 epochs",
    },
    "ssrn": {"patch": 7, "epochs": 10, "options": [], "paper": "7x7, RMSprop 3e-4, batch 16, 200 epochs"},
    "spectralformer": {
        "patch": 7,
        "epochs": 20,
        "options": ["--batch-size", "32"],
        "paper": "7x7 patch-wise, Adam 5e-4, wd 5e-3, batch 64, 300 epochs, lr x0.9 every epochs/10",
    },
    "ssftt": {"patch": 13, "epochs": 30, "options": [], "paper": "13x13, PCA 30, Adam 1e-3, batch 64, 100 epochs"},
    "a2s2k": {
        "patch": 9,
        "epochs": 20,
        "options": [],
        "paper": "9x9 of all bands PCA-rotated (PCA 30 here), Adam 1e-3, batch 32, 200 epochs, early stop after 20",
    },
    "els2t": {"patch": 9, "epochs": 50, "options": [], "paper": "Lite-C2ANet's comparison: 9x9, all bands (PCA 30 here), Adam 1e-3, "
              "batch 64, 100 epochs"},
}


def hsi(*args: str, cwd: Path) -> tuple[float, str]:
    """Run one `hsi` command; (wall seconds, stdout). A failure ends the benchmark with its error."""
    wall, _, out = run_measured([HSI, *args], cwd)
    return wall, out


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def train_options(name: str) -> list[str]:
    setting = MODELS[name]
    options = list(setting["options"])
    if setting["patch"] > 1:
        options += ["--patch", str(setting["patch"])]
    if "epochs" in setting:
        options += ["--epochs", str(setting["epochs"])]
    return options


def run_model(name: str, splits: dict[int, str], work: Path, threads: int) -> dict:
    """Train, predict and evaluate `name` on every seed's split; metrics and seconds."""
    predictions, train_s, predict_s, wall = [], [], [], 0.0
    for seed, split in splits.items():
        t, out = hsi("train", split, "--model", name, "--seed", str(seed), "--threads", str(threads),
                     *train_options(name), "--overwrite", "--json", "-q", cwd=work)
        checkpoint = json.loads(out)
        p, out = hsi("predict", checkpoint["path"], "--threads", str(threads), "--overwrite", "--json", "-q", cwd=work)
        prediction = json.loads(out)
        wall += t + p
        predictions.append(prediction["path"])
        train_s.append(checkpoint["seconds"])
        predict_s.append(prediction["inference_seconds"])
        log(f"{name} seed {seed}: trained in {checkpoint['seconds']:.1f} s, predicted in "
            f"{prediction['inference_seconds']:.1f} s")
    _, out = hsi("evaluate", *predictions, "--json", "-o", str(work / f"{name}.metrics.json"), "--overwrite",
                 cwd=work)
    summary = json.loads(out)
    per_seed = [json.loads(Path(p.removesuffix(".zarr").removesuffix(".pred") + ".metrics.json").read_text())
                for p in predictions]
    setting = MODELS[name]
    return {
        "settings": {"patch": setting["patch"], "epochs": setting.get("epochs"),
                     "train_options": train_options(name), "paper": setting["paper"]},
        **{key: {"mean": summary[key]["mean"], "std": summary[key]["std"]} for key in ("oa", "aa", "kappa")},
        "oa_per_seed": [run["oa"] for run in per_seed],
        "train_seconds_mean": round(statistics.fmean(train_s), 2),
        "predict_seconds_mean": round(statistics.fmean(predict_s), 2),
        "wall_seconds": round(wall, 1),
    }


def markdown(results: dict) -> str:
    rows = ["| model | patch | epochs | OA (%) mean ± std | AA (%) | κ × 100 | train s | predict s |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        def pm(key: str) -> str:
            return f"{100 * r[key]['mean']:.2f} ± {100 * r[key]['std']:.2f}"

        epochs = r["settings"]["epochs"] or "—"
        rows.append(f"| {name} | {r['settings']['patch']} | {epochs} | {pm('oa')} | {pm('aa')} | {pm('kappa')} "
                    f"| {r['train_seconds_mean']:.1f} | {r['predict_seconds_mean']:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per hsi command (a shared machine: 1)")
    args = parser.parse_args()
    if not SCENE.exists():
        raise SystemExit(f"{SCENE} not found: this benchmark needs the shared SalinasA scene")
    with contextlib.nullcontext(str(args.workdir)) if args.workdir else tempfile.TemporaryDirectory() as folder:
        work = Path(folder).absolute()
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        _, store = hsi("prep", str(SCENE), "--pca", str(PCA), "-o", str(work / "salinasA.zarr"), "--overwrite", "-q",
                       cwd=work)
        splits = {}
        for seed in args.seeds:
            _, splits[seed] = hsi("split", store, "--ratio", str(RATIO), "--val", str(VAL), "--seed", str(seed),
                                  "-q", cwd=work)
        results = {}
        for name in args.models:
            results[name] = run_model(name, splits, work, args.threads)
            log(f"{name}: OA {100 * results[name]['oa']['mean']:.2f} ± {100 * results[name]['oa']['std']:.2f} %")
        document = {
            "benchmark": "accuracy on SalinasA (issue 3)",
            "env": f"{env_note()}, --threads {args.threads}",
            "protocol": {"scene": SCENE.name, "pca": PCA, "train_ratio_per_class": RATIO, "val_ratio": VAL,
                         "seeds": args.seeds, "kept_epoch": "last (no validation pixels)"},
            "models": results,
            "total_seconds": round(time.perf_counter() - started, 1),
        }
    print(markdown(results), file=sys.stderr)
    print(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
