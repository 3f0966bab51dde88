"""What the stop signals (SIGINT, SIGTERM, SIGHUP: `errors.STOP_SIGNALS`) do during a run: while it sends, the first
stops it and a second abandons the requests in flight (`StopSignals`); while it closes the journal and writes the
reports, they wait (`signals_deferred`). Outside a run, `batchcert.__main__` handles them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

from batchcert.errors import STOP_SIGNALS


class StopSignals:
    """The stop signals a run receives while it sends (SIGHUP too: the reports matter more when the terminal is
    gone). The first calls `on_first` (the run stops sending) and bounds the drain by the request timeout — the
    task that sends is cancelled `request_timeout_s` + 1 s later, whatever else is waiting; a second cancels it at
    once, abandoning the requests in flight."""

    def __init__(self, on_first: Callable[[], None], request_timeout_s: float) -> None:
        #: the signals received, in order
        self.received: list[int] = []
        self._on_first = on_first
        self._request_timeout_s = request_timeout_s

    @property
    def interrupted(self) -> bool:
        return bool(self.received)

    @property
    def first(self) -> int | None:
        """The signal that interrupted the run (None: none)."""
        return self.received[0] if self.received else None

    @contextlib.contextmanager
    def handled(self) -> Iterator[None]:
        """Handle the stop signals on the running loop for the duration of the block, on behalf of the current
        task (the one that sends)."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig, loop, main)
        try:
            yield
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    def _on_signal(self, signum: int, loop: asyncio.AbstractEventLoop, main: asyncio.Task[object] | None) -> None:
        again = self.interrupted
        self.received.append(signum)
        if again and main is not None:
            main.cancel()  # second signal: abandon in-flight requests at once
            return
        self._on_first()
        if main is not None:  # the drain is bounded by the request timeout, whatever else is waiting
            loop.call_later(self._request_timeout_s + 1.0, main.cancel)


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold the stop signals (SIGINT, SIGTERM, SIGHUP) while the journal is closed and the reports are written, so
    the set is never left half-written; the signals received are listed (the run then ends as interrupted, exit 130
    — 129 for SIGHUP)."""
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
