"""A request's parameters as the service checks them, for every action: the JSON body, unknown and mistyped
parameters, integers, paging (`Offset`/`Limit` up to the action's `PAGE_LIMIT`), string lists, `Filters`, and the
client-CA pair of the writes. Each check raises the service's `ApiError`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from batchcert.api.vocabulary import DEFAULT_LIMIT, PAGE_LIMIT
from batchcert.emulator.outcomes import ApiError


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        raise ApiError("InvalidParameter", "The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise ApiError("InvalidParameter", "The request body must be a JSON object.")
    return params


def check_known(params: dict[str, Any], allowed: set[str]) -> None:
    """Refuse the first unknown parameter (in sorted order)."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")


def check_params(params: dict[str, Any], allowed: set[str], strings: Iterable[str] = ()) -> None:
    """Refuse unknown parameters and string parameters of another type."""
    check_known(params, allowed)
    for name in strings:
        if params.get(name) is not None and not isinstance(params[name], str):
            raise ApiError("InvalidParameter", f"The parameter `{name}` must be a string.")


def read_integer(params: dict[str, Any], name: str, default: int | None) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError("InvalidParameter", f"The parameter `{name}` must be an integer.")
    return value


def read_page(params: dict[str, Any], action: str) -> tuple[int, int]:
    """(Offset, Limit) of a paged listing: Offset ≥ 0, 1 ≤ Limit ≤ the action's maximum (PAGE_LIMIT)."""
    offset = read_integer(params, "Offset", 0)
    limit = read_integer(params, "Limit", DEFAULT_LIMIT)
    assert offset is not None and limit is not None
    if offset < 0:
        raise ApiError("InvalidParameterValue", f"The value of `Offset` ({offset}) must not be negative.")
    top = PAGE_LIMIT[action]
    if not 1 <= limit <= top:
        raise ApiError("InvalidParameterValue", f"The value of `Limit` ({limit}) must be between 1 and {top}.")
    return offset, limit


def read_string_list(params: dict[str, Any], name: str, most: int) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ApiError("InvalidParameter", f"The parameter `{name}` must be a list of strings.")
    if len(value) > most:
        raise ApiError("InvalidParameterValue", f"The parameter `{name}` takes at most {most} values.")
    return list(value)


def read_filters(params: dict[str, Any], names: set[str]) -> dict[str, list[str]]:
    """`Filters` as {Name: Values}: at most 10 filters of at most 5 values each (DescribeProxiesRequest)."""
    raw = params.get("Filters")
    if raw is None:
        return {}
    if not isinstance(raw, list) or len(raw) > 10:
        raise ApiError("InvalidParameterValue", "The parameter `Filters` takes a list of at most 10 filters.")
    out: dict[str, list[str]] = {}
    for item in raw:
        name, values = (item.get("Name"), item.get("Values")) if isinstance(item, dict) else (None, None)
        if name not in names:
            raise ApiError("InvalidParameterValue", f"The filter name `{name}` is not supported.")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or len(values) > 5:
            raise ApiError("InvalidParameterValue", f"The filter `{name}` takes a list of at most 5 strings.")
        out.setdefault(name, []).extend(values)
    return out


def read_client_params(params: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    """(ClientCertificateId, PolyClientCertificateIds) of a write, checked as the service does: a list of strings,
    and not both."""
    poly = params.get("PolyClientCertificateIds")
    if poly is not None and (not isinstance(poly, list) or not all(isinstance(x, str) for x in poly)):
        raise ApiError("InvalidParameter", "The parameter `PolyClientCertificateIds` must be a list of strings.")
    client_id = params.get("ClientCertificateId") or None
    if client_id and poly:
        raise ApiError("InvalidParameter", "ClientCertificateId and PolyClientCertificateIds cannot both be set.")
    return client_id, poly
