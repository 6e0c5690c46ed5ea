"""Per-caller rate limit of the audit service's Append: a token bucket per calling service. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """`rate` calls a second sustained, `burst` at once, per key; `allow(key, now)` takes one call."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed
