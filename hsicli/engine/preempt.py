"""Preemption: stop training cleanly when the cluster asks, so that a requeued job resumes.

SLURM sends SIGTERM when it preempts or cancels a job (SIGKILL follows KillWait seconds later,
30 s by default), and the signal chosen with `#SBATCH --signal=USR1@SECONDS` (SIGUSR1 by
convention) that long before the time limit. `watch()` turns either into a flag; the training
loop reads it at every batch boundary, abandons the epoch in progress and leaves with `Preempted`,
whose exit code is 75 (EX_TEMPFAIL in sysexits.h: "temporary failure, try again later"). The
resumable state is the one written after the last finished epoch, so `hsi train --resume`
repeats the uninterrupted run exactly (see hsicli.engine.train); the example batch scripts
requeue the job when they see exit code 75.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from hsicli.errors import HsiError

EXIT_CODE = 75  # EX_TEMPFAIL
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(HsiError):
    """Training stopped on a preemption signal after saving its state; rerun with --resume."""

    exit_code = EXIT_CODE


class PreemptionFlag:
    """Set by the first preemption signal; falsy until then."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def _handle(self, signum: int, frame) -> None:
        # Only record it: the loop decides where it is safe to stop.
        if self.signal is None:
            self.signal = signum


@contextlib.contextmanager
def watch(signals: tuple[int, ...] = SIGNALS) -> Iterator[PreemptionFlag]:
    """Catch `signals` while the block runs, restoring the previous handlers afterwards.

    Outside the main thread (where Python cannot install handlers) the flag simply stays unset.
    """
    flag = PreemptionFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {number: signal.signal(number, flag._handle) for number in signals}
    try:
        yield flag
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
