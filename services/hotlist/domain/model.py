"""Hot-list entries and per-list matching settings (plain values, no I/O)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class VehicleDescription:
    make: str = ""
    model: str = ""
    year: str = ""
    colour: str = ""
    style: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    list_id: str
    # Normalised plate (A-Z, 0-9), or a partial plate with '?' / '*'.
    plate: str
    # Issuing state; "" matches any state.
    state: str = ""
    # NCIC record type letter (see ncic.RECORD_TYPES).
    code: str = ""
    reason: str = ""
    owner: str = ""
    record_id: str = ""
    expires_at: datetime | None = None
    vehicle: VehicleDescription | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


# Sources that are national or state records rather than one agency's own: every agency sees these lists
# (ListLists), while only the owner agency that loads them may change them.
SHARED_SOURCES = ("ncic", "state", "ncmec")


@dataclass(frozen=True, slots=True)
class ListConfig:
    """How a list's entries are matched beyond exact equality."""

    fuzzy_confusions: bool = True
    # Substituted, missing or extra characters tolerated: 0 or 1.
    max_edits: int = 0

    @property
    def fuzzy(self) -> bool:
        return self.fuzzy_confusions or self.max_edits > 0


def entry_id_for(list_id: str, plate: str, state: str, code: str, record_id: str) -> str:
    """Stable across daily refreshes of a list: the same record keeps its id."""
    key = "\x1f".join((list_id, record_id) if record_id else (list_id, plate, state, code))
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
