"""One vocabulary (issue 20): a flag name means one thing in every command, and every command
takes -q/--quiet and -v/--verbose. The options are read from the typer app itself, so a new
command or option is checked without editing this file, unless it reuses a name differently."""

from __future__ import annotations

from collections import defaultdict

import pytest
import typer.main

from hsicli.cli import app

# Flags whose help differs between commands, with what every one of those help texts must say:
# the one meaning, worded for each command. A flag used by several commands with different help
# texts and not listed here fails: give it the same help, declare it here, or rename it.
MEANINGS = {
    "--batch-size": "batch size",
    "--epochs": "epochs",
    "--like": "recorded",
    "--model-args": "architecture arguments as json",
    "--name": "name of the",
    "--patch": "patch / window size",
    "--seed": "seed",
    "--split": "split",
}
# Names that once meant two things; each now belongs to the listed commands only.
OWNED = {"--init": {"train"}, "--init-shards": {"predict"}, "--window": {"split"}}


def _options() -> dict[str, dict[str, str]]:
    """flag -> {command: help} over every visible option of every command."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for command_name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            for flag in (*param.opts, *param.secondary_opts):
                found[flag][command_name] = param.help or ""
    return found


def test_every_command_takes_quiet_and_verbose():
    options = _options()
    commands = set(typer.main.get_command(app).commands)
    for flag in ("-q", "--quiet", "-v", "--verbose"):
        assert set(options[flag]) == commands, (flag, commands - set(options[flag]))


def test_a_flag_name_means_one_thing_in_every_command():
    wrong = []
    for flag, helps in sorted(_options().items()):
        if len(set(helps.values())) <= 1:
            continue
        meaning = MEANINGS.get(flag)
        if meaning is None:
            wrong.append(f"{flag}: undeclared, different help in {sorted(helps)}")
            continue
        wrong += [f"{flag} in {command}: {text!r} lacks {meaning!r}" for command, text in helps.items()
                  if meaning not in text.lower()]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("flag, owners", sorted(OWNED.items()))
def test_renamed_flags_belong_to_one_command(flag, owners):
    assert set(_options().get(flag, {})) == owners


def test_split_still_takes_its_old_patch_spelling_with_a_warning(synthetic_scene, cli, tmp_path):
    scene = synthetic_scene("scene.mat", bands=8)
    assert cli("prep", scene, "--out", tmp_path / "s.zarr").exit_code == 0
    old = cli("split", tmp_path / "s.zarr", "--ratio", "0.5", "--patch", "5", "--name", "old")
    new = cli("split", tmp_path / "s.zarr", "--ratio", "0.5", "--window", "5", "--name", "new")
    assert old.exit_code == new.exit_code == 0, old.stderr + new.stderr
    assert "--patch is now --window" in old.stderr and "--patch" not in new.stderr
    assert "leakage at 5×5" in old.stderr and "leakage at 5×5" in new.stderr


def test_flags_show_no_metavar_and_lists_no_python_type():
    for command_name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            if param.param_type_name != "option" or "--help" in param.opts:
                continue
            if param.is_flag:
                assert param.metavar == "", (command_name, param.opts, param.metavar)
            assert "list[" not in (param.metavar or ""), (command_name, param.opts)


def test_docstring_paragraphs_are_unwrapped_for_rich_and_examples_kept():
    from hsicli.cli.helptext import unwrap

    text = """Title line.

    A paragraph wrapped
    at some width.

      hsi split scene.zarr --ratio 0.72
      hsi split scene.zarr --per-class 10

    \b
    map   one
    gt    two
    """
    assert unwrap(text).split("\n\n") == [
        "Title line.", "A paragraph wrapped at some width.",
        "  hsi split scene.zarr --ratio 0.72\n  hsi split scene.zarr --per-class 10", "\b\nmap   one\ngt    two"]


def test_plot_kind_is_checked_and_its_help_lists_whole_words(cli, monkeypatch):
    refused = cli("plot", "nope", "x.pred.zarr")
    assert refused.exit_code == 2 and "no plot kind 'nope'" in refused.stderr and "loss-weights" in refused.stderr
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("plot", "--help")
    from hsicli.plot import KINDS

    # Folded as a choice list, the help had "uncertainty|sp" and "lit|pseudo" on consecutive lines.
    assert all(kind in shown.stdout for kind in KINDS) and "lit|pseudo" not in shown.stdout
