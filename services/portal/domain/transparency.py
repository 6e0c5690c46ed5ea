"""What the public is told about an agency's use of Sightline, and the plots of it. Pure.

The statements of what is and is not captured restate the system's design (README "Privacy"); the uses
come from the search service's purpose list, so the portal cannot promise what the system does not enforce.
Every figure is computed by the adapters from the system's own records; this module only shapes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

from services.common.purpose import CRIMINAL, NON_CRIMINAL, PROHIBITED, purpose_label

CAPTURED = (
    "Still images of passing vehicles taken by fixed cameras, with faces and people blurred before storage",
    "The plate text as read, where it was issued, the read's confidence",
    "The vehicle's type and colour, the camera, the time and the camera's location",
)
NOT_CAPTURED = (
    "No video and no sound",
    "No images of people: faces and people are blurred before anything is stored",
    "No names, addresses or other records of vehicle owners",
    "No tracking of phones or other devices",
)
DEFAULT_POLICY = (
    "Reads are kept for the retention period shown on this page and then deleted automatically, unless a "
    "read is held as evidence in a criminal case. Every search names its purpose and, where required, a case "
    "or incident number, and is recorded in a tamper-evident audit trail that supervisors review. A match "
    "against a hot list is not probable cause: officers verify the image and reconfirm the record before "
    "acting. Reads are shared only with the agencies listed on this page, and only for criminal "
    "investigations."
)


ACCEPTABLE_USES = tuple(purpose_label(p) for p in sorted(CRIMINAL | NON_CRIMINAL))
PROHIBITED_USES = tuple(f"{purpose_label(p)}: {reason}" for p, reason in sorted(PROHIBITED.items()))


def window_days(today: date, days: int) -> list[date]:
    """The `days` UTC days ending with today, oldest first."""
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


@dataclass(frozen=True)
class Series:
    """A figure per day (oldest first) and its total over the window."""

    title: str
    days: list[date]
    values: list[int]

    @property
    def total(self) -> int:
        return sum(self.values)

    @classmethod
    def from_counts(cls, title: str, days: list[date], counts: dict[str, int]) -> Series:
        """`counts` keyed by ISO day (as MongoDB's $dateToString gives them); missing days are zero."""
        return cls(title, days, [int(counts.get(d.isoformat(), 0)) for d in days])


@dataclass(frozen=True)
class Camera:
    camera_id: str
    name: str
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class Transparency:
    agency_id: str
    agency_name: str
    as_of: str
    window_days: int
    retention_days: int
    policy: str
    cameras: list[Camera]
    reads: Series
    vehicles_daily: Series
    # Distinct vehicles over the whole window (HyperLogLog union: an estimate within about 1%).
    unique_vehicles: int
    searches: Series
    searches_refused: int
    # Searches of this agency's reads made by partner agencies' users.
    partner_searches: int
    hotlist_hits: Series
    # Hits by their officers' disposition ("misread", "confirmed", ...; "pending" until disposed).
    hit_outcomes: dict[str, int]
    # Agencies that may search this agency's reads, and agencies whose reads this agency may search.
    shares_with: list[str]
    shared_by: list[str]
    evidence_holds: int
    latest_deletion_report: dict[str, Any] | None
    captured: tuple[str, ...] = CAPTURED
    not_captured: tuple[str, ...] = NOT_CAPTURED
    acceptable_uses: tuple[str, ...] = ACCEPTABLE_USES
    prohibited_uses: tuple[str, ...] = PROHIBITED_USES
    plots: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The public JSON document (the same figures as the page)."""
        out = asdict(self)
        out.pop("plots")
        for name in ("reads", "vehicles_daily", "searches", "hotlist_hits"):
            series: Series = getattr(self, name)
            out[name] = {"total": series.total,
                         "daily": [{"day": d.isoformat(), "count": v} for d, v in zip(series.days, series.values,
                                                                                      strict=True)]}
        out["vehicles_daily"].pop("total")  # a sum of daily distinct counts means nothing
        for key in ("captured", "not_captured", "acceptable_uses", "prohibited_uses"):
            out[key] = list(out[key])
        return out


DELETION_FIELDS = ("day", "retention_days", "retention_ended_at", "verified_at", "reads_ingested", "reads_held",
                   "unheld_reads_remaining", "unheld_images_remaining", "key_destroyed", "ok")


def deletion_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The public part of a retention verification report (docs/retention.md), times as ISO strings."""
    if report is None:
        return None
    return {k: v.isoformat(timespec="seconds") if isinstance(v, datetime) else v
            for k, v in report.items() if k in DELETION_FIELDS}


def published_checkpoint(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The audit trail's signed checkpoint as published: what `sightline audit verify --witness` reads."""
    out = {"seq": doc["seq"], "hash": doc["hash"], "at": doc["at"].astimezone(UTC).isoformat(timespec="milliseconds"),
           "signature": doc["signature"], "published_at": now.astimezone(UTC).isoformat(timespec="seconds")}
    if "prev" in doc:
        out["prev"] = doc["prev"]
    return out


def bar_chart_svg(series: Series, width: int = 640, height: int = 180, colour: str = "#2b6cb0") -> str:
    """A self-contained SVG bar chart of a daily series (no scripts, no external resources)."""
    left, right, top, bottom = 44, 8, 22, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(series.values), 1)
    peak = max(series.values, default=0)
    scale_max = _nice_ceiling(peak)
    bar_w = plot_w / n
    title = escape(series.title)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="{title}, daily">',
             f'<title>{title}, daily</title>',
             f'<text x="{left}" y="14" font-size="12" font-family="sans-serif" fill="#222">{title} per day</text>']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
                     f'font-family="sans-serif" fill="#555">{scale_max * frac:g}</text>')
    for i, (day, value) in enumerate(zip(series.days, series.values, strict=True)):
        h = plot_h * value / scale_max if scale_max else 0
        x = left + i * bar_w
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="{colour}"><title>{day.isoformat()}: {value}</title></rect>')
    for i in sorted({0, len(series.days) // 2, len(series.days) - 1}):
        if 0 <= i < len(series.days):
            x = left + (i + 0.5) * bar_w
            parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="10" text-anchor="middle" '
                         f'font-family="sans-serif" fill="#555">{series.days[i].strftime("%d %b")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at or above value (an axis maximum that reads well)."""
    if value <= 0:
        return 0
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10
