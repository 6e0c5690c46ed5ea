"""The one refusal every layer raises: `Rejected(code, message, reason)`.

Domain modules refuse with it without knowing the transport: `Code` names the outcomes a caller can act on,
and the gRPC adapters (services.common.grpc_server.abort, services.audit.client.AccessGate) turn it into the
status of the same name. `message` is what the caller reads; `reason` is what the audit trail records (the
message unless the two must differ, e.g. a login refused with one answer for every cause).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.auth import Principal


class Code(enum.Enum):
    """The gRPC status codes a refusal may carry (same names as grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (a camera gateway resends it)."""
        return self in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED)


class Rejected(Exception):
    """A refused call. `principal` is the verified caller when known (its refusal is then audited)."""

    def __init__(self, code: Code, message: str, reason: str = "", principal: Principal | None = None):
        super().__init__(message)
        self.code, self.message, self.reason, self.principal = code, message, reason or message, principal
