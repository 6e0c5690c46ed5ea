"""The console's pure logic: CSRF tokens, form parsing into requests, and how gRPC outcomes become pages.

The session is the identity service's access token itself, in an HttpOnly, SameSite=Strict cookie (Secure
when the console is reached over TLS). Every form carries a CSRF token: an HMAC, under the console's key, of a
random nonce held in a second cookie (signed double submit), checked on every POST.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from services.common.purpose import CRIMINAL, NON_CRIMINAL, purpose_label
from sightline.hotlist.v1 import hotlist_pb2
from sightline.retention.v1 import retention_pb2
from sightline.search.v1 import search_pb2

SESSION_COOKIE = "sightline_session"
CSRF_COOKIE = "sightline_csrf"
PURPOSES = [(p, purpose_label(p)) for p in sorted(CRIMINAL | NON_CRIMINAL)]
PLATE_KINDS = ("plate_exact", "plate_pattern", "plate_fuzzy")
# The purpose an alert's image is viewed under, from the hot-list entry's NCIC record type.
_ALERT_PURPOSES = {
    "V": search_pb2.PURPOSE_VEHICLE_THEFT, "P": search_pb2.PURPOSE_THEFT, "A": search_pb2.PURPOSE_KIDNAPPING,
    "M": search_pb2.PURPOSE_MISSING_PERSON, "W": search_pb2.PURPOSE_ARREST_WARRANT,
}


class FormError(ValueError):
    """A form that cannot become a request; the message is shown next to the form."""


class Csrf:
    def __init__(self, key: bytes):
        self._key = key

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def token(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce and token) and hmac.compare_digest(self.token(nonce or ""), token or "")


def cookie_options(secure: bool, max_age: int | None = None) -> dict[str, object]:
    return {"httponly": True, "secure": secure, "samesite": "strict", "path": "/", "max_age": max_age}


def _purpose(form: Mapping[str, str]) -> int:
    try:
        purpose = int(form.get("purpose", "0"))
    except ValueError as exc:
        raise FormError("choose a purpose from the list") from exc
    if purpose not in search_pb2.Purpose.values() or purpose == search_pb2.PURPOSE_UNSPECIFIED:
        raise FormError("choose a purpose from the list")
    return purpose


def search_request(form: Mapping[str, str], now: datetime) -> search_pb2.SearchReadsRequest:
    """The officer's search form -> SearchReadsRequest (the service checks purpose, case and scope)."""
    kind = form.get("kind", "plate_exact")
    if kind not in PLATE_KINDS:
        raise FormError("unknown kind of plate query")
    request = search_pb2.SearchReadsRequest(purpose=_purpose(form), case_number=form.get("case_number", "").strip(),
                                            include_partner_agencies=form.get("partners") == "on", page_size=100)
    if plate := form.get("plate", "").strip():
        setattr(request, kind, plate)
    try:
        hours = float(form.get("hours") or 0)
    except ValueError as exc:
        raise FormError("hours must be a number") from exc
    if hours < 0:
        raise FormError("hours must be a positive number")
    if hours:
        request.start_time.FromDatetime(now - timedelta(hours=hours))
    return request


def access_params(purpose: int, case_number: str, partners: bool) -> dict[str, str]:
    """The query string a read or image link carries, so that its view is audited under the same purpose."""
    return {"purpose": str(purpose), "case_number": case_number, "partners": "on" if partners else ""}


def access_from(params: Mapping[str, str]) -> tuple[int, str, bool]:
    return _purpose(params), params.get("case_number", "").strip(), params.get("partners") == "on"


VIEW_TICKET_TTL = timedelta(minutes=30)


class ViewTickets:
    """Links to audited views (a read's detail, an image) carry a ticket: an HMAC, under the console's key, of
    the session they were issued to, the path, the purpose, case number and partner scope, and an expiry. A
    view is served only with a ticket of the viewer's own session, so a page elsewhere on the same site cannot
    make an officer's browser fetch `/images/<ref>?purpose=…&case_number=FRAMED` in the officer's name."""

    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, session: str, path: str, params: Mapping[str, str]) -> str:
        fields = [hashlib.sha256(session.encode()).hexdigest(), path,
                  *(params.get(k, "") for k in ("purpose", "case_number", "partners", "expires"))]
        return hmac.new(self._key, "\n".join(["view", *fields]).encode(), hashlib.sha256).hexdigest()

    def link(self, session: str, path: str, access: Mapping[str, str], now: datetime) -> str:
        """`path` with the access parameters and a ticket for `session`, as a relative URL."""
        params = {**access, "expires": str(int((now + VIEW_TICKET_TTL).timestamp()))}
        params["ticket"] = self._mac(session, path, params)
        return f"{quote(path)}?{urlencode(params)}"

    def check(self, session: str, path: str, params: Mapping[str, str], now: datetime) -> tuple[int, str, bool]:
        """The access (purpose, case number, partners) of a view with a valid, unexpired ticket; else FormError."""
        ticket = params.get("ticket", "")
        if not hmac.compare_digest(ticket.encode(), self._mac(session, path, params).encode()):
            raise FormError("this link was not issued to your session: open the read from your search or alert")
        if int(params.get("expires", "0") or 0) < now.timestamp():
            raise FormError("this link has expired: search again")
        return access_from(params)


def alert_access(alert: hotlist_pb2.Alert) -> tuple[int, str]:
    """Purpose and case number under which the officer views an alert's image: the hot-list record's."""
    purpose = _ALERT_PURPOSES.get(alert.entry.code[:1].upper(), search_pb2.PURPOSE_OTHER_FELONY)
    return purpose, alert.entry.record_id


def hotlist_entry(form: Mapping[str, str]) -> hotlist_pb2.HotlistEntry:
    """The add-entry form; the hotlist service validates the plate (whole or partial) and the codes."""
    plate = form.get("plate", "").strip().upper()
    if not plate or not form.get("list_id"):
        raise FormError("a list and a plate are required")
    return hotlist_pb2.HotlistEntry(list_id=form["list_id"], plate=plate, state=form.get("state", "").strip().upper(),
                                    code=form.get("code", "").strip().upper(), reason=form.get("reason", "").strip(),
                                    record_id=form.get("record_id", "").strip())


def back_search(form: Mapping[str, str], list_id: str, entry_id: str) -> hotlist_pb2.BackSearchRequest | None:
    """The add-entry form's optional search of past reads for the new entry: None when no purpose is chosen
    (the entry is then matched against new reads only); the hotlist service checks purpose and case number."""
    if not form.get("purpose"):
        return None
    return hotlist_pb2.BackSearchRequest(list_id=list_id, entry_ids=[entry_id], purpose=_purpose(form),
                                         case_number=form.get("case_number", "").strip())


def hold_request(form: Mapping[str, str]) -> retention_pb2.PlaceHoldRequest:
    """The hold form: the case, why, and the reads to keep (ids, one per line or comma-separated)."""
    ids = [i for i in form.get("read_ids", "").replace(",", " ").split() if i]
    case_number, justification = form.get("case_number", "").strip(), form.get("justification", "").strip()
    if not ids or not case_number or not justification:
        raise FormError("a case number, a justification and at least one read are required")
    return retention_pb2.PlaceHoldRequest(case_number=case_number, justification=justification,
                                          read_ids=retention_pb2.ReadIds(ids=ids))


def alert_summary(alert: hotlist_pb2.Alert) -> dict[str, object]:
    """What the live alerts page shows of an alert (sent to the officer's browser, never logged)."""
    return {
        "alert_id": alert.alert_id, "plate": alert.read.plate_normalized, "state": alert.read.region.state,
        "camera_id": alert.read.camera_id, "list_id": alert.entry.list_id, "code": alert.entry.code,
        "reason": alert.entry.reason, "match": alert.match_detail, "historical": alert.historical,
        "raised_at": alert.raised_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"),
        "status": hotlist_pb2.AlertStatus.Name(alert.status).removeprefix("ALERT_STATUS_").lower(),
    }


DISPOSITIONS = [(v, hotlist_pb2.Disposition.Name(v).removeprefix("DISPOSITION_").replace("_", " ").capitalize())
                for v in hotlist_pb2.Disposition.values() if v]
