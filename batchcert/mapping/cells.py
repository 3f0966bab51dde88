"""What a mapping cell may hold — the patterns of listener, proxy and certificate ids, of host names and of the
separators between several ids in one cell — and how a cell is restored from a report and shown in a message.

Everything is read as text — no float ids, no NaN. The neutralizing quote that reports put before formula-like cells
(`batchcert.report`) is removed again here, so `failed.csv` and `rollback.csv` read back as the mappings they were.
"""

from __future__ import annotations

import re

from batchcert.model import SCOPE_DOMAIN, SCOPE_LISTENER

SCOPES = (SCOPE_DOMAIN, SCOPE_LISTENER)
#: a connection's id: a proxy (link-…); a listener on a proxy group has none
PROXY_ID_RE = re.compile(r"link-[0-9a-z]{1,32}")

LISTENER_ID_RE = re.compile(r"listener-[0-9a-z]{1,32}")
CERTIFICATE_ID_RE = re.compile(r"cert-[0-9a-z]{1,32}")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
# the top-level label starts with a letter (no all-numeric TLDs, RFC 3696 §2): "1.5e10" read from a number cell fails
DOMAIN_RE = re.compile(rf"(\*\.)?({_LABEL}\.)+(?=[a-z]){_LABEL}", re.IGNORECASE)
#: between several ids in one cell; the full-width forms are what a Chinese input method types
POLY_SEPARATORS = re.compile(r"[;,|\s；，、｜]+")
#: characters that make a spreadsheet evaluate a cell (OWASP CSV injection); reports prefix such cells with "'"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: a message that lists problem lines or row numbers lists this many, then a count
MAX_LISTED_PROBLEMS = 20


def restore_cell(value: str) -> str:
    """Undo the report's neutralization (`'=x` → `=x`); everything else is kept as it is."""
    if value.startswith("'") and value[1:2] in FORMULA_PREFIXES and value[1:2] != "":
        return value[1:]
    return value


def show(value: str) -> str:
    """A cell's value as a message quotes it: repr, cut to 60 characters."""
    return repr(value if len(value) <= 60 else value[:57] + "...")
