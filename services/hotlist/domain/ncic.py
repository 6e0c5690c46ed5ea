"""Parser of NCIC-style hot files: CSV with a header row, or fixed-width records.

CSV: the header names the columns, with NCIC field codes or plain names (case-insensitive):
  LIC/PLATE  LIS/STATE  TYP/TYPE/CODE (record type)  NIC/RECORD_ID  ORI/AGENCY  EXP/EXPIRES
  MIS/REASON  VMA/MAKE  VMO/MODEL  VYR/YEAR  VCO/COLOR  VST/STYLE
Fixed width (`FixedWidthLayout`, the layout most state extracts use, 1-based columns):
  1 record type | 2-11 NIC | 12-21 LIC | 22-23 LIS | 24-32 ORI | 33-40 EXP (YYYYMMDD) | 41-44 VMA |
  45-47 VMO | 48-51 VYR | 52-54 VCO | 55- MIS
A plate may be partial ('AB?12*'): '?' one character, '*' any run, within the limits of `WildcardPolicy`.
Every refused line is reported with its number and reason; the rest are imported.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Literal

from services.common.plates import MAX_PLATE_LEN, InvalidQuery
from services.hotlist.domain.fuzzy_index import WILDCARDS, compile_pattern, is_pattern
from services.hotlist.domain.model import Entry, VehicleDescription, entry_id_for

RECORD_TYPES = {
    "V": "stolen vehicle",
    "P": "stolen plate",
    "A": "Amber alert",
    "F": "felony vehicle",
    "W": "wanted person",
    "M": "missing person",
    "S": "sex offender",
    "G": "gang member",
    "T": "known or suspected terrorist",
    "O": "protection order",
    "R": "supervised release",
    "L": "agency be-on-the-lookout",
}

# USPS / NCIC state codes: states, DC, territories, Canadian provinces, Mexico, US government and
# diplomatic plates.
STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI AB BC MB NB NL NS NT NU ON PE QC SK YT MX "
    "US DS".split()
)

Format = Literal["csv", "fixed"]

_ALIASES = {
    "plate": ("LIC", "PLATE", "LICENSE", "PLATE_NUMBER", "LICENSE_PLATE"),
    "state": ("LIS", "STATE", "PLATE_STATE"),
    "code": ("TYP", "TYPE", "CODE", "NCIC_CODE", "RECORD_TYPE"),
    "record_id": ("NIC", "NCIC_NUMBER", "RECORD_ID", "ID"),
    "owner": ("ORI", "AGENCY"),
    "expires": ("EXP", "EXPIRES", "EXPIRATION", "EXPIRES_AT"),
    "reason": ("MIS", "REASON", "REMARKS"),
    "make": ("VMA", "MAKE"),
    "model": ("VMO", "MODEL"),
    "year": ("VYR", "YEAR"),
    "colour": ("VCO", "COLOR", "COLOUR"),
    "style": ("VST", "STYLE"),
}


class BadFile(ValueError):
    """The file as a whole cannot be read (e.g. a CSV header without a plate column)."""


@dataclass(frozen=True)
class FixedWidthLayout:
    """0-based [start, end) slices of each field."""

    code: tuple[int, int] = (0, 1)
    record_id: tuple[int, int] = (1, 11)
    plate: tuple[int, int] = (11, 21)
    state: tuple[int, int] = (21, 23)
    owner: tuple[int, int] = (23, 32)
    expires: tuple[int, int] = (32, 40)
    make: tuple[int, int] = (40, 44)
    model: tuple[int, int] = (44, 47)
    year: tuple[int, int] = (47, 51)
    colour: tuple[int, int] = (51, 54)
    reason: tuple[int, int] = (54, 200)

    @property
    def min_length(self) -> int:
        return self.state[1]

    def fields(self, line: str) -> dict[str, str]:
        return {name: line[a:b].strip() for name, (a, b) in vars(self).items()}


@dataclass
class ParseResult:
    entries: list[Entry] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


class InvalidEntry(ValueError):
    """One line refused; the message is the reason reported to the importer."""


@dataclass(frozen=True)
class WildcardPolicy:
    """Limits on partial plates. One that starts with a wildcard, or has few fixed characters, matches a large
    share of all plates: a sweep of every read rather than a lookout for one vehicle."""

    # Letters and digits a partial plate must fix.
    min_fixed: int
    # Partial plates one list may hold.
    max_per_list: int

    def check(self, plate: str) -> None:
        """Raises InvalidEntry unless the partial plate `plate` is narrow enough."""
        if plate[0] in WILDCARDS:
            raise InvalidEntry("a partial plate may not start with '?' or '*' (it would match too many plates)")
        if sum(ch.isalnum() for ch in plate) < self.min_fixed:
            raise InvalidEntry(f"a partial plate needs at least {self.min_fixed} fixed letters or digits")

    def check_count(self, count: int) -> None:
        """Raises InvalidEntry when a list already holding `count` partial plates may take no more."""
        if count >= self.max_per_list:
            raise InvalidEntry(f"a list may hold at most {self.max_per_list} partial plates")


def detect_format(first_line: str) -> Format:
    header = {c.strip().upper() for c in first_line.split(",")}
    return "csv" if header & set(_ALIASES["plate"]) else "fixed"


def _plate(text: str, wildcards: WildcardPolicy) -> str:
    plate = "".join(ch for ch in text.upper() if ch not in " -.·")
    if not plate:
        raise InvalidEntry("missing plate")
    if not all(("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "?*" for ch in plate):
        raise InvalidEntry("plate has characters other than letters, digits, '?' and '*'")
    if sum(ch.isalnum() for ch in plate) > MAX_PLATE_LEN:
        raise InvalidEntry(f"plate longer than {MAX_PLATE_LEN} characters")
    if is_pattern(plate):
        try:
            compile_pattern(plate)
        except InvalidQuery as exc:
            raise InvalidEntry(f"bad partial plate: {exc}") from None
        wildcards.check(plate)
    return plate


def _expiry(text: str, now: datetime) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.strptime(text, "%Y%m%d") if text.isdigit() else datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEntry(f"bad expiry date {text!r} (YYYYMMDD or ISO 8601)") from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if at <= now:
        raise InvalidEntry("record already expired")
    return at


def build_entry(list_id: str, f: dict[str, str], now: datetime, wildcards: WildcardPolicy,
                require_state: bool = True) -> Entry:
    """An entry from named fields (a parsed line or a manual entry); raises InvalidEntry. The list's count of
    partial plates is the caller's to check (WildcardPolicy.check_count)."""
    plate = _plate(f.get("plate", ""), wildcards)
    state = f.get("state", "").strip().upper()
    if not state and require_state:
        raise InvalidEntry("missing state")
    if state and state not in STATES:
        raise InvalidEntry(f"unknown state {state!r}")
    code = f.get("code", "").strip().upper()
    if code not in RECORD_TYPES:
        raise InvalidEntry(f"unknown record type {code!r}" if code else "missing record type")
    expires_at = _expiry(f.get("expires", "").strip(), now)
    record_id = f.get("record_id", "").strip()
    vehicle = VehicleDescription(*(f.get(k, "").strip() for k in ("make", "model", "year", "colour", "style")))
    return Entry(
        entry_id=entry_id_for(list_id, plate, state, code, record_id),
        list_id=list_id,
        plate=plate,
        state=state,
        code=code,
        reason=f.get("reason", "").strip() or RECORD_TYPES[code],
        owner=f.get("owner", "").strip(),
        record_id=record_id,
        expires_at=expires_at,
        vehicle=vehicle if vehicle != VehicleDescription() else None,
    )


def _csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV line, or None when it is not valid CSV (a stray carriage return, say)."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return None


def _csv_rows(lines: Iterator[tuple[int, str]], header_line: str) -> Iterator[tuple[int, dict[str, str] | str]]:
    if (fields := _csv_fields(header_line)) is None:
        raise BadFile("the CSV header line is not valid CSV")
    header = [c.strip().upper() for c in fields]
    columns: dict[str, int] = {}
    for name, aliases in _ALIASES.items():
        for i, col in enumerate(header):
            if col in aliases:
                columns[name] = i
                break
    if "plate" not in columns:
        raise BadFile(f"CSV header has no plate column (one of {', '.join(_ALIASES['plate'])})")
    for number, line in lines:
        row = _csv_fields(line)
        if row is None:
            yield number, "not a valid CSV line"
        elif len(row) != len(header):
            yield number, f"{len(row)} fields where the header has {len(header)}"
        else:
            yield number, {name: row[i] for name, i in columns.items()}


def _fixed_rows(lines: Iterable[tuple[int, str]], layout: FixedWidthLayout,
                ) -> Iterator[tuple[int, dict[str, str] | str]]:
    for number, line in lines:
        if len(line.rstrip()) < layout.min_length:
            yield number, f"line shorter than {layout.min_length} characters"
        else:
            yield number, layout.fields(line)


def parse(lines: Iterable[str], list_id: str, now: datetime, wildcards: WildcardPolicy, fmt: Format | None = None,
          layout: FixedWidthLayout = FixedWidthLayout()) -> ParseResult:
    """Entries of a hot file and the refused lines (1-based numbers) with reasons. Raises BadFile."""
    result = ParseResult()
    numbered = ((n, line.rstrip("\r\n")) for n, line in enumerate(lines, start=1))
    content = ((n, line) for n, line in numbered if line.strip() and not line.lstrip().startswith("#"))
    first = next(content, None)
    if first is None:
        return result
    fmt = fmt or detect_format(first[1])
    rows: Iterator[tuple[int, dict[str, str] | str]]
    rows = _csv_rows(content, first[1]) if fmt == "csv" else _fixed_rows(chain([first], content), layout)
    seen: dict[str, int] = {}
    partial = 0
    for number, row in rows:
        if isinstance(row, str):
            result.rejected.append((number, row))
            continue
        try:
            entry = build_entry(list_id, row, now, wildcards)
            if entry.entry_id not in seen and is_pattern(entry.plate):
                wildcards.check_count(partial)
        except InvalidEntry as exc:
            result.rejected.append((number, str(exc)))
            continue
        if (dup := seen.get(entry.entry_id)) is not None:
            result.rejected.append((number, f"duplicate of line {dup}"))
            continue
        seen[entry.entry_id] = number
        partial += is_pattern(entry.plate)
        result.entries.append(entry)
    return result
