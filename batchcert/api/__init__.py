"""The GAAP API as batchcert speaks it.

- `vocabulary`: the API's words — action names, the API version, page limits, certificate types (stdlib only; every
  layer may use it).
- `signing`: TC3-HMAC-SHA256 request signatures (docs/gaap-api.md, "Signing").
- `client`: the aiohttp client that sends one signed request and maps every failure to a `CallResult` code
  (`failure_of`, the one exception map: exceptions and HTTP statuses).
- `credentials`: where the keys come from — static keys, an assumed role, the instance role, OIDC (the official SDK's
  providers, imported only when a role is used) — and `CredentialSource`, which refreshes temporary keys before they
  expire.

This `__init__` imports nothing, so the lowest layers can use `batchcert.api.vocabulary` without loading aiohttp.
"""
