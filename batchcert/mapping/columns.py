"""The mapping's columns as data: their canonical names, which are required, which hold certificate ids, and every
header spelling accepted for each (`COLUMN_ALIASES`, matched after `normalize_header`); spreadsheet column letters.

Current → new (compare-and-swap): a header with NewCertificateId reads the target from the New* columns and the
expected current state from CertificateId or CurrentCertificateId and the client columns (`header.choose_layout`
decides; `rows` reads them).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

LISTENER_ID, DOMAIN, CERTIFICATE_ID = "ListenerId", "Domain", "CertificateId"
CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS = "ClientCertificateId", "PolyClientCertificateIds"
#: optional: what a row changes (`domain`, the default, or `listener`: the listener's own certificates, Domain empty)
#: and the listener's proxy (ModifyHTTPSListenerAttribute takes it)
SCOPE, PROXY_ID = "Scope", "ProxyId"
#: optional: the credential profile (the account) a row belongs to; empty: the run's --profile, else the default
#: credentials (README, "Many accounts in one run")
PROFILE = "Profile"
#: current → new (compare-and-swap): with NewCertificateId the New* columns are the target, and CertificateId (or
#: CurrentCertificateId) with the client columns (or CurrentPolyClientCertificateIds) what the place must have now
NEW_CERTIFICATE_ID, NEW_CLIENT_CERTIFICATE_ID = "NewCertificateId", "NewClientCertificateId"
NEW_POLY_CLIENT_CERTIFICATE_IDS = "NewPolyClientCertificateIds"
CURRENT_CERTIFICATE_ID, CURRENT_POLY_CLIENT_CERTIFICATE_IDS = "CurrentCertificateId", "CurrentPolyClientCertificateIds"
COLUMNS = (
    PROFILE,
    SCOPE,
    PROXY_ID,
    LISTENER_ID,
    DOMAIN,
    CERTIFICATE_ID,
    CLIENT_CERTIFICATE_ID,
    POLY_CLIENT_CERTIFICATE_IDS,
    CURRENT_CERTIFICATE_ID,
    CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    NEW_CERTIFICATE_ID,
    NEW_CLIENT_CERTIFICATE_ID,
    NEW_POLY_CLIENT_CERTIFICATE_IDS,
)
REQUIRED_COLUMNS = (LISTENER_ID, DOMAIN, CERTIFICATE_ID)
#: columns whose cells are certificate ids: an id-like cell right of one of them, in a column batchcert does not
#: read, may have spilled out of it
ID_COLUMNS = frozenset(COLUMNS) - {PROFILE, SCOPE, PROXY_ID, LISTENER_ID, DOMAIN}
#: a header with one of these (and no NewCertificateId) is refused: a current id is never read as the target
CAS_ONLY_COLUMNS = (
    CURRENT_CERTIFICATE_ID,
    CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    NEW_CLIENT_CERTIFICATE_ID,
    NEW_POLY_CLIENT_CERTIFICATE_IDS,
)

#: Header spellings accepted for each column, as `normalize_header` leaves them (NFKC, lower case, no spaces,
#: underscores, hyphens, dots, colons, asterisks or parenthesized remarks). The Chinese names are the ones the GAAP
#: console and common hand-made sheets use. A test checks that every key is its own normal form.
COLUMN_ALIASES: dict[str, str] = {
    "listenerid": LISTENER_ID,
    "listener": LISTENER_ID,
    "监听器id": LISTENER_ID,
    "监听器": LISTENER_ID,
    "监听器编号": LISTENER_ID,
    "监听id": LISTENER_ID,
    "domain": DOMAIN,
    "domainname": DOMAIN,
    "域名": DOMAIN,
    "certificateid": CERTIFICATE_ID,
    "certid": CERTIFICATE_ID,
    "servercertificateid": CERTIFICATE_ID,
    "证书id": CERTIFICATE_ID,
    "证书": CERTIFICATE_ID,
    "证书编号": CERTIFICATE_ID,
    "服务器证书id": CERTIFICATE_ID,
    "服务器证书": CERTIFICATE_ID,
    "服务端证书id": CERTIFICATE_ID,
    "服务端证书": CERTIFICATE_ID,
    # one client CA
    "clientcertificateid": CLIENT_CERTIFICATE_ID,
    "clientcertid": CLIENT_CERTIFICATE_ID,
    "clientca": CLIENT_CERTIFICATE_ID,
    "clientcaid": CLIENT_CERTIFICATE_ID,
    "clientcacertificateid": CLIENT_CERTIFICATE_ID,
    "clientcacertid": CLIENT_CERTIFICATE_ID,
    "cacertificateid": CLIENT_CERTIFICATE_ID,
    "cacertificate": CLIENT_CERTIFICATE_ID,
    "cacertid": CLIENT_CERTIFICATE_ID,
    "客户端证书id": CLIENT_CERTIFICATE_ID,
    "客户端证书": CLIENT_CERTIFICATE_ID,
    "客户端ca证书id": CLIENT_CERTIFICATE_ID,
    "客户端ca证书": CLIENT_CERTIFICATE_ID,
    "客户端ca": CLIENT_CERTIFICATE_ID,
    "ca证书id": CLIENT_CERTIFICATE_ID,
    "ca证书": CLIENT_CERTIFICATE_ID,
    "双向认证ca证书id": CLIENT_CERTIFICATE_ID,
    "双向认证ca证书": CLIENT_CERTIFICATE_ID,
    "双向认证证书id": CLIENT_CERTIFICATE_ID,
    "双向认证证书": CLIENT_CERTIFICATE_ID,
    # several client CAs in one cell
    "polyclientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcertids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcaids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcas": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcacertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "cacertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "cacertids": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书id": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端ca证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端ca证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "ca证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "ca证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "双向认证ca证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "双向认证ca证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "profile": PROFILE,
    "account": PROFILE,
    "accountname": PROFILE,
    "credentialprofile": PROFILE,
    "账号": PROFILE,
    "账户": PROFILE,
    "账号名": PROFILE,
    "账号名称": PROFILE,
    "云账号": PROFILE,
    "scope": SCOPE,
    "范围": SCOPE,
    "作用域": SCOPE,
    "proxyid": PROXY_ID,
    "通道id": PROXY_ID,
    "通道": PROXY_ID,
    # current → new
    "currentcertificateid": CURRENT_CERTIFICATE_ID,
    "currentcertid": CURRENT_CERTIFICATE_ID,
    "oldcertificateid": CURRENT_CERTIFICATE_ID,
    "oldcertid": CURRENT_CERTIFICATE_ID,
    "当前证书id": CURRENT_CERTIFICATE_ID,
    "当前证书": CURRENT_CERTIFICATE_ID,
    "原证书id": CURRENT_CERTIFICATE_ID,
    "原证书": CURRENT_CERTIFICATE_ID,
    "旧证书id": CURRENT_CERTIFICATE_ID,
    "旧证书": CURRENT_CERTIFICATE_ID,
    "currentpolyclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "currentclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "currentclientcertificateid": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "oldpolyclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "oldclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "oldclientcertificateid": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "当前客户端证书id": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "当前客户端证书ids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "当前客户端证书": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "原客户端证书id": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "原客户端证书ids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "旧客户端证书id": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "newcertificateid": NEW_CERTIFICATE_ID,
    "newcertid": NEW_CERTIFICATE_ID,
    "newservercertificateid": NEW_CERTIFICATE_ID,
    "targetcertificateid": NEW_CERTIFICATE_ID,
    "targetcertid": NEW_CERTIFICATE_ID,
    "新证书id": NEW_CERTIFICATE_ID,
    "新证书": NEW_CERTIFICATE_ID,
    "新服务器证书id": NEW_CERTIFICATE_ID,
    "目标证书id": NEW_CERTIFICATE_ID,
    "目标证书": NEW_CERTIFICATE_ID,
    "newclientcertificateid": NEW_CLIENT_CERTIFICATE_ID,
    "newclientcertid": NEW_CLIENT_CERTIFICATE_ID,
    "targetclientcertificateid": NEW_CLIENT_CERTIFICATE_ID,
    "新客户端证书id": NEW_CLIENT_CERTIFICATE_ID,
    "新客户端证书": NEW_CLIENT_CERTIFICATE_ID,
    "新客户端ca证书id": NEW_CLIENT_CERTIFICATE_ID,
    "目标客户端证书id": NEW_CLIENT_CERTIFICATE_ID,
    "newpolyclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "newclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "newclientcertids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "newclientcaids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "targetpolyclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "targetclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新客户端证书ids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新多客户端证书id": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新多客户端证书ids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新客户端证书列表": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "目标客户端证书ids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "目标多客户端证书id": NEW_POLY_CLIENT_CERTIFICATE_IDS,
}

_HEADER_NOISE = re.compile(r"\(.*?\)|[\s_\-.:*\u200b\u200c\u200d\u2060\ufeff]+")


def normalize_header(name: str) -> str:
    """A header as `COLUMN_ALIASES` spells it: NFKC (full-width letters and spaces become ASCII), lower case, without
    spaces, underscores, hyphens, dots, colons, asterisks, invisible characters and parenthesized remarks."""
    return _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", name)).lower()


def canonical_column(name: str) -> str | None:
    """The mapping column a header names (`COLUMN_ALIASES`), or None."""
    return COLUMN_ALIASES.get(normalize_header(name))


def missing_columns(record: Sequence[str]) -> list[str]:
    """The required columns a header row does not name (a current → new header names the server certificate with
    NewCertificateId or CurrentCertificateId; `header.choose_layout` checks the pair)."""
    found = {canonical_column(c) for c in record}
    if NEW_CERTIFICATE_ID in found or CURRENT_CERTIFICATE_ID in found:
        found.add(CERTIFICATE_ID)
    return [c for c in REQUIRED_COLUMNS if c not in found]


def has_required_columns(record: Sequence[str]) -> bool:
    return not missing_columns(record)


def letter(position: int) -> str:
    """A 0-based column position as its spreadsheet letter (0 → A, 26 → AA)."""
    n, out = position + 1, ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def position_of_letter(letters: str) -> int:
    """A spreadsheet letter as a 0-based column position (A → 0)."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - ord("A") + 1
    return n - 1
