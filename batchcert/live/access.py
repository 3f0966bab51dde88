"""Where clients reach a listener (docs/gaap-api.md, "What the edge serves"): its `Port` and its connection's
addresses — a proxy's `IP`, its `IPList` (one per ISP line) and its access `Domain` (`DescribeProxies`), or a proxy
group's `Domain` (`DescribeProxyGroupList`, every project: `ProjectId` -1). Read through the quota like every read,
each proxy and the group list once per run (`AccessPoints`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from batchcert.api.vocabulary import ACTION_DESCRIBE_GROUPS, ACTION_DESCRIBE_LISTENERS, ACTION_DESCRIBE_PROXIES
from batchcert.live.probe import AccessPoint
from batchcert.live.reader import LiveReader
from batchcert.model import NOT_SENT, CallResult


class AccessPoints:
    """Each listener's `AccessPoint`, read once: `of(listener_id)`. A read that fails leaves the listener without an
    address (`why` says which read answered what): its domains are `unreachable`, never guessed."""

    def __init__(self, reader: LiveReader) -> None:
        self._reader = reader
        self._listeners: dict[str, asyncio.Task[AccessPoint]] = {}
        self._proxies: dict[str, asyncio.Task[tuple[str, ...]]] = {}
        self._groups: asyncio.Task[dict[str, tuple[str, ...]]] | None = None
        #: why a listener has no address (listener id → the read and its answer)
        self.why: dict[str, str] = {}
        #: how the group listing failed or ended short ("" it was read whole)
        self.group_listing = ""

    async def of(self, listener_id: str) -> AccessPoint:
        return await asyncio.shield(self.read_soon(listener_id))

    def read_soon(self, listener_id: str) -> asyncio.Task[AccessPoint]:
        """The read of the listener's access point, started now unless it was already."""
        if listener_id not in self._listeners:
            self._listeners[listener_id] = asyncio.ensure_future(self._read(listener_id))
        return self._listeners[listener_id]

    async def close(self) -> None:
        """Stop the reads still going (the run stopped)."""
        tasks = [*self._listeners.values(), *self._proxies.values(), *([self._groups] if self._groups else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, listener_id: str) -> AccessPoint:
        where = {"ListenerId": listener_id}
        result = await self._reader.call(ACTION_DESCRIBE_LISTENERS, where, 0.0, listener_id, None)
        listed = _items(result, "ListenerSet")
        if listed is None or not listed:
            self.why[listener_id] = _failure(ACTION_DESCRIBE_LISTENERS, result, "the listener is not listed")
            return AccessPoint((), None)
        listener = listed[0]
        port = int(listener["Port"]) if listener.get("Port") is not None else None
        if listener.get("GroupId"):
            groups = await self._group_domains()
            hosts = groups.get(str(listener["GroupId"]), ())
            if str(listener["GroupId"]) not in groups and self.group_listing:
                self.why.setdefault(listener_id, f"its group was not read: {self.group_listing}")
        elif listener.get("ProxyId"):
            proxy_id = str(listener["ProxyId"])
            if proxy_id not in self._proxies:
                self._proxies[proxy_id] = asyncio.ensure_future(self._proxy_hosts(proxy_id))
            hosts = await asyncio.shield(self._proxies[proxy_id])
        else:
            hosts = ()
        if not hosts:
            self.why.setdefault(listener_id, "its connection has no access address")
        return AccessPoint(hosts, port, str(listener.get("CertificateId") or ""))

    async def _proxy_hosts(self, proxy_id: str) -> tuple[str, ...]:
        """The proxy's IPs (its `IP`, then each ISP line's) and then its access domain, once each."""
        result = await self._reader.call(ACTION_DESCRIBE_PROXIES, {"ProxyIds": [proxy_id]}, 0.0, "", None)
        listed = _items(result, "ProxySet", "InstanceSet") or []
        proxy: dict[str, Any] = next((p for p in listed if p.get("ProxyId", p.get("InstanceId")) == proxy_id), {})
        hosts = [proxy.get("IP"), *(line.get("IP") for line in proxy.get("IPList") or []), proxy.get("Domain")]
        return tuple(dict.fromkeys(str(h) for h in hosts if h))

    async def _group_domains(self) -> dict[str, tuple[str, ...]]:
        if self._groups is None:
            self._groups = asyncio.ensure_future(self._read_groups())
        return await asyncio.shield(self._groups)

    async def _read_groups(self) -> dict[str, tuple[str, ...]]:
        """Every group's access domain (every project's: `ProjectId` -1). A listing that fails or ends short says so
        for each listener whose group it did not reach (`group_listing`), instead of "no access address"."""
        listing = await self._reader.listing(ACTION_DESCRIBE_GROUPS, {"ProjectId": -1}, ("ProxyGroupList",))
        if listing.failed:
            self.group_listing = _failure(ACTION_DESCRIBE_GROUPS, listing.answer, "")
        elif listing.short_of is not None:
            self.group_listing = (
                f"{ACTION_DESCRIBE_GROUPS} ended after {len(listing.items)} of its {listing.short_of} groups"
            )
        return {str(g["GroupId"]): (str(g["Domain"]),) if g.get("Domain") else () for g in listing.items}


def _items(result: CallResult | None, *keys: str) -> list[dict[str, Any]] | None:
    """The items of an answer under the first of `keys` it fills; None for no answer or an error."""
    if result is None or not result.ok:
        return None
    return next((list(result.response[k]) for k in keys if result.response.get(k)), [])


def _failure(action: str, result: CallResult | None, otherwise: str) -> str:
    if result is None:
        return f"{action}: {NOT_SENT}"
    if not result.ok:
        return f"{action} answered {result.code}"
    return otherwise
