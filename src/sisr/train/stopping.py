"""Stopping a run cleanly: Ctrl-C or SIGTERM (a scheduler's or torchrun's) ends the current step,
saves a checkpoint and returns, so that running the same command again continues."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger("sisr")


class StopRequest:
    """Ctrl-C or SIGTERM asks the loop to stop after the current step and save a checkpoint.

    A second Ctrl-C stops at once (KeyboardInterrupt), without saving.
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self.signum: int | None = None  # the signal that asked, for the command's exit status
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        log.warning(
            "%s received: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)",
            self.signal_name,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
