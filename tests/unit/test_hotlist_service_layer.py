"""The hot-list use cases (services/hotlist/service_layer) on fakes of their ports: the store, the active copy
in Redis and the audit trail. What is audited, in which order, and what a refusal leaves unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import pytest

from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.hotlist.adapters.active_lists import Snapshot
from services.hotlist.domain.alerts import Disposition, Status
from services.hotlist.domain.model import Entry, ListConfig
from services.hotlist.domain.ncic import WildcardPolicy
from services.hotlist.service_layer.alert_desk import AlertDesk
from services.hotlist.service_layer.lists import HotLists
from sightline.audit.v1 import audit_pb2

pytestmark = pytest.mark.unit


def person(agency: str = "pd-a", user: str = "u1") -> Principal:
    return Principal(user_id=user, username=user, agency_id=agency, roles=frozenset({"supervisor"}),
                     second_factor=True, training_until=datetime.now(UTC) + timedelta(days=30))


class FakeAuditor:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, int]] = []
        self.denied: list[tuple[str, str]] = []
        self.down = False

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        if self.down:
            raise Rejected(Code.UNAVAILABLE, "audit trail unavailable")
        self.recorded.append((event.action, event.outcome))

    async def deny(self, principal: Principal | None, event: audit_pb2.AuditEvent, refusal: Rejected) -> NoReturn:
        self.denied.append((event.action, refusal.reason))
        raise refusal


class FakeStore:
    def __init__(self) -> None:
        self.lists: dict[str, dict[str, Any]] = {}
        self.entries_of: dict[tuple[str, int], dict[str, Entry]] = {}

    async def get_list(self, list_id: str) -> dict[str, Any] | None:
        return self.lists.get(list_id)

    async def upsert_list(self, list_id: str, owner: str, fields: dict[str, Any],
                          now: datetime) -> dict[str, Any] | None:
        doc = self.lists.setdefault(list_id, {"_id": list_id, "owner": owner, "version": 1})
        if doc["owner"] != owner:
            return None
        doc.update(fields)
        return doc

    async def replace_entries(self, list_id: str, old_version: int, entries: Sequence[Entry],
                              now: datetime) -> dict[str, Any]:
        doc = self.lists[list_id]
        doc["version"] = old_version + 1
        self.entries_of[(list_id, doc["version"])] = {e.entry_id: e for e in entries}
        return doc

    async def add_entry(self, version: int, entry: Entry) -> None:
        self.entries_of.setdefault((entry.list_id, version), {})[entry.entry_id] = entry

    async def remove_entry(self, list_id: str, version: int, entry_id: str) -> bool:
        return self.entries_of.get((list_id, version), {}).pop(entry_id, None) is not None

    async def entries(self, list_id: str, version: int) -> AsyncIterator[dict[str, Any]]:
        for entry in self.entries_of.get((list_id, version), {}).values():
            yield {"entry_id": entry.entry_id, "plate": entry.plate}

    async def entries_by_id(self, list_id: str, version: int, entry_ids: Iterable[str]) -> list[dict[str, Any]]:
        return [d async for d in self.entries(list_id, version) if d["entry_id"] in set(entry_ids)]

    async def partial_plates(self, list_id: str, version: int) -> int:
        return sum("*" in e.plate or "?" in e.plate for e in self.entries_of.get((list_id, version), {}).values())


class FakeActive:
    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.configs: dict[str, ListConfig] = {}
        self.entries: dict[str, set[str]] = {}

    async def snapshot(self) -> Snapshot:
        return Snapshot(0, dict(self.versions), dict(self.configs))

    async def publish_version(self, list_id: str, version: int, config: ListConfig,
                              entries: Iterable[Entry]) -> None:
        self.versions[list_id], self.configs[list_id] = version, config
        self.entries[list_id] = {e.entry_id for e in entries}

    async def set_config(self, list_id: str, config: ListConfig) -> None:
        self.configs[list_id] = config

    async def add_entry(self, version: int, entry: Entry) -> None:
        self.entries[entry.list_id].add(entry.entry_id)

    async def remove_entry(self, list_id: str, version: int, entry_id: str) -> bool:
        if entry_id not in self.entries[list_id]:
            return False
        self.entries[list_id].discard(entry_id)
        return True


FIELDS = {"name": "stolen", "source": "agency", "fuzzy_confusions": True, "max_edits": 0}


def event(action: str) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(action=action)


@pytest.fixture
def world() -> tuple[HotLists, FakeStore, FakeActive, FakeAuditor]:
    store, active, auditor = FakeStore(), FakeActive(), FakeAuditor()
    return HotLists(store, active, auditor, WildcardPolicy(3, 2), 1000), store, active, auditor


async def test_a_new_list_is_audited_then_stored_and_published_for_the_callers_agency(world) -> None:
    lists, store, active, auditor = world
    doc = await lists.upsert(person(), "stolen", "", FIELDS, event("hotlist.upsert"))
    assert doc["owner"] == "pd-a" and auditor.recorded == [("hotlist.upsert", audit_pb2.OUTCOME_UNSPECIFIED)]
    assert active.versions == {"stolen": 1} and active.configs["stolen"].agency_id == "pd-a"


async def test_another_agencys_list_is_refused_audited_and_left_unchanged(world) -> None:
    lists, store, active, auditor = world
    await lists.upsert(person(), "stolen", "", FIELDS, event("hotlist.upsert"))
    with pytest.raises(Rejected) as err:
        await lists.upsert(person("pd-b"), "stolen", "", {**FIELDS, "name": "mine now"}, event("hotlist.upsert"))
    assert err.value.code is Code.PERMISSION_DENIED and auditor.denied[-1][0] == "hotlist.upsert"
    assert store.lists["stolen"]["name"] == "stolen"


async def test_with_the_audit_trail_down_nothing_changes(world) -> None:
    lists, store, active, auditor = world
    auditor.down = True
    with pytest.raises(Rejected) as err:
        await lists.upsert(person(), "stolen", "", FIELDS, event("hotlist.upsert"))
    assert err.value.code is Code.UNAVAILABLE and not store.lists and not active.versions


async def test_entries_are_checked_audited_then_added_to_store_and_active_copy(world) -> None:
    lists, store, active, auditor = world
    await lists.upsert(person(), "stolen", "", FIELDS, event("hotlist.upsert"))
    with pytest.raises(Rejected) as err:
        await lists.add_entry(person(), "stolen", {"plate": "*BC123", "code": "V"}, "", event("hotlist.entry.add"))
    assert err.value.code is Code.INVALID_ARGUMENT and len(auditor.recorded) == 1
    entry, version = await lists.add_entry(person(), "stolen", {"plate": "ABC123", "code": "V"}, "",
                                           event("hotlist.entry.add"))
    assert version == 1 and entry.entry_id in active.entries["stolen"]
    assert entry.entry_id in store.entries_of[("stolen", 1)]
    assert await lists.remove_entry(person(), "stolen", entry.entry_id, event("hotlist.entry.remove"))
    assert [action for action, _ in auditor.recorded] == ["hotlist.upsert", "hotlist.entry.add", "hotlist.entry.remove"]


async def test_an_import_over_the_size_limit_is_refused_before_anything_is_audited(world) -> None:
    lists, store, active, auditor = world
    doc = await lists.upsert(person(), "stolen", "", FIELDS, event("hotlist.upsert"))
    with pytest.raises(Rejected) as err:
        await lists.import_file(person(), doc, "csv", b"x" * 10, event("hotlist.import"), size=1001)
    assert err.value.code is Code.INVALID_ARGUMENT and len(auditor.recorded) == 1 and doc["version"] == 1


class FakeAlerts:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        return self.doc if alert_id == self.doc["_id"] else None

    async def advance(self, alert_id: str, expected: Status, new: Status, step: str,
                      record: dict[str, Any]) -> dict[str, Any] | None:
        if self.doc["status"] != expected.value:
            return None
        self.doc = {**self.doc, "status": new.value, step: record}
        return self.doc


def an_alert() -> dict[str, Any]:
    return {"_id": "al-1", "agency_id": "pd-a", "status": Status.NEW.value, "read": {"plate_normalized": "ABC123"},
            "list_id": "stolen", "list_version": 1, "entry": {"entry_id": "e1"}}


async def test_alert_steps_follow_the_workflow_as_the_caller_and_are_audited_first() -> None:
    store, auditor = FakeAlerts(an_alert()), FakeAuditor()
    desk = AlertDesk(store, auditor)
    with pytest.raises(Rejected) as err:
        await desk.dispose(person(), "al-1", "", next(iter(Disposition)), "", event("alert.dispose"))
    assert err.value.code is Code.FAILED_PRECONDITION and not auditor.recorded
    with pytest.raises(Rejected) as err:
        await desk.verify(person(), "al-1", "someone-else", True, True, "", event("alert.verify"))
    assert err.value.code is Code.PERMISSION_DENIED and auditor.denied == [("alert.verify", err.value.reason)]
    with pytest.raises(Rejected) as err:
        await desk.verify(person("pd-b"), "al-1", "", True, True, "", event("alert.verify"))
    assert err.value.code is Code.NOT_FOUND
    done = await desk.verify(person(), "al-1", "", True, True, "plate and state match", event("alert.verify"))
    assert done["status"] == Status.VERIFIED.value and done["verification"]["officer_id"] == "u1"
    assert auditor.recorded == [("alert.verify", audit_pb2.OUTCOME_UNSPECIFIED)]
