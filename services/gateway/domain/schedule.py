"""Which spooled still goes next: the backlog oldest first, without starving live stills (pure)."""

from __future__ import annotations


class LaneChooser:
    """Splits sends between the live lane (the newest recent still) and the backlog lane (the oldest still).

    Each choice adds `live_share` of credit (at most 1); a whole credit makes the live lane the preferred one,
    and a still taken from it spends the credit. With a share of 0.5 the lanes alternate while both hold
    stills; when the preferred lane is empty the other is used, so nothing waits while there is anything to
    send.
    """

    def __init__(self, live_share: float) -> None:
        if not 0.0 <= live_share <= 1.0:
            raise ValueError("live_share must be within 0..1")
        self._share = live_share
        self._credit = 0.0

    def next_is_live(self) -> bool:
        self._credit = min(1.0, self._credit + self._share)
        return self._share > 0 and self._credit >= 1.0 - 1e-9

    def took(self, live: bool) -> None:
        if live:
            self._credit = max(0.0, self._credit - 1.0)
