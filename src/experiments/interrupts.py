"""Clean interrupts: Ctrl-C (SIGINT), SIGTERM and SIGUSR2 stop a run with one line and exit 130 / 143 / 140.
SIGUSR2 is what a scheduler sends ahead of a job's time limit (Slurm's ``--signal=USR2@<seconds>``): the run
checkpoints and stops in time, and its launcher requeues it (docs/scaling.md).

While training runs (set-up included) the signal is *deferred*: it is only recorded, and the code acts on
it at safe points — between set-up phases (the run stops, leaving nothing) and at optimizer-step
boundaries (a checkpoint is saved first, so ``trainer.resume=true`` continues exactly). Raising from the
handler itself could unwind through native code (tokenizers, Arrow, torch) and crash the process.
Elsewhere (inference, the CLI's own checks) the signal stops the run at once; so does a second Ctrl-C.
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

from experiments.errors import ExperimentError

_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM", signal.SIGUSR2: "SIGUSR2 (time limit ahead)"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


def signal_name(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


class Interrupted(ExperimentError):
    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        self.exit_code = 128 + int(signum)
        super().__init__(message or f"interrupted by {signal_name(signum)}")

    def __reduce__(self):  # pickled with its signal (a sweep job's result crosses processes)
        return type(self), (self.signum, str(self))

    @classmethod
    def after_checkpoint(cls, signum: int, step: int, run_dir) -> "Interrupted":
        """The stop of a training run that has just saved a checkpoint at ``step``."""
        return cls(signum, f"interrupted by {signal_name(signum)} at step {step}: checkpoint saved; continue "
                           f"with trainer.resume=true hydra.run.dir={run_dir}")


class StopRequest:
    """Installed once per process by the entry point; ``train()`` sets ``deferring`` while it runs."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.deferring = False
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """A safe point: stop here if a signal was recorded."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def install(self) -> "StopRequest":
        if not self._previous and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            return
        raise Interrupted(signum)


_CURRENT = StopRequest()


def current() -> StopRequest:
    return _CURRENT
