"""Memory bounds (issue 17 §1): what a run needs, estimated from the data and the settings before
anything is allocated, against what this process may still use. A run that cannot fit is refused
in one line instead of growing until the kernel's OOM killer ends it (or someone else's job).

The estimates are lower bounds: the scene cube and its padded copy, each batch's float32 windows,
the activations autograd keeps for the backward pass (`ModelSpec.activations_per_input` and
`activations_per_pixel`, measured per model) and the weights with their gradients and two optimiser moments. A refused run could not
have fit; one that passes may still need more (framework overhead, temporaries). Nothing here
imports torch, so a refusal takes milliseconds.
"""

from __future__ import annotations

import resource
from pathlib import Path

from hsicli.errors import HsiError

FLOAT32 = 4
ROOT_CGROUP = Path("/sys/fs/cgroup")


def _kilobytes(path: str, field: str) -> int | None:
    """A `Field:  N kB` line of a /proc file, in bytes."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# cgroup v2 (one hierarchy) and v1 (the memory controller's): mount, limit file, usage file.
_CGROUPS = ((ROOT_CGROUP, "", "memory.max", "memory.current"),
            (ROOT_CGROUP / "memory", "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"))


def _cgroup_room() -> int | None:
    """The smallest memory limit less usage of this process's cgroup and its ancestors (v2 or v1;
    inside a container the mount is the process's own cgroup)."""
    try:
        lines = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    except OSError:
        return None
    room = None
    for mount, controller, limit_file, usage_file in _CGROUPS:
        relative = next((path for _, names, path in lines if controller in names.split(",")), "/")
        folder = mount / relative.lstrip("/")
        for level in (folder, *folder.parents[:len(folder.relative_to(mount).parts)]):
            try:
                limit = (level / limit_file).read_text().strip()
                if limit != "max" and int(limit) < 2**60:  # v1 writes 'no limit' as a huge number
                    left = int(limit) - int((level / usage_file).read_text())
                    room = left if room is None else min(room, left)
            except (OSError, ValueError):
                continue
    return room


def available_memory() -> tuple[int, str] | None:
    """(bytes this process may still allocate, what limits it): the smallest of the kernel's
    MemAvailable, the address-space limit (`ulimit -v`) less the address space in use, and the
    cgroup's memory.max less its usage. None where none of them can be read."""
    limits = []
    free = _kilobytes("/proc/meminfo", "MemAvailable:")
    if free is not None:
        limits.append((free, "available"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _kilobytes("/proc/self/status", "VmSize:") or 0
        limits.append((max(soft - used, 0), "left under the address-space limit (ulimit -v)"))
    room = _cgroup_room()
    if room is not None:
        limits.append((max(room, 0), "left under the cgroup's memory limit"))
    return min(limits) if limits else None


def _gigabytes(size: float) -> str:
    return f"{size / 1e9:.3g} GB"


def require(need: int, what: str, hint: str) -> None:
    """HsiError unless `need` bytes fit in the memory available: `what needs ~X GB, Y GB available`."""
    room = available_memory()
    if room is not None and need > room[0]:
        raise HsiError(f"{what} needs ~{_gigabytes(need)}, {_gigabytes(room[0])} {room[1]}", hint=hint)


def windows_bytes(batch: int, bands: int, patch: int) -> int:
    """One batch of float32 P×P windows of T bands."""
    return batch * bands * patch * patch * FLOAT32


def padded_bytes(height: int, width: int, bands: int, patch: int) -> int:
    """A float32 (H, W, T) cube reflect-padded by the patch radius on every side."""
    return (height + patch - 1) * (width + patch - 1) * bands * FLOAT32


def weights_bytes(header: dict) -> int:
    """Bytes of the tensors a safetensors header lists (their extent in the file)."""
    return sum(entry["data_offsets"][1] - entry["data_offsets"][0] for entry in header.values())


def require_training_fits(spec, *, shape: tuple[int, int, int], patch: int, batch: int, amp: bool,
                          init_weights: int = 0) -> None:
    """Refuse a training run whose data, batches and weights could not fit in memory."""
    height, width, bands = shape
    need = height * width * bands * FLOAT32  # the cube, read whole
    what = f"training {spec.name} on a {height}×{width}×{bands} scene"
    if spec.kind.reads_windows:
        # The padded copy the sampler cuts windows from, its 8 dihedral offset tables (int64), and
        # each batch with the activations kept for the backward pass (about half of them in bf16).
        kept = max(spec.activations_per_input * bands, spec.activations_per_pixel) / (2 if amp else 1)
        need += padded_bytes(height, width, bands, patch) + 8 * patch * patch * 8
        need += windows_bytes(batch, bands, patch) + int(windows_bytes(batch, 1, patch) * kept)
        what = f"a {patch}×{patch} patch of {bands} bands at batch {batch} ({spec.name}, {height}×{width} scene)"
    need += 4 * init_weights  # weights, gradients, two optimiser moments
    require(need, what, hint="use a smaller --patch or --batch-size" if spec.kind.reads_windows
            else "use a smaller scene or a machine with more memory")


def require_prediction_fits(source: Path, *, bands: int, patch: int, batch: int, weights: int) -> None:
    """Refuse to predict with a checkpoint whose recorded input (bands, patch) and batch could not fit."""
    require(windows_bytes(batch, bands, patch) + weights,
            f"{source.name}: a {patch}×{patch} patch of {bands} bands at batch {batch}",
            hint="use a smaller --batch-size; a checkpoint that records such an input is damaged")


def require_scene_prediction_fits(source: Path, *, shape: tuple[int, int, int], patch: int, classes: int) -> None:
    """Refuse to predict a scene whose row blocks could not fit: the pixel mask and ground truth
    (a byte per pixel each, at least), ROW_BLOCK rows of the cube padded by the patch radius, and
    their class probabilities (computed, then written)."""
    from hsicli.store.prediction import ROW_BLOCK

    height, width, bands = shape
    rows = min(ROW_BLOCK, height)
    need = 2 * height * width + padded_bytes(rows, width, bands, patch) + 2 * rows * width * classes * FLOAT32
    require(need, f"predicting a {height}×{width}×{bands} scene with {source.name} ({patch}×{patch} windows, "
            f"{classes} classes)", hint="crop the scene (hsi prep) or predict on a machine with more memory")


def require_model_fits(spec, *, bands: int, classes: int, patch: int, model_args: dict) -> None:
    """Refuse to build a model whose weights and one input window could not fit (`hsi models`
    counts them on a real model): the weights are counted on torch's meta device first."""
    import torch

    from hsicli.models.registry import create_model

    with torch.device("meta"):
        model = create_model(spec.name, bands, classes, **model_args)
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    require(weights + windows_bytes(1, bands, patch),
            f"{spec.name} for {bands} bands, {classes} classes and a {patch}×{patch} patch",
            hint="count it for fewer --bands or --classes or a smaller --patch")
