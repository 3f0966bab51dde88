"""An emulator of the GAAP API as an aiohttp.web app: the writes `ModifyCertificate` (a domain's certificates) and
`ModifyHTTPSListenerAttribute` (a listener's own certificates), the reads `DescribeRules`, `DescribeHTTPSListeners`,
`DescribeHTTPListeners`, `DescribeProxies`, `DescribeProxyGroupList` and `DescribeCertificates` (the estate an
inventory reads; docs/gaap-api.md, "Inventory and listener certificates"), and `DescribeCertificateDetail` (a
certificate's X.509 content; docs/gaap-api.md, "Certificate content"); and a TLS edge that serves each HTTPS domain's
current certificate by SNI, where the listings say the connections are reached.

Faithful where a bulk run can tell (docs/gaap-api.md, all sections): TC3 signatures, the per-(SecretId, action) limit in
a sliding 1 s window of admitted requests with the real throttle message (every action, reads included), changes as
asynchronous listener tasks (`FailedOperation.ListenerHasTask`), the service's validation codes, paging with each
action's maximum `Limit`, HTTP 200 with `Content-Type: application/json` exactly for API errors, and the response
shapes the official SDK deserializes. It keeps a ledger of applied changes and injects faults on demand. Test hooks
live under `/_emulator/` (never part of the real API). Action names, page limits and certificate types are
`batchcert.api.vocabulary`'s.

Modules, each the one home of its concern:
- `world`: the emulated account (`World`) and the world file's contract (its docstring), `from_dict`/`to_dict`,
  `world_for_rows`; `state`: the records it holds (listeners, domains, proxies, groups, certificates).
- `accounts`: several accounts behind one endpoint — the world file of several accounts (`Estate`, its contract in
  the docstring), reading world files of either form (`load_world`, `load_estate`), `EstateEmulator` (one `Emulator`
  per account, each request answered as the account its SecretId belongs to) and `serve_estate`.
- `faults`: the world's `faults` section, the scripts with what each entry has left, and which fault acts on a write.
- `admission`: the signature check, the rate-limit window (storms, a competing client), account-wide CAM denials.
- `access`: the listener and certificate look-ups reads and writes share (missing, CAM denied, refused on a connection).
- `params`: parameter checks every action shares (body, unknown names, types, paging, filters, client CAs).
- `reads`: the Describe* actions and their listings' paging quirks; `pki`: the deterministic X.509 content and the fake
  key DescribeCertificateDetail answers (the only module that imports `cryptography`).
- `changes`: what each write changes and checks; `writes`: the one apply path both run through, and the ledger.
- `service`: the handler table and the `Emulator` (one account) composed of the above; `serve`, which also runs the
  `edge`.
- `edge`: the TLS edge, serving each HTTPS domain's current certificate by SNI (lagging or stuck as the world says).
- `http`: the aiohttp web server and the `/_emulator/` test hooks. `outcomes`: ApiError, HttpFault,
  ConnectionAborted. `clock`: the monotonic clock.
"""

from batchcert.api.vocabulary import ACTION_MODIFY_LISTENER
from batchcert.emulator.accounts import (
    Estate,
    EstateEmulator,
    account_credential,
    load_estate,
    load_world,
    serve_estate,
)
from batchcert.emulator.admission import SIGNATURE_WINDOW_S
from batchcert.emulator.clock import monotonic_s
from batchcert.emulator.faults import FAULT_KINDS, Faults
from batchcert.emulator.outcomes import ApiError, ConnectionAborted, HttpFault
from batchcert.emulator.reads import CREATED_AT
from batchcert.emulator.service import Emulator, serve
from batchcert.emulator.state import (
    DEFAULT_VALIDITY_S,
    PROTOCOLS,
    Certificate,
    Connection,
    DomainState,
    GroupState,
    ListenerState,
    ListingQuirk,
    ProxyState,
    ServedChange,
)
from batchcert.emulator.world import (
    DEMO_SECRET_ID,
    DEMO_SECRET_KEY,
    LISTENER_CERTIFICATE,
    PREVIOUS_CERTIFICATE,
    World,
    world_for_rows,
)
from batchcert.emulator.writes import DEFAULT_ACCOUNT, LedgerEntry

__all__ = [
    "ACTION_MODIFY_LISTENER",
    "CREATED_AT",
    "DEFAULT_ACCOUNT",
    "DEFAULT_VALIDITY_S",
    "DEMO_SECRET_ID",
    "DEMO_SECRET_KEY",
    "FAULT_KINDS",
    "LISTENER_CERTIFICATE",
    "PREVIOUS_CERTIFICATE",
    "PROTOCOLS",
    "SIGNATURE_WINDOW_S",
    "ApiError",
    "Certificate",
    "Connection",
    "ConnectionAborted",
    "DomainState",
    "Emulator",
    "Estate",
    "EstateEmulator",
    "Faults",
    "GroupState",
    "HttpFault",
    "LedgerEntry",
    "ListenerState",
    "ListingQuirk",
    "ProxyState",
    "ServedChange",
    "World",
    "account_credential",
    "load_estate",
    "load_world",
    "monotonic_s",
    "serve",
    "serve_estate",
    "world_for_rows",
]
