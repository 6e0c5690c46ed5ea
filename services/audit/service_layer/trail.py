"""Use cases of the audit trail: append a service's event (each service within its rate, each event within its
size; a person's fields taken from their verified token, never from the event), record a person's refused call,
and review the agency's trail and its flags (each review is itself recorded before it is answered).

Refusals are raised as `Rejected`. A store that fails, or a chain found tampered with, stops appends: UNAVAILABLE.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from google.protobuf.json_format import MessageToDict
from prometheus_client import Counter, Histogram

from services.audit.adapters.store import ChainTampered
from services.audit.domain.chain import canonical
from services.audit.domain.limits import RateLimiter
from services.audit.domain.review import Flag, FlagPolicy, no_case_flags, plate_flags, review_filter, volume_flags
from services.common.auth import SERVICE_SUBJECT_PREFIX, Principal
from services.common.rejected import Code, Rejected
from sightline.audit.v1 import audit_pb2

log = logging.getLogger(__name__)

APPENDS = Counter("sightline_audit_appends_total", "Audit entries appended", ["action"])
APPENDS_REFUSED = Counter("sightline_audit_appends_refused_total", "Append calls refused", ["reason"])
APPEND_SECONDS = Histogram("sightline_audit_append_seconds", "Audit append latency",
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
# The audit service's own name in `recorded_by`, for what it records itself (refusals, reviews).
SELF = SERVICE_SUBJECT_PREFIX + "audit"
STORE_UNAVAILABLE = "audit store unavailable"


class TrailStore(Protocol):
    async def append(self, event: Mapping[str, Any]) -> dict[str, Any]: ...

    async def find(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]: ...

    async def flag_counts(self, agency_id: str, start: datetime, end: datetime) -> dict[str, Any]: ...


def refused_append(code: Code, counted_as: str, message: str) -> Rejected:
    """An Append refused, counted by `counted_as` (caller, actor, rate, invalid, size)."""
    APPENDS_REFUSED.labels(counted_as).inc()
    return Rejected(code, message, counted_as)


def event_to_document(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    return MessageToDict(event, preserving_proto_field_name=True)


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    next_before_sequence: int = 0


class Trail:
    def __init__(self, store: TrailStore, limiter: RateLimiter, policy: FlagPolicy, max_event_bytes: int):
        self._store = store
        self._limiter = limiter
        self._policy = policy
        self._max_event_bytes = max_event_bytes

    async def append(self, service: str, event: audit_pb2.AuditEvent, actor: Principal | None,
                     now: float) -> dict[str, Any]:
        """`service`'s event (`actor`: the person whose action it records), `now` on the monotonic clock."""
        if not self._limiter.allow(service, now):
            raise refused_append(Code.RESOURCE_EXHAUSTED, "rate", f"service {service} is over its audit append rate")
        if not event.action:
            raise refused_append(Code.INVALID_ARGUMENT, "invalid", "event.action is required")
        size = len(canonical(event_to_document(event)))
        if size > self._max_event_bytes:
            raise refused_append(Code.INVALID_ARGUMENT, "size",
                                 f"event too large ({size} bytes; at most {self._max_event_bytes})")
        try:
            return await self._record(event, actor, SERVICE_SUBJECT_PREFIX + service)
        except ChainTampered as exc:
            raise Rejected(Code.UNAVAILABLE, "audit trail integrity check failed: appends stopped") from exc
        except Exception as exc:
            log.exception("audit append failed")
            raise Rejected(Code.UNAVAILABLE, STORE_UNAVAILABLE) from exc

    async def record_refusal(self, action: str, person: Principal, reason: str) -> None:
        """A person's refused call, recorded by the audit service itself (best effort: the refusal stands)."""
        event = audit_pb2.AuditEvent(action=action, outcome=audit_pb2.OUTCOME_DENIED, reason=reason)
        try:
            await self._record(event, person, SELF)
        except Exception:
            log.exception("refusal not audited")

    async def review(self, principal: Principal, page_size: int, query: dict[str, Any], terms: dict[str, Any]) -> Page:
        """A page of the reviewer's agency's trail matching `terms` (review_filter's), newest first; `query` is
        what the review records of the request."""
        if not 0 <= page_size <= 500:
            raise Rejected(Code.INVALID_ARGUMENT, "page_size must be between 1 and 500")
        size = page_size or 100
        docs = await self._store.find(review_filter(principal.agency_id, **terms), size + 1)
        await self._record_review(principal, {"query": query}, min(len(docs), size))
        return Page(docs[:size], docs[size - 1]["_id"] if len(docs) > size else 0)

    async def flags(self, principal: Principal, start: datetime, end: datetime) -> list[Flag]:
        """What a supervisor should look at in the agency's searches between `start` and `end`."""
        if start >= end:
            raise Rejected(Code.INVALID_ARGUMENT, "start_time must be before end_time")
        counts = await self._store.flag_counts(principal.agency_id, start, end)
        flags = (no_case_flags(counts["no_case"]) + volume_flags(counts["volume"], self._policy)
                 + plate_flags(counts["plates"], self._policy))
        await self._record_review(principal, {"flags": {"start": start.isoformat(), "end": end.isoformat()}},
                                  len(flags))
        return flags

    async def _record_review(self, principal: Principal, details: dict[str, Any], count: int) -> None:
        event = audit_pb2.AuditEvent(action="audit.review", outcome=audit_pb2.OUTCOME_ALLOWED, result_count=count)
        event.details.update(details)
        try:
            await self._record(event, principal, SELF)
        except Exception as exc:
            log.exception("audit append failed")
            raise Rejected(Code.UNAVAILABLE, STORE_UNAVAILABLE) from exc

    async def _record(self, event: audit_pb2.AuditEvent, actor: Principal | None, recorded_by: str) -> dict[str, Any]:
        """Append `event` as recorded by `recorded_by`; with an `actor` (a person's verified token) the actor fields
        are that person's, whatever the event says."""
        if actor is not None:
            event.user_id, event.username, event.agency_id = actor.user_id, actor.username, actor.agency_id
            del event.roles[:]
            event.roles.extend(sorted(actor.roles))
        event.recorded_by = recorded_by
        doc = event_to_document(event)
        with APPEND_SECONDS.time():
            entry = await self._store.append(doc)
        APPENDS.labels(event.action).inc()
        return entry
