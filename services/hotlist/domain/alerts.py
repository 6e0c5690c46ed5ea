"""Alert identity and the officer's workflow on an alert (pure rules; the store applies them atomically).

A hit is not probable cause. Order: visual verification of the image against the read (plate and state),
then reconfirmation that the record is still active, then a disposition. A failed verification can only
be disposed of as a misread; a record no longer active only as 'no longer active'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


def alert_id(read_id: str, entry_id: str, list_version: int) -> str:
    """The same read matching the same entry of the same list version is one alert, however often delivered."""
    return hashlib.sha256(f"{read_id}\x1f{entry_id}\x1f{list_version}".encode()).hexdigest()[:32]


class Status(StrEnum):
    NEW = "new"
    VERIFIED = "verified"
    RECONFIRMED = "reconfirmed"
    DISPOSED = "disposed"


class Disposition(StrEnum):
    CONFIRMED = "confirmed"
    MISREAD = "misread"
    NO_LONGER_ACTIVE = "no_longer_active"
    VEHICLE_NOT_LOCATED = "vehicle_not_located"
    STOP_MADE = "stop_made"


class OutOfOrder(Exception):
    """The step does not follow from the alert's state (FAILED_PRECONDITION); the message says why."""


@dataclass(frozen=True)
class WorkflowState:
    status: Status
    verified_match: bool | None = None
    record_active: bool | None = None


def check_verification(state: WorkflowState) -> None:
    if state.status is not Status.NEW:
        raise OutOfOrder(f"alert is already {state.status}; verification is the first step")


def check_reconfirmation(state: WorkflowState) -> None:
    if state.status is Status.NEW:
        raise OutOfOrder("record the visual verification of the image first")
    if state.status is not Status.VERIFIED:
        raise OutOfOrder(f"alert is already {state.status}")
    if not state.verified_match:
        raise OutOfOrder("the image did not match the read: dispose of the alert as a misread")


def allowed_dispositions(state: WorkflowState) -> frozenset[Disposition]:
    if state.status is Status.VERIFIED and state.verified_match is False:
        return frozenset({Disposition.MISREAD})
    if state.status is Status.RECONFIRMED:
        if not state.record_active:
            return frozenset({Disposition.NO_LONGER_ACTIVE})
        return frozenset(Disposition) - {Disposition.NO_LONGER_ACTIVE}
    return frozenset()


def check_disposition(state: WorkflowState, disposition: Disposition) -> None:
    allowed = allowed_dispositions(state)
    if not allowed:
        step = {Status.NEW: "record the visual verification first",
                Status.VERIFIED: "reconfirm that the record is still active first",
                Status.DISPOSED: "alert is already disposed of"}.get(state.status, "")
        raise OutOfOrder(step)
    if disposition not in allowed:
        raise OutOfOrder(f"disposition {disposition} not possible now; allowed: {', '.join(sorted(allowed))}")
