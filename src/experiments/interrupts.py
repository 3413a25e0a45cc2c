"""Clean interrupts: Ctrl-C (SIGINT) and SIGTERM stop a run with one line and exit 130 / 143.

While the training loop runs it *defers* the signal: the loop notices the request at the next optimizer
step boundary, saves a checkpoint there and stops, so ``trainer.resume=true`` continues exactly. Outside
the loop (loading, tokenizing) the signal stops the run at once. A second Ctrl-C stops at once too.
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

from experiments.errors import ExperimentError

_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


def signal_name(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


class Interrupted(ExperimentError):
    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        self.exit_code = 128 + int(signum)
        super().__init__(message or f"interrupted by {signal_name(signum)}")


class StopRequest:
    """Installed once per process by the entry point; the loop arms ``deferring`` while it trains."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.deferring = False
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> "StopRequest":
        if not self._previous and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            return
        raise Interrupted(signum)


_CURRENT = StopRequest()


def current() -> StopRequest:
    return _CURRENT
