"""An in-process API for scheduling tests: the emulator's own logic (rate window, listener tasks, validation,
faults, ledger) called directly, without sockets or signatures, on whatever clock the running loop has.

With `tests/virtual_time.py` a run of hundreds of rows at the real 20/s limit takes milliseconds and is exactly
repeatable; end-to-end tests over loopback sockets (`tests/test_run.py`) prove the HTTP side.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

from batchcert import classify
from batchcert import emulator as emu
from batchcert.model import CallResult

SECRET_ID = "AKIDfakeapi000000000000000000000001"


class EmulatorApi:
    """`batchcert.model.Api` over an in-process `Emulator`. `sends[action]` lists the clock time of every send."""

    def __init__(self, world: emu.World, timeout_s: float = 10.0) -> None:
        world.credentials = {SECRET_ID: "unused-in-process"}
        self.emulator = emu.Emulator(world)
        self.timeout_s = timeout_s
        self.sends: dict[str, list[float]] = defaultdict(list)

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.sends[action].append(started)
        latency_s = self.emulator.draw_latency_s()
        request_id = str(uuid.uuid4())
        body = json.dumps(params).encode("utf-8")

        def result(code: str | None, message: str = "", **fields: Any) -> CallResult:
            return CallResult(code, message, latency_s=loop.time() - started, sent_at_s=started, **fields)

        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.sleep(latency_s / 2)
                try:
                    payload = await self.emulator.answer(SECRET_ID, action, body, request_id)
                except emu.ApiError as err:
                    await asyncio.sleep(latency_s / 2)
                    return result(err.code, err.message, request_id=request_id, http_status=200)
                await asyncio.sleep(latency_s / 2)
        except TimeoutError:
            return result(classify.TRANSPORT_TIMEOUT, f"no answer within {self.timeout_s:g} s")
        except emu.HttpFault as fault:
            return result(classify.transport_http(fault.status), fault.text, http_status=fault.status)
        except emu.ConnectionAborted:
            return result(classify.TRANSPORT_RESET, "Server disconnected")
        return result(None, request_id=request_id, http_status=200, response=payload)


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most of `times` that fall within any half-open window of `window_s` (the service's sliding second)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
