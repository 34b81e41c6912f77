"""Stopping a training run on request: Ctrl-C (SIGINT) or SIGTERM (schedulers, ``docker stop``).

The first signal only sets :attr:`StopRequest.requested` (the trainer finishes its step, writes
``last.pt`` and stops; in a distributed run the ranks first agree, :attr:`StopRequest.agreed`); a
second one raises :class:`KeyboardInterrupt` at once. Handlers are installed in the main thread only,
and a signal that is ignored (e.g. SIGINT in a background job) is left alone.
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["StopRequest"]


class StopRequest:
    """Stop flags of one run and the signal handlers that set them.

    ``notice(signum)`` returns the line printed to stderr on the first signal (None: print nothing,
    e.g. on ranks other than 0)."""

    def __init__(self, notice: Callable[[int], str | None]):
        self.notice = notice
        self.requested = False  # set by the handler
        self.agreed = False     # every rank saw a stop request (all-reduced by the trainer)

    def install(self) -> dict:
        """Reset the flags and install the handler for SIGINT and SIGTERM; returns the previous
        handlers by signal (empty when not in the main thread), for :meth:`restore`."""
        self.requested = self.agreed = False
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            line = self.notice(signum)
            if line is not None:
                print(line, file=sys.stderr, flush=True)

        old_handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN or old is None:
                continue
            old_handlers[sig] = old
            signal.signal(sig, handler)
        return old_handlers

    @staticmethod
    def ignore(old_handlers: dict) -> None:
        """Ignore the signals :meth:`install` handles (a further Ctrl-C must not break the final save)."""
        for sig in old_handlers:
            signal.signal(sig, signal.SIG_IGN)

    @staticmethod
    def restore(old_handlers: dict) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for sig, old in old_handlers.items():
            signal.signal(sig, old)

    @staticmethod
    def signal_name(signum: int) -> str:
        """``Ctrl-C`` for SIGINT, else the signal's name (``SIGTERM``)."""
        return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
