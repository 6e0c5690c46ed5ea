"""Evidence holds: what a hold request must say, and which reads it covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.plates import normalize_plate

MAX_CASE_NUMBER = 64
MIN_JUSTIFICATION = 10
MAX_JUSTIFICATION = 2000


class InvalidHold(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    """Given read ids, or a capture window (optionally of one plate and/or one camera)."""

    read_ids: tuple[str, ...] = ()
    plate: str = ""
    camera_id: str = ""
    start: datetime | None = None
    end: datetime | None = None

    def document(self) -> dict[str, Any]:
        if self.read_ids:
            return {"read_ids": list(self.read_ids)}
        return {"plate": self.plate, "camera_id": self.camera_id, "start": self.start, "end": self.end}


def check_request(case_number: str, justification: str, scope: Scope, max_reads: int) -> Scope:
    """The request's scope, normalised; InvalidHold when the request is incomplete."""
    if not case_number.strip() or len(case_number) > MAX_CASE_NUMBER:
        raise InvalidHold(f"case_number is required (at most {MAX_CASE_NUMBER} characters)")
    if not MIN_JUSTIFICATION <= len(justification.strip()) <= MAX_JUSTIFICATION:
        raise InvalidHold(f"justification must be {MIN_JUSTIFICATION}-{MAX_JUSTIFICATION} characters")
    if scope.read_ids:
        if len(scope.read_ids) > max_reads:
            raise InvalidHold(f"a hold names at most {max_reads} reads")
        return Scope(read_ids=tuple(dict.fromkeys(scope.read_ids)))
    if scope.start is None or scope.end is None or scope.start >= scope.end:
        raise InvalidHold("a hold names read ids or a capture window with start_time before end_time")
    plate = normalize_plate(scope.plate)
    if scope.plate and not plate:
        raise InvalidHold("plate must hold letters or digits")
    return Scope(plate=plate, camera_id=scope.camera_id, start=scope.start, end=scope.end)


def reads_filter(agency_id: str, scope: Scope, now: datetime) -> dict[str, Any]:
    """The agency's reads in scope that still exist: not past their expiry (the TTL monitor may lag)."""
    flt: dict[str, Any] = {"agency_id": agency_id, "$nor": [{"expire_at": {"$lte": now}}]}
    if scope.read_ids:
        flt["_id"] = {"$in": list(scope.read_ids)}
        return flt
    flt["captured_at"] = {"$gte": scope.start, "$lt": scope.end}
    if scope.plate:
        flt["plate_normalized"] = scope.plate
    if scope.camera_id:
        flt["camera_id"] = scope.camera_id
    return flt
