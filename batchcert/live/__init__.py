"""What is live on the service, and what it means for the mapping's rows.

- `state`: a domain's (or a listener's own) live state, `LiveDomain`, read from the API's answers; whether a row is at
  its target, the pre-flight verdict (`judge`, `Verdict`), the plan lines and the rollback row. Pure, no I/O.
- `certificates`: the account's certificates (`CertificateInfo`) and the certificate pre-flight checks a row's
  targets must pass (`check_targets`). Pure, no I/O.
- `x509`: what a certificate's content says (`CertificateContent`: SubjectAltName names, leaf SHA-256, subject,
  notAfter, whether the chain carries the issuer), read with `cryptography`. Pure, no I/O.
- `reader`: `LiveReader`, which reads both through the quota with the run's retries (`Reading`, `CertificateIndex`,
  with the content of the targets: `with_contents`; `ContentReads`, each certificate's content read once a run).
- `access`: where clients reach a listener (`AccessPoints`: its port and its connection's addresses), read through
  the quota.
- `probe`: what the edge serves — a TLS handshake by SNI to an access point, the served leaf compared with the
  target's, probed again until it matches or the wait ends (`probe_domain`).

This `__init__` imports nothing, so the pure modules can be used without loading the scheduler (aiolimiter).
"""
