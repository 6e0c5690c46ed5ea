"""What the identity use cases need from the world: users and agencies, the login throttle, token revocation and
the audit trail (services.audit.client.Auditor). The adapters (adapters/store.py, adapters/throttle.py,
adapters/revoker.py, the audit client's AccessGate) implement them; the unit tests use fakes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class UserStore(Protocol):
    async def agency(self, agency_id: str) -> dict[str, Any] | None: ...

    async def set_agency_policy(self, agency_id: str, share_with: list[str], case_number_required: bool,
                                hotlist_share_with: list[str]) -> dict[str, Any] | None: ...

    async def sharing_with(self, agency_id: str) -> list[str]: ...

    async def user_by_name(self, username: str) -> dict[str, Any] | None: ...

    async def user(self, user_id: str) -> dict[str, Any] | None: ...

    async def users(self, agency_id: str) -> list[dict[str, Any]]: ...

    async def insert_user(self, doc: dict[str, Any]) -> None: ...

    async def update_user(self, user_id: str, agency_id: str, changes: dict[str, Any]) -> dict[str, Any] | None: ...

    async def claim_totp_step(self, user_id: str, totp_step: int, changes: dict[str, Any]) -> bool: ...


class Throttle(Protocol):
    """Failed-login backoff by source and account; raises Rejected (UNAVAILABLE) when it cannot count."""

    async def attempt(self, source: str, username: str, now: datetime) -> bool: ...

    async def succeeded(self, source: str, username: str) -> None: ...

    async def clear_account(self, username: str) -> None: ...


class Revoker(Protocol):
    """Voids every token of a user issued until now, in every service; raises Rejected (UNAVAILABLE) when it
    cannot (fail closed)."""

    async def revoke(self, user_id: str) -> None: ...
