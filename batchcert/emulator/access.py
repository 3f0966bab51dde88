"""What one credential may touch, as reads and writes both look it up: a listener (absent, of another protocol, denied
by CAM on it, or refused on the proxy or group it sits on) and a certificate named in a write (absent, or of another
type). The world file's keys behind these answers are documented in `world` ("Refusals scoped to a connection",
"Per listener")."""

from __future__ import annotations

from batchcert.emulator.outcomes import ApiError
from batchcert.emulator.state import ListenerState
from batchcert.emulator.world import World
from batchcert.model import DEFAULT_CERTIFICATE


def find_listener(world: World, listener_id: str, action: str, protocol: str | None = None) -> ListenerState:
    """The listener, as this credential may use it for `action`: absent (answered as the world says) or denied by
    CAM; with `protocol`, one of another protocol answers as a missing listener."""
    listener = world.listeners.get(listener_id)
    if listener is None:
        raise missing_listener(world, listener_id)
    if action in listener.denied_actions:
        raise ApiError(
            "AuthFailure.UnauthorizedOperation",
            f"You are not authorized to perform operation (gaap:{action}) on resource "
            f"(qcs::gaap::uin/100000000001:listener/{listener_id}).",
        )
    connection = world.connection(listener_id)
    check_refusal(world, connection.kind, connection.id, action)
    if protocol is not None and listener.protocol != protocol:
        raise missing_listener(world, listener_id)
    return listener


def missing_listener(world: World, listener_id: str) -> ApiError:
    """The answer to a listener that does not exist, in the form the world names (`missing_listener_code`)."""
    if world.missing_listener_code == "InvalidParameter":
        return ApiError("InvalidParameter", f"ListenerId({listener_id}) Not Exist.")
    return ApiError("ResourceNotFound", f"The listener `{listener_id}` does not exist.")


def check_refusal(world: World, kind: str, connection_id: str, action: str) -> None:
    """Answer the code the proxy's or group's `refused_actions` name for `action` (CAM scoped to some connections,
    or a connection the action does not support), if any."""
    code = world.refusal(kind, connection_id, action)
    if code is None:
        return
    what = "connection" if kind == "proxy" else "connection group"
    resource = f"qcs::gaap::uin/100000000001:{'proxy' if kind == 'proxy' else 'proxyGroup'}/{connection_id}"
    denied = f"You are not authorized to perform operation (gaap:{action}) on resource ({resource})."
    messages = {
        "UnauthorizedOperation": denied,
        "AuthFailure.UnauthorizedOperation": denied,
        "FailedOperation.NotSupportProxyGroup": f"The connection group `{connection_id}` does not support {action}.",
        "FailedOperation.NotSupportOldVersionProxy": (
            f"The {what} `{connection_id}` is of an old version that does not support {action}."
        ),
        "ResourceNotFound": f"The {what} `{connection_id}` does not exist.",
    }
    raise ApiError(code, messages.get(code, f"{action} failed on the {what} `{connection_id}`."))


def check_certificate(world: World, cert_id: str, cert_type: int, param: str) -> None:
    """A certificate a write names: `default`, or one of the world's of type `cert_type`."""
    if cert_id == DEFAULT_CERTIFICATE:
        return
    cert = world.certificates.get(cert_id)
    if cert is None:
        raise ApiError("InvalidParameterValue", f"The {param} `{cert_id}` does not exist.")
    if cert.type != cert_type:
        raise ApiError(
            "InvalidParameterValue",
            f"The {param} `{cert_id}` is of type {cert.type}, expected {cert_type}.",
        )
