"""`hsi fetch NAME`: a known scene on disk, downloaded and verified when needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hsicli.cli import completion
from hsicli.cli.common import JsonOpt, Log, QuietOpt, VerboseOpt, emit
from hsicli.cli.options import ranged_option


class _Display:
    """Download progress on stderr: a rich bar on a terminal, a line per quarter otherwise."""

    def __init__(self, log: Log):
        self.log = log
        self.bar = None
        self.task = None
        self.quarter = 0  # quarters of the current file already reported
        if log.tty and not log.quiet:
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress(
                *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                console=log.console, transient=True,
            )  # fmt: skip

    def __enter__(self) -> _Display:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def message(self, text: str) -> None:
        """A new file (or a restart): log the line and start a fresh bar."""
        self.log.info(text)
        self.quarter = 0
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(text.split(" from ")[0], total=None)

    def progress(self, done: int, total: int | None) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total)
        elif total and not self.log.quiet:
            quarter = 4 * done // total
            if quarter > self.quarter:
                self.quarter = quarter
                self.log.info(f"  {25 * quarter}% ({_size(done)} of {_size(total)})")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def fetch(
    name: Annotated[
        str, typer.Argument(help="Scene name or alias (see `hsi datasets`).", autocompletion=completion.dataset_names)
    ],
    dest: Annotated[
        Optional[Path],
        typer.Option("--dest", help="Download folder; files go to DEST/NAME/ (default: ~/.cache/hsicli/datasets)."),
    ] = None,
    mirror: Annotated[
        Optional[str],
        typer.Option("--mirror", help="Base URL serving NAME/FILE copies instead of the canonical addresses "
                     "(default: $HSI_FETCH_MIRROR)."),
    ] = None,  # fmt: skip
    timeout: Annotated[float, ranged_option("--timeout", gt=0.0, help="Seconds without data before an address fails.")] = 60,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Find a known scene in $HSI_DATA_DIR or download it, checking sizes and sha256.

    Prints the path of the scene's cube file, so it chains into prep:
    hsi prep "$(hsi fetch salinasA)" --pca 30. With --json: every file of the scene.
    Files already in $HSI_DATA_DIR (or DEST) are used in place; an interrupted download resumes.
    """
    from hsicli.data.datasets import get_dataset
    from hsicli.data.fetch import default_dest
    from hsicli.data.fetch import fetch as fetch_scene

    log = Log(quiet, verbose)
    info = get_dataset(name)
    with _Display(log) as display:
        paths = fetch_scene(
            info,
            dest if dest is not None else default_dest(),
            progress=display.progress,
            timeout=timeout,
            mirror=mirror,
            on_message=display.message,
        )
    cube = paths[info.cube.name]
    log.info(f"{info.title}: {len(paths)} file(s) ready, cube {cube}")
    emit(cube, json_out, dataset=info.name, files={file: str(path) for file, path in paths.items()})
