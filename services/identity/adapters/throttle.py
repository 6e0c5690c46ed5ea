"""Failed-login throttling in Redis, by source address and by account, with exponential backoff.

Every attempt is counted as a failure before its password is checked (so that a burst of parallel guesses
cannot all be checked before the first failure is recorded), then taken back on success. Past a number of
free failures, each further attempt makes the key wait `base * 2^(n - free - 1)` seconds (capped) before the
next attempt is even checked. Nothing here locks an account: once the wait is over, the right password and
code get in, whoever failed before.

Keys (written by identity only): `sightline:login:source:<address>` and `sightline:login:account:<username>`,
hashes {failures, until}, forgotten `window_s` after the last attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.rejected import Code, Rejected

log = logging.getLogger(__name__)

KEY_PREFIX = "sightline:login:"

# KEYS: the throttle keys; ARGV: now, window, then (free, base, max) per key.
# Returns 0 (with the seconds left) when a key is still waiting, else counts the attempt on every key and 1.
_ATTEMPT = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local wait = tonumber(redis.call('HGET', key, 'until') or '0') - now
  if wait > 0 then return {0, tostring(wait)} end
end
for i, key in ipairs(KEYS) do
  local free, base, cap = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local n = redis.call('HINCRBY', key, 'failures', 1)
  if n > free then
    redis.call('HSET', key, 'until', tostring(now + math.min(base * 2 ^ (n - free - 1), cap)))
  end
  redis.call('EXPIRE', key, tonumber(ARGV[2]))
end
return {1, '0'}
"""


@contextmanager
def _redis_or_unavailable() -> Iterator[None]:
    """Logins fail closed: a throttle that cannot reach Redis refuses the attempt as UNAVAILABLE."""
    try:
        yield
    except (RedisError, OSError) as exc:
        log.error("login throttle unavailable", extra={"error": repr(exc)[:200]})
        raise Rejected(Code.UNAVAILABLE, "login unavailable; try again later") from exc


@dataclass(frozen=True)
class Backoff:
    """`free` failures without delay, then waits doubling from `base_s` up to `max_s`."""

    free: int
    base_s: float
    max_s: float


class LoginThrottle:
    def __init__(self, redis: aioredis.Redis, by_source: Backoff, by_account: Backoff, window_s: int):
        self._redis = redis
        self._by_source = by_source
        self._by_account = by_account
        self._window_s = window_s

    @staticmethod
    def _keys(source: str, username: str) -> list[str]:
        keys = [f"{KEY_PREFIX}source:{source}"]
        if username:
            keys.append(f"{KEY_PREFIX}account:{username}")
        return keys

    async def attempt(self, source: str, username: str, now: datetime) -> bool:
        """Count one attempt from `source` on `username` (empty: not a valid username); False while either
        must still wait (then nothing is counted and the attempt must not be checked)."""
        keys = self._keys(source, username)
        args: list[object] = [repr(now.timestamp()), self._window_s]
        for backoff in (self._by_source, self._by_account)[:len(keys)]:
            args += [backoff.free, backoff.base_s, backoff.max_s]
        with _redis_or_unavailable():
            allowed, _ = await self._redis.eval(_ATTEMPT, len(keys), *keys, *args)
        return int(allowed) == 1

    async def succeeded(self, source: str, username: str) -> None:
        """The attempt just counted was right: the account starts afresh, the source gets its count back."""
        source_key, account_key = self._keys(source, username)
        with _redis_or_unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(source_key, "failures", -1)
                pipe.delete(account_key)
                await pipe.execute()

    async def clear_account(self, username: str) -> None:
        """An agency admin vouches for the account (UnlockUser): its backoff ends now."""
        with _redis_or_unavailable():
            await self._redis.delete(f"{KEY_PREFIX}account:{username}")
