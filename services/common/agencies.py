"""The agency records (MongoDB collection `agencies`, written by identity) as every service reads them.

Two sharing settings, each set by the sharing agency's admin (IdentityService.SetAgencyPolicy), neither
implying the other:
- `share_with`: agencies whose partner-agency users may search this agency's reads (criminal cases only,
  services/common/purpose.py);
- `hotlist_share_with`: agencies whose hot lists may match this agency's reads (services/hotlist): their
  alerts go to them, and every such hit is audited for both agencies.
"""

from __future__ import annotations

from services.common.collections import AGENCIES

__all__ = ["AGENCIES", "SHARE_WITH", "HOTLIST_SHARE_WITH"]

SHARE_WITH = "share_with"
HOTLIST_SHARE_WITH = "hotlist_share_with"
