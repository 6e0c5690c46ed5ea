"""Turns a SearchReadsRequest into a MongoDB filter, safely.

User input only ever becomes string or datetime *values* in the filter (never keys or operators), and
partial plates become anchored regular expressions built from an alphabet of A-Z, 0-9 and the two
wildcards, so no query can inject an operator or a catastrophic pattern.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sightline.search.v1 import search_pb2

MAX_PLATE_LEN = 12
MAX_CAMERAS = 200
_PATTERN_RE = re.compile(r"^[A-Z0-9?*]+$")


class InvalidQuery(ValueError):
    """The request cannot be run; the message says why (returned as INVALID_ARGUMENT)."""


def normalize_plate(text: str) -> str:
    """Upper-case A-Z and 0-9 only: the form reads are stored and matched under."""
    return "".join(ch for ch in text.upper() if ("A" <= ch <= "Z") or ("0" <= ch <= "9"))


def pattern_to_regex(pattern: str) -> str:
    """'AB?12*' -> '^AB.12.*$' over normalised plates. '?' one character, '*' any run."""
    cleaned = "".join(ch for ch in pattern.upper() if ch not in " -·.")
    if not cleaned or len(cleaned) > MAX_PLATE_LEN * 2 or not _PATTERN_RE.match(cleaned):
        raise InvalidQuery("plate_pattern may hold only letters, digits, '?' and '*' (at most 24)")
    cleaned = re.sub(r"\*+", "*", cleaned)
    if cleaned.strip("*?") == "":
        raise InvalidQuery("plate_pattern needs at least one letter or digit")
    if sum(ch.isalnum() for ch in cleaned) > MAX_PLATE_LEN:
        raise InvalidQuery(f"plate_pattern has more than {MAX_PLATE_LEN} characters")
    return "^" + cleaned.replace("?", ".").replace("*", ".*") + "$"


@dataclass(frozen=True)
class PageToken:
    captured_at: datetime
    read_id: str

    def encode(self) -> str:
        raw = json.dumps({"t": self.captured_at.isoformat(), "id": self.read_id}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> PageToken:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            at = datetime.fromisoformat(data["t"])
            read_id = data["id"]
            if not isinstance(read_id, str) or at.tzinfo is None:
                raise ValueError
        except (binascii.Error, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise InvalidQuery("page_token is not one this service issued") from exc
        return cls(at.astimezone(UTC), read_id)


@dataclass(frozen=True)
class Query:
    filter: dict[str, Any]
    page_size: int


def build_query(req: search_pb2.SearchReadsRequest, default_page_size: int, max_page_size: int) -> Query:
    flt: dict[str, Any] = {}
    kind = req.WhichOneof("plate_query")
    if kind == "plate_exact":
        plate = normalize_plate(req.plate_exact)
        if not plate or len(plate) > MAX_PLATE_LEN:
            raise InvalidQuery(f"plate_exact must hold 1-{MAX_PLATE_LEN} letters or digits")
        flt["plate_normalized"] = plate
    elif kind == "plate_pattern":
        flt["plate_normalized"] = {"$regex": pattern_to_regex(req.plate_pattern)}
    if req.camera_ids:
        if len(req.camera_ids) > MAX_CAMERAS:
            raise InvalidQuery(f"at most {MAX_CAMERAS} camera_ids")
        flt["camera_id"] = {"$in": [str(c) for c in req.camera_ids]}
    time_range: dict[str, datetime] = {}
    if req.HasField("start_time"):
        time_range["$gte"] = req.start_time.ToDatetime(tzinfo=UTC)
    if req.HasField("end_time"):
        time_range["$lt"] = req.end_time.ToDatetime(tzinfo=UTC)
    if "$gte" in time_range and "$lt" in time_range and time_range["$gte"] >= time_range["$lt"]:
        raise InvalidQuery("start_time must be before end_time")
    if time_range:
        flt["captured_at"] = time_range
    if not flt:
        raise InvalidQuery("give a plate, a plate pattern, cameras or a time range")
    if req.page_size < 0 or req.page_size > max_page_size:
        raise InvalidQuery(f"page_size must be between 1 and {max_page_size}")
    if req.page_token:
        token = PageToken.decode(req.page_token)
        after = {"$or": [{"captured_at": {"$lt": token.captured_at}},
                         {"captured_at": token.captured_at, "_id": {"$lt": token.read_id}}]}
        flt = {"$and": [flt, after]}
    return Query(flt, req.page_size or default_page_size)
