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


def _complete(shell: str, line: str, cwd: Path) -> list[str]:
    """What <TAB> at the end of `line` offers, through the environment each shell's script sets."""
    hsi = Path(sys.executable).parent / "hsi"
    env = {**os.environ, "_HSI_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        words = line.split()
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(words) if line.endswith(" ") else len(words) - 1))
    else:
        env.update(_TYPER_COMPLETE_ARGS=line, _TYPER_COMPLETE_FISH_ACTION="get-args")
    out = subprocess.run([str(hsi)], env=env, cwd=cwd, capture_output=True, text=True, timeout=60).stdout
    if shell == "zsh":  # _arguments '*: :(("a" "b"))', or _files when nothing matched
        return [] if out == "_files" else [item.strip('"') for item in out.split("((", 1)[1].split("))")[0].split("\n")]
    return [item.split("\t")[0] for item in out.splitlines()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Files of each kind and a scene store with two splits, a label layer and a temporary."""
    folder = tmp_path_factory.mktemp("complete")
    for layer in ("", "splits/ratio72", "splits/spatial", "splits/.ratio72.tmp", "labels/round1"):
        (folder / "scene.zarr" / layer).mkdir(parents=True, exist_ok=True)
        (folder / "scene.zarr" / layer / "zarr.json").write_text("{}")
    for name in ("run.safetensors", "salinas.mat", "notes.txt", "epochs.jsonl"):
        (folder / name).write_text("")
    (folder / "runs").mkdir()
    return folder


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_names_of_each_kind(shell, workspace):
    assert _complete(shell, "hsi train --model cl", workspace) == ["claresnet"]
    assert _complete(shell, "hsi models hsiseg-", workspace) == [f"hsiseg-{k}" for k in ("ag", "hu", "ip", "mg", "pu")]
    assert _complete(shell, "hsi train scene.zarr --split ", workspace) == ["ratio72", "spatial"]
    assert _complete(shell, "hsi train scene.zarr --split r", workspace) == ["ratio72"]
    assert _complete(shell, "hsi train scene.zarr/splits/spatial --labels ", workspace) == ["round1"]
    assert _complete(shell, "hsi fetch salinasA", workspace) == ["salinasA"]
    assert _complete(shell, "hsi plot conf", workspace) == ["confusion"]


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_completion_offers_files_of_the_right_kind(shell, workspace):
    assert _complete(shell, "hsi predict ", workspace) == ["run.safetensors", "runs/", "scene.zarr/"]
    assert _complete(shell, "hsi train --init r", workspace) == ["run.safetensors", "runs/"]
    assert _complete(shell, "hsi prep ", workspace) == ["runs/", "salinas.mat", "scene.zarr/"]
    assert _complete(shell, "hsi split ", workspace) == ["runs/", "scene.zarr"]
    assert _complete(shell, "hsi train scene.zarr/splits/", workspace) == [
        "scene.zarr/splits/ratio72", "scene.zarr/splits/spatial"]
    assert _complete(shell, "hsi train --log ", workspace) == ["epochs.jsonl", "runs/", "scene.zarr/"]
