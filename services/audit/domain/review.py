"""Supervisor review: the MongoDB filter of a review query, and the automatic flags. Pure.

A reviewer sees the entries of their own agency: those its users made and those that touched its data
(partner access), so a partner search is visible to both agencies.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SEARCH_ACTIONS = ("search", "convoy", "read.view", "image.view")
ALLOWED = "OUTCOME_ALLOWED"


def agency_scope(agency_id: str) -> dict[str, Any]:
    return {"$or": [{"event.agency_id": agency_id}, {"event.data_agency_ids": agency_id}]}


def review_filter(agency_id: str, *, user_id: str = "", plate: str = "", case_number: str = "", purpose: str = "",
                  action: str = "", start: datetime | None = None, end: datetime | None = None,
                  before_sequence: int = 0) -> dict[str, Any]:
    """Every term is a plain value (never an operator): user input cannot change the query's shape."""
    clauses: list[dict[str, Any]] = [agency_scope(agency_id)]
    for key, value in (("event.user_id", user_id), ("event.plates", plate), ("event.case_number", case_number),
                       ("event.purpose", purpose), ("event.action", action)):
        if value:
            clauses.append({key: str(value)})
    at: dict[str, datetime] = {}
    if start is not None:
        at["$gte"] = start
    if end is not None:
        at["$lt"] = end
    if at:
        clauses.append({"at": at})
    if before_sequence > 0:
        clauses.append({"_id": {"$lt": int(before_sequence)}})
    return {"$and": clauses}


@dataclass(frozen=True)
class Flag:
    kind: str  # "no_case_number" | "unusual_volume" | "plate_many_users"
    count: int
    detail: str
    user_id: str = ""
    username: str = ""
    plate: str = ""


@dataclass(frozen=True)
class FlagPolicy:
    # A user with at least this many searches in the window is flagged ...
    volume_threshold: int = 200
    # ... and so is one with more than `volume_factor` times the agency's median (given 3 or more users).
    volume_factor: float = 5.0
    # A plate searched by at least this many different users is flagged.
    plate_min_users: int = 5


def no_case_flags(counts: Mapping[tuple[str, str], int]) -> list[Flag]:
    """counts: (user_id, username) -> allowed searches without a case number."""
    return [Flag("no_case_number", n, f"{n} searches without a case or incident number", uid, name)
            for (uid, name), n in sorted(counts.items(), key=lambda kv: -kv[1]) if n > 0]


def volume_flags(counts: Mapping[tuple[str, str], int], policy: FlagPolicy) -> list[Flag]:
    """counts: (user_id, username) -> searches in the window."""
    median = statistics.median(counts.values()) if len(counts) >= 3 else None
    flags = []
    for (uid, name), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if n >= policy.volume_threshold:
            flags.append(Flag("unusual_volume", n, f"{n} searches (threshold {policy.volume_threshold})", uid, name))
        elif median is not None and n > policy.volume_factor * max(median, 1):
            flags.append(Flag("unusual_volume", n, f"{n} searches, over {policy.volume_factor:g}x the agency "
                              f"median of {median:g}", uid, name))
    return flags


def plate_flags(users_per_plate: Mapping[str, int], policy: FlagPolicy) -> list[Flag]:
    return [Flag("plate_many_users", n, f"searched by {n} different users", plate=plate)
            for plate, n in sorted(users_per_plate.items(), key=lambda kv: -kv[1]) if n >= policy.plate_min_users]
