"""Shared fixtures: emulators served over real loopback sockets (the worlds they serve: `tests/worlds.py`), test
credentials in the environment, a state directory per test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from tests.worlds import SECRET_ID, SECRET_KEY, small_world


@pytest.fixture
def world_factory() -> Callable[..., emu.World]:
    return small_world


@pytest.fixture
async def served(world_factory: Callable[..., emu.World]) -> AsyncIterator[tuple[str, emu.Emulator]]:
    """The small world (`tests/worlds.py`) served in this test's event loop."""
    async with emu.serve(world_factory()) as pair:
        yield pair


class ThreadedEmulator:
    """An emulator served from its own thread and loop, for synchronous clients such as the official SDK: one
    account's world (`emulator`), or several accounts behind one endpoint (an `Estate`: `estate_emulator`)."""

    def __init__(self, world: emu.World | emu.Estate, ssl_context: Any = None) -> None:
        #: the estate served (None: one account); `world` is then its first account's
        self.estate = world if isinstance(world, emu.Estate) else None
        self.world = world if isinstance(world, emu.World) else next(iter(world.accounts.values()))
        self.ssl_context = ssl_context
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.base_url = ""
        self.emulator: emu.Emulator | None = None
        self.estate_emulator: emu.EstateEmulator | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        # handlers still hanging (fault injection) are cancelled, not destroyed pending
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        if self.estate is not None:
            async with emu.serve_estate(self.estate, ssl_context=self.ssl_context) as (url, served):
                self.base_url, self.estate_emulator = url, served
                self._ready.set()
                await self._stop.wait()
            return
        async with emu.serve(self.world, ssl_context=self.ssl_context) as (url, emulator):
            self.base_url, self.emulator = url, emulator
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedEmulator:
        self._thread.start()
        self._ready.wait(10)
        return self

    def settle(self, quiet_s: float = 0.3, timeout_s: float = 10.0) -> None:
        """Return once no change has been applied for `quiet_s`: the requests a killed client had sent are
        applied (after the world's latency), or not, before a test counts the ledger."""
        deadline = time.monotonic() + timeout_s
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            applied = self._applied()
            if applied != seen:
                seen, quiet_since = applied, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
            time.sleep(0.02)
        raise AssertionError(f"the emulator kept applying changes for {timeout_s} s")

    def _applied(self) -> int:
        served = self.estate_emulator or self.emulator
        assert served is not None
        return len(served.ledger)

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def threaded_emulator() -> Iterator[Callable[..., ThreadedEmulator]]:
    started: list[ThreadedEmulator] = []

    def start(world: emu.World | None = None, ssl_context: Any = None) -> ThreadedEmulator:
        server = ThreadedEmulator(world or small_world(), ssl_context).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def write_mapping(
    path: Any, rows: Sequence[Sequence[str]], header: Sequence[str] = ("ListenerId", "Domain", "CertificateId")
) -> Any:
    """Write a CSV mapping with `header` and `rows`; returns the path."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    return path


@pytest.fixture
def credentials_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The test credentials in the environment, and a HOME without credential files."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    for name in ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_TOKEN", "TENCENTCLOUD_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def read_stderr_until(proc: Any, wanted: Callable[[str], bool], timeout_s: float) -> tuple[str, float | None]:
    """Read a subprocess's stderr as it comes (raw chunks: a line buffered behind another is never missed) until a
    line satisfies `wanted` or `timeout_s` passes. Returns the text read (to put in front of what `communicate`
    returns later) and the monotonic time the line arrived (None when it did not)."""
    import os
    import selectors
    import time

    fd = proc.stderr.fileno()
    picker = selectors.DefaultSelector()
    picker.register(fd, selectors.EVENT_READ)
    text, deadline = "", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not picker.select(timeout=0.02):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text += chunk.decode("utf-8", "replace")
            if any(wanted(line) for line in text.splitlines()):
                return text, time.monotonic()
    finally:
        picker.close()
    return text, None


def run_against(
    server: ThreadedEmulator,
    mapping: Path,
    out: Path,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
    **request: Any,
) -> Any:
    """`batchcert run` in process against a threaded emulator: `run_mapping` of `mapping` into `out`, sending to the
    emulator (other RunRequest fields in `request`). Returns the RunSummary."""
    from batchcert.settings import SettingFlags
    from batchcert.workflow import RunRequest, run_mapping

    flags = SettingFlags(endpoint=server.base_url, timeout_s=timeout_s, max_attempts=max_attempts)
    return run_mapping(RunRequest(mapping=mapping, out=out, settings=flags, **request))


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own batchcert state directory (run claims, batchcert.claims): never the user's, and no test sees
    another's claims. Processes a test starts inherit it."""
    folder = tmp_path / "batchcert-state"
    monkeypatch.setenv("BATCHCERT_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own and no credential in the environment: the profiles are what its credentials file says."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    return folder


def credentials_file(home: Path, sections: dict[str, tuple[str, str]]) -> None:
    """`home`/.tencentcloud/credentials with a section per profile: (SecretId, SecretKey), owner-only."""
    folder = home / ".tencentcloud"
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"[{name}]\nsecret_id = {sid}\nsecret_key = {key}\n\n" for name, (sid, key) in sections.items())
    path = folder / "credentials"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
