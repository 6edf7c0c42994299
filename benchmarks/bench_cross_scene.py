"""Cross-scene accuracy (issue 19): every registered model × 3 real scenes × 4 split protocols × seeds.

Scenes (../shared/data, PCA 30 after per-band z-scores, one store per scene shared by all models):
- SalinasA (83 × 86, 6 classes);
- the Indian Pines subset (85 × 70, 4 corn/soybean/grass classes, `X` and `grd`);
- Jasper Ridge (100 × 100, ENVI cube) with labels made from its abundance maps
  (`_EndJasperRidge2_R198.mat`, `A`: 4 × 10000, MATLAB's column-major pixel order like the `Y`
  matrix): class k + 1 (tree, water, soil, road) where endmember k has the largest abundance and
  that abundance is ≥ 0.8, unlabelled elsewhere. The map is written as a .mat beside the runs and
  read by `hsi prep --gt`, which names its classes with `--class-names tree,water,soil,road`.

Protocols (one split per scene × protocol × seed, shared by every model, so the test pixels are
the same across a row; no validation pixels, so every torch model keeps its last epoch, or
whatever its default budget decides without a validation set):
- `10/class`: `hsi split --per-class 10 --val 0`;
- `5 %`: `hsi split --ratio 0.05 --val 0` (stratified random);
- `1 % controlled`: `hsi split --ratio 0.01 --val 0 --controlled` (Liang et al. 2017, guard margin);
- `5 % spatial`: `hsi split --ratio 0.05 --val 0 --spatial` (disjoint blocks, guard margin).
The guard margins use `--window 11` (the split's default) for every model.

Each model trains with its registry defaults (`hsi train --model M --seed S`), optionally with its
default epochs scaled by `--epochs-scale` under `--protocol paper`, so that the adaptive budget does
not extend them again (the tables then say so), and predicts the test pixels
(`hsi predict --pixels test`). Every finished run is an ordinary `hsi` artifact under WORKDIR
(default: runs/cross-scene, git-ignored): a rerun after a kill skips the prediction stores that
exist and trains only what is missing. Per scene × protocol one `hsi evaluate` call over all the
models' predictions writes the papers' grouped table (models as columns, mean ± std over seeds) as
Markdown; the script then writes cross-scene.md (an overview of OA mean ± std and seconds per run,
each model seed by seed against the reference model (`--reference`, default svm) on the same splits,
then every grouped table) and cross-scene.json (all figures, the CPU, the settings) to WORKDIR.
Seconds per run = training seconds + inference seconds, as the checkpoint and prediction record them;
each torch run's record keeps how it ended (the checkpoint's `training.stop`).

Usage: python benchmarks/bench_cross_scene.py [WORKDIR] [--models …] [--scenes …] [--protocols …]
       [--seeds 0 1 2 3 4] [--epochs-scale 0.5 | --quick] [--threads 1] [--jobs 2] [--tables-only]
       [--reference svm]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hsicli.store.inspect import describe

from common import HSI, ROOT, SHARED_DATA, cpu_note, cpu_summary, env_note, run_measured

PCA = 30
SPLIT_PATCH = 11
ABUNDANCE_THRESHOLD = 0.8
QUICK_EPOCHS_SCALE = 0.25
JASPER = SHARED_DATA / "jasper-ridge"
JASPER_CLASSES = ("tree", "water", "soil", "road")  # the endmembers of _EndJasperRidge2_R198.mat, in order

PROTOCOLS: dict[str, list[str]] = {
    "10/class": ["--per-class", "10", "--val", "0"],
    "5 %": ["--ratio", "0.05", "--val", "0"],
    "1 % controlled": ["--ratio", "0.01", "--val", "0", "--controlled"],
    "5 % spatial": ["--ratio", "0.05", "--val", "0", "--spatial"],
}
SCENES = ("salinasA", "indian-pines-subset", "jasper-ridge")


def abundance_labels(abundances: np.ndarray, n_row: int, n_col: int,
                     threshold: float = ABUNDANCE_THRESHOLD) -> np.ndarray:
    """Labels (n_row × n_col, uint8) from endmembers × pixels abundances in MATLAB's column-major
    pixel order (pixel p at row p mod n_row, column p div n_row): 1 + the endmember with the largest
    abundance where that abundance is ≥ threshold, 0 (unlabelled) where no endmember dominates."""
    if abundances.shape[1] != n_row * n_col:
        raise ValueError(f"abundances {abundances.shape} do not cover {n_row} × {n_col} pixels")
    labels = np.where(abundances.max(axis=0) >= threshold, abundances.argmax(axis=0) + 1, 0).astype(np.uint8)
    return labels.reshape((n_row, n_col), order="F")


def jasper_ground_truth(work: Path) -> Path:
    """Write Jasper Ridge's abundance-derived label map as WORK/jasper_gt.mat (`jasper_gt`)."""
    import scipy.io

    path = work / "jasper_gt.mat"
    if not path.exists():
        matrix = scipy.io.loadmat(JASPER / "JasperRidge2_R198.mat", variable_names=("nRow", "nCol"))
        abundances = scipy.io.loadmat(JASPER / "_EndJasperRidge2_R198.mat", variable_names=("A",))["A"]
        labels = abundance_labels(abundances, int(matrix["nRow"].item()), int(matrix["nCol"].item()))
        partial = path.with_suffix(".partial.mat")
        scipy.io.savemat(partial, {"jasper_gt": labels}, do_compression=True)
        partial.replace(path)
    return path


def prep_arguments(scene: str, work: Path) -> list[str]:
    """`hsi prep` inputs of a scene (before --pca)."""
    if scene == "salinasA":
        folder = SHARED_DATA / "salinasA"
        return [str(folder / "SalinasA_corrected.mat"), "--gt", str(folder / "SalinasA_gt.mat")]
    if scene == "indian-pines-subset":
        path = SHARED_DATA / "indian-pines-subset" / "Indian_part.mat"
        return [str(path), "--var", "X", "--gt", str(path), "--gt-var", "grd"]
    return [str(JASPER / "jasperRidge2_R198.hdr"), "--gt", str(jasper_ground_truth(work)), "--gt-var", "jasper_gt",
            "--class-names", ",".join(JASPER_CLASSES)]


_log_lock = threading.Lock()


def log(message: str) -> None:
    with _log_lock:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def hsi(*args: str, cwd: Path) -> str:
    """Run one `hsi` command; its stdout. A failure ends the benchmark with its error."""
    return run_measured([HSI, *args], cwd)[2]


def registered_models(work: Path) -> dict[str, dict]:
    """Every registered model with its defaults (`hsi models --json`), so later additions are included."""
    return {entry["name"]: entry for entry in json.loads(hsi("models", "--json", cwd=work))["models"]}


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").replace("--", "-")


def scaled_epochs(entry: dict, scale: float) -> int | None:
    """The epochs to pass to `hsi train`: None (the defaults) for classical models or scale 1."""
    if entry["kind"] == "spectral" or scale == 1.0:
        return None
    return max(1, round(entry["defaults"]["epochs"] * scale))


def run_paths(folder: Path, model: str, seed: int) -> tuple[Path, Path]:
    """The checkpoint and prediction store of one run."""
    return folder / f"{model}-seed{seed}.safetensors", folder / f"{model}-seed{seed}.pred.zarr"


def run_one(work: Path, split: str, folder: Path, model: str, seed: int, epochs: int | None,
            threads: int) -> dict:
    """Train and predict one model on one split, unless its prediction store exists; its record."""
    checkpoint, prediction = run_paths(folder, model, seed)
    if not prediction.exists():
        if not checkpoint.exists():
            started = time.perf_counter()
            hsi("train", split, "--model", model, "--seed", str(seed), "--threads", str(threads),
                *(["--epochs", str(epochs), "--protocol", "paper"] if epochs else []), "-o", str(checkpoint),
                "-q", cwd=work)
            log(f"{folder.parent.name} / {folder.name} / {model} seed {seed}: trained in "
                f"{time.perf_counter() - started:.0f} s")
        hsi("predict", str(checkpoint), "--pixels", "test", "--threads", str(threads), "-o", str(prediction),
            "-q", cwd=work)
    trained, predicted = describe(checkpoint), describe(prediction)  # what `hsi info --json` prints
    return {"model": model, "seed": seed, "checkpoint": str(checkpoint), "prediction": str(prediction),
            "train_seconds": trained["train_seconds"], "inference_seconds": predicted.get("inference_seconds"),
            "final_train_accuracy": final_train_accuracy(trained),
            "stop": trained["training"].get("stop")}  # None for classical models and older checkpoints


def final_train_accuracy(info: dict) -> float | None:
    """The last epoch's training accuracy from a checkpoint's history (None for classical models)."""
    history = info["training"]["history"]
    return history[-1]["train_accuracy"] if info["model_kind"] != "spectral" else None


def against_reference(cell_models: dict[str, dict], reference: str) -> dict[str, dict]:
    """Every other model's runs paired with the reference model's on the same split (the same seed):
    both OAs per shared seed, the runs won (OA ≥ the reference's), the mean OA over the shared seeds
    minus the reference's over the same seeds, and whether that difference is ≥ 0."""
    if reference not in cell_models:
        return {}
    reference_oa = cell_models[reference]["oa_per_seed"]
    paired = {}
    for model, record in cell_models.items():
        seeds = sorted(set(record["oa_per_seed"]) & set(reference_oa))
        if model == reference or not seeds:
            continue
        oa = [record["oa_per_seed"][seed] for seed in seeds]
        theirs = [reference_oa[seed] for seed in seeds]
        difference = statistics.fmean(oa) - statistics.fmean(theirs)
        paired[model] = {"seeds": seeds, "oa": oa, "reference_oa": theirs,
                         "runs_won": sum(a >= b for a, b in zip(oa, theirs)),
                         "mean_difference": difference, "mean_reached": difference >= 0}
    return paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", type=Path, default=ROOT / "runs" / "cross-scene",
                        help="work folder, kept for resuming (default: runs/cross-scene)")
    parser.add_argument("--models", nargs="+", help="models (default: every registered one)")
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every torch model's default epochs (the tables say so)")
    budget.add_argument("--quick", action="store_true", help=f"--epochs-scale {QUICK_EPOCHS_SCALE}")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--tables-only", action="store_true",
                        help="train nothing: tables from the runs already finished (a grid cut short)")
    parser.add_argument("--reference", default="svm",
                        help="the model every other one is paired with, seed by seed (default: svm)")
    args = parser.parse_args()
    scale = QUICK_EPOCHS_SCALE if args.quick else args.epochs_scale
    if not SHARED_DATA.exists():
        raise SystemExit(f"{SHARED_DATA} not found: this benchmark needs the shared real scenes")
    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    registry = registered_models(work)
    models = args.models or list(registry)
    unknown = sorted(set(models) - set(registry))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; registered: {sorted(registry)}")
    epochs = {model: scaled_epochs(registry[model], scale) for model in models}
    started = time.perf_counter()

    # Stores and splits first (cheap, sequential), then every run of the grid through one pool.
    cells: dict[tuple[str, str], dict] = {}
    for scene in args.scenes:
        store = work / f"{scene}.zarr"
        if not store.exists():
            hsi("prep", *prep_arguments(scene, work), "--pca", str(PCA), "-o", str(store), "-q", cwd=work)
        for protocol in args.protocols:
            splits = {seed: hsi("split", str(store), *PROTOCOLS[protocol], "--window", str(SPLIT_PATCH),
                                "--seed", str(seed), "-q", cwd=work) for seed in args.seeds}
            folder = work / scene / slug(protocol)
            folder.mkdir(parents=True, exist_ok=True)
            cells[scene, protocol] = {"folder": folder, "splits": splits}
    # Seed by seed over the whole grid, so a run cut short leaves every cell with its first seeds done.
    tasks = [(cell_key, model, seed) for seed in args.seeds for cell_key in cells for model in models]
    if args.tables_only:
        tasks = [task for task in tasks if run_paths(cells[task[0]]["folder"], task[1], task[2])[1].exists()]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = pool.map(lambda task: run_one(work, cells[task[0]]["splits"][task[2]], cells[task[0]]["folder"],
                                                task[1], task[2], epochs[task[1]], args.threads), tasks)
        for (cell_key, _, _), record in zip(tasks, records):
            cells[cell_key].setdefault("runs", []).append(record)

    results = []
    for (scene, protocol), cell in cells.items():
        if "runs" not in cell:  # --tables-only and nothing finished
            continue
        folder = cell["folder"]
        summary = json.loads(hsi("evaluate", *[run["prediction"] for run in cell["runs"]],
                                 "--markdown", str(folder / "table.md"), "-o", str(folder / "summary.metrics.json"),
                                 "--overwrite", "--json", "-q", cwd=work))
        cell_models = per_model(summary, cell["runs"], models)
        results.append({"scene": scene, "protocol": protocol, "split_options": PROTOCOLS[protocol],
                        "models": cell_models, "against_reference": against_reference(cell_models, args.reference),
                        "table_markdown": (folder / "table.md").read_text()})
        log(f"{scene} / {protocol}: " + ", ".join(
            f"{m} {100 * r['oa_mean']:.1f}" for m, r in results[-1]["models"].items()))
    cpu = cpu_note()
    document = {
        "benchmark": "cross-scene accuracy (issue 19)",
        "env": f"{env_note()}, --threads {args.threads}, --jobs {args.jobs}, "
               f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}",
        "cpu": cpu,
        "settings": {"pca": PCA, "split_patch": SPLIT_PATCH, "abundance_threshold": ABUNDANCE_THRESHOLD,
                     "seeds": args.seeds, "epochs_scale": scale, "reference": args.reference,
                     "epochs": {m: e for m, e in epochs.items() if e is not None}},
        "cells": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (work / "cross-scene.json").write_text(json.dumps(document, indent=1))
    (work / "cross-scene.md").write_text(markdown(document, models))
    print(work / "cross-scene.md")


def per_model(summary: dict, runs: list[dict], models: list[str]) -> dict[str, dict]:
    """OA mean ± std (from evaluate's grouped summary), seconds and last training accuracy per model."""
    by_prediction = {run["prediction"]: run for run in runs}
    if "run_metrics" not in summary:  # one prediction: `hsi evaluate` wrote its metrics, not a summary
        summary = {"run_metrics": [summary], "label": runs[0]["model"], "predictions": [summary["prediction"]],
                   **{key: {"mean": summary[key], "std": 0.0} for key in ("oa", "aa", "kappa")}}
    oa_of = {metrics["prediction"]: metrics["oa"] for metrics in summary["run_metrics"]}
    result = {}
    for group in summary.get("groups") or [summary]:  # one group: the summary is that group
        members = [by_prediction[path] for path in group["predictions"]]
        seconds = {r["seed"]: r["train_seconds"] + (r["inference_seconds"] or 0.0) for r in members}
        train_accuracy = [r["final_train_accuracy"] for r in members if r["final_train_accuracy"] is not None]
        result[members[0]["model"]] = {
            "column": group["label"], "oa_mean": group["oa"]["mean"], "oa_std": group["oa"]["std"],
            "aa_mean": group["aa"]["mean"], "kappa_mean": group["kappa"]["mean"],
            "oa_per_seed": {r["seed"]: oa_of[r["prediction"]] for r in members},
            "seconds_per_run": round(statistics.fmean(seconds.values()), 1),
            # per seed too, so runs of one cell finished in different work folders can be combined
            "seconds_per_seed": {seed: round(value, 1) for seed, value in seconds.items()},
            "final_train_accuracy_mean": round(statistics.fmean(train_accuracy), 4) if train_accuracy else None,
            "stops": {r["seed"]: r["stop"] for r in members if r["stop"] is not None},
        }
    return {model: result[model] for model in models if model in result}


def markdown(document: dict, models: list[str]) -> str:
    settings = document["settings"]
    cut = (f"; epochs cut to {settings['epochs_scale']:g} × each model's default, `--protocol paper` "
           f"(no adaptive extension) "
           f"({', '.join(f'{m} {e}' for m, e in settings['epochs'].items())})" if settings["epochs"] else "")
    lines = [f"OA % mean ± std over seeds {' '.join(map(str, settings['seeds']))} and seconds per run (train + "
             f"predict the test pixels), PCA {settings['pca']}, no validation pixels{cut}. "
             f"{document['env']}; {cpu_summary(document['cpu'])}.", "",
             "| scene | protocol | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for cell in document["cells"]:
        best = max(r["oa_mean"] for r in cell["models"].values())
        row = []
        for model in models:
            r = cell["models"].get(model)
            if r is None:
                row.append("—")
                continue
            runs = len(r["oa_per_seed"])
            oa = f"{100 * r['oa_mean']:.1f}" + (f" ± {100 * r['oa_std']:.1f}" if runs > 1 else "")
            fewer = f", {runs} seed{'s' if runs > 1 else ''}" if runs < len(settings["seeds"]) else ""
            row.append(f"{'**' + oa + '**' if r['oa_mean'] == best else oa} ({r['seconds_per_run']:.0f} s{fewer})")
        lines.append(f"| {cell['scene']} | {cell['protocol']} | " + " | ".join(row) + " |")
    lines += paired_markdown(document, models)
    for cell in document["cells"]:
        lines += ["", f"### {cell['scene']}, {cell['protocol']} (`hsi evaluate`)", "", cell["table_markdown"].strip()]
    return "\n".join(lines) + "\n"


def paired_markdown(document: dict, models: list[str]) -> list[str]:
    """One table per model: its OA / the reference's OA seed by seed (bold where it reaches the
    reference), runs won, and a line of totals; the seeds of a torch run whose stop was unfitted are
    marked with a dagger."""
    reference = document["settings"]["reference"]
    seeds = document["settings"]["seeds"]
    lines = []
    for model in models:
        rows = [(cell, cell["against_reference"][model]) for cell in document["cells"]
                if model in cell["against_reference"]]
        if not rows:
            continue
        lines += ["", f"### {model} against {reference}, seed by seed (OA % {model} / {reference}, same split)", "",
                  "| scene | protocol | " + " | ".join(f"seed {seed}" for seed in seeds) + " | runs won | mean |",
                  "|---|---|" + "---|" * (len(seeds) + 2)]
        any_unfitted = False
        for cell, paired in rows:
            stops = cell["models"][model]["stops"]
            entries = dict(zip(paired["seeds"], zip(paired["oa"], paired["reference_oa"])))
            row = []
            for seed in seeds:
                if seed not in entries:
                    row.append("—")
                    continue
                oa, reference_oa = entries[seed]
                unfitted = " †" if stops.get(seed, {}).get("reason") == "unfitted" else ""
                any_unfitted |= bool(unfitted)
                entry = f"{100 * oa:.1f} / {100 * reference_oa:.1f}"
                row.append(f"**{entry}**{unfitted}" if oa >= reference_oa else entry + unfitted)
            row += [f"{paired['runs_won']} of {len(paired['seeds'])}", f"{100 * paired['mean_difference']:+.1f}"]
            lines.append(f"| {cell['scene']} | {cell['protocol']} | " + " | ".join(row) + " |")
        won = sum(paired["runs_won"] for _, paired in rows)
        runs = sum(len(paired["seeds"]) for _, paired in rows)
        reached = sum(paired["mean_reached"] for _, paired in rows)
        lines += ["", f"{model} reaches {reference} in {reached} of {len(rows)} cells (mean over the shared seeds; "
                      f"the last column is its mean minus {reference}'s, in points) and in {won} of {runs} runs"
                      + ("; † the adaptive budget stopped the run unfitted (`training.stop`)." if any_unfitted else ".")]
    return lines


if __name__ == "__main__":
    main()
