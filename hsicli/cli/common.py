"""What every command shares: option definitions, the pipe protocol, stderr logging.

The pipe protocol (DESIGN.md §1): a command whose main input is omitted or `-` reads one
path from stdin; it prints exactly one line on stdout, the absolute path of what it wrote,
or one JSON object with `--json`. Humans read stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from hsicli.cli import completion
from hsicli.errors import HsiError, UsageError



def _input_arg(complete: completion.Completer) -> Any:
    """The command's main input, which <TAB> completes with `complete`."""
    return Annotated[
        Optional[str],
        typer.Argument(help="Input path; omitted or '-' reads one path from stdin (pipes).", show_default=False,
                       autocompletion=complete),
    ]


# Shared options, defined once (rio style); inputs named by what they take.
SceneFileArg = _input_arg(completion.scene_files)
StoreArg = _input_arg(completion.stores)
StoreOrLayerArg = _input_arg(completion.stores_or_layers)
CheckpointArg = _input_arg(completion.checkpoints)
ArtifactArg = _input_arg(completion.artifacts)
OutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help="Output path (default: derived from the inputs).", show_default=False),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the path.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr: a progress line per step.")]


def read_input_path(arg: str | None, what: str = "input") -> Path:
    """The command's main input: the argument, or one path read from stdin."""
    if arg == "":
        # Path("") is ".", which would be reported as the current directory.
        raise UsageError(f"the {what} path is empty",
                         hint="a $(…) or variable that should have held the path gave nothing; see the error before it")
    if arg is not None and arg != "-":
        return Path(arg)
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            f"no {what} given",
            hint=f"give the {what} as an argument, or pipe a path into the command",
        )
    line = sys.stdin.readline().strip()
    if not line:
        raise HsiError(
            f"expected a path to the {what} on stdin, found nothing",
            hint="the previous command in the pipe probably failed; see its error above",
        )
    if line.startswith("{"):
        # The previous command ran with --json: take its path field.
        try:
            line = str(json.loads(line)["path"])
        except (ValueError, KeyError, TypeError):
            raise HsiError(
                f"expected a path to the {what} on stdin, found a JSON line without 'path'",
                hint="drop --json from the previous command in the pipe",
            ) from None
    return Path(line)


def emit(path: Path, as_json: bool = False, **fields: Any) -> None:
    """Print the one stdout line: the absolute path, or a JSON object holding it."""
    absolute = str(Path(path).absolute())
    if as_json:
        print(json.dumps({"path": absolute, **fields}, default=str), flush=True)
    else:
        print(absolute, flush=True)


class Log:
    """Human messages on stderr: rich on a terminal, timestamped plain lines otherwise."""

    def __init__(self, quiet: bool = False, verbose: bool = False):
        self.quiet, self.verbose = quiet, verbose and not quiet
        self.tty = sys.stderr.isatty()
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.console.print(message, highlight=False)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            print(f"{stamp} {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def progress(self, description: str, estimate: str | None = None):
        """Yield `update(done, total)`: a rich bar on a terminal, a plain line every PLAIN_EVERY_S
        seconds and at the end otherwise. With `estimate` (what is being timed, e.g. "training"),
        also one line with the expected duration once the first steps are timed, and again
        whenever that expectation moves by much."""
        if self.quiet:
            yield lambda done, total: None
            return
        expected = _Expectation(estimate, self.info) if estimate else None
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(description, total=None)

                def update_bar(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)
                    if expected:
                        expected.update(done, total)

                yield update_bar
            return
        last_line = [time.monotonic()]

        def update(done: int, total: int) -> None:
            if expected:
                expected.update(done, total)
            now = time.monotonic()
            if self.verbose or done >= total or now - last_line[0] >= PLAIN_EVERY_S:
                last_line[0] = now
                left = expected.left(done, total) if expected else None
                self.info(f"{description}: {done}/{total}" + (f", {duration(left)} left" if left else ""))

        yield update

    def warn(self, message: str) -> None:
        if self.tty:
            self.console.print(f"[yellow]Warning:[/] {message}", highlight=False)
        else:
            print(f"Warning: {message}", file=sys.stderr, flush=True)


PLAIN_EVERY_S = 30.0  # a progress line in logs this often
_TIMED_STEPS = 5  # steps timed, after the first (warm-up), before the first expectation
_MOVED = 1.25  # an expectation this many times longer or shorter than the last one shown is shown again,
_SETTLE_S = 15.0  # but not within this many seconds of it: the first steps' mean is noisy


class _Expectation:
    """How long a run of steps will take: steps × the mean step time measured so far (the first step,
    which warms caches up, left out); `say` gets a line when it is first known and when it moves."""

    def __init__(self, what: str, say: Callable[[str], None]):
        self.what, self.say = what, say
        self.began = time.monotonic()
        self.first: tuple[int, float] | None = None  # (steps, time) when the first step ended
        self.shown: float | None = None
        self.shown_at = 0.0

    def left(self, done: int, total: int) -> float | None:
        """Seconds still to go, once enough steps are timed."""
        if self.first is None or done - self.first[0] < _TIMED_STEPS:
            return None
        step = (time.monotonic() - self.first[1]) / (done - self.first[0])
        return step * (total - done)

    def update(self, done: int, total: int) -> None:
        if self.first is None:
            self.first = (done, time.monotonic())
            return
        left = self.left(done, total)
        if left is None or done >= total:
            return
        expected = time.monotonic() - self.began + left
        moved = self.shown is not None and not self.shown / _MOVED <= expected <= self.shown * _MOVED
        if self.shown is None or (moved and time.monotonic() - self.shown_at >= _SETTLE_S):
            step = (time.monotonic() - self.first[1]) / (done - self.first[0])
            again = "" if self.shown is None else "now "
            self.shown, self.shown_at = expected, time.monotonic()
            # `total` is the most steps the run may take: early stopping and convergence end it sooner.
            self.say(f"{self.what} {again}expected to take up to {duration(expected)} (at most {total} steps × "
                     f"{step:.3g} s; {duration(left)} left)")


def duration(seconds: float) -> str:
    """A duration as people say it: 40 s, 2 min 10 s, 3 h 5 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds < 600 else f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def command_line() -> str:
    """The command line as typed, for provenance records."""
    return " ".join(["hsi", *sys.argv[1:]])


def debug_enabled() -> bool:
    return os.environ.get("HSI_DEBUG", "") not in ("", "0")


def open_scene_early(store: Path | None = None, checkpoint: Path | None = None) -> None:
    """Open the scene store a command will read (given, or the one `checkpoint` was trained on)
    before the engine imports torch: opening checks the store's metadata in milliseconds, so a
    damaged or lying store is refused at once instead of after seconds of start-up."""
    from hsicli.store.scene import SceneStore

    if store is None and checkpoint is not None:
        from hsicli.store.checkpoint import Checkpoint

        store = Path(Checkpoint.open(checkpoint).source_store["path"])
    if store is not None:
        SceneStore.open(Path(store))
