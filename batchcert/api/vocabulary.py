"""The API's words, each spelled once: action names, the API version, page sizes and certificate types
(docs/gaap-api.md). Stdlib only: every layer may import it.
"""

from __future__ import annotations

SERVICE = "gaap"
API_VERSION = "2018-05-29"

#: a domain's certificates (a mapping row with Scope `domain`, the default)
ACTION_MODIFY = "ModifyCertificate"
#: a listener's own certificates (a mapping row with Scope `listener`)
ACTION_MODIFY_LISTENER = "ModifyHTTPSListenerAttribute"
#: the writes a row may send (the journal's history of a row is its attempts of these)
CHANGE_ACTIONS = (ACTION_MODIFY, ACTION_MODIFY_LISTENER)
ACTION_DESCRIBE_RULES = "DescribeRules"
ACTION_DESCRIBE_LISTENERS = "DescribeHTTPSListeners"
ACTION_DESCRIBE_HTTP_LISTENERS = "DescribeHTTPListeners"
ACTION_DESCRIBE_CERTIFICATES = "DescribeCertificates"
ACTION_DESCRIBE_PROXIES = "DescribeProxies"
ACTION_DESCRIBE_GROUPS = "DescribeProxyGroupList"
#: one certificate with its content (PEM) — and, for a server certificate, its private key, which the client drops
#: on arrival (docs/gaap-api.md, "Certificate content")
ACTION_DESCRIBE_CERTIFICATE_DETAIL = "DescribeCertificateDetail"
#: answer fields that hold key material, and the actions whose answers may carry them: the client drops the fields on
#: arrival and never quotes such an answer (docs/gaap-api.md, "Certificate content")
SECRET_FIELDS = frozenset({"CertificateKey"})
SECRET_BEARING_ACTIONS = frozenset({ACTION_DESCRIBE_CERTIFICATE_DETAIL})

#: the page size the service uses when a request gives no Limit (every paged action documents 20)
DEFAULT_LIMIT = 20
#: the largest Limit each paged action accepts, and so the page size batchcert asks for (docs/gaap-api.md, "Inventory
#: and listener certificates"): DescribeProxies and DescribeProxyGroupList document 100; the listener and certificate
#: listings document none, and 50 is what the Terraform provider pages them with (known to be accepted)
PAGE_LIMIT = {
    ACTION_DESCRIBE_PROXIES: 100,
    ACTION_DESCRIBE_GROUPS: 100,
    ACTION_DESCRIBE_LISTENERS: 50,
    ACTION_DESCRIBE_HTTP_LISTENERS: 50,
    ACTION_DESCRIBE_CERTIFICATES: 50,
}

#: CertificateType values (docs/gaap-api.md, "Inventory and listener certificates"; CN docs 36977)
CERTIFICATE_TYPE_NAMES = {0: "basic-auth", 1: "client CA", 2: "server SSL", 3: "origin CA", 4: "proxy SSL"}
CERTIFICATE_TYPES = tuple(CERTIFICATE_TYPE_NAMES)
#: the types a row's certificates must have: a server certificate, and client CAs for mutual TLS
SERVER_SSL_TYPE = 2
CLIENT_CA_TYPE = 1
