"""Progress on stderr (issue 20): expected duration from the timed steps, periodic plain lines."""

from __future__ import annotations

import pytest

from hsicli.cli import common


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: now[0])
    return now


def test_expected_duration_is_shown_once_timed_and_again_when_it_moves(clock, capsys):
    log = common.Log()
    log.tty = False
    with log.progress("training steps", estimate="training") as update:
        clock[0] += 20.0  # loading, then the first (warm-up) step: not timed
        update(1, 1000)
        for done in range(2, 400):
            clock[0] += 1.0 if done < 200 else 3.0  # the steps turn three times slower at step 200
            update(done, 1000)
    lines = capsys.readouterr().err.splitlines()
    expected = [line for line in lines if "expected to take" in line]
    # After 5 timed steps of 1 s: 25 s so far plus 994 steps of 1 s.
    assert "training expected to take up to 17 min (at most 1000 steps × 1 s; 17 min left)" in expected[0]
    assert len(expected) >= 2 and "training now expected to take" in expected[1]
    assert len(expected) <= 4  # shown again only when it moves by much
    plain = [line for line in lines if "training steps: " in line]
    # One line per 30 s of work: 198 s at 1 s a step, then 200 steps at 3 s.
    assert 20 <= len(plain) <= 30
    assert plain[0].endswith("training steps: 11/1000, 16 min left")  # 30 s after the start, loading included


def test_quiet_progress_says_nothing(clock, capsys):
    with common.Log(quiet=True).progress("training steps", estimate="training") as update:
        for done in range(1, 50):
            clock[0] += 40.0
            update(done, 50)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("seconds, said", [(40.4, "40 s"), (130, "2 min 10 s"), (1500, "25 min"), (11100, "3 h 5 min")])
def test_durations_read_as_people_say_them(seconds, said):
    assert common.duration(seconds) == said


def test_verbose_progress_has_a_line_per_step(clock, capsys):
    log = common.Log(verbose=True)
    log.tty = False
    with log.progress("rows predicted") as update:
        for done in range(1, 11):
            clock[0] += 0.1
            update(done, 10)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [f"rows predicted: {done}/10" for done in range(1, 11)]


def test_an_expectation_shown_is_not_replaced_within_seconds(clock, capsys):
    log = common.Log()
    log.tty = False
    with log.progress("training steps", estimate="training") as update:
        update(1, 1000)
        for done in range(2, 60):
            clock[0] += 0.01 if done < 8 else 0.1  # ten times slower right after the first estimate
            update(done, 1000)
    expected = [line for line in capsys.readouterr().err.splitlines() if "expected to take" in line]
    assert len(expected) == 1  # 5.2 s of steps: too early to replace the first expectation
