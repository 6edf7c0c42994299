"""Data-parallel training with `torch.distributed`, launched by `torchrun` or by SLURM's `srun`.

We use the launchers users already have and never start processes ourselves (DESIGN.md §4):

- `torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
- `srun -n N` sets SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID in each task of a job step; the
  rendezvous address is then the first node of SLURM_STEP_NODELIST (or SLURM_NODELIST) and the port
  is derived from the job id, unless MASTER_ADDR / MASTER_PORT are set. A batch script itself is
  not a step (SLURM_STEP_ID is unset there, although SLURM_NTASKS is), so `hsi train` run directly
  in an `sbatch -n 2` script trains on one process instead of waiting for a second rank forever.

Batches: `--batch-size` stays the global batch of the paper's protocol. The epoch's permutation
(the same on every rank, seeded from (seed, epoch)) is padded by wrapping to a multiple of the
world size, and rank r takes every world-th index of it, in consecutive batches of
ceil(batch / world); so the union over ranks of batch k is a contiguous slice of the permutation,
every rank runs the same number of steps (collectives never wait for a rank that has finished),
and with one process the batches are exactly those of the plain loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from hsicli.errors import HsiError

# Ports 29500 + (job id mod 2000): two jobs sharing a node rarely collide, and the range stays
# clear of the ephemeral ports (32768+) the kernel hands out.
BASE_PORT = 29500
PORT_SPAN = 2000
# How long ranks wait for each other in a collective before giving up with an error.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # "single" | "torchrun" | "slurm"

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise HsiError(
            f"environment variable {name} should be an integer, found {value!r}",
            hint="launch with torchrun or srun, which set it, or unset it",
        ) from None


def detect_world(environ: Mapping[str, str] | None = None) -> World:
    """The rank and world size set by torchrun (preferred) or by an srun job step."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        world = World(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                      "torchrun")
    elif "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        tasks = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
        world = World(_int(env, "SLURM_PROCID"), _int(env, tasks) if tasks in env else 1,
                      _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0, "slurm")
    else:
        return World()
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise HsiError(
            f"{world.launcher} set rank {world.rank} of a world of {world.size} processes",
            hint="the rank must lie in 0 .. world size - 1; check the launcher's variables",
        )
    return world if world.size > 1 else World()


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[03-05,09],cpu1` -> `gpu03` (zero padding kept)."""
    match = re.match(r"\s*([^,\[\s]+)(?:\[([^\]]+)\])?", nodelist)
    if not match:
        raise HsiError(f"cannot read a host name from the SLURM node list {nodelist!r}",
                       hint="set MASTER_ADDR to the first node's address")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + re.split(r"[-,]", ranges, maxsplit=1)[0]


def rendezvous(world: World, environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """(MASTER_ADDR, MASTER_PORT): the launcher's, else derived from the SLURM job."""
    env = os.environ if environ is None else environ
    if "MASTER_ADDR" in env:
        address = env["MASTER_ADDR"]
    elif world.launcher == "slurm":
        address = first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST") or "")
    else:
        raise HsiError("MASTER_ADDR is not set for a distributed run", hint="launch with torchrun or srun")
    if "MASTER_PORT" in env:
        port = _int(env, "MASTER_PORT")
    elif "SLURM_JOB_ID" in env:
        port = BASE_PORT + _int(env, "SLURM_JOB_ID") % PORT_SPAN
    else:
        raise HsiError("MASTER_PORT is not set for a distributed run", hint="set MASTER_PORT or launch with torchrun")
    return address, port


def rank_device(device, world: World):
    """The device of this rank: with several GPUs on a node, GPU LOCAL_RANK (modulo their count)."""
    import torch

    if device.type != "cuda" or not world.distributed:
        return device
    index = world.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextlib.contextmanager
def process_group(world: World, device) -> Iterator[None]:
    """Join the process group for the duration of a run (nothing to do on one process).

    gloo on CPU, nccl on CUDA devices. The group is destroyed on the way out, errors included, so
    a failed rank does not leave the others waiting until the timeout.
    """
    if not world.distributed:
        yield
        return
    import torch.distributed as dist

    address, port = rendezvous(world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=world.rank,
                            world_size=world.size, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def wrap_model(model, world: World, device):
    """The model as the training step sees it: DistributedDataParallel across ranks, else itself.

    Buffers (batch-norm statistics) follow rank 0's at each forward, as in DDP's default.
    """
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def rank_batches(order: np.ndarray, batch_size: int, world: World, *, balanced: bool = False) -> list[np.ndarray]:
    """This rank's batches of one epoch, from the epoch's permutation `order` (same on all ranks).

    `balanced`: as many batches, but of sizes that differ by one at most. 200 pixels at batch 64
    make four batches of 50 instead of three of 64 and one of 8, whose step is as long as the
    others under Adam but from an eighth of their pixels, and whose batch-norm statistics weigh in
    the running ones: on 200 synthetic pixels ELS2T stopped fitted after 61 epochs at loss 0.091 with
    the batch of 8 (its checkpoint 95.5 % right on them), after 53 at 0.015 with four of 50 (100 %);
    SSFTT after 64 at 0.066 and after 44 at 0.038."""
    if world.size == 1:
        mine, per_batch = order, batch_size
    else:
        padded_size = math.ceil(order.size / world.size) * world.size
        padded = np.resize(order, padded_size)  # repeats from the start, as torch's DistributedSampler
        mine = padded[world.rank :: world.size]
        per_batch = math.ceil(batch_size / world.size)
    if balanced and mine.size:
        return np.array_split(mine, math.ceil(mine.size / per_batch))
    return [mine[start : start + per_batch] for start in range(0, mine.size, per_batch)]


def rank_slice(size: int, world: World) -> slice:
    """This rank's share of `size` evaluation items: every world-th one, starting at the rank."""
    return slice(world.rank, size, world.size)


def all_reduce_sum(values: Sequence[float], world: World, device=None) -> np.ndarray:
    """Element-wise sum of `values` over all ranks (float64); the values themselves on one process."""
    if not world.distributed:
        return np.asarray(values, dtype=np.float64)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def any_rank(flag: bool, world: World, device=None) -> bool:
    """True on every rank when `flag` is true on at least one: ranks leave a loop together."""
    if not world.distributed:
        return bool(flag)
    return bool(all_reduce_sum([float(flag)], world, device)[0] > 0)


def barrier(world: World, device=None) -> None:
    """Wait until every rank gets here (a sum of nothing, so it works the same on gloo and nccl)."""
    if world.distributed:
        all_reduce_sum([0.0], world, device)


def is_main(world: World | None = None) -> bool:
    """Whether this process writes outputs and logs: rank 0, or the only process."""
    return (world or detect_world()).is_main
