"""Write the shell completion scripts of `hsi` (bash, zsh, fish) into this folder.

Run `make completions` (or `python completions/generate.py`) after changing the CLI;
tests/test_completions.py fails when a committed script is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.completion import get_completion_script

SHELLS = ("bash", "zsh", "fish")


def script(shell: str) -> str:
    return get_completion_script(prog_name="hsi", complete_var="_HSI_COMPLETE", shell=shell)


def main(folder: Path = Path(__file__).parent) -> None:
    for shell in SHELLS:
        (folder / f"hsi.{shell}").write_text(script(shell))
        print(folder / f"hsi.{shell}", file=sys.stderr)


if __name__ == "__main__":
    main()
