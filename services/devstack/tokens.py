"""Access tokens signed with the dev stack's own identity key, for the tools that drive a local stack (the
simulator registering its cameras, benchmarks). Production has no dev key: there an admin logs in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.common.auth import TOKEN_KEY, KeySettings, Principal, TokenIssuer, load_private_key


def dev_token(data_dir: Path, agency_id: str, roles: Iterable[str], minutes: int = 60) -> str:
    """A two-factor token of a tool user of `agency_id` with `roles`, signed by `<data_dir>/keys`."""
    key = load_private_key(None, KeySettings(data_dir=data_dir, dev_keys=True), TOKEN_KEY)
    now = datetime.now(UTC)
    principal = Principal(user_id=f"dev-tool:{agency_id}", username="dev-tool", agency_id=agency_id,
                          roles=frozenset(roles), second_factor=True, training_until=now + timedelta(days=1))
    return TokenIssuer(key, timedelta(minutes=minutes)).issue(principal, now, ["pwd", "otp"])[0]
