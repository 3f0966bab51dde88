"""The emulator's monotonic clock: listener tasks, the rate window and latency all read it."""

from __future__ import annotations

import asyncio
import time


def monotonic_s() -> float:
    """The running event loop's clock — tests may run the loop on virtual time — else `time.monotonic`, which is
    the clock asyncio's own loops use. Listener tasks, the rate window and latency all use it."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
