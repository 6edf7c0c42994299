"""Atomic writes and write locks for artifacts (DESIGN.md §1).

Every artifact is built under a hidden temporary name beside its destination and renamed into
place only when complete, so a job killed mid-write never leaves something that looks finished.
Replacing an existing file (`--overwrite`) is one rename onto it; a store (a directory, which a
rename cannot replace) is moved aside first, under a name that says it is the previous version
(`.NAME.prev-*`), and deleted only after the new one is in place. A writer killed between the two
renames leaves the previous version to be put back, never removed (`restore_or_remove_abandoned`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from hsicli.errors import HsiError, OutputExistsError, StoreError

TMP_MARK = ".tmp-"
PREV_MARK = ".prev-"  # a replaced store moved aside while its replacement goes in
# `.NAME.tmp-PID.START.HOST-RANDOM`: the writer's process id, its start time (clock ticks after
# boot) and a hash of its host name, so a leftover's writer can be told dead or alive.
_WRITER = re.compile(r"(?:\.tmp-|\.prev-)(\d+)\.(\d+)\.([0-9a-f]{8})-[0-9a-f]{8}$")
RUNNING, GONE, UNKNOWN = "running", "gone", "unknown"


def plain_file_mode() -> int:
    """The mode an ordinary new file gets here (0o666 less the umask), for writers that pick their own."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def temporary_sibling(path: Path, mark: str = TMP_MARK) -> Path:
    """A hidden name in the same directory (same filesystem, so rename is atomic) naming its writer."""
    pid = os.getpid()
    return path.parent / f".{path.name}{mark}{pid}.{_start_ticks(pid) or 0}.{_host_hash()}-{uuid.uuid4().hex[:8]}"


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and (TMP_MARK in path.name or PREV_MARK in path.name)


def previous_version_of(path: Path) -> Path | None:
    """The artifact a `.NAME.prev-*` leftover was moved aside from, or None for another leftover."""
    name = path.name
    return path.parent / name[1 : name.rindex(PREV_MARK)] if name.startswith(".") and PREV_MARK in name else None


def _host_hash() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, Linux's /proc), or None: no such
    process, a zombie (it has exited), or no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return None if fields[0] in "ZX" else int(fields[19])


def temporary_writer(path: Path) -> tuple[str, int | None]:
    """(RUNNING, GONE or UNKNOWN, the writer's pid) of a temporary artifact. UNKNOWN: written on
    another host, by an older hsicli (no writer in the name) or without /proc to check."""
    match = _WRITER.search(path.name)
    if match is None:
        return UNKNOWN, None
    pid, started, host = int(match[1]), int(match[2]), match[3]
    if host != _host_hash():
        return UNKNOWN, pid
    if Path("/proc/self/stat").exists():
        return (RUNNING if _start_ticks(pid) == started else GONE), pid  # a reused pid started later
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return GONE, pid
    except PermissionError:
        pass
    return UNKNOWN, pid


def find_temporaries(path: Path, depth: int) -> list[Path]:
    """Temporaries left for the artifact at `path` (its hidden siblings `.NAME.tmp-*`) and, for a
    directory, inside it down to `depth` levels (layers, shard markers). A temporary's own content
    is not searched."""
    path = Path(path)
    found = sorted(p for mark in (TMP_MARK, PREV_MARK) for p in path.parent.glob(f".{glob.escape(path.name)}{mark}*"))
    level = [path] if path.is_dir() and not path.is_symlink() else []
    for _ in range(depth):
        below = []
        for folder in level:
            with contextlib.suppress(OSError):
                for entry in sorted(folder.iterdir()):
                    if is_temporary(entry):
                        found.append(entry)
                    elif entry.is_dir() and not entry.is_symlink():
                        below.append(entry)
        level = below
    return found


def restore_or_remove_abandoned(temporaries: list[Path]) -> list[tuple[Path, str]]:
    """Deal with the temporaries whose writer is GONE (never a running or unknown one's): a
    previous version whose artifact is missing (its replacement never went in) is renamed back,
    every other one removed. Returns (temporary, "restored" or "removed") for each."""
    done = []
    for path in temporaries:
        if temporary_writer(path)[0] != GONE:
            continue
        original = previous_version_of(path)
        if original is not None and not original.exists():
            os.rename(path, original)
            done.append((path, "restored"))
        else:
            _remove(path)
            done.append((path, "removed"))
    return done


def check_writable(path: Path, overwrite: bool, what: str = "output") -> None:
    """Refuse to replace an existing output unless asked (never silently)."""
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{what} {path} already exists",
            hint="pass --overwrite to replace it, or --out to write elsewhere",
        )
    if not path.parent.exists():
        raise StoreError(
            f"cannot write {path}: directory {path.parent} does not exist",
            hint="create the directory first or choose another --out",
        )


def up_to_date(path: Path, key: str, read_key: Callable[[Path], str | None], overwrite: bool) -> bool:
    """Whether `path` already holds the result of this exact request (re-running is a no-op).

    False when it must be built (absent, or --overwrite); an output made from other inputs or
    options is never replaced silently: OutputExistsError.
    """
    if overwrite or not path.exists():
        return False
    try:
        existing = read_key(path)
    except HsiError:
        existing = None
    if existing == key:
        return True
    raise OutputExistsError(
        f"output {path} already exists and was made from other inputs or options",
        hint="pass --overwrite to replace it, or --out to write elsewhere",
    )


def _settle_zarr_writes() -> None:
    """Wait for the chunk writes zarr still has in flight: a failed write returns as soon as one
    chunk fails while asyncio.gather lets the others run on, and removing the temporary before
    they land leaves it behind."""
    if "zarr" not in sys.modules:
        return
    import asyncio

    from zarr.core.sync import sync

    async def drain() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    sync(drain())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        _settle_zarr_writes()
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a finished temporary artifact into place, replacing the old one only if allowed."""
    if final.exists():
        if not overwrite:
            _remove(tmp)
            raise OutputExistsError(
                f"output {final} already exists", hint="pass --overwrite to replace it"
            )
        if not tmp.is_dir():
            os.replace(tmp, final)  # a file is replaced in one atomic step: never a moment without it
        else:
            old = temporary_sibling(final, PREV_MARK)
            os.rename(final, old)
            os.rename(tmp, final)
            _remove(old)
    else:
        try:
            # A directory rename onto an existing path would fail or merge; files are replaced.
            os.rename(tmp, final)
        except OSError as exc:
            _remove(tmp)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputExistsError(
                    f"output {final} appeared while it was being written",
                    hint="another process wrote it; rerun with --overwrite if that is intended",
                ) from None
            raise
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to build the artifact at; publish it on success, remove it on error."""
    final = Path(final)
    check_writable(final, overwrite)
    tmp = temporary_sibling(final)
    try:
        yield tmp
    except OSError as exc:  # a full disk, a quota, a file-size limit: name what could not be written
        _remove(tmp)
        raise StoreError(
            f"could not write {final}: {exc.strerror or exc}",
            hint="check free disk space, quotas and permissions; nothing was written",
        ) from None
    except BaseException:
        _remove(tmp)
        raise
    publish(tmp, final, overwrite)


@contextlib.contextmanager
def write_lock(artifact: Path) -> Iterator[None]:
    """An exclusive advisory lock held while a writer adds to an existing store or folder.

    Concurrent writers (two `hsi split` on one store, shard writers and `--finalize`) serialise
    here instead of interleaving; the lock dies with the process, so a killed writer never
    leaves a stale lock behind. The lock file is the hidden sibling `.NAME.lock`, outside the
    store: a file inside a zarr hierarchy makes zarr warn that it is no part of it.
    """
    lock_path = Path(artifact).parent / f".{Path(artifact).name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
