"""The read actions (docs/gaap-api.md, "Inventory and listener certificates"): DescribeRules (a listener's domains and
their certificates), DescribeHTTPSListeners / DescribeHTTPListeners, DescribeProxies, DescribeProxyGroupList,
DescribeCertificates, with each listing's paging, filters and the world's `listing_quirks` (early empty pages,
DescribeProxies answering `InstanceSet` only), and DescribeCertificateDetail (one certificate's X.509 content, made by
`pki`; docs/gaap-api.md, "Certificate content"). Answers carry the response shapes the official SDK deserializes
(py-sdk models.py); what the world does not model carries fixed, plausible values. While the TLS edge runs
(`edge_address`), the listings say where clients reach it (the `world` docstring, "The TLS edge")."""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from batchcert.api.vocabulary import (
    ACTION_DESCRIBE_CERTIFICATES,
    ACTION_DESCRIBE_GROUPS,
    ACTION_DESCRIBE_HTTP_LISTENERS,
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_PROXIES,
    ACTION_DESCRIBE_RULES,
    CERTIFICATE_TYPES,
)
from batchcert.emulator import pki
from batchcert.emulator.access import check_refusal, find_listener
from batchcert.emulator.clock import monotonic_s
from batchcert.emulator.outcomes import ApiError
from batchcert.emulator.params import (
    check_known,
    check_params,
    read_filters,
    read_integer,
    read_page,
    read_string_list,
)
from batchcert.emulator.state import PROTOCOLS, Certificate, GroupState, ListenerState, ProxyState
from batchcert.emulator.world import World
from batchcert.model import DEFAULT_CERTIFICATE

_LISTENER_FILTERS = {
    "ProxyId",
    "GroupId",
    "ListenerId",
    "ListenerName",
    "Port",
    "Offset",
    "Limit",
    "SearchValue",
    "Http3Supported",
}
_PROXIES_PARAMS = {
    "InstanceIds",
    "ProxyIds",
    "Offset",
    "Limit",
    "Filters",
    "TagSet",
    "Independent",
    "Order",
    "OrderField",
}
#: DescribeProxies filter names (py-sdk models.py, DescribeProxiesRequest.Filters); GroupId and ProjectId are applied
_PROXY_FILTER_NAMES = {"ProjectId", "AccessRegion", "RealServerRegion", "GroupId", "IPAddressVersion", "PackageType"}
_GROUPS_PARAMS = {"Offset", "Limit", "ProjectId", "Filters", "TagSet"}
_CERTIFICATES_PARAMS = {"CertificateType", "Offset", "Limit"}
#: a fixed creation time for everything the world does not date (2019-02-25, the signing docs' example)
CREATED_AT = 1551113065
_ACCESS_REGION = {"RegionId": "ap-guangzhou", "RegionName": "South China (Guangzhou)"}
_REAL_SERVER_REGION = {"RegionId": "na-siliconvalley", "RegionName": "Silicon Valley"}
#: where the listings say the edge is, while it runs: the loopback address it listens on, and a name for groups (whose
#: ProxyGroupInfo has an access `Domain` but no IP; py-sdk models.py)
EDGE_IP = "127.0.0.1"
EDGE_DOMAIN = "localhost"
T = TypeVar("T")


class Reads:
    """The read actions on one world; `epoch` is the wall time certificates without dates are placed around (the
    `world` docstring, "Certificates"). `edge_address` is the TLS edge's (host, port) while it runs (`service.serve`
    sets it), else None: the listings then answer as without an edge."""

    def __init__(self, world: World, epoch: float) -> None:
        self.world = world
        self.epoch = epoch
        self.edge_address: tuple[str, int] | None = None

    def describe_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeRules: every domain of a listener, with its certificates and DomainStatus (1 while it changes)."""
        check_known(params, {"ListenerId"})
        listener_id = params.get("ListenerId")
        if not isinstance(listener_id, str) or not listener_id:
            raise ApiError("MissingParameter", "The request is missing a required parameter `ListenerId`.")
        listener = find_listener(self.world, listener_id, ACTION_DESCRIBE_RULES)
        now = monotonic_s()
        rule_sets = [
            {
                "Domain": name,
                "RuleSet": [],
                "CertificateId": d.certificate_id,
                "CertificateAlias": None,
                # a domain on its listener's client CA shows the literal `default` (tccli's DescribeRules example)
                "ClientCertificateId": d.client_certificate_id or DEFAULT_CERTIFICATE,
                "ClientCertificateAlias": None,
                "PolyClientCertificateAliasInfo": [
                    {"CertificateId": c, "CertificateAlias": None} for c in d.poly_client_certificate_ids
                ]
                or [{"CertificateId": DEFAULT_CERTIFICATE, "CertificateAlias": "默认证书"}],
                "BasicAuth": 0,
                "RealServerAuth": 0,
                "GaapAuth": 0,
                "DomainStatus": 1 if (d.status == 0 and now < d.changing_until) else d.status,
                "BanStatus": 0,
                "IsDefaultServer": False,
            }
            for name, d in listener.domains.items()
        ]
        return {"DomainRuleSet": rule_sets, "TotalCount": len(rule_sets)}

    def describe_https_listeners(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._describe_listeners(params, "HTTPS", ACTION_DESCRIBE_LISTENERS)

    def describe_http_listeners(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._describe_listeners(params, "HTTP", ACTION_DESCRIBE_HTTP_LISTENERS)

    def _describe_listeners(self, params: dict[str, Any], protocol: str, action: str) -> dict[str, Any]:
        """DescribeHTTPSListeners / DescribeHTTPListeners: by ListenerId, ProxyId or GroupId (at least one; not both
        of the last two), exact ListenerName and Port (the world's, or the edge's while it runs: the Port answered),
        fuzzy SearchValue; paged."""
        check_params(params, _LISTENER_FILTERS, ("ListenerId", "ProxyId", "GroupId", "ListenerName", "SearchValue"))
        listener_id, proxy_id, group_id = params.get("ListenerId"), params.get("ProxyId"), params.get("GroupId")
        if not (listener_id or proxy_id or group_id):
            raise ApiError("MissingParameter", "At least one of `ListenerId`, `ProxyId` and `GroupId` is required.")
        if proxy_id and group_id:
            raise ApiError("InvalidParameter", "`ProxyId` and `GroupId` cannot both be set.")
        port = read_integer(params, "Port", None)
        read_integer(params, "Http3Supported", None)
        offset, limit = read_page(params, action)
        if listener_id:
            find_listener(self.world, listener_id, action, protocol)
            candidates = [(listener_id, self.world.attach(listener_id))]
        else:
            self.world.attach_all()
            candidates = [(lid, ls) for lid, ls in self.world.listeners.items() if ls.protocol == protocol]
        if proxy_id and proxy_id not in self.world.proxies:
            raise ApiError("ResourceNotFound", f"The connection `{proxy_id}` does not exist.")
        if group_id and group_id not in self.world.groups:
            raise ApiError("ResourceNotFound", f"The connection group `{group_id}` does not exist.")
        if proxy_id:
            check_refusal(self.world, "proxy", proxy_id, action)
        if group_id:
            check_refusal(self.world, "group", group_id, action)
        name, search = params.get("ListenerName"), params.get("SearchValue")
        edge_port = self.edge_address[1] if self.edge_address is not None and protocol == "HTTPS" else None
        matches = [
            (lid, ls)
            for lid, ls in candidates
            if (not proxy_id or (ls.group_id is None and ls.proxy_id == proxy_id))
            and (not group_id or ls.group_id == group_id)
            and (name is None or (ls.name or lid) == name)
            and (port is None or port in (ls.port, edge_port))
            and (not search or search in (ls.name or lid) or search == str(ls.port))
        ]
        return {
            "TotalCount": len(matches),
            "ListenerSet": [
                listener_item(self.world, lid, ls, edge_port) for lid, ls in self._paged(action, matches, offset, limit)
            ],
        }

    def describe_proxies(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeProxies: by ProxyIds (or the older InstanceIds) or Filters (GroupId, ProjectId applied; the other
        documented names accepted), Independent (1: proxies outside groups, 0: in groups); paged; InstanceSet and
        ProxySet carry the same proxies."""
        check_params(params, _PROXIES_PARAMS, ("Order", "OrderField"))
        offset, limit = read_page(params, ACTION_DESCRIBE_PROXIES)
        wanted = read_string_list(params, "ProxyIds", 100)
        legacy = read_string_list(params, "InstanceIds", 100)
        filters = read_filters(params, _PROXY_FILTER_NAMES)
        if (wanted is not None or legacy is not None) and filters:
            raise ApiError("InvalidParameter", "`ProxyIds`/`InstanceIds` and `Filters` cannot both be set.")
        wanted = wanted if wanted is not None else legacy
        independent = read_integer(params, "Independent", None)
        self.world.attach_all()
        matches = [
            (pid, proxy)
            for pid, proxy in self.world.proxies.items()
            if (wanted is None or pid in wanted)
            and (independent is None or (proxy.group_id is None) == (independent == 1))
            and ("GroupId" not in filters or proxy.group_id in filters["GroupId"])
            and ("ProjectId" not in filters or str(proxy.project_id) in filters["ProjectId"])
        ]
        page = self._paged(ACTION_DESCRIBE_PROXIES, matches, offset, limit)
        edge_ip = EDGE_IP if self.edge_address is not None else None
        items = [proxy_item(self.world, pid, proxy, edge_ip) for pid, proxy in page]
        quirk = self.world.listing_quirks.get(ACTION_DESCRIBE_PROXIES)
        if quirk is not None and quirk.instance_set_only:
            return {"TotalCount": len(matches), "InstanceSet": items}
        return {"TotalCount": len(matches), "InstanceSet": items, "ProxySet": copy.deepcopy(items)}

    def describe_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeProxyGroupList: ProjectId -1 lists every project's groups, another number that project's; an
        absent ProjectId lists the default project's (0) only — the adversarial reading of a parameter the reference
        gives no default (docs/gaap-api.md, "Inventory and listener certificates"); paged."""
        check_params(params, _GROUPS_PARAMS)
        offset, limit = read_page(params, ACTION_DESCRIBE_GROUPS)
        project = read_integer(params, "ProjectId", 0)
        read_filters(params, {"RealServerRegion", "PackageType"})
        matches = [(gid, g) for gid, g in self.world.groups.items() if project in (-1, g.project_id)]
        domain = EDGE_DOMAIN if self.edge_address is not None else None
        page = self._paged(ACTION_DESCRIBE_GROUPS, matches, offset, limit)
        items = [group_item(gid, group, domain) for gid, group in page]
        return {"TotalCount": len(matches), "ProxyGroupList": items}

    def describe_certificates(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeCertificates: CertificateType -1 (default) or absent lists every type; paged; never key material.
        Times are integer unix seconds (py-sdk models.py, Certificate.BeginTime/EndTime)."""
        check_params(params, _CERTIFICATES_PARAMS)
        offset, limit = read_page(params, ACTION_DESCRIBE_CERTIFICATES)
        wanted = read_integer(params, "CertificateType", -1)
        if wanted != -1 and wanted not in CERTIFICATE_TYPES:
            raise ApiError("InvalidParameterValue", f"The value of `CertificateType` ({wanted}) is not supported.")
        matches = [(cid, c) for cid, c in self.world.certificates.items() if wanted in (-1, c.type)]
        page = self._paged(ACTION_DESCRIBE_CERTIFICATES, matches, offset, limit)
        return {"TotalCount": len(matches), "CertificateSet": [self._certificate_item(cid, c) for cid, c in page]}

    def _certificate_item(self, cert_id: str, cert: Certificate) -> dict[str, Any]:
        """One Certificate (py-sdk models.py): its validity placed around `epoch` when the world gives none."""
        begin, end = cert.validity(self.epoch)
        return {
            "CertificateId": cert_id,
            "CertificateName": cert.name or cert_id,
            "CertificateAlias": cert.name or cert_id,
            "CertificateType": cert.type,
            "CreateTime": begin,
            "BeginTime": begin,
            "EndTime": end,
            "IssuerCN": pki.issuer_cn(cert_id, cert),
            "SubjectCN": pki.subject_cn(cert_id, cert),
        }

    def describe_certificate_detail(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeCertificateDetail: one certificate with its X.509 content (`pki`) and, for an SSL certificate, a
        fake `CertificateKey`. The shape is py-sdk models.py's DescribeCertificateDetailResponse / CertificateDetail
        (https://github.com/TencentCloud/tencentcloud-sdk-python, tencentcloud/gaap/v20180529/models.py); the codes are
        among those go-sdk client.go lists above DescribeCertificateDetail
        (https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/client.go):
        UnknownParameter, InvalidParameter (not a string), MissingParameter (absent or empty), ResourceNotFound (no such
        certificate — the adversarial reading: not an empty answer)."""
        check_params(params, {"CertificateId"}, ("CertificateId",))
        cert_id = params.get("CertificateId")
        if not cert_id:
            raise ApiError("MissingParameter", "The request is missing a required parameter `CertificateId`.")
        cert = self.world.certificates.get(cert_id)
        if cert is None:
            raise ApiError("ResourceNotFound", f"The certificate `{cert_id}` does not exist.")
        item = self._certificate_item(cert_id, cert)
        del item["CertificateName"]  # CertificateDetail has no CertificateName (py-sdk models.py)
        return {
            "CertificateDetail": item
            | {
                "CertificateContent": pki.certificate_content(cert_id, cert, self.epoch),
                "CertificateKey": pki.fake_key(cert_id, cert.type),
            }
        }

    def _paged(self, action: str, matches: list[T], offset: int, limit: int) -> list[T]:
        """One page of `matches` — empty from the world's `listing_quirks` offset on, TotalCount untouched."""
        quirk = self.world.listing_quirks.get(action)
        if quirk is not None and quirk.empty_from_offset is not None and offset >= quirk.empty_from_offset:
            return []
        return matches[offset : offset + limit]


def _alias(world: World, cert_id: str | None) -> str | None:
    cert = world.certificates.get(cert_id or "")
    return (cert.name or cert_id) if cert is not None else None


def listener_item(world: World, listener_id: str, ls: ListenerState, edge_port: int | None = None) -> dict[str, Any]:
    """One HTTPSListener / HTTPListener as py-sdk models.py names its fields; an HTTPS listener's `Port` is
    `edge_port` when given (the TLS edge answers for every HTTPS listener)."""
    busy = ls.pinned_busy or monotonic_s() < ls.busy_until
    item: dict[str, Any] = {
        "ListenerId": listener_id,
        "ListenerName": ls.name or listener_id,
        "Port": edge_port if edge_port is not None and ls.protocol == "HTTPS" else ls.port,
        "Protocol": ls.protocol,
        "ListenerStatus": 4 if busy else 0,
        "CreateTime": CREATED_AT,
        "ProxyId": ls.proxy_id if ls.group_id is None else None,
        "GroupId": ls.group_id,
    }
    if ls.protocol == "HTTPS":
        clients = ls.client_certificate_ids
        item |= {
            "CertificateId": ls.certificate_id,
            "CertificateAlias": _alias(world, ls.certificate_id),
            "ForwardProtocol": ls.forward_protocol,
            "AuthType": ls.auth_type,
            "ClientCertificateId": clients[0] if clients else None,
            "ClientCertificateAlias": _alias(world, clients[0]) if clients else None,
            "PolyClientCertificateAliasInfo": [
                {"CertificateId": c, "CertificateAlias": _alias(world, c)} for c in clients
            ],
            "Http3Supported": 0,
        }
    return item


def proxy_item(world: World, proxy_id: str, proxy: ProxyState, edge_ip: str | None = None) -> dict[str, Any]:
    """One ProxyInfo (py-sdk models.py); fields the world does not model carry fixed, plausible values. With an
    `edge_ip`, the proxy's `IP` and its one ISP line (`IPList`, IPDetail: IP, Provider, Bandwidth) are it."""
    version, status = world.proxy_view(proxy_id)
    bandwidth = 10
    return {
        "InstanceId": proxy_id,
        "ProxyId": proxy_id,
        "ProxyName": proxy.name or proxy_id,
        "Status": status,
        "Version": version,
        "GroupId": proxy.group_id,
        "CreateTime": CREATED_AT,
        "ProjectId": proxy.project_id,
        "AccessRegion": _ACCESS_REGION["RegionId"],
        "RealServerRegion": _REAL_SERVER_REGION["RegionId"],
        "AccessRegionInfo": dict(_ACCESS_REGION),
        "RealServerRegionInfo": dict(_REAL_SERVER_REGION),
        "Bandwidth": bandwidth,
        "Concurrent": 2,
        "Domain": f"{proxy_id}.gaap.emulator.invalid",
        "IP": edge_ip or "",
        "Scalarable": 1,
        "SupportProtocols": list(PROTOCOLS),
        "PolicyId": None,
        "ForwardIP": "",
        "TagSet": [],
        "IPAddressVersion": "IPv4",
        "NetworkType": "normal",
        "PackageType": "Thunder",
        "BanStatus": "RECOVER",
        "IPList": [{"IP": edge_ip, "Provider": "BGP", "Bandwidth": bandwidth}] if edge_ip else [],
    }


def group_item(group_id: str, group: GroupState, domain: str | None = None) -> dict[str, Any]:
    """One ProxyGroupInfo (py-sdk models.py); `Domain` is its access domain (None: the world gives none)."""
    return {
        "GroupId": group_id,
        "GroupName": group.name or group_id,
        "Domain": domain,
        "ProjectId": group.project_id,
        "RealServerRegionInfo": dict(_REAL_SERVER_REGION),
        "Status": group.status,
        "TagSet": [],
        "Version": group.version,
        "CreateTime": CREATED_AT,
        "ProxyType": 0,
        "Http3Supported": 0,
    }
