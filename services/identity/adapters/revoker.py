"""Token revocation for the identity use cases: every token of a user issued until now is void in every service
(services/common/auth.py Revocations), for as long as a token issued now could live."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from services.common.auth import Revocations
from services.common.rejected import Code, Rejected

log = logging.getLogger(__name__)


class TokenRevoker:
    def __init__(self, revocations: Revocations, token_lifetime: timedelta):
        self._revocations = revocations
        self._keep = token_lifetime

    async def revoke(self, user_id: str) -> None:
        """Fails closed: Rejected (UNAVAILABLE) when the revocation cannot be written."""
        try:
            await self._revocations.revoke(user_id, datetime.now(UTC), self._keep)
        except (RedisError, OSError) as exc:
            log.error("token revocation failed", extra={"error": repr(exc)[:200]})
            raise Rejected(Code.UNAVAILABLE, "could not revoke the tokens; try again later") from exc
