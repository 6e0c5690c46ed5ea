"""Authorisation matrix: every RPC of search, identity (administration), audit and the ingest camera registry,
called by every role, for the caller's own agency and for a partner agency, checked against the policy table
below (data, written independently of services/common/auth.py), and every denial found in the audit trail.

Not covered: the hotlist service (no access control yet: its RPCs take no token), the retention service (its
own tests), IdentityService.Login (no token by design), ChangePassword and Logout (any signed-in person; they
revoke the caller's tokens, tests/security/test_identity.py). Identity's admin calls on another agency's user
answer NOT_FOUND, as for a missing user, and are audited as denied.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from services.common.auth import auth_metadata
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

S, ID, A, IN = search_pb2, identity_pb2, audit_pb2, ingest_pb2
ROLES = ["officer", "investigator", "supervisor", "auditor", "admin", "partner", "beta_officer", "gamma_partner"]
SEARCHERS = {"officer", "investigator", "supervisor", "partner", "beta_officer", "gamma_partner"}
WHY = {"purpose": S.PURPOSE_ROBBERY, "case_number": "MATRIX-1"}

# (rpc, scope) -> the accounts (tests/conftest.py ACCOUNTS) allowed to call it. "own": the caller's agency;
# "partner": another agency's data (pd-alpha shares its reads with pd-beta only).
POLICY: dict[tuple[str, str], set[str]] = {
    ("search.SearchReads", "own"): SEARCHERS,
    ("search.SearchReads", "partner"): {"partner"},
    ("search.GetRead", "own"): SEARCHERS,
    ("search.GetRead", "partner"): {"partner"},
    ("search.GetImage", "own"): SEARCHERS,
    ("search.GetImage", "partner"): {"partner"},
    ("search.FindConvoy", "own"): {"investigator", "supervisor"},
    ("identity.CreateUser", "own"): {"admin"},
    ("identity.SetRoles", "own"): {"admin"},
    ("identity.SetRoles", "partner"): set(),
    ("identity.RecordTraining", "own"): {"admin"},
    ("identity.LockUser", "own"): {"admin"},
    ("identity.UnlockUser", "own"): {"admin"},
    ("identity.SetAgencyPolicy", "own"): {"admin"},
    ("identity.GetAgency", "own"): {"admin"},
    ("audit.Append", "own"): set(),  # services only: people's actions are recorded by the service acting
    ("audit.QueryEntries", "own"): {"supervisor", "auditor"},
    ("audit.ListFlags", "own"): {"supervisor", "auditor"},
    ("registry.UpsertCamera", "own"): {"admin"},
    ("registry.UpsertCamera", "partner"): set(),
    ("registry.ListCameras", "own"): {"admin"},
    ("registry.ListCameras", "partner"): set(),
    ("registry.RotateCameraSecret", "own"): {"admin"},
}


@dataclass
class Ctx:
    accounts: dict
    channels: dict[str, grpc.aio.Channel]


def _request(rpc: str, scope: str, ctx: Ctx, caller: str) -> tuple[Callable, Any]:
    ch = ctx.channels
    search = search_pb2_grpc.SearchServiceStub(ch["search"])
    ident = identity_pb2_grpc.IdentityServiceStub(ch["identity"])
    audit = audit_pb2_grpc.AuditServiceStub(ch["audit"])
    registry = ingest_pb2_grpc.CameraRegistryServiceStub(ch["ingest"])
    partner = scope == "partner"
    other_user = ctx.accounts["beta_officer" if ctx.accounts[caller].agency_id == "pd-alpha" else "officer"].user_id
    tag = uuid.uuid4().hex[:6]
    return {
        "search.SearchReads": (search.SearchReads, S.SearchReadsRequest(plate_exact="MATRIX1",
                                                                        include_partner_agencies=partner, **WHY)),
        "search.GetRead": (search.GetRead, S.GetReadRequest(read_id="no-such-read", include_partner_agencies=partner,
                                                            **WHY)),
        "search.GetImage": (search.GetImage, S.GetImageRequest(image_ref="no-such-image",
                                                               include_partner_agencies=partner, **WHY)),
        "search.FindConvoy": (search.FindConvoy, S.FindConvoyRequest(plate="MATRIX1", **WHY)),
        "identity.CreateUser": (ident.CreateUser, ID.CreateUserRequest(
            username=f"matrix.{tag}", initial_password="a long enough password", roles=[ID.ROLE_OFFICER])),
        "identity.SetRoles": (ident.SetRoles, ID.SetRolesRequest(
            user_id=other_user if partner else "no-such-user", roles=[ID.ROLE_OFFICER])),
        "identity.RecordTraining": (ident.RecordTraining, ID.RecordTrainingRequest(user_id="no-such-user")),
        "identity.LockUser": (ident.LockUser, ID.LockUserRequest(user_id="no-such-user")),
        "identity.UnlockUser": (ident.UnlockUser, ID.UnlockUserRequest(user_id="no-such-user")),
        "identity.SetAgencyPolicy": (ident.SetAgencyPolicy, ID.SetAgencyPolicyRequest(share_with=["pd-beta"])),
        "identity.GetAgency": (ident.GetAgency, ID.GetAgencyRequest()),
        "audit.Append": (audit.Append, A.AppendRequest(event=A.AuditEvent(action="matrix.probe"))),
        "audit.QueryEntries": (audit.QueryEntries, A.QueryEntriesRequest(page_size=1)),
        "audit.ListFlags": (audit.ListFlags, A.ListFlagsRequest()),
        "registry.UpsertCamera": (registry.UpsertCamera, IN.UpsertCameraRequest(camera=IN.Camera(
            camera_id=f"matrix-{tag}", agency_id="pd-gamma" if partner else "", active=False))),
        "registry.ListCameras": (registry.ListCameras, IN.ListCamerasRequest(agency_id="pd-gamma" if partner else "")),
        "registry.RotateCameraSecret": (registry.RotateCameraSecret,
                                        IN.RotateCameraSecretRequest(camera_id="no-such-camera")),
    }[rpc]


def _denials(mongo_db, user_id: str) -> int:
    return mongo_db.client["sightline_audit"]["audit_entries"].count_documents(
        {"event.user_id": user_id, "event.outcome": "OUTCOME_DENIED"})


async def test_every_rpc_every_role_every_scope(search_addr, identity_addr, audit_addr, ingest_addr, tokens,
                                                accounts, channel_factory, mongo_db) -> None:
    ctx = Ctx(accounts, {name: channel_factory(addr) for name, addr in
                         (("search", search_addr), ("identity", identity_addr), ("audit", audit_addr),
                          ("ingest", ingest_addr))})
    wrong: list[str] = []
    checked = denied = 0
    for (rpc, scope), allowed in POLICY.items():
        for role in ROLES:
            call, request = _request(rpc, scope, ctx, role)
            before = _denials(mongo_db, accounts[role].user_id)
            code = grpc.StatusCode.OK
            try:
                await call(request, metadata=auth_metadata(await tokens(role)), timeout=15)
            except grpc.aio.AioRpcError as err:
                code = err.code()
            checked += 1
            refused = code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
            if role in allowed and refused:
                wrong.append(f"{rpc} [{scope}] as {role}: refused ({code.name}), policy allows it")
            elif role not in allowed:
                if code == grpc.StatusCode.OK:
                    wrong.append(f"{rpc} [{scope}] as {role}: allowed, policy refuses it")
                elif code == grpc.StatusCode.PERMISSION_DENIED:
                    denied += 1
                    if _denials(mongo_db, accounts[role].user_id) <= before:
                        wrong.append(f"{rpc} [{scope}] as {role}: refused but not audited")
                elif code != grpc.StatusCode.NOT_FOUND:  # another agency's user or camera: not found in yours
                    wrong.append(f"{rpc} [{scope}] as {role}: {code.name}, expected PERMISSION_DENIED")
    print(f"\n{checked} calls checked, {denied} denials, all audited" if not wrong else "")
    assert not wrong, "\n".join(wrong)
