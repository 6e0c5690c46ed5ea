"""The staff console: a web front end over the services' gRPC APIs (it never touches a database).

Login (password + TOTP) through identity; purpose-bound search, read detail and redacted images through
search; live alerts (SubscribeAlerts relayed as server-sent events) and their verification, reconfirmation
and disposition, and hot-list entries through hotlist; evidence holds through retention; the supervisors'
audit review and flags through audit. Every call carries the user's own token, so each service decides and
audits exactly as for any other client. Nothing here logs a plate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from services.common.auth import Permission, Principal, auth_metadata, token_verifier
from services.common.purpose import purpose_label
from services.common.rejected import Rejected
from services.common.web import harden, health_route
from services.console import admin
from services.console.adapters.backends import Backends
from services.console.domain import forms
from services.console.domain.forms import CSRF_COOKIE, SESSION_COOKIE, Csrf, FormError, cookie_options
from services.console.settings import ConsoleSettings
from sightline.audit.v1 import audit_pb2
from sightline.common.v1 import read_pb2
from sightline.hotlist.v1 import hotlist_pb2
from sightline.identity.v1 import identity_pb2
from sightline.retention.v1 import retention_pb2
from sightline.search.v1 import search_pb2

# A gRPC refusal shown as an HTTP page.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
}

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["purpose_label"] = purpose_label
templates.env.globals.update(admin.TEMPLATE_GLOBALS)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[Request], Awaitable[Response]]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _ts(value: Any) -> str:
    """A protobuf Timestamp as 'YYYY-MM-DD HH:MM:SS UTC' (empty when unset)."""
    if not (value.seconds or value.nanos):
        return ""
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["ts"] = _ts
templates.env.filters["vehicle_type"] = lambda t: (read_pb2.VehicleType.Name(t).removeprefix("VEHICLE_TYPE_").lower()
                                                   if t else "")


class Console:
    def __init__(self, settings: ConsoleSettings):
        self.settings = settings
        self.backends = Backends(settings)
        # Signature and expiry only: every page's data comes from a service that also checks revocation.
        self.verifier = token_verifier(settings, None)
        key = settings.csrf_secret.get_secret_value().encode() or secrets.token_bytes(32)
        self.csrf = Csrf(key)
        self.tickets = forms.ViewTickets(key)

    # --- session, CSRF, rendering ------------------------------------------------------------------------

    def principal(self, request: Request) -> Principal | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            return self.verifier.verify(token)
        except Rejected:
            return None

    def render(self, request: Request, template: str, context: dict[str, Any] | None = None,
               status: int = 200) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE) or Csrf.new_nonce()
        ctx = {"csrf": self.csrf.token(nonce), "user": getattr(request.state, "principal", None),
               "Permission": Permission, "holds_enabled": self.backends.retention is not None, **(context or {})}
        response = templates.TemplateResponse(request, template, ctx, status_code=status)
        if nonce != request.cookies.get(CSRF_COOKIE):
            response.set_cookie(CSRF_COOKIE, nonce, **cookie_options(_secure(request)))
        return response

    async def form(self, request: Request) -> FormData:
        """The POSTed form, after its CSRF token was checked."""
        data = await request.form()
        token = data.get("csrf")
        if not self.csrf.valid(request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None):
            raise HTTPException(403, "the form expired or did not come from this console: reload the page")
        return data

    def metadata(self, request: Request) -> tuple[tuple[str, str], ...]:
        return auth_metadata(request.state.principal.token)

    def error_page(self, request: Request, exc: grpc.aio.AioRpcError) -> Response:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            return self._to_login(request)
        status = HTTP_STATUS.get(exc.code(), 503)
        return self.render(request, "error.html", {"status": status, "message": exc.details() or exc.code().name},
                           status)

    def _to_login(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict")
        return response

    def login_required(self, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            request.state.principal = self.principal(request)
            if request.state.principal is None:
                return self._to_login(request)
            try:
                return await handler(request)
            except grpc.aio.AioRpcError as exc:
                return self.error_page(request, exc)

        return wrapped

    # --- login ---------------------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html")

    async def login(self, request: Request) -> Response:
        data = await self.form(request)
        try:
            # The browser's address: identity throttles failed logins by source (it trusts this header from the
            # console's address only, SIGHTLINE_LOGIN_TRUSTED_PROXIES).
            source = (("x-forwarded-for", request.client.host),) if request.client else ()
            reply = await self.backends.identity.Login(identity_pb2.LoginRequest(
                username=str(data.get("username", "")), password=str(data.get("password", "")),
                totp_code=str(data.get("totp_code", "")).strip()), metadata=source, timeout=self.backends.timeout)
        except grpc.aio.AioRpcError as exc:
            return self.render(request, "login.html", {"error": exc.details(), "username": data.get("username", "")},
                               HTTP_STATUS.get(exc.code(), 503))
        max_age = max(int((reply.expires_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)).total_seconds()), 1)
        response = RedirectResponse("/search", status_code=303)
        response.set_cookie(SESSION_COOKIE, reply.access_token, **cookie_options(_secure(request), max_age))
        # A fresh CSRF nonce for the new session.
        response.set_cookie(CSRF_COOKIE, Csrf.new_nonce(), **cookie_options(_secure(request)))
        return response

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        if token := request.cookies.get(SESSION_COOKIE):
            try:  # revoked in every service, not only forgotten by this browser
                await self.backends.identity.Logout(identity_pb2.LogoutRequest(), metadata=auth_metadata(token),
                                                    timeout=self.backends.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAUTHENTICATED:  # an expired or revoked token is logged out already
                    return self.error_page(request, exc)
        return self._to_login(request)

    # --- search and reads ------------------------------------------------------------------------------------

    async def search_page(self, request: Request) -> Response:
        return self.render(request, "search.html", {"purposes": forms.PURPOSES, "form": {}})

    async def search(self, request: Request) -> Response:
        data = await self.form(request)
        ctx: dict[str, Any] = {"purposes": forms.PURPOSES, "form": data}
        try:
            req = forms.search_request(data, datetime.now(UTC))
            reply = await self.backends.search.SearchReads(req, metadata=self.metadata(request),
                                                           timeout=self.backends.timeout)
        except FormError as exc:
            return self.render(request, "search.html", {**ctx, "error": str(exc)}, 400)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return self._to_login(request)
            return self.render(request, "search.html", {**ctx, "error": exc.details()},
                               HTTP_STATUS.get(exc.code(), 503))
        view = self._viewer(request, req.purpose, req.case_number, req.include_partner_agencies)
        return self.render(request, "search.html", {**ctx, "reads": reply.reads, "view": view, "searched": True})

    async def read_detail(self, request: Request) -> Response:
        read_id = request.path_params["read_id"]
        purpose, case_number, partners = self._access(request, f"/reads/{read_id}")
        read = await self.backends.search.GetRead(search_pb2.GetReadRequest(
            read_id=read_id, purpose=purpose, case_number=case_number,
            include_partner_agencies=partners), metadata=self.metadata(request), timeout=self.backends.timeout)
        view = self._viewer(request, purpose, case_number, partners)
        return self.render(request, "read.html", {"read": read, "view": view, "purpose": purpose,
                                                  "case_number": case_number})

    async def image(self, request: Request) -> Response:
        image_ref = request.path_params["image_ref"]
        purpose, case_number, partners = self._access(request, f"/images/{image_ref}")
        reply = await self.backends.search.GetImage(search_pb2.GetImageRequest(
            image_ref=image_ref, purpose=purpose, case_number=case_number,
            include_partner_agencies=partners), metadata=self.metadata(request), timeout=self.backends.timeout)
        return Response(reply.data, media_type=reply.content_type or "image/jpeg")

    def _viewer(self, request: Request, purpose: int, case_number: str, partners: bool) -> Callable[[str], str]:
        """path -> a link to that audited view under this purpose, with a ticket of this session."""
        access = forms.access_params(purpose, case_number, partners)
        session, now = request.state.principal.token, datetime.now(UTC)
        return lambda path: self.tickets.link(session, path, access, now)

    def _access(self, request: Request, path: str) -> tuple[int, str, bool]:
        """The purpose, case number and partner scope of a view, from a link this session was given (else 403)."""
        try:
            return self.tickets.check(request.state.principal.token, path, request.query_params, datetime.now(UTC))
        except FormError as exc:
            raise HTTPException(403, str(exc)) from exc

    # --- alerts ------------------------------------------------------------------------------------------------

    async def alerts_page(self, request: Request) -> Response:
        return self.render(request, "alerts.html")

    async def alerts_stream(self, request: Request) -> Response:
        principal: Principal = request.state.principal
        req = hotlist_pb2.SubscribeAlertsRequest(agency_ids=[principal.agency_id])
        req.replay_since.FromDatetime(datetime.now(UTC) - timedelta(hours=self.settings.alert_replay_hours))
        call = self.backends.alerts.SubscribeAlerts(req, metadata=self.metadata(request))

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                async for alert in call:
                    yield {"event": "alert", "id": alert.alert_id, "data": json.dumps(forms.alert_summary(alert))}
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    log.warning("alert stream ended", extra={"code": exc.code().name})
                    yield {"event": "gone", "data": exc.details() or exc.code().name}
            finally:
                call.cancel()

        return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})

    async def alert_detail(self, request: Request) -> Response:
        # Hotlist answers only alerts of the user's agency (any other is NOT_FOUND: a 404 page).
        alert = await self.backends.alerts.GetAlert(hotlist_pb2.GetAlertRequest(
            alert_id=request.path_params["alert_id"]), metadata=self.metadata(request), timeout=self.backends.timeout)
        purpose, case_number = forms.alert_access(alert)
        view = self._viewer(request, purpose, case_number, False)
        return self.render(request, "alert.html", {
            "alert": alert, "summary": forms.alert_summary(alert), "view": view,
            "dispositions": forms.DISPOSITIONS, "status": hotlist_pb2.AlertStatus.Name(alert.status)})

    async def alert_step(self, request: Request) -> Response:
        data = await self.form(request)
        alert_id, step = request.path_params["alert_id"], request.path_params["step"]
        note = str(data.get("note", ""))[:500]
        # Hotlist records each step as the token's user, for alerts of the user's agency only, and audits it.
        stub, md, timeout = self.backends.alerts, self.metadata(request), self.backends.timeout
        if step == "verification":
            await stub.RecordVerification(hotlist_pb2.RecordVerificationRequest(
                alert_id=alert_id, plate_matches=data.get("plate_matches") == "on",
                state_matches=data.get("state_matches") == "on", note=note), metadata=md, timeout=timeout)
        elif step == "reconfirmation":
            await stub.RecordReconfirmation(hotlist_pb2.RecordReconfirmationRequest(
                alert_id=alert_id, record_active=data.get("record_active") == "on", note=note),
                metadata=md, timeout=timeout)
        elif step == "disposition":
            await stub.RecordDisposition(hotlist_pb2.RecordDispositionRequest(
                alert_id=alert_id, disposition=int(str(data.get("disposition", "0")) or 0),
                note=note), metadata=md, timeout=timeout)
        else:
            raise HTTPException(404, "no such step")
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    # --- hot lists ----------------------------------------------------------------------------------------------

    async def hotlists_page(self, request: Request, error: str = "", added: Any = None, searched: Any = None,
                            status: int = 200) -> Response:
        reply = await self.backends.hotlists.ListLists(hotlist_pb2.ListListsRequest(),
                                                       metadata=self.metadata(request), timeout=self.backends.timeout)
        return self.render(request, "hotlists.html", {"lists": reply.lists, "error": error, "added": added,
                                                      "searched": searched, "purposes": forms.PURPOSES}, status)

    async def add_entry(self, request: Request) -> Response:
        data = await self.form(request)
        principal: Principal = request.state.principal
        if not principal.can(Permission.HOTLIST_MANAGE):
            raise HTTPException(403, "your roles do not allow hot-list changes")
        try:
            entry = forms.hotlist_entry(data)
            reply = await self.backends.hotlists.AddEntry(hotlist_pb2.AddEntryRequest(entry=entry),
                                                          metadata=self.metadata(request),
                                                          timeout=self.backends.timeout)
        except FormError as exc:
            return await self.hotlists_page(request, str(exc), status=400)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return await self.hotlists_page(request, exc.details() or "", status=400)
        # Hotlist itself audited the change (hotlist.entry.add) before making it.
        search = forms.back_search(data, reply.entry.list_id, reply.entry.entry_id)
        if search is None:
            return await self.hotlists_page(request, added=reply)
        try:
            # A search of past reads: hotlist checks its purpose and case number and audits it (hotlist.backsearch).
            searched = await self.backends.hotlists.BackSearch(search, metadata=self.metadata(request),
                                                               timeout=self.backends.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED):
                raise
            return await self.hotlists_page(request, f"past reads not searched: {exc.details()}", added=reply,
                                            status=400)
        return await self.hotlists_page(request, added=reply, searched=searched)

    # --- evidence holds -----------------------------------------------------------------------------------------

    def _retention(self):
        if self.backends.retention is None:
            raise HTTPException(404, "evidence holds are not configured on this console")
        return self.backends.retention

    async def holds_page(self, request: Request, message: str = "", error: str = "", status: int = 200) -> Response:
        reply = await self._retention().ListHolds(retention_pb2.ListHoldsRequest(include_released=True),
                                                  metadata=self.metadata(request), timeout=self.backends.timeout)
        return self.render(request, "holds.html", {"holds": reply.holds, "message": message, "error": error,
                                                   "active": retention_pb2.HOLD_STATUS_ACTIVE}, status)

    async def place_hold(self, request: Request) -> Response:
        data = await self.form(request)
        try:
            req = forms.hold_request(data)
            hold = await self._retention().PlaceHold(req, metadata=self.metadata(request),
                                                     timeout=self.backends.timeout)
        except FormError as exc:
            return await self.holds_page(request, error=str(exc), status=400)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            return await self.holds_page(request, error=exc.details() or "", status=400)
        message = (f"Hold {hold.hold_id} placed for case {hold.case_number}: {hold.read_count} read(s) and "
                   f"{hold.image_count} image(s) kept.")
        return await self.holds_page(request, message=message)

    async def release_hold(self, request: Request) -> Response:
        data = await self.form(request)
        hold = await self._retention().ReleaseHold(retention_pb2.ReleaseHoldRequest(
            hold_id=request.path_params["hold_id"], reason=str(data.get("reason", "")).strip()),
            metadata=self.metadata(request), timeout=self.backends.timeout)
        return await self.holds_page(request, message=f"Hold {hold.hold_id} released: {hold.reads_restored} read(s) "
                                                      f"back to normal expiry, {hold.reads_deleted} deleted.")

    # --- audit review -----------------------------------------------------------------------------------------

    async def audit_page(self, request: Request) -> Response:
        principal: Principal = request.state.principal
        if not principal.can(Permission.AUDIT_REVIEW):
            raise HTTPException(403, "the audit review is for supervisors and auditors")
        q = request.query_params
        query = audit_pb2.QueryEntriesRequest(
            user_id=q.get("user_id", ""), plate=q.get("plate", "").strip().upper(),
            case_number=q.get("case_number", "").strip(), action=q.get("action", ""), page_size=100)
        md, timeout = self.metadata(request), self.backends.timeout
        entries = await self.backends.audit.QueryEntries(query, metadata=md, timeout=timeout)
        flags_req = audit_pb2.ListFlagsRequest()
        flags_req.start_time.FromDatetime(datetime.now(UTC) - timedelta(days=7))
        flags = await self.backends.audit.ListFlags(flags_req, metadata=md, timeout=timeout)
        return self.render(request, "audit.html", {
            "entries": entries.entries, "flags": flags.flags, "q": q,
            "flag_name": lambda k: audit_pb2.FlagKind.Name(k).removeprefix("FLAG_KIND_").replace("_", " ").lower(),
            "outcome_name": lambda o: audit_pb2.Outcome.Name(o).removeprefix("OUTCOME_").lower()})

    # --- errors ------------------------------------------------------------------------------------------------

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if not hasattr(request.state, "principal"):
            request.state.principal = self.principal(request)
        return self.render(request, "error.html", {"status": exc.status_code, "message": exc.detail},
                           exc.status_code)


def create_app(settings: ConsoleSettings) -> Starlette:
    console = Console(settings)
    auth = console.login_required

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.backends.close()

    async def home(request: Request) -> Response:
        return RedirectResponse("/search", status_code=303)

    routes = [
        Route("/", home),
        Route("/login", console.login_page, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/search", auth(console.search_page), methods=["GET"]),
        Route("/search", auth(console.search), methods=["POST"]),
        Route("/reads/{read_id}", auth(console.read_detail)),
        Route("/images/{image_ref:path}", auth(console.image)),
        Route("/alerts", auth(console.alerts_page)),
        Route("/alerts/stream", auth(console.alerts_stream)),
        Route("/alerts/{alert_id}", auth(console.alert_detail), methods=["GET"]),
        Route("/alerts/{alert_id}/{step}", auth(console.alert_step), methods=["POST"]),
        Route("/hotlists", auth(console.hotlists_page), methods=["GET"]),
        Route("/hotlists/entries", auth(console.add_entry), methods=["POST"]),
        Route("/holds", auth(console.holds_page), methods=["GET"]),
        Route("/holds", auth(console.place_hold), methods=["POST"]),
        Route("/holds/{hold_id}/release", auth(console.release_hold), methods=["POST"]),
        Route("/audit", auth(console.audit_page)),
        *admin.routes(console),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        health_route(console.backends.dependencies()),
    ]
    return harden(Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: console.http_error}),
                  settings, HEADERS)
