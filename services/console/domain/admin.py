"""Agency administration forms (console and CLI): parsing into requests, and names shown for roles and sources.

Pure: it builds protobuf messages and checks what a person typed; the services decide and audit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time

from services.console.domain.forms import FormError
from sightline.hotlist.v1 import hotlist_pb2
from sightline.identity.v1 import identity_pb2
from sightline.ingest.v1 import ingest_pb2
from sightline.retention.v1 import retention_pb2

# Roles an admin may give, as (proto value, name shown and typed).
ROLES = [(value, identity_pb2.Role.Name(value).removeprefix("ROLE_").lower())
         for value in identity_pb2.Role.values() if value != identity_pb2.ROLE_UNSPECIFIED]
ROLE_BY_NAME = {name: value for value, name in ROLES}
SOURCES = [(value, hotlist_pb2.ListSource.Name(value).removeprefix("LIST_SOURCE_").lower())
           for value in hotlist_pb2.ListSource.values() if value != hotlist_pb2.LIST_SOURCE_UNSPECIFIED]
SOURCE_BY_NAME = {name: value for value, name in SOURCES}
_AGENCY_SPLIT = re.compile(r"[\s,]+")


def role_name(value: int) -> str:
    return identity_pb2.Role.Name(value).removeprefix("ROLE_").lower() if value in identity_pb2.Role.values() else "?"


def source_name(value: int) -> str:
    names: dict[int, str] = {int(v): n for v, n in SOURCES}
    return names.get(value, "unspecified")


def roles(names: Iterable[str]) -> list[int]:
    """Role names (or proto values as text) -> proto values; at least one."""
    out: list[int] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        value = ROLE_BY_NAME.get(name) or (int(name) if name.isdigit() and int(name) in dict(ROLES) else None)
        if value is None:
            raise FormError(f"unknown role {raw!r}: one of {', '.join(n for _, n in ROLES)}")
        out.append(value)
    if not out:
        raise FormError("give at least one role")
    return sorted(set(out))


def training(course: str, expires: str) -> identity_pb2.Training:
    """A training record valid until the end of day `expires` (YYYY-MM-DD, UTC), completed now."""
    course = course.strip()
    if not course:
        raise FormError("give the training course")
    try:
        day = date.fromisoformat(expires.strip())
    except ValueError as exc:
        raise FormError("training expiry: a date YYYY-MM-DD") from exc
    out = identity_pb2.Training(course=course[:200])
    out.expires_at.FromDatetime(datetime.combine(day, time(23, 59, 59), UTC))
    out.completed_at.FromDatetime(datetime.now(UTC).replace(microsecond=0))
    return out


def create_user(username: str, display_name: str, role_names: Iterable[str], course: str,
                expires: str) -> identity_pb2.CreateUserRequest:
    """No password: identity generates a one-time one and answers it once."""
    if not username.strip():
        raise FormError("give a username")
    return identity_pb2.CreateUserRequest(username=username.strip(), display_name=display_name.strip()[:200],
                                          roles=roles(role_names), training=training(course, expires))


def agency_ids(text: str) -> list[str]:
    """'pd-beta, pd-gamma' -> ['pd-beta', 'pd-gamma'] (identity checks each id)."""
    return sorted({a for a in _AGENCY_SPLIT.split(text.strip().lower()) if a})


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise FormError(f"{what}: a number") from exc
    if not low <= value <= high:
        raise FormError(f"{what}: between {low:g} and {high:g}")
    return value


def camera(camera_id: str, name: str, latitude: str = "", longitude: str = "", bearing: str = "",
           active: bool = True) -> ingest_pb2.Camera:
    """A camera to register or update; latitude and longitude together or neither; bearing optional."""
    if not camera_id.strip():
        raise FormError("give a camera id")
    cam = ingest_pb2.Camera(camera_id=camera_id.strip(), name=name.strip()[:200], active=active)
    if latitude.strip() or longitude.strip():
        if not (latitude.strip() and longitude.strip()):
            raise FormError("give both latitude and longitude, or neither")
        cam.location.latitude = _number(latitude, "latitude", -90, 90)
        cam.location.longitude = _number(longitude, "longitude", -180, 180)
    if bearing.strip():
        cam.bearing_degrees = _number(bearing, "bearing", 0, 360) % 360
    return cam


def retention(state: str, days: str) -> retention_pb2.SetAgencyRetentionRequest:
    state = state.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", state):
        raise FormError("state: the two-letter code (e.g. VA)")
    try:
        value = int(days)
    except ValueError as exc:
        raise FormError("retention days: a whole number") from exc
    if value < 1:
        raise FormError("retention days: at least 1")
    return retention_pb2.SetAgencyRetentionRequest(state=state, retention_days=value)


def hot_list(list_id: str, name: str, source: str, fuzzy: bool = False, max_edits: str = "0") -> hotlist_pb2.HotList:
    if not list_id.strip():
        raise FormError("give a list id")
    if source not in SOURCE_BY_NAME:
        raise FormError(f"source: one of {', '.join(SOURCE_BY_NAME)}")
    try:
        edits = int(max_edits or "0")
    except ValueError as exc:
        raise FormError("max edits: 0 or 1") from exc
    if edits not in (0, 1):
        raise FormError("max edits: 0 or 1")
    return hotlist_pb2.HotList(list_id=list_id.strip(), name=name.strip()[:200] or list_id.strip(),
                               source=SOURCE_BY_NAME[source], fuzzy_confusions=fuzzy, max_edits=edits)
