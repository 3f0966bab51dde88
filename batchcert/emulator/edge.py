"""The emulator's TLS edge: where clients reach the emulated connections (docs/gaap-api.md, "What the edge serves"). A
TLS server on a loopback port answers each handshake with the certificate the world serves for the SNI the client
sends (`World.served_certificate`: a domain's own certificate, its listener's for a domain on `default`, lagging or
stuck as the world says; the `world` docstring, "The TLS edge"): the chain DescribeCertificateDetail answers for it,
leaf first, with the leaf's key (`pki.make_edge_credentials`), so the leaf's DER SHA-256 is the one the client
computes from the API's content. After the handshake the edge sends close_notify and closes once the client has (a
client only reads the leaf), or after `CLOSE_TIMEOUT_S`.

SNI is matched exactly (case-insensitive, internationalized names as A-labels, RFC 6066 section 3), against the domains
of the world's HTTPS listeners; a domain on several listeners is served as on the first of them in world order. An SNI
no HTTPS domain has, or none, fails the handshake with `unrecognized_name` (RFC 6066 section 3 allows the fatal
alert); a domain whose served certificate cannot be served (missing, not an SSL certificate) with
`handshake_failure`.

Python's `ssl` loads a chain and key only from files: each is written to a directory of the edge's own (mode 0700,
`tempfile.mkdtemp`), loaded into one `ssl.SSLContext` per chain (cached), and deleted at once; the directory is
removed when the edge stops. The context of a connection is picked in `SSLContext.sni_callback`
(https://docs.python.org/3/library/ssl.html#ssl.SSLContext.sni_callback). The handshake runs over memory BIOs on an
accepted plain connection (https://docs.python.org/3/library/ssl.html#memory-bio-support) rather than asyncio's own
TLS, which drops the records of a failing handshake: so the client gets the alert, not a bare reset. Every
connection, its handshake included, belongs to a handler the edge ends when it stops: nothing is left open for the
garbage collector to warn about.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from batchcert.emulator import pki
from batchcert.emulator.clock import monotonic_s
from batchcert.emulator.world import World

#: where the edge listens: loopback only (the listings report 127.0.0.1 / localhost, `reads`)
EDGE_HOST = "127.0.0.1"
#: a client that connects and does not finish its handshake within this is dropped
HANDSHAKE_TIMEOUT_S = 10.0
#: how long the edge waits, after the handshake, for the client to close first (so closing never resets the client)
CLOSE_TIMEOUT_S = 5.0
#: what one read takes from a connection
_READ_BYTES = 65536


class Edge:
    """The TLS edge of one world. `start` listens (port 0: any free port) and sets `address`; `stop` ends every
    connection and removes the edge's files. `epoch` is the wall time undated certificates are placed around: the
    emulator's, so the chain served is the PEM DescribeCertificateDetail answers."""

    def __init__(self, world: World, epoch: float) -> None:
        self.world = world
        self.epoch = epoch
        #: (host, port) while listening, else None
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        #: one context per chain served (a chain's PEM names its certificate, and so its key)
        self._contexts: dict[str, ssl.SSLContext] = {}
        #: SNI → (listener id, domain): the first HTTPS listener in world order that has the domain
        self._places: dict[str, tuple[str, str]] = {}
        self._folder: Path | None = None
        self._handlers: set[asyncio.Task[object]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._front.sni_callback = self._pick_context

    async def start(self, host: str = EDGE_HOST, port: int = 0) -> tuple[str, int]:
        """Listen on `host:port`; returns the address bound."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        """Stop listening, end every connection (in its handshake or closing), remove the edge's files."""
        self.address = None
        if self._server is not None:
            self._server.close()
        # aborted, a connection's reads end and its handler returns; a handler is cancelled only if it does not, as
        # Python 3.11's StreamReaderProtocol logs an error for a cancelled handler (its done callback asks a
        # cancelled task for its exception)
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            _, stuck = await asyncio.wait(list(self._handlers), timeout=CLOSE_TIMEOUT_S)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: the TLS handshake (the context picked by SNI) and close_notify, then the client's close."""
        if self.address is None:  # accepted just before the edge stopped
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        try:
            # a failed handshake (its alert sent), a peer that left, a timeout: the client has its answer, nothing
            # to log (ssl.SSLError and TimeoutError are OSErrors)
            with contextlib.suppress(OSError):
                async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                    await _handshake(self._front, reader, writer)
            with contextlib.suppress(OSError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    while await reader.read(_READ_BYTES):
                        pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)

    def _pick_context(self, tls: ssl.SSLObject, server_name: str | None, _front: ssl.SSLContext) -> int | None:
        """The SNI callback: switch the connection to the context of the certificate served for `server_name`, or
        fail the handshake with an alert. Never raises: an exception here would only be printed by `ssl`."""
        try:
            context = self._context_for(server_name)
        except Exception:  # a certificate not in the world, not an SSL one, or unloadable: nothing to serve
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        tls.context = context
        return None

    def _context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context serving `server_name` now (None: no HTTPS domain has it). Raises LookupError when its served
        certificate is not in the world, ValueError when it is no SSL certificate, OSError when it cannot be loaded."""
        place = self._place_of(sni_name(server_name)) if server_name else None
        if place is None:
            return None
        cert_id = self.world.served_certificate(*place, monotonic_s())
        cert = self.world.certificates.get(cert_id)
        if cert is None:
            raise LookupError(f"certificate {cert_id!r} is not in the world")
        credentials = pki.make_edge_credentials(cert_id, cert, self.epoch)
        context = self._contexts.get(credentials.chain_pem)
        if context is None:
            context = self._contexts[credentials.chain_pem] = self._load(credentials)
        return context

    def _place_of(self, name: str) -> tuple[str, str] | None:
        """(listener id, domain) serving SNI `name`; the index is rebuilt when it misses or names a place gone."""
        place = self._places.get(name)
        if place is None or not self._has(place):
            self._places = self._index()
            place = self._places.get(name)
        return place

    def _has(self, place: tuple[str, str]) -> bool:
        listener = self.world.listeners.get(place[0])
        return listener is not None and listener.protocol == "HTTPS" and place[1] in listener.domains

    def _index(self) -> dict[str, tuple[str, str]]:
        places: dict[str, tuple[str, str]] = {}
        for listener_id, listener in self.world.listeners.items():
            if listener.protocol == "HTTPS":
                for domain in listener.domains:
                    places.setdefault(sni_name(domain), (listener_id, domain))
        return places

    def _load(self, credentials: pki.EdgeCredentials) -> ssl.SSLContext:
        """A server context holding `credentials`, loaded from files written for the purpose and deleted at once."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="batchcert-edge-"))
        stem = self._folder / str(len(self._contexts))
        chain, key = stem.with_suffix(".pem"), stem.with_suffix(".key")
        try:
            chain.write_text(credentials.chain_pem, encoding="ascii")
            key.write_text(credentials.key_pem, encoding="ascii")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(chain, key)
        finally:
            chain.unlink(missing_ok=True)
            key.unlink(missing_ok=True)
        return context


async def _handshake(context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server side of a TLS handshake over a plain connection, then close_notify (the client's is not awaited).
    Every record OpenSSL writes is sent, a failing handshake's alert included. Raises ssl.SSLError (the handshake
    failed), ConnectionError (the client left)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await _send(writer, outgoing)
            data = await reader.read(_READ_BYTES)
            if not data:
                raise ConnectionResetError("the client closed the connection during the handshake")
            incoming.write(data)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # writes close_notify, then would wait for the client's
    finally:
        await _send(writer, outgoing)


async def _send(writer: asyncio.StreamWriter, outgoing: ssl.MemoryBIO) -> None:
    data = outgoing.read()
    if data:
        writer.write(data)
        await writer.drain()


def sni_name(domain: str) -> str:
    """A domain as SNI carries it: lower case, no final dot, internationalized labels as A-labels (RFC 6066 section
    3: "HostName" is the ASCII form)."""
    name = domain.rstrip(".").lower()
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


@contextlib.asynccontextmanager
async def run_edge(world: World, epoch: float, host: str = EDGE_HOST, port: int = 0) -> AsyncIterator[Edge]:
    """Run the TLS edge of `world` for the duration of the block (see `Edge`)."""
    edge = Edge(world, epoch)
    await edge.start(host, port)
    try:
        yield edge
    finally:
        await edge.stop()
