"""The `hsi` command: a typer app with one module per command.

Command modules import their heavy dependencies (numpy, zarr, torch) inside the command
function, so `hsi --help` and shell completion stay instant.
"""

from __future__ import annotations

import os
import sys

import typer

from hsicli.about import __version__
from hsicli.errors import HsiError

app = typer.Typer(
    name="hsi",
    help="Composable commands for hyperspectral image classification.\n\n"
    "Each command writes its result to disk and prints its path, so commands chain in pipes:\n\n"
    "  hsi fetch salinasA | hsi prep --pca 30 | hsi split --ratio 0.05 |\n"
    "    hsi train --model litec2anet | hsi predict | hsi evaluate\n\n"
    "(about half a minute of CPU; the README's expected times cover the heavier models and protocols)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Composable commands for hyperspectral image classification."""


def _register() -> None:
    from hsicli.cli import commands, helptext  # one import; each command module stays light

    for name, function in commands.COMMANDS:
        helptext.tidy(function)
        app.command(name)(function)


_register()


def main() -> None:
    """Entry point: run the app, turning typed errors into one-line messages (DESIGN.md §1)."""
    from hsicli.cli.common import debug_enabled

    # Set before torch loads OpenMP: idle OpenMP workers sleep instead of spinning. Spinning
    # workers made `--threads 2` on a 2-core machine shared with other jobs 5-10x slower than
    # one thread (benchmarks/bench_litec2anet.py). A value set by the user wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app(prog_name="hsi")
    except HsiError as exc:
        if debug_enabled():
            raise
        print(f"Error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        if not _from_ctrl_c(exc):
            raise
        print(f"Error: {_command_name()} interrupted (Ctrl-C); no half-written output was left "
              "(each output appears only when complete)", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        if debug_enabled():
            raise
        print("Error: out of memory", file=sys.stderr)
        print("Hint: free memory or raise the limit (ulimit -v); a smaller --batch-size or --patch needs less",
              file=sys.stderr)
        sys.exit(1)
    except ImportError as exc:  # e.g. libtorch cannot be mapped under a low `ulimit -v`
        if debug_enabled():
            raise
        print(f"Error: a library could not be loaded: {exc}", file=sys.stderr)
        print("Hint: a memory limit (ulimit -v) too low to map it, or a broken installation: "
              "raise the limit or reinstall hsicli", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        if debug_enabled():
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"Error: {exc.strerror or exc}{where}", file=sys.stderr)
        print("Hint: check the path, permissions and free disk space", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line unless debugging
        if debug_enabled():
            raise
        print(f"Error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("Hint: rerun with HSI_DEBUG=1 for a traceback and report it", file=sys.stderr)
        sys.exit(1)


def _from_ctrl_c(exc: BaseException) -> bool:
    """typer turns KeyboardInterrupt into Exit(130) and that into SystemExit: look down the chain."""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _command_name() -> str:
    words = [word for word in sys.argv[1:] if not word.startswith("-")]
    return f"hsi {words[0]}" if words else "hsi"
