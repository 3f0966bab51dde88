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
from batchcert.emulator.admission import max_in_window as max_in_window
from batchcert.model import CallResult

SECRET_ID = "AKIDfakeapi000000000000000000000001"


class EmulatorApi:
    """`batchcert.model.Api` over an in-process `Emulator`. `sends[action]` lists the clock time of every send."""

    def __init__(self, world: emu.World, timeout_s: float = 10.0) -> None:
        world.credentials = {SECRET_ID: "unused-in-process"}
        self.emulator = emu.Emulator(world)
        self.timeout_s = timeout_s
        self.sends: dict[str, list[float]] = defaultdict(list)
        self._serving: set[asyncio.Future[Any]] = set()

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.sends[action].append(started)
        # the service side runs to its end whatever the client does: a request the client gave up on (timeout) may
        # still be applied — as on a real network
        served = asyncio.ensure_future(self._serve(action, params))
        self._serving.add(served)
        served.add_done_callback(self._serving.discard)

        def result(code: str | None, message: str = "", **fields: Any) -> CallResult:
            return CallResult(code, message, latency_s=loop.time() - started, sent_at_s=started, **fields)

        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await asyncio.shield(served)
        except TimeoutError:
            return result(classify.TRANSPORT_TIMEOUT, f"no answer within {self.timeout_s:g} s")
        if isinstance(answer, emu.ApiError):
            return result(answer.code, answer.message, request_id=answer.request_id, http_status=200)
        if isinstance(answer, emu.HttpFault):
            return result(classify.transport_http(answer.status), answer.text, http_status=answer.status)
        if isinstance(answer, emu.ConnectionAborted):
            return result(classify.TRANSPORT_RESET, "Server disconnected")
        return result(None, request_id=answer["RequestId"], http_status=200, response=answer)

    async def _serve(
        self, action: str, params: dict[str, Any]
    ) -> dict[str, Any] | emu.ApiError | emu.HttpFault | emu.ConnectionAborted:
        """The service side of one request: half the latency, processing, the other half."""
        latency_s = self.emulator.draw_latency_s()
        request_id = str(uuid.uuid4())
        await asyncio.sleep(latency_s / 2)
        try:
            payload = await self.emulator.answer(SECRET_ID, action, json.dumps(params).encode("utf-8"), request_id)
        except emu.ApiError as err:
            err.request_id = request_id
            await asyncio.sleep(latency_s / 2)
            return err
        except (emu.HttpFault, emu.ConnectionAborted) as fault:
            return fault
        await asyncio.sleep(latency_s / 2)
        return {**payload, "RequestId": request_id}
