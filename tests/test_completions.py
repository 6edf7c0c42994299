"""The committed completion scripts are current, and completion answers with the real commands."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "completions" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_script_is_current(shell):
    committed = (ROOT / "completions" / f"hsi.{shell}").read_text()
    assert committed == _generator().script(shell), "run `make completions` and commit the result"


def test_bash_completion_lists_commands_and_options():
    hsi = Path(sys.executable).parent / "hsi"
    env = {**os.environ, "_HSI_COMPLETE": "complete_bash", "COMP_WORDS": "hsi pr", "COMP_CWORD": "1"}
    words = subprocess.run([str(hsi)], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert words == ["prep", "predict"]
    env.update(COMP_WORDS="hsi split --ra", COMP_CWORD="2")
    words = subprocess.run([str(hsi)], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert words == ["--ratio"]
