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
    """How a list's entries are matched beyond exact equality, and whose list it is."""

    fuzzy_confusions: bool = True
    # Substituted, missing or extra characters tolerated: 0 or 1.
    max_edits: int = 0
    # The agency that owns the list: it matches only the reads HotlistSharing allows it (none when empty).
    agency_id: str = ""

    @property
    def fuzzy(self) -> bool:
        return self.fuzzy_confusions or self.max_edits > 0


def entry_id_for(list_id: str, plate: str, state: str, code: str, record_id: str) -> str:
    """Stable across daily refreshes of a list: the same record keeps its id."""
    key = "\x1f".join((list_id, record_id) if record_id else (list_id, plate, state, code))
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class HotlistSharing:
    """Whose lists may match whose reads: an agency's own lists match its reads, and so do the lists of the
    agencies it names in its record's `hotlist_share_with` (services/common/agencies.py). Nothing else."""

    # read agency -> the other agencies whose lists may match its reads
    grants: dict[str, frozenset[str]]

    def list_agencies(self, read_agency: str) -> frozenset[str]:
        """The agencies whose lists may match a read of `read_agency`."""
        return self.grants.get(read_agency, frozenset()) | {read_agency}

    def read_agencies(self, list_agency: str) -> list[str]:
        """The agencies whose reads a list of `list_agency` may match: its own first."""
        return [list_agency, *sorted(a for a, g in self.grants.items() if list_agency in g and a != list_agency)]
