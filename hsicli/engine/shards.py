"""Sharded prediction: which rows of a scene shard I of N predicts, and proof that it did.

A large scene is predicted by N independent tasks (a SLURM job array) writing into one
prediction store made beforehand by `hsi predict --init`. Shard I owns a contiguous run of
whole row blocks — blocks are the store's chunk height, so no two shards ever write the same
chunk file and no coordination is needed while they run. Shards are numbered from 0, like
`sbatch --array=0-3`; `--shard slurm` reads the task's place in its array from SLURM.

When a shard starts it removes its own completion marker, and it writes the marker again
(atomically, under the store's write lock) only after its last row is stored. A killed task
therefore leaves no marker, and re-running it rewrites its whole region; `--finalize` accepts
the store only when the markers of all N shards are present.

Markers are small JSON files in `STORE/.shards/` (the store's lock is its sibling `.NAME.lock`), one per shard:
`I-of-N.json` with the shard, its rows, its inference seconds, host and SLURM job.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsicli.errors import StoreError, UsageError
from hsicli.store.atomic import atomic_path

MARKER_DIR = ".shards"
_MARKER_NAME = re.compile(r"^(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class Shard:
    index: int  # 0 .. count - 1
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def rows(self, height: int, block: int) -> tuple[int, int]:
        """[start, stop) rows of this shard: whole blocks of `block` rows, split as evenly as possible.

        With more shards than blocks some shards own no rows (start == stop) and only mark
        themselves done.
        """
        blocks = -(-height // block)
        first = self.index * blocks // self.count
        last = (self.index + 1) * blocks // self.count
        return min(first * block, height), min(last * block, height)


def _slurm_shard(environ: Mapping[str, str]) -> Shard:
    if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
        raise UsageError(
            "--shard slurm needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT, which are not set",
            hint="run it as a task of a SLURM job array (sbatch --array=0-3), or give --shard I/N",
        )
    try:
        task = int(environ["SLURM_ARRAY_TASK_ID"])
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
        low = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except ValueError:
        raise UsageError("SLURM's job array variables are not integers",
                         hint="give the shard explicitly with --shard I/N") from None
    offset, rest = divmod(task - low, step)
    if rest or not 0 <= offset < count:
        raise UsageError(
            f"array task {task} is not one of {count} evenly spaced tasks starting at {low}",
            hint="use a contiguous array such as --array=0-3 (a %N throttle is fine), or give --shard I/N",
        )
    return Shard(offset, count)


def parse_shard(spec: str, environ: Mapping[str, str] | None = None) -> Shard:
    """`I/N` (0 <= I < N) or `slurm` (the task's place in its SLURM job array)."""
    if spec.strip().lower() == "slurm":
        return _slurm_shard(os.environ if environ is None else environ)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match:
        raise UsageError(f"--shard expects I/N or 'slurm', got {spec!r}", hint="e.g. --shard 0/4 … --shard 3/4")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise UsageError(
            f"--shard {spec}: shard {index} does not exist among {count}",
            hint=f"shards are numbered from 0: 0/{max(count, 1)} … {max(count, 1) - 1}/{max(count, 1)}",
        )
    return Shard(index, count)


def marker_path(store: Path, shard: Shard) -> Path:
    return Path(store) / MARKER_DIR / f"{shard.index}-of-{shard.count}.json"


def read_markers(store: Path) -> list[dict[str, Any]]:
    """The completion markers present, by shard index."""
    folder = Path(store) / MARKER_DIR
    markers = []
    if folder.is_dir():
        for path in folder.iterdir():
            if _MARKER_NAME.match(path.name):
                try:
                    markers.append(json.loads(path.read_text()))
                except (OSError, ValueError) as exc:
                    raise StoreError(f"shard marker {path} is unreadable: {exc}",
                                     hint="delete it and re-run that shard") from None
    return sorted(markers, key=lambda m: m["index"])


def begin(store: Path, shard: Shard) -> None:
    """Before a shard writes: refuse a different shard count, and drop its own marker.

    Call under the store's write lock (`hsicli.store.atomic.write_lock`).
    """
    other = sorted({m["count"] for m in read_markers(store)} - {shard.count})
    if other:
        raise StoreError(
            f"{store} is being predicted in {other[0]} shards, not {shard.count}",
            hint=f"keep --shard I/{other[0]}, or start over with `hsi predict --init --overwrite`",
        )
    marker_path(store, shard).unlink(missing_ok=True)


def finish(store: Path, shard: Shard, rows: tuple[int, int], record: dict[str, Any]) -> Path:
    """After a shard's last row is stored: write its marker atomically (under the write lock)."""
    path = marker_path(store, shard)
    path.parent.mkdir(exist_ok=True)
    payload = {"index": shard.index, "count": shard.count, "rows": list(rows), **record}
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    return path


def slurm_job() -> str | None:
    """The SLURM job (array job_task) this process runs in, for the marker's record."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def check_complete(store: Path, height: int, block: int) -> list[dict[str, Any]]:
    """The markers of all N shards, each covering the rows its plan assigns; else a StoreError
    naming the missing shards and their rows."""
    markers = read_markers(store)
    if not markers:
        raise StoreError(
            f"no shard of {store} has finished",
            hint="run `hsi predict CHECKPOINT --shard I/N` for I = 0 … N-1 first, then --finalize",
        )
    count = markers[0]["count"]
    if any(m["count"] != count for m in markers):
        counts = sorted({m["count"] for m in markers})
        raise StoreError(f"{store} holds shard markers of different shard counts {counts}",
                         hint="start over with `hsi predict --init --overwrite` and one N")
    done = {m["index"] for m in markers}
    missing = [Shard(i, count) for i in range(count) if i not in done]
    if missing:
        listed = ", ".join(f"{s} (rows {a}-{b - 1})" if b > a else str(s)
                           for s in missing for a, b in [s.rows(height, block)])
        raise StoreError(
            f"{store} is incomplete: {len(missing)} of {count} shards have not finished: {listed}",
            hint="re-run those shards (`hsi predict CHECKPOINT --shard I/N`), then --finalize again",
        )
    for marker in markers:
        expected = list(Shard(marker["index"], count).rows(height, block))
        if marker["rows"] != expected:
            raise StoreError(
                f"shard {marker['index']}/{count} of {store} covered rows {marker['rows']}, expected {expected}",
                hint="the row plan changed (another hsicli version?); re-run that shard",
            )
    return markers
