"""Retention rules: the states' caps, an agency's effective retention, and capture days.

Days are UTC calendar days of the capture time. A read captured on day D expires at `captured_at + days`;
the whole of day D has expired at `D + 1 day + days`, which is when D's data key is destroyed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any


@dataclass(frozen=True)
class StateCap:
    days: int
    source: str


# The most days a state lets an agency keep ALPR reads that are not evidence. Sources: the statutes named;
# docs/retention.md has the table. States not listed get `default_cap_days` (settings) unless configured.
STATE_CAPS: dict[str, StateCap] = {
    "VA": StateCap(21, "Va. Code Ann. § 2.2-5517 (2025)"),
    "ME": StateCap(21, "Me. Rev. Stat. tit. 29-A, § 2117-A"),
    "MN": StateCap(60, "Minn. Stat. § 13.824"),
    "NC": StateCap(90, "N.C. Gen. Stat. § 20-183.32"),
    "TN": StateCap(90, "Tenn. Code Ann. § 55-10-302"),
    "MT": StateCap(90, "Mont. Code Ann. § 46-5-118"),
    "AR": StateCap(150, "Ark. Code Ann. § 12-12-1804"),
    "NE": StateCap(180, "Neb. Rev. Stat. § 60-3205"),
    "UT": StateCap(270, "Utah Code Ann. § 41-6a-2004 (9 months)"),
}
DEFAULT_RETENTION_DAYS = 30


class PolicyError(ValueError):
    """A retention setting that the state's cap (or common sense) does not allow."""


@dataclass(frozen=True)
class CapTable:
    """The statutory table, overridden or extended by configuration (`SIGHTLINE_STATE_CAPS`)."""

    default_cap_days: int
    overrides: Mapping[str, int]

    def cap(self, state: str) -> StateCap:
        state = state.upper()
        if state in self.overrides:
            return StateCap(self.overrides[state], "configured (SIGHTLINE_STATE_CAPS)")
        if state in STATE_CAPS:
            return STATE_CAPS[state]
        return StateCap(self.default_cap_days, "no statute on file: configured default cap")


def check_setting(table: CapTable, state: str, days: int) -> StateCap:
    """The cap that allows `days` in `state`, or PolicyError."""
    if len(state) != 2 or not state.isalpha():
        raise PolicyError("state must be a two-letter code such as VA")
    if days < 1:
        raise PolicyError("retention_days must be at least 1")
    cap = table.cap(state)
    if days > cap.days:
        raise PolicyError(f"{state.upper()} allows at most {cap.days} days of retention ({cap.source}); "
                          f"{days} refused")
    return cap


def effective_days(table: CapTable, agency: Mapping[str, Any] | None, default_days: int) -> int:
    """Days ingest applies for an agency document: its setting (else the default), never above its state's cap."""
    agency = agency or {}
    days = int(agency.get("retention_days") or default_days)
    state = str(agency.get("state") or "")
    return min(days, table.cap(state).days) if state else days


def capture_day(captured_at: datetime) -> str:
    return captured_at.astimezone(UTC).date().isoformat()


def day_bounds(day: str) -> tuple[datetime, datetime]:
    start = datetime.combine(date.fromisoformat(day), time(), UTC)
    return start, start + timedelta(days=1)


def day_retention_ends(day: str, days: int) -> datetime:
    """When the last read captured on `day` has expired."""
    return day_bounds(day)[1] + timedelta(days=days)
