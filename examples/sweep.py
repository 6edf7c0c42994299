"""A sweep of `hsi` runs: a grid over the split's protocol and the run record, with seeds.

    python examples/sweep.py STORE --out DIR --grid patch=5,7,9 --seeds 0,1 --set model=litec2anet \\
        --set epochs=20 --set ratio=0.05
    hsi evaluate DIR/*.pred.zarr                        # one column per setting, mean ± std over seeds
    hsi plot sweep DIR/*.pred.zarr --x training.hyper.patch --out sweep.png

HSIseg's pseudo-label rounds (a point trains, predicts, then runs N rounds of pseudolabel → train
→ predict, each round's prediction printed after the model's):

    python examples/sweep.py STORE --out DIR --seeds 0,1,2 --set model=hsiseg --set per_class=10 \
        --set val=0 --set rounds=3
    hsi evaluate DIR/*.pred.zarr                        # the initial model, then one column per round
    hsi plot sweep DIR/*-round*.pred.zarr --x training.pseudo_round --out rounds.png

Keys are `hsicli.data.splitting.SplitRequest` fields (ratio, val, per_class, spatial, controlled,
...), `hsicli.engine.train.TrainOptions` fields (model, patch, epochs, lr, ...) or pseudo-label
settings (`rounds` N, `tau`, `zeta`, `include_eval`, `round_epochs`: `hsicli.api.PSEUDO_KEYS`);
values are JSON (`5`, `0.01`, `"svm"`, `true`) or plain words. Each point is an ordinary
idempotent run, so a rerun skips what is done. `--predict KEY=VALUE` passes a
`hsicli.engine.predict.PredictOptions` field to every point's prediction (`pixels=test`,
`amp=true`: a heavy model is scored on the test pixels alone). `--point I` runs point I only;
`--slurm FILE` writes a SLURM array script whose task I runs `--point $SLURM_ARRAY_TASK_ID`
(submit it with sbatch, then rerun this command without --slurm to list the predictions once the
array is done).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from hsicli import api


def value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def setting(text: str, many: bool):
    key, sep, values = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, [value(v) for v in values.split(",")] if many else value(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--grid", action="append", default=[], type=lambda t: setting(t, True), help="KEY=V1,V2,...")
    parser.add_argument("--set", action="append", default=[], type=lambda t: setting(t, False), help="KEY=VALUE")
    parser.add_argument("--predict", action="append", default=[], type=lambda t: setting(t, False),
                        help="KEY=VALUE: a PredictOptions field for every prediction (pixels=test, amp=true)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (split and training)")
    parser.add_argument("--point", type=int, help="run this point only (0-based)")
    parser.add_argument("--slurm", type=Path, help="write a SLURM array script for the grid instead of running it")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    points = api.sweep_points(dict(args.grid), seeds, **dict(args.set))
    if args.slurm:
        rerun = [sys.executable, str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:])]
        at = rerun.index("--slurm")
        rerun[at : at + 2] = []
        args.slurm.write_text(
            "#!/bin/bash\n"
            f"#SBATCH --job-name=hsi-sweep\n#SBATCH --array=0-{len(points) - 1}\n#SBATCH --cpus-per-task=1\n"
            f"# {len(points)} runs: " + ", ".join(p.label for p in points) + "\n"
            f"exec {shlex.join(rerun)} --point \"$SLURM_ARRAY_TASK_ID\"\n"
        )
        print(args.slurm)
        return
    chosen = [points[args.point]] if args.point is not None else points
    predict = dict(args.predict)
    made = [path for point in chosen for path in api.run_point(args.store, point, args.out, **predict)]
    for path in dict.fromkeys(made):
        print(path)


if __name__ == "__main__":
    main()
