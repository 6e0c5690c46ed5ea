"""The public transparency portal: one page and one JSON document per agency, no login, read-only.

    GET /                          the agencies
    GET /agencies/{id}             the agency's page (figures, plots as inline SVG, policy)
    GET /api/agencies/{id}.json    the same figures as JSON
    GET /api/audit/checkpoint.json the audit trail's latest signed checkpoint, for anyone to save (a witness:
                                   `sightline audit verify --witness FILE` checks it is still in the chain)
    GET /healthz                   200 while MongoDB and Redis answer
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from pymongo.read_concern import ReadConcern
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from services.common.retention_policy import effective_days
from services.common.storage import mongo_client, mongo_dependency, redis_client, redis_dependency
from services.common.web import harden, health_route
from services.portal.adapters.records import Records, day_start
from services.portal.domain.transparency import (
    DEFAULT_POLICY,
    Series,
    Transparency,
    bar_chart_svg,
    deletion_summary,
    published_checkpoint,
    window_days,
)
from services.portal.settings import PortalSettings

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def build_report(records: Records, settings: PortalSettings, agency: dict, now: datetime) -> Transparency:
    agency_id = agency["_id"]
    days = window_days(now.astimezone(UTC).date(), settings.window_days)
    since = day_start(days[0])
    (reads, vehicles_daily, unique, (searches, refused), partner, (hits, outcomes), shared_by, cameras, report,
     holds) = await asyncio.gather(
        records.daily_reads(agency_id, days), records.daily_vehicles(agency_id, days),
        records.unique_vehicles(agency_id, days), records.daily_searches(agency_id, since),
        records.partner_searches(agency_id, since), records.hotlist_hits(agency_id, since),
        records.shared_by(agency_id), records.cameras(agency_id), records.latest_deletion_report(agency_id),
        records.active_holds(agency_id))
    report_out = Transparency(
        agency_id=agency_id, agency_name=agency.get("name") or agency_id,
        as_of=now.astimezone(UTC).isoformat(timespec="seconds"), window_days=settings.window_days,
        retention_days=effective_days(settings.cap_table(), agency, settings.read_retention_days),
        policy=agency.get("policy_text") or DEFAULT_POLICY, cameras=cameras,
        reads=Series("Plate reads", days, reads), vehicles_daily=Series("Distinct vehicles", days, vehicles_daily),
        unique_vehicles=unique, searches=Series.from_counts("Searches", days, searches), searches_refused=refused,
        partner_searches=partner, hotlist_hits=Series.from_counts("Hot-list hits", days, hits),
        hit_outcomes=outcomes, shares_with=sorted(agency.get("share_with", [])), shared_by=shared_by,
        evidence_holds=holds, latest_deletion_report=deletion_summary(report))
    for name in ("reads", "vehicles_daily", "searches", "hotlist_hits"):
        report_out.plots[name] = bar_chart_svg(getattr(report_out, name))
    return report_out


class Portal:
    def __init__(self, settings: PortalSettings):
        self.settings = settings
        self.mongo = mongo_client(settings)
        self.redis = redis_client(settings)
        # Read-only: majority-committed data, no write concern (in Kubernetes the MongoDB user may only read).
        self._records = Records(self.mongo.get_database(settings.mongo_db, read_concern=ReadConcern("majority")),
                                self.mongo.get_database(settings.audit_mongo_db, read_concern=ReadConcern("majority")),
                                self.redis)
        self._cache: dict[str, tuple[float, Transparency]] = {}

    async def report(self, agency_id: str) -> Transparency:
        hit = self._cache.get(agency_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        agency = await self._records.agency(agency_id)
        if agency is None:
            raise HTTPException(404, f"no agency {agency_id!r}")
        report = await build_report(self._records, self.settings, agency, datetime.now(UTC))
        if self.settings.cache_seconds:
            self._cache[agency_id] = (time.monotonic() + self.settings.cache_seconds, report)
        return report

    async def index(self, request: Request) -> Response:
        agencies = await self._records.agencies()
        checkpoint = await self.checkpoint()
        return templates.TemplateResponse(request, "index.html", {"agencies": agencies, "checkpoint": checkpoint})

    async def checkpoint(self) -> dict | None:
        doc = await self._records.latest_checkpoint()
        return None if doc is None else published_checkpoint(doc, datetime.now(UTC))

    async def checkpoint_json(self, request: Request) -> Response:
        checkpoint = await self.checkpoint()
        if checkpoint is None:
            raise HTTPException(404, "the audit trail has no signed checkpoint yet")
        return JSONResponse(checkpoint, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"})

    async def agency_page(self, request: Request) -> Response:
        report = await self.report(request.path_params["agency_id"])
        return templates.TemplateResponse(request, "agency.html", {"r": report})

    async def agency_json(self, request: Request) -> Response:
        report = await self.report(request.path_params["agency_id"])
        return JSONResponse(report.to_json(), headers={"Access-Control-Allow-Origin": "*"})

    async def close(self) -> None:
        await self.redis.aclose()
        await self.mongo.close()


async def not_found(request: Request, exc: HTTPException) -> Response:
    return HTMLResponse(f"<h1>{exc.status_code}</h1><p>{escape(str(exc.detail))}</p>", status_code=exc.status_code)


def create_app(settings: PortalSettings) -> Starlette:
    portal = Portal(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await portal.close()

    routes = [
        Route("/", portal.index),
        Route("/agencies/{agency_id}", portal.agency_page),
        Route("/api/agencies/{agency_id}.json", portal.agency_json),
        Route("/api/audit/checkpoint.json", portal.checkpoint_json),
        health_route([mongo_dependency(portal.mongo), redis_dependency(portal.redis)]),
    ]
    return harden(Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found}),
                  settings, SECURITY_HEADERS)
