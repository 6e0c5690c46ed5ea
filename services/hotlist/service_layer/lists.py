"""Use cases of hot lists: create or change a list, import a hot file, add and remove entries, back-search.

Each takes the verified caller and the audit event the caller's request opened, checks the list is the
caller's agency's, writes the event to the audit trail before the change (through `Auditor`), then changes
MongoDB and the active copy in Redis. Refusals are raised as `Rejected`; nothing here knows gRPC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from services.audit.client import Auditor, AuditUnavailable
from services.common.auth import Permission, Principal
from services.common.ids import valid_id
from services.common.logging import redact_plate
from services.common.purpose import check_access
from services.common.rejected import Code, Rejected
from services.hotlist.adapters.active_lists import Snapshot, StaleVersion
from services.hotlist.adapters.codec import config_of, entry_from_doc
from services.hotlist.adapters.store import ConcurrentImport
from services.hotlist.domain.fuzzy_index import is_pattern
from services.hotlist.domain.matcher import ListIndex, Match
from services.hotlist.domain.model import Entry, ListConfig, entry_id_for
from services.hotlist.domain.ncic import (
    BadFile,
    Format,
    InvalidEntry,
    ParseResult,
    WildcardPolicy,
    build_entry,
    parse,
)
from services.hotlist.service_layer.backsearch import Found
from sightline.audit.v1 import audit_pb2

log = logging.getLogger(__name__)
# Entries one BackSearch may name (each is listed in its audit event).
MAX_BACKSEARCH_ENTRIES = 100
_BAD_ID = "must be 1-128 of A-Z a-z 0-9 . _ : -"


class ListStore(Protocol):
    async def get_list(self, list_id: str) -> dict[str, Any] | None: ...

    async def upsert_list(self, list_id: str, owner: str, fields: dict[str, Any],
                          now: datetime) -> dict[str, Any] | None: ...

    async def replace_entries(self, list_id: str, old_version: int, entries: Sequence[Entry],
                              now: datetime) -> dict[str, Any]: ...

    async def add_entry(self, version: int, entry: Entry) -> None: ...

    async def remove_entry(self, list_id: str, version: int, entry_id: str) -> bool: ...

    def entries(self, list_id: str, version: int) -> AsyncIterator[dict[str, Any]]: ...

    async def entries_by_id(self, list_id: str, version: int, entry_ids: Iterable[str]) -> list[dict[str, Any]]: ...

    async def partial_plates(self, list_id: str, version: int) -> int: ...


class ActiveCopy(Protocol):
    """The lists the matchers use (Redis): versions and their entries."""

    async def snapshot(self) -> Snapshot: ...

    async def publish_version(self, list_id: str, version: int, config: ListConfig,
                              entries: Iterable[Entry]) -> None: ...

    async def set_config(self, list_id: str, config: ListConfig) -> None: ...

    async def add_entry(self, version: int, entry: Entry) -> None: ...

    async def remove_entry(self, list_id: str, version: int, entry_id: str) -> bool: ...


class ReadSearch(Protocol):
    async def find(self, index: ListIndex, agencies: list[str]) -> Found: ...


class Raiser(Protocol):
    async def raise_alerts(self, hits: Iterable[tuple[dict[str, Any], list[Match]]], historical: bool,
                           token: str) -> int: ...


@dataclass(frozen=True)
class Imported:
    doc: dict[str, Any]
    parsed: ParseResult


@dataclass(frozen=True)
class BackSearchResult:
    alerts: int
    truncated: bool


class HotLists:
    def __init__(self, store: ListStore, active: ActiveCopy, auditor: Auditor, wildcards: WildcardPolicy,
                 max_import_bytes: int):
        self._store = store
        self._active = active
        self._auditor = auditor
        self._wildcards = wildcards
        self.max_import_bytes = max_import_bytes

    async def owned_list(self, list_id: str, principal: Principal, event: audit_pb2.AuditEvent) -> dict[str, Any]:
        """The list, when the caller's agency owns it: NOT_FOUND, or PERMISSION_DENIED (audited)."""
        doc = await self._store.get_list(list_id) if list_id else None
        if doc is None:
            raise Rejected(Code.NOT_FOUND, f"no list {list_id!r}; create it with UpsertList")
        await self._check_owner(doc, principal, event)
        return doc

    async def _check_owner(self, doc: dict[str, Any], principal: Principal, event: audit_pb2.AuditEvent) -> None:
        event.data_agency_ids[:] = [doc.get("owner", "")]
        if doc.get("owner") != principal.agency_id:
            await self._auditor.deny(principal, event, Rejected(
                Code.PERMISSION_DENIED, f"list {doc['_id']!r} belongs to another agency: only its owner may change it"))

    async def upsert(self, principal: Principal, list_id: str, owner: str, fields: dict[str, Any],
                     event: audit_pb2.AuditEvent) -> dict[str, Any]:
        """Creates the list for the caller's agency, or changes its settings; the active copy follows."""
        if not valid_id(list_id):
            raise Rejected(Code.INVALID_ARGUMENT, f"list_id {_BAD_ID}")
        if fields["max_edits"] not in (0, 1):
            raise Rejected(Code.INVALID_ARGUMENT, "max_edits must be 0 or 1")
        if owner and owner != principal.agency_id:
            await self._auditor.deny(principal, event, Rejected(
                Code.PERMISSION_DENIED,
                "a list belongs to the agency that creates it: leave owner empty or set your own"))
        existing = await self._store.get_list(list_id)
        if existing is not None:
            await self._check_owner(existing, principal, event)
            event.details.update({"version": existing["version"]})
        event.details.update({"created": existing is None})
        event.data_agency_ids[:] = [principal.agency_id]
        await self._auditor.record(principal, event)
        doc = await self._store.upsert_list(list_id, principal.agency_id, fields, datetime.now(UTC))
        if doc is None:  # created by another agency since the check above
            raise Rejected(Code.PERMISSION_DENIED,
                           f"list {list_id!r} belongs to another agency: only its owner may change it")
        if list_id in (await self._active.snapshot()).versions:
            await self._active.set_config(list_id, config_of(doc))
        else:
            await self._active.publish_version(list_id, doc["version"], config_of(doc), [])
        return doc

    async def import_file(self, principal: Principal, doc: dict[str, Any], fmt: Format | None, data: bytes,
                          event: audit_pb2.AuditEvent, size: int) -> Imported:
        """Replaces the entries of an owned list (`owned_list`) by a hot file's (`size` bytes sent, of which
        `data` was kept), as its next version."""
        if size > self.max_import_bytes:
            raise Rejected(Code.INVALID_ARGUMENT, f"file larger than {self.max_import_bytes} bytes")
        list_id, now = doc["_id"], datetime.now(UTC)
        text = data.decode("utf-8", errors="replace")
        try:
            parsed = await asyncio.to_thread(parse, text.splitlines(), list_id, now, self._wildcards, fmt)
        except BadFile as exc:
            raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc
        event.details.update({"from_version": doc["version"], "version": doc["version"] + 1, "bytes": size,
                              "accepted": len(parsed.entries), "rejected": len(parsed.rejected)})
        event.result_count = len(parsed.entries)
        await self._auditor.record(principal, event)
        try:
            doc = await self._store.replace_entries(list_id, doc["version"], parsed.entries, now)
        except ConcurrentImport as exc:
            raise Rejected(Code.ABORTED, str(exc)) from exc
        await self._active.publish_version(list_id, doc["version"], config_of(doc), parsed.entries)
        log.info("list imported", extra={"list_id": list_id, "version": doc["version"],
                                         "accepted": len(parsed.entries), "rejected": len(parsed.rejected)})
        return Imported(doc, parsed)

    async def add_entry(self, principal: Principal, list_id: str, fields: dict[str, Any], entry_id: str,
                        event: audit_pb2.AuditEvent) -> tuple[Entry, int]:
        """Adds one entry to the current version of an owned list; returns it and that version."""
        doc = await self.owned_list(list_id, principal, event)
        now = datetime.now(UTC)
        try:
            entry = build_entry(doc["_id"], fields, now, self._wildcards, require_state=False)
            if is_pattern(entry.plate):
                self._wildcards.check_count(await self._store.partial_plates(doc["_id"], doc["version"]))
        except InvalidEntry as exc:
            raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc
        if entry_id:
            if not valid_id(entry_id):
                raise Rejected(Code.INVALID_ARGUMENT, f"entry_id {_BAD_ID}")
            entry = replace(entry, entry_id=entry_id)
        elif not entry.record_id:
            # Without a record id, each manual entry is its own record (two Amber alerts for one plate).
            entry = replace(entry, entry_id=entry_id_for(doc["_id"], entry.plate, entry.state, entry.code,
                                                         f"manual:{now.isoformat()}"))
        version = doc["version"]
        event.plates[:] = [entry.plate]
        event.details.update({"version": version, "entry_id": entry.entry_id, "state": entry.state,
                              "code": entry.code, "record_id": entry.record_id})
        await self._auditor.record(principal, event)
        await self._store.add_entry(version, entry)
        try:
            await self._active.add_entry(version, entry)
        except StaleVersion as exc:
            raise Rejected(Code.ABORTED, f"{exc}; add the entry again") from exc
        log.info("entry added", extra={"list_id": entry.list_id, "plate": redact_plate(entry.plate)})
        return entry, version

    async def remove_entry(self, principal: Principal, list_id: str, entry_id: str,
                           event: audit_pb2.AuditEvent) -> bool:
        doc = await self.owned_list(list_id, principal, event)
        event.details.update({"version": doc["version"]})
        await self._auditor.record(principal, event)
        try:
            removed = await self._active.remove_entry(doc["_id"], doc["version"], entry_id)
        except StaleVersion as exc:
            raise Rejected(Code.ABORTED, str(exc)) from exc
        return await self._store.remove_entry(doc["_id"], doc["version"], entry_id) or removed

    async def back_search(self, principal: Principal, list_id: str, entry_ids: Sequence[str], purpose: int,
                          case_number: str, event: audit_pb2.AuditEvent, agencies: list[str], reads: ReadSearch,
                          raiser: Raiser) -> BackSearchResult:
        """A search of past reads (of `agencies`) for an owned list's entries, bound to a purpose and a case
        number like SearchReads, audited before it answers; its hits raise historical alerts."""
        if not principal.can(Permission.SEARCH):
            await self._auditor.deny(principal, event, Rejected(
                Code.PERMISSION_DENIED,
                f"a back-search is a search of reads: your roles do not allow {Permission.SEARCH}"))
        doc = await self.owned_list(list_id, principal, event)
        try:
            check_access(principal, purpose, case_number, include_partners=False)
        except Rejected as exc:
            await self._auditor.deny(principal, event, exc)
        if not case_number.strip():
            await self._auditor.deny(principal, event, Rejected(
                Code.INVALID_ARGUMENT, "a back-search needs the case or incident number it is made for"))
        if len(entry_ids) > MAX_BACKSEARCH_ENTRIES:
            raise Rejected(Code.INVALID_ARGUMENT,
                           f"at most {MAX_BACKSEARCH_ENTRIES} entry_ids; leave it empty to search the whole list")
        version = doc["version"]
        if entry_ids:
            docs = await self._store.entries_by_id(doc["_id"], version, entry_ids)
            if missing := set(entry_ids) - {d["entry_id"] for d in docs}:
                raise Rejected(Code.NOT_FOUND,
                               f"no entry {sorted(missing)[0]!r} in version {version} of list {doc['_id']!r}")
        else:
            docs = [d async for d in self._store.entries(doc["_id"], version)]
        if not docs:
            raise Rejected(Code.FAILED_PRECONDITION, f"list {doc['_id']!r} has no entries to search for")
        entries = [entry_from_doc(d) for d in docs]
        found = await reads.find(ListIndex(doc["_id"], version, config_of(doc), entries), agencies)
        event.data_agency_ids[:] = agencies
        if entry_ids:
            event.plates[:] = sorted({e.plate for e in entries if not is_pattern(e.plate)})
        event.details.update({"version": version, "entries": len(entries), "truncated": found.truncated})
        event.result_count = found.count
        await self._auditor.record(principal, event)
        try:
            raised = await raiser.raise_alerts(found.hits, historical=True, token=principal.token)
        except AuditUnavailable as exc:
            log.error("back-search hits not raised: audit trail unavailable", extra={"error": str(exc)[:200]})
            raise Rejected(Code.UNAVAILABLE,
                           "audit trail unavailable: the hits on partner agencies' reads were not raised") from exc
        log.info("back-search", extra={"list_id": doc["_id"], "entries": len(entries), "hits": found.count,
                                       "alerts": raised, "partner_agencies": len(agencies) - 1})
        return BackSearchResult(raised, found.truncated)


async def reconcile(store: Any, active: Any) -> None:
    """Republishes any list whose version in Redis differs from MongoDB's (e.g. Redis lost its data), and
    rewrites any list's settings there that differ (e.g. written before lists carried their agency)."""
    snap = await active.snapshot()
    for doc in await store.lists():
        if snap.versions.get(doc["_id"]) != doc["version"]:
            entries = [entry_from_doc(e) async for e in store.entries(doc["_id"], doc["version"])]
            await active.publish_version(doc["_id"], doc["version"], config_of(doc), entries)
            log.info("list republished to redis", extra={"list_id": doc["_id"], "version": doc["version"]})
        elif snap.configs.get(doc["_id"]) != config_of(doc):
            await active.set_config(doc["_id"], config_of(doc))
