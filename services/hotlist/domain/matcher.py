"""The in-memory match index of hot-list entries, built for a million entries and O(plate length) lookups.

Per list (`ListIndex`):
- exact: dict plate -> entries;
- fuzzy: every entry's skeleton (confusion classes collapsed) and, when the list tolerates an edit, its
  single-character deletions (symmetric delete). The bulk of these keys lives in two sorted numpy arrays
  (key hash, entry number) searched with `searchsorted`; entries added later go to a small dict overlay.
  Hash collisions only add candidates: every candidate is verified, and the verification says how it
  matched ('fuzzy: 8→B, missing C');
- wildcard entries: a short list of anchored regexes, tried one by one.
Removed entries stay in the arrays until the next rebuild but are skipped: a candidate counts only while
`entries[entry_id]` is that very entry.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from services.common.plates import explain_match, skeleton
from services.hotlist.domain.fuzzy_index import compile_pattern, delete_keys, is_pattern
from services.hotlist.domain.model import Entry, ListConfig

MatchKind = Literal["exact", "fuzzy", "wildcard"]


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    list_id: str
    list_version: int
    # The list's agency: the alert is that agency's.
    agency_id: str
    kind: MatchKind
    # 'exact', 'fuzzy: 8→B', 'wildcard: AB?12*'; ' (state not read)' when the read has no state.
    detail: str


def explain(read: str, plate: str, config: ListConfig) -> str | None:
    """How `read` matches `plate` under the list's tolerance, or None."""
    return explain_match(read, plate, config.fuzzy_confusions, config.max_edits)


def _state_ok(entry: Entry, state: str) -> bool:
    return not entry.state or not state or entry.state == state


class ListIndex:
    """One version of one list, ready to match. Not thread-safe: one owner (the matcher task) mutates it."""

    def __init__(self, list_id: str, version: int, config: ListConfig, entries: Iterable[Entry] = ()):
        self.list_id = list_id
        self.version = version
        self.config = config
        self.entries: dict[str, Entry] = {}
        self._exact: dict[str, list[Entry]] = {}
        self._wildcards: dict[str, tuple[re.Pattern[str], Entry]] = {}
        self._base: list[Entry] = []
        self._base_keys = np.empty(0, dtype=np.int64)
        self._base_rows = np.empty(0, dtype=np.int32)
        self._overlay: dict[int, list[Entry]] = {}
        self._build(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def _fuzzy_keys(self, plate: str) -> list[str]:
        key = skeleton(plate) if self.config.fuzzy_confusions else plate
        return delete_keys(key, self.config.max_edits)

    def _build(self, entries: Iterable[Entry]) -> None:
        hashes: list[int] = []
        rows: list[int] = []
        for entry in entries:
            if not self._add_plain(entry) or not self.config.fuzzy:
                continue
            row = len(self._base)
            self._base.append(entry)
            for key in self._fuzzy_keys(entry.plate):
                hashes.append(hash(key))
                rows.append(row)
        if hashes:
            keys = np.fromiter(hashes, dtype=np.int64, count=len(hashes))
            order = np.argsort(keys, kind="stable")
            self._base_keys = keys[order]
            self._base_rows = np.fromiter(rows, dtype=np.int32, count=len(rows))[order]

    def _add_plain(self, entry: Entry) -> bool:
        """Registers the entry for exact/wildcard matching; True when it also belongs in the fuzzy index."""
        self.remove(entry.entry_id)
        self.entries[entry.entry_id] = entry
        if is_pattern(entry.plate):
            self._wildcards[entry.entry_id] = (compile_pattern(entry.plate), entry)
            return False
        self._exact.setdefault(entry.plate, []).append(entry)
        return True

    def add(self, entry: Entry) -> None:
        if self._add_plain(entry) and self.config.fuzzy:
            for key in self._fuzzy_keys(entry.plate):
                self._overlay.setdefault(hash(key), []).append(entry)

    def remove(self, entry_id: str) -> bool:
        entry = self.entries.pop(entry_id, None)
        if entry is None:
            return False
        self._wildcards.pop(entry_id, None)
        same_plate = self._exact.get(entry.plate)
        if same_plate is not None:
            same_plate[:] = [e for e in same_plate if e.entry_id != entry_id]
            if not same_plate:
                del self._exact[entry.plate]
        return True  # fuzzy keys stay; candidates are checked against self.entries

    def _fuzzy_candidates(self, plate: str) -> list[Entry]:
        hashes = [hash(k) for k in self._fuzzy_keys(plate)]
        out: list[Entry] = []
        if len(self._base_keys):
            q = np.array(hashes, dtype=np.int64)
            lo = np.searchsorted(self._base_keys, q, "left")
            hi = np.searchsorted(self._base_keys, q, "right")
            for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
                out.extend(self._base[r] for r in self._base_rows[a:b].tolist())
        for h in hashes:
            out.extend(self._overlay.get(h, ()))
        return out

    def match(self, plate: str, state: str, now: datetime) -> list[Match]:
        found: dict[str, Match] = {}
        suffix = "" if state else " (state not read)"

        def hit(entry: Entry, kind: MatchKind, detail: str) -> None:
            if (entry.entry_id not in found and self.entries.get(entry.entry_id) is entry
                    and _state_ok(entry, state) and entry.active(now)):
                found[entry.entry_id] = Match(entry, self.list_id, self.version, self.config.agency_id, kind,
                                              detail + suffix)

        for entry in self._exact.get(plate, ()):
            hit(entry, "exact", "exact")
        if self.config.fuzzy:
            for entry in self._fuzzy_candidates(plate):
                if entry.entry_id not in found and (how := explain(plate, entry.plate, self.config)):
                    hit(entry, "exact" if how == "exact" else "fuzzy", how)
        for pattern, entry in self._wildcards.values():
            if pattern.match(plate):
                hit(entry, "wildcard", f"wildcard: {entry.plate}")
        return list(found.values())


class MatchIndex:
    """All active lists. The matcher swaps a list's ListIndex in one assignment when its version changes."""

    def __init__(self) -> None:
        self.lists: dict[str, ListIndex] = {}

    def match(self, plate: str, state: str, now: datetime, agencies: Collection[str]) -> list[Match]:
        """Matches of the lists of `agencies` only (HotlistSharing.list_agencies of the read's agency)."""
        if not plate:
            return []
        return [m for index in self.lists.values() if index.config.agency_id in agencies
                for m in index.match(plate, state, now)]
