"""Purpose binding and agency scope of a search of reads. Pure.

Shared by every service that searches reads: SearchReads and its kin (services/search) and the back-search of
a hot list (services/hotlist), so that both refuse the same purposes and apply one case-number policy.

Every search names a purpose from the standard list and, where needed, a case or incident number. The
prohibited purposes are refused outright. A search reaches another agency's reads only when the caller
holds the partner-agency role, that agency shares its reads with the caller's agency, and the search names
an active criminal investigation (a criminal purpose and a case number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.auth import Permission, Principal
from services.common.rejected import Code, Rejected
from sightline.search.v1 import search_pb2

CRIMINAL = frozenset(
    {
        search_pb2.PURPOSE_HOMICIDE,
        search_pb2.PURPOSE_KIDNAPPING,
        search_pb2.PURPOSE_SEXUAL_OFFENSE,
        search_pb2.PURPOSE_ROBBERY,
        search_pb2.PURPOSE_ASSAULT,
        search_pb2.PURPOSE_BURGLARY,
        search_pb2.PURPOSE_VEHICLE_THEFT,
        search_pb2.PURPOSE_THEFT,
        search_pb2.PURPOSE_FRAUD,
        search_pb2.PURPOSE_DRUG_TRAFFICKING,
        search_pb2.PURPOSE_HUMAN_TRAFFICKING,
        search_pb2.PURPOSE_WEAPONS_OFFENSE,
        search_pb2.PURPOSE_TERRORISM,
        search_pb2.PURPOSE_HIT_AND_RUN,
        search_pb2.PURPOSE_ARREST_WARRANT,
        search_pb2.PURPOSE_OTHER_FELONY,
    }
)
NON_CRIMINAL = frozenset({search_pb2.PURPOSE_MISSING_PERSON, search_pb2.PURPOSE_ENDANGERED_PERSON_ALERT})
PROHIBITED = {
    search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT: "immigration enforcement is a prohibited purpose",
    search_pb2.PURPOSE_TRAFFIC_ENFORCEMENT: "traffic enforcement based solely on a plate read is a prohibited purpose",
    search_pb2.PURPOSE_NON_LAW_ENFORCEMENT: "use outside law enforcement is prohibited",
}
_CASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.:-]{2,39}")


@dataclass(frozen=True)
class Access:
    purpose: str  # the enum name, as audited
    case_number: str
    # Agencies whose reads this search may return; the caller's own first.
    agencies: tuple[str, ...]

    @property
    def partner(self) -> bool:
        return len(self.agencies) > 1


def purpose_name(purpose: int) -> str:
    return search_pb2.Purpose.Name(purpose) if purpose in search_pb2.Purpose.values() else f"PURPOSE_{purpose}"


def check_access(principal: Principal, purpose: int, case_number: str, include_partners: bool) -> Access:
    name = purpose_name(purpose)
    if purpose in PROHIBITED:
        raise Rejected(
            Code.PERMISSION_DENIED,
            f"refused: {PROHIBITED[purpose]}; this request is audited",
            "prohibited purpose",
        )
    if purpose not in CRIMINAL and purpose not in NON_CRIMINAL:
        raise Rejected(
            Code.INVALID_ARGUMENT,
            "a purpose from the standard list of offense types is required",
            "no purpose",
        )
    case_number = case_number.strip()
    if case_number and not _CASE_RE.fullmatch(case_number):
        raise Rejected(
            Code.INVALID_ARGUMENT, "case_number: 3-40 letters, digits or / _ . : -", "malformed case number"
        )
    if principal.case_number_required and not case_number:
        raise Rejected(
            Code.INVALID_ARGUMENT,
            "your agency requires a case or incident number on every search",
            "no case number",
        )
    agencies: tuple[str, ...] = (principal.agency_id,)
    if include_partners:
        if not principal.can(Permission.PARTNER_SEARCH):
            raise Rejected(
                Code.PERMISSION_DENIED,
                "searching partner agencies needs the partner-agency role",
                "not a partner-agency user",
            )
        if purpose not in CRIMINAL or not case_number:
            raise Rejected(
                Code.PERMISSION_DENIED,
                "partner-agency access needs an active criminal investigation: a criminal purpose and its case number",
                "partner access without a criminal case",
            )
        if not principal.partner_agencies:
            raise Rejected(
                Code.PERMISSION_DENIED, "no agency shares its reads with yours", "no sharing agreement"
            )
        agencies += tuple(a for a in principal.partner_agencies if a != principal.agency_id)
    return Access(name, case_number, agencies)


def purpose_label(purpose: int) -> str:
    """PURPOSE_HIT_AND_RUN -> 'Hit and run'."""
    return str(search_pb2.Purpose.Name(purpose)).removeprefix("PURPOSE_").replace("_", " ").capitalize()
