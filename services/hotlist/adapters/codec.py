"""Conversions between domain values, MongoDB/Redis documents and protobuf messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.common.reads import document_to_read, to_timestamp
from services.hotlist.domain.alerts import Disposition, Status
from services.hotlist.domain.matcher import Match
from services.hotlist.domain.model import Entry, ListConfig, VehicleDescription
from sightline.hotlist.v1 import hotlist_pb2

_KINDS = {"exact": hotlist_pb2.MATCH_KIND_EXACT, "fuzzy": hotlist_pb2.MATCH_KIND_FUZZY,
          "wildcard": hotlist_pb2.MATCH_KIND_WILDCARD}
STATUS_TO_PB = {s: hotlist_pb2.AlertStatus.Value(f"ALERT_STATUS_{s.name}") for s in Status}
DISPOSITION_TO_PB = {d: hotlist_pb2.Disposition.Value(f"DISPOSITION_{d.name}") for d in Disposition}
DISPOSITION_FROM_PB = {v: k for k, v in DISPOSITION_TO_PB.items()}
SOURCES = {hotlist_pb2.LIST_SOURCE_NCIC: "ncic", hotlist_pb2.LIST_SOURCE_STATE: "state",
           hotlist_pb2.LIST_SOURCE_NCMEC: "ncmec", hotlist_pb2.LIST_SOURCE_AGENCY: "agency"}
SOURCES_TO_PB = {v: k for k, v in SOURCES.items()}




def entry_to_doc(entry: Entry) -> dict[str, Any]:
    doc = {k: getattr(entry, k) for k in ("entry_id", "list_id", "plate", "state", "code", "reason", "owner",
                                           "record_id", "expires_at")}
    if entry.vehicle is not None:
        doc["vehicle"] = {k: getattr(entry.vehicle, k) for k in VehicleDescription.__slots__}
    return doc


def entry_from_doc(doc: dict[str, Any]) -> Entry:
    fields = {k: doc.get(k, "") for k in ("entry_id", "list_id", "plate", "state", "code", "reason", "owner",
                                           "record_id")}
    vehicle = VehicleDescription(**doc["vehicle"]) if doc.get("vehicle") else None
    return Entry(**fields, expires_at=doc.get("expires_at"), vehicle=vehicle)


def entry_to_json(entry: Entry) -> str:
    doc = entry_to_doc(entry)
    if entry.expires_at is not None:
        doc["expires_at"] = entry.expires_at.timestamp()
    return json.dumps(doc, separators=(",", ":"))


def entry_from_json(raw: bytes | str) -> Entry:
    doc = json.loads(raw)
    if doc.get("expires_at") is not None:
        doc["expires_at"] = datetime.fromtimestamp(doc["expires_at"], UTC)
    return entry_from_doc(doc)


def entry_to_pb(entry: Entry) -> hotlist_pb2.HotlistEntry:
    pb = hotlist_pb2.HotlistEntry(entry_id=entry.entry_id, list_id=entry.list_id, plate=entry.plate,
                                  state=entry.state, code=entry.code, reason=entry.reason, owner=entry.owner,
                                  record_id=entry.record_id)
    if entry.expires_at is not None:
        pb.expires_at.CopyFrom(to_timestamp(entry.expires_at))
    if entry.vehicle is not None:
        pb.vehicle.CopyFrom(hotlist_pb2.VehicleDescription(
            **{k: getattr(entry.vehicle, k) for k in VehicleDescription.__slots__}))
    return pb


def entry_fields_from_pb(pb: hotlist_pb2.HotlistEntry) -> dict[str, str]:
    """A manual entry as the named fields the hot-file parser validates."""
    fields = {"plate": pb.plate, "state": pb.state, "code": pb.code, "reason": pb.reason, "owner": pb.owner,
              "record_id": pb.record_id}
    if pb.HasField("expires_at"):
        fields["expires"] = pb.expires_at.ToDatetime(tzinfo=UTC).isoformat()
    fields.update({k: getattr(pb.vehicle, k) for k in VehicleDescription.__slots__})
    return fields


def config_of(doc: dict[str, Any]) -> ListConfig:
    return ListConfig(bool(doc.get("fuzzy_confusions", True)), int(doc.get("max_edits", 0)), str(doc["owner"]))


def list_to_pb(doc: dict[str, Any]) -> hotlist_pb2.HotList:
    pb = hotlist_pb2.HotList(list_id=doc["_id"], name=doc.get("name", ""),
                             source=SOURCES_TO_PB.get(doc.get("source", ""), hotlist_pb2.LIST_SOURCE_UNSPECIFIED),
                             owner=doc.get("owner", ""), version=doc.get("version", 0),
                             fuzzy_confusions=doc.get("fuzzy_confusions", True), max_edits=doc.get("max_edits", 0),
                             entry_count=doc.get("entry_count", 0))
    if doc.get("updated_at"):
        pb.updated_at.CopyFrom(to_timestamp(doc["updated_at"]))
    return pb


def alert_doc(alert_id: str, read_doc: dict[str, Any], match: Match, historical: bool,
              now: datetime) -> dict[str, Any]:
    return {
        "_id": alert_id,
        "read": read_doc,
        # The alert is the list's agency's; the read's own agency is read_doc["agency_id"].
        "agency_id": match.agency_id,
        "camera_id": read_doc.get("camera_id", ""),
        "list_id": match.list_id,
        "list_version": match.list_version,
        "entry": entry_to_doc(match.entry),
        "match_kind": match.kind,
        "match_detail": match.detail,
        "historical": historical,
        "raised_at": now,
        "status": Status.NEW.value,
    }


def alert_to_pb(doc: dict[str, Any]) -> hotlist_pb2.Alert:
    read = document_to_read(doc["read"])
    pb = hotlist_pb2.Alert(alert_id=doc["_id"], read=read, image_ref=read.image_ref,
                           entry=entry_to_pb(entry_from_doc(doc["entry"])), list_version=doc["list_version"],
                           match_kind=_KINDS[doc["match_kind"]], match_detail=doc["match_detail"],
                           historical=doc["historical"], status=STATUS_TO_PB[Status(doc["status"])],
                           agency_id=doc["agency_id"])
    pb.raised_at.CopyFrom(to_timestamp(doc["raised_at"]))
    if v := doc.get("verification"):
        pb.verification.CopyFrom(hotlist_pb2.Verification(
            officer_id=v["officer_id"], at=to_timestamp(v["at"]), plate_matches=v["plate_matches"],
            state_matches=v["state_matches"], note=v.get("note", "")))
    if r := doc.get("reconfirmation"):
        pb.reconfirmation.CopyFrom(hotlist_pb2.Reconfirmation(
            officer_id=r["officer_id"], at=to_timestamp(r["at"]), record_active=r["record_active"],
            note=r.get("note", "")))
    if d := doc.get("disposition"):
        pb.disposition.CopyFrom(hotlist_pb2.DispositionRecord(
            officer_id=d["officer_id"], at=to_timestamp(d["at"]),
            disposition=DISPOSITION_TO_PB[Disposition(d["disposition"])], note=d.get("note", "")))
    return pb
