"""examples/Makefile (issue 8): the pipeline's dependency graph, and a real run on SalinasA.

The fast tests drive the Makefile with a stand-in `hsi` that only creates the file each step's
target names and logs its command line, so they check what make runs, and in which order, in
milliseconds. The slow test runs the real pipeline on SalinasA from ../shared/data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = REPO / "examples" / "Makefile"
SALINAS_A = REPO.parent / "shared" / "data" / "salinasA" / "SalinasA_corrected.mat"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

# The stand-in: `hsi COMMAND ...` logs its arguments and creates what `--out` / `--name` name.
FAKE_HSI = r"""#!/bin/sh
echo "$*" >> "$FAKE_LOG"
command=$1; shift
out=""; name=""; first=$1
while [ $# -gt 0 ]; do
    case $1 in --out) out=$2; shift ;; --name) name=$2; shift ;; esac
    shift
done
case $command in
    fetch) echo /data/scene.mat ;;
    prep|predict) mkdir -p "$out" && touch "$out/zarr.json" ;;
    split) mkdir -p "$first/splits/$name" && touch "$first/splits/$name/zarr.json" ;;
    *) touch "$out" ;;
esac
"""


@pytest.fixture
def fake(tmp_path):
    exe = tmp_path / "bin" / "hsi"
    exe.parent.mkdir()
    exe.write_text(FAKE_HSI)
    exe.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()

    def make(*targets: str, **variables: str) -> list[str]:
        """Run make with two models and two seeds; the hsi command lines it ran, in order."""
        before = log.read_text().splitlines()
        args = ["make", "-f", str(MAKEFILE), f"HSI={exe}", "MODELS=svm rf", "SEEDS=0 1", "OUT=runs",
                *(f"{k}={v}" for k, v in variables.items()), *targets]
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "FAKE_LOG": str(log)})
        assert done.returncode == 0, done.stderr
        return log.read_text().splitlines()[len(before):]

    return make, tmp_path


def _at(calls: list[str], *parts: str) -> int:
    """The position of the one call containing every part."""
    found = [i for i, call in enumerate(calls) if all(part in call for part in parts)]
    assert len(found) == 1, (parts, calls)
    return found[0]


def _short(calls: list[str]) -> list[str]:
    """Each call as its command and main input, sorted."""
    return sorted(" ".join(call.replace("plot map", "plot").split()[:2]) for call in calls)


def _later(path: Path, outputs: Path) -> None:
    """Make `path` newer than every other output (all aged a minute: mtimes can be coarse)."""
    past = time.time() - 60
    for other in outputs.rglob("*"):
        os.utime(other, (past, past))
    os.utime(path)


def test_first_run_makes_every_step_once_in_order(fake):
    make, root = fake
    calls = make()
    prep = _at(calls, "prep /data/scene.mat --pca 30 --out runs/salinasA.zarr")
    assert _at(calls, "fetch salinasA") >= 0
    for model in ("svm", "rf"):
        summary = _at(calls, f"evaluate runs/{model}-s0.pred.zarr runs/{model}-s1.pred.zarr --out runs/{model}.summary")
        for seed in (0, 1):
            run = f"runs/{model}-s{seed}"
            split = _at(calls, f"split runs/salinasA.zarr --ratio 0.05 --seed {seed} --name r0.05-s{seed}")
            train = _at(calls, f"train runs/salinasA.zarr/splits/r0.05-s{seed} --model {model} --seed {seed}",
                        f"--out {run}.safetensors")
            predict = _at(calls, f"predict {run}.safetensors", f"--out {run}.pred.zarr")
            evaluate = _at(calls, f"evaluate {run}.pred.zarr --out {run}.metrics.json")
            plot = _at(calls, f"plot map {run}.pred.zarr", f"--out {run}.map.png")
            assert prep < split < train < predict < min(evaluate, plot, summary)
    assert len(calls) == 1 + 1 + 2 + 4 * 4 + 2  # fetch, prep, splits, 4 runs × 4 steps, 2 summaries
    for name in ("svm.summary.json", "rf.summary.json", "svm-s1.metrics.json", "rf-s0.map.png"):
        assert (root / "runs" / name).is_file()


def test_second_run_does_nothing(fake):
    make, root = fake
    make()
    assert make() == []
    question = subprocess.run(["make", "-q", "-f", str(MAKEFILE), f"HSI={root / 'bin' / 'hsi'}", "MODELS=svm rf",
                               "SEEDS=0 1", "OUT=runs"], cwd=root, capture_output=True)
    assert question.returncode == 0, "make -q: everything is up to date"


def test_a_newer_split_reruns_only_its_seed(fake):
    make, root = fake
    make()
    _later(root / "runs" / "salinasA.zarr" / "splits" / "r0.05-s1" / "zarr.json", root / "runs")
    assert _short(make()) == sorted([
        "train runs/salinasA.zarr/splits/r0.05-s1", "train runs/salinasA.zarr/splits/r0.05-s1",
        "predict runs/svm-s1.safetensors", "predict runs/rf-s1.safetensors",
        "evaluate runs/svm-s1.pred.zarr", "evaluate runs/rf-s1.pred.zarr",
        "plot runs/svm-s1.pred.zarr", "plot runs/rf-s1.pred.zarr",
        "evaluate runs/svm-s0.pred.zarr", "evaluate runs/rf-s0.pred.zarr",  # the two summaries
    ])
    assert make() == []


def test_a_newer_checkpoint_reruns_its_prediction_and_summary(fake):
    make, root = fake
    make()
    _later(root / "runs" / "rf-s0.safetensors", root / "runs")
    assert _short(make()) == ["evaluate runs/rf-s0.pred.zarr", "evaluate runs/rf-s0.pred.zarr",
                              "plot runs/rf-s0.pred.zarr", "predict runs/rf-s0.safetensors"]


def test_targets_and_per_model_options(fake):
    make, _ = fake
    calls = make("summaries", TRAIN_ARGS="--threads 2", TRAIN_ARGS_rf="--epochs 3")
    assert not any(call.startswith("plot") for call in calls), "summaries need no figures"
    trains = [call for call in calls if call.startswith("train")]
    assert len(trains) == 4 and all("--threads 2" in call for call in trains)
    assert sorted(("--epochs 3" in call, "--model rf" in call) for call in trains) == [(False, False)] * 2 + [
        (True, True)] * 2


# -- the real pipeline ---------------------------------------------------------------------------


def _plot_registered() -> bool:
    from hsicli.cli.commands import COMMANDS

    return "plot" in dict(COMMANDS)


@pytest.mark.slow
def test_make_on_salinas_a_then_nothing(tmp_path):
    if not SALINAS_A.is_file():
        pytest.skip(f"SalinasA is not in {SALINAS_A.parent}")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HSI_DATA_DIR": str(SALINAS_A.parents[1]),
           "OMP_NUM_THREADS": "1"}
    # The plot step joins `all` once `hsi plot` is registered; until then the rest runs on its own.
    targets = [] if _plot_registered() else ["metrics", "summaries"]
    args = ["make", "-C", str(MAKEFILE.parent), f"OUT={tmp_path / 'runs'}", "MODELS=svm rf", "SEEDS=0 1",
            """TRAIN_ARGS_rf=--model-args '{"n_estimators": 20}'""", *targets]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr
    runs = tmp_path / "runs"
    for model in ("svm", "rf"):
        summary = json.loads((runs / f"{model}.summary.json").read_text())
        assert summary["runs"] == 2 and summary["oa"]["mean"] > 0.85 and summary["oa"]["std"] >= 0
        for seed in (0, 1):
            metrics = json.loads((runs / f"{model}-s{seed}.metrics.json").read_text())
            assert metrics["model"] == model and metrics["split"] == f"r0.05-s{seed}"
            if not targets:
                assert (runs / f"{model}-s{seed}.map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0 and "hsi " not in second.stdout, second.stdout
    assert subprocess.run([*args, "-q"], env=env, capture_output=True).returncode == 0


def test_examples_find_the_shared_data_as_the_top_makefile_does(tmp_path):
    """Run offline: `hsi fetch` in the recipes sees HSI_DATA_DIR at ../shared/data, unless it is set."""
    show = ["make", "-s", "-f", str(MAKEFILE), "--eval", "show-data-dir: ; @echo \"[$$HSI_DATA_DIR]\"", "show-data-dir"]
    env = {key: value for key, value in os.environ.items() if key != "HSI_DATA_DIR"}
    shared = REPO.parent / "shared" / "data"
    found = subprocess.run(show, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60).stdout.strip()
    assert found == f"[{shared if shared.is_dir() else ''}]"
    own = subprocess.run(show, cwd=tmp_path, env={**env, "HSI_DATA_DIR": "/mine"}, capture_output=True, text=True,
                         timeout=60).stdout.strip()
    assert own == "[/mine]"
    ignored = subprocess.run(["git", "check-ignore", "-q", "examples/runs/svm-s0.safetensors"], cwd=REPO)
    assert ignored.returncode == 0, "examples/runs/ (make -C examples) is git-ignored"


def test_slurm_cpus_follow_the_cluster_or_the_variable(tmp_path):
    """The submit scripts' CPUs per task: $CPUS, else 4 or the smallest node's count if lower; the
    CPU job scripts request none themselves (a 2-CPU cluster would leave 4 pending for ever)."""
    script = REPO / "examples" / "slurm" / "cpus.sh"
    fake = tmp_path / "bin"
    fake.mkdir()

    def cpus(nodes: str | None, **env: str) -> str:
        # `sinfo --Node --noheader --format=%c`: one CPU count per node; None: no cluster answers.
        (fake / "sinfo").write_text("#!/bin/sh\nexit 1\n" if nodes is None else f"#!/bin/sh\nprintf '{nodes}'\n")
        (fake / "sinfo").chmod(0o755)
        path = f"{fake}:/usr/bin:/bin"
        done = subprocess.run(["sh", str(script)], env={"PATH": path, **env}, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert cpus("2\n2\n") == "2" and cpus("8\n2\n") == "2" and cpus("16\n") == "4"
    assert cpus(None) == "4"  # no cluster answers: the default
    assert cpus("2\n", CPUS="3") == "3"
    for job in (REPO / "examples" / "slurm").glob("*.sbatch"):
        requested = re.findall(r"^#SBATCH --cpus-per-task=(\d+)", job.read_text(), flags=re.M)
        assert job.name == "train-torchrun.sbatch" or requested in ([], ["1"]), job.name  # torchrun: a GPU node's
