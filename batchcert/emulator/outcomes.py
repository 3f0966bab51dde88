"""The ways a request to the emulator ends other than with a success payload: an API error answer, a gateway's
non-API answer, or a dropped connection. Raised by every part that answers; turned into a response by `http`."""

from __future__ import annotations


class ApiError(Exception):
    """An API error answer: HTTP 200 with `Response.Error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code, self.message = code, message
        self.request_id = ""


class HttpFault(Exception):
    """Answer with a non-200 status and a non-API body, as a gateway in front of the service does."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(status)
        self.status, self.text = status, text


class ConnectionAborted(Exception):
    """Drop the connection without an answer (reset / hang faults)."""
