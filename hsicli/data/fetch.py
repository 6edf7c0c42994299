"""`hsi fetch`: find a known scene on disk or download it, verified.

Where files are looked for, in order: `$HSI_DATA_DIR`, the caller's extra roots, then the
download folder itself (an earlier fetch), each also one folder down (`ROOT/salinasA/...`).
Files found there are used in place. Missing files are downloaded with urllib into
`DEST/NAME/FILE.part`, resumed with an HTTP Range request when a `.part` is left from an
interrupted run (restarted cleanly when the server ignores the range), checked against the
registry's size and sha256, and only then renamed to their final name, so a killed download
never leaves a file that looks complete. `DEST/NAME/hsi-fetch.json` records the address and
the sha256 actually seen; files the registry has no checksum for are verified against it later.

`mirror` (or `$HSI_FETCH_MIRROR`) replaces every address by `MIRROR/NAME/FILE`: a web (or
file://) copy of a data folder, for clusters without internet access and for tests.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hsicli.about import __version__
from hsicli.data.datasets import (
    RECEIPT_NAME,
    DatasetInfo,
    RemoteFile,
    data_dir,
    get_dataset,
    locate,
    sha256_file,
    verify_local,
)
from hsicli.errors import HsiError
from hsicli.store.atomic import atomic_path, write_lock

MIRROR_ENV = "HSI_FETCH_MIRROR"
_CHUNK = 1 << 20

Progress = Callable[[int, int | None], None]


class _SourceFailed(Exception):
    """One address did not deliver the file (network or HTTP error); the next one is tried."""


def default_dest() -> Path:
    """Where downloads go unless told otherwise: `$XDG_CACHE_HOME/hsicli/datasets`."""
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache) if cache else Path.home() / ".cache") / "hsicli" / "datasets"


def sources(info: DatasetInfo, file: RemoteFile, mirror: str | None) -> list[str]:
    """The addresses to try for `file`, in order."""
    if mirror:
        return [f"{mirror.rstrip('/')}/{info.name}/{file.name}"]
    return [url for url in (file.url, *file.mirrors) if url]


def fetch(
    name: str | DatasetInfo,
    dest: Path,
    *,
    roots: list[Path] | None = None,
    progress: Progress | None = None,
    timeout: float = 60,
    mirror: str | None = None,
    on_message: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Paths of every file of the scene ({file name: path}), downloading what is not on disk.

    `progress(bytes_done, bytes_total)` is called while a file downloads (total None when the
    server does not say); `on_message` receives one line per file found or downloaded.
    """
    info = name if isinstance(name, DatasetInfo) else get_dataset(name)
    say = on_message or (lambda message: None)
    mirror = mirror or os.environ.get(MIRROR_ENV, "").strip() or None
    target = Path(dest) / info.name
    search = [root for root in (data_dir(), *(roots or [])) if root is not None] + [Path(dest)]

    found: dict[str, Path] = {}
    missing: list[RemoteFile] = []
    for file in info.unique_files():
        path = locate(info, file, search)
        if path is None:
            missing.append(file)
        else:
            found[file.name] = path
    if not missing:
        return found

    manual = [file.name for file in missing if not sources(info, file, mirror)]
    if manual:
        raise HsiError(
            f"{info.name}: no download address for {', '.join(manual)}",
            hint=f"get {'them' if len(manual) > 1 else 'it'} from {info.homepage or 'the publisher'} "
            f"into {target} (or $HSI_DATA_DIR/{info.name}) and rerun; the other files are then fetched",
        )

    target.mkdir(parents=True, exist_ok=True)
    # Concurrent fetches (a SLURM job array) take turns; a file finished meanwhile is reused.
    with write_lock(target):
        for file in missing:
            final = target / file.name
            if final.is_file():
                verify_local(file, final)
                found[file.name] = final.absolute()
                continue
            found[file.name] = _download(info, file, target, sources(info, file, mirror), progress, timeout, say)
    return found


def _download(
    info: DatasetInfo,
    file: RemoteFile,
    target: Path,
    urls: list[str],
    progress: Progress | None,
    timeout: float,
    say: Callable[[str], None],
) -> Path:
    final = target / file.name
    part = target / f"{file.name}.part"
    failures: list[str] = []
    for url in urls:
        say(f"downloading {file.name} from {url}")
        try:
            _transfer(url, part, progress, timeout, say)
        except _SourceFailed as exc:
            failures.append(f"{url}: {exc}")
            continue
        size = part.stat().st_size
        seen = sha256_file(part)
        if (file.size is not None and size != file.size) or (file.sha256 is not None and seen != file.sha256):
            part.unlink()
            failures.append(
                f"{url} sent {size} bytes with sha256 {seen}, expected "
                f"{file.size if file.size is not None else 'any size'} with sha256 {file.sha256}"
            )
            continue
        os.replace(part, final)
        _record(target, info, file, url, seen, size)
        return final.absolute()
    kept = f"; the partial download {part} is kept, rerun to resume" if part.exists() else ""
    raise HsiError(
        f"could not fetch {file.name} of {info.name}: " + "; ".join(failures),
        hint="check the network or the address"
        + kept
        + f", or put the file in $HSI_DATA_DIR/{info.name} or serve a copy with ${MIRROR_ENV}",
    )


def _transfer(url: str, part: Path, progress: Progress | None, timeout: float, say: Callable[[str], None]) -> None:
    """Append the rest of `url` to `part` (or restart it), leaving what arrived on failure."""
    for _ in range(2):  # a second round only after the server could not resume
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"hsicli/{__version__} (python-urllib)"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # the .part is not a prefix the server can extend
                say(f"{url} refused to resume at byte {offset}; restarting")
                part.unlink()
                continue
            raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _SourceFailed(str(getattr(exc, "reason", exc))) from None
        with response:
            status = getattr(response, "status", None) or 200  # file:// answers without a status
            if offset and status == 206 and _range_start(response) != offset:
                say(f"{url} answered another range than asked; restarting")
                part.unlink()
                continue
            if offset and status != 206:  # the whole file follows: start over, cleanly
                say(f"{url} ignored the range request; restarting from the first byte")
                offset = 0
            length = response.headers.get("Content-Length", "")
            total = offset + int(length) if length.isdigit() else None
            done = offset
            try:
                with open(part, "ab" if offset else "wb") as out:
                    if progress:
                        progress(done, total)
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            except (OSError, http.client.HTTPException) as exc:
                raise _SourceFailed(f"transfer broke off after {done} bytes ({exc})") from None
        if total is not None and done < total:
            raise _SourceFailed(f"connection closed after {done} of {total} bytes")
        return
    raise _SourceFailed("the server could not resume the download twice in a row")


def _range_start(response) -> int | None:
    """First byte of a 206 answer, from `Content-Range: bytes START-END/TOTAL`."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _record(target: Path, info: DatasetInfo, file: RemoteFile, url: str, sha256: str, size: int) -> None:
    """Add the file to the folder's receipt (rewritten atomically)."""
    path = target / RECEIPT_NAME
    try:
        receipt = json.loads(path.read_text())
        files = dict(receipt["files"])
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    files[file.name] = {
        "url": url,
        "sha256": sha256,
        "size": size,
        "checked_against_registry": file.sha256 is not None,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    receipt = {"dataset": info.name, "hsicli_version": __version__, "files": files}
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(receipt, indent=2) + "\n")
