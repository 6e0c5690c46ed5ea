"""The console's agency administration pages (/admin/...), for the agency-admin role.

Users and the agency's sharing and case-number rule through identity, retention days through retention,
cameras through ingest's camera registry (its published client), hot lists and their refresh through hotlist.
Every page and form calls the service with the admin's own token: the service refuses other roles and other
agencies (PERMISSION_DENIED or NOT_FOUND, audited DENIED) and audits each change before it takes effect.
Passwords, TOTP secrets and camera secrets appear once, on the page answering the change, never in a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.common.auth import Permission
from services.common.qr import qr_svg
from services.console.domain import admin as forms
from services.console.domain.forms import SESSION_COOKIE, FormError
from sightline.hotlist.v1 import hotlist_pb2
from sightline.identity.v1 import identity_pb2
from sightline.retention.v1 import retention_pb2

if TYPE_CHECKING:
    from services.console.app import Console

# Refusals a form answers next to itself (the rest become an error page).
_FORM_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
               grpc.StatusCode.ALREADY_EXISTS)
IMPORT_CHUNK = 256 * 1024
IMPORT_TIMEOUT_S = 300.0
TEMPLATE_GLOBALS = {"role_name": forms.role_name, "source_name": forms.source_name, "ROLES": forms.ROLES,
                    "SOURCES": forms.SOURCES}


def form_error(exc: FormError | grpc.aio.AioRpcError) -> str:
    """What to show on the form again: its own check's message, or a refusal the person can correct (any other
    failure of a backend is raised)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() not in _FORM_CODES:
            raise exc
        return exc.details() or ""
    return str(exc)


class AdminPages:
    def __init__(self, console: Console):
        self.c = console

    def _md(self, request: Request) -> tuple[tuple[str, str], ...]:
        return self.c.metadata(request)

    @property
    def _t(self) -> float:
        return self.c.backends.timeout

    def _token(self, request: Request) -> str:
        return str(request.state.principal.token)

    # --- landing ------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        # GetAgency needs agency:manage: any other role is refused (and audited) by identity.
        agency = await self.c.backends.identity.GetAgency(identity_pb2.GetAgencyRequest(), metadata=self._md(request),
                                                          timeout=self._t)
        users = await self.c.backends.identity.ListUsers(identity_pb2.ListUsersRequest(), metadata=self._md(request),
                                                         timeout=self._t)
        return self.c.render(request, "admin/home.html", {"agency": agency, "user_count": len(users.users)})

    # --- users --------------------------------------------------------------------------------------------

    async def users_page(self, request: Request, error: str = "", status: int = 200,
                         form: Any = None) -> Response:
        reply = await self.c.backends.identity.ListUsers(identity_pb2.ListUsersRequest(), metadata=self._md(request),
                                                         timeout=self._t)
        return self.c.render(request, "admin/users.html", {"users": reply.users, "error": error, "form": form or {}},
                             status)

    async def create_user(self, request: Request) -> Response:
        data = await self.c.form(request)
        try:
            req = forms.create_user(str(data.get("username", "")), str(data.get("display_name", "")),
                                    [str(r) for r in data.getlist("roles")], str(data.get("course", "")),
                                    str(data.get("expires", "")))
            reply = await self.c.backends.identity.CreateUser(req, metadata=self._md(request), timeout=self._t)
        except (FormError, grpc.aio.AioRpcError) as exc:
            return await self.users_page(request, form_error(exc), 400, data)
        return self._secrets_page(request, reply.user, "created", reply.generated_password, reply.totp_secret,
                                  reply.totp_uri)

    def _secrets_page(self, request: Request, user: identity_pb2.User, what: str, password: str = "",
                      totp_secret: str = "", uri: str = "") -> Response:
        return self.c.render(request, "admin/secrets.html", {
            "subject": user, "what": what, "password": password, "totp_secret": totp_secret, "totp_uri": uri,
            "qr": qr_svg(uri) if uri else ""})

    async def user_page(self, request: Request, message: str = "", error: str = "", status: int = 200) -> Response:
        user = await self.c.backends.identity.GetUser(identity_pb2.GetUserRequest(
            user_id=request.path_params["user_id"]), metadata=self._md(request), timeout=self._t)
        return self.c.render(request, "admin/user.html", {"subject": user, "message": message, "error": error},
                             status)

    async def user_action(self, request: Request) -> Response:
        data = await self.c.form(request)
        user_id, action = request.path_params["user_id"], request.path_params["action"]
        identity, md, t = self.c.backends.identity, self._md(request), self._t
        try:
            if action == "roles":
                await identity.SetRoles(identity_pb2.SetRolesRequest(
                    user_id=user_id, roles=forms.roles(str(r) for r in data.getlist("roles"))), metadata=md, timeout=t)
                message = "Roles saved; they apply from the user's next login."
            elif action == "training":
                await identity.RecordTraining(identity_pb2.RecordTrainingRequest(
                    user_id=user_id, training=forms.training(str(data.get("course", "")),
                                                             str(data.get("expires", "")))), metadata=md, timeout=t)
                message = "Training recorded."
            elif action == "lock":
                await identity.LockUser(identity_pb2.LockUserRequest(user_id=user_id), metadata=md, timeout=t)
                message = "Account locked; its sessions are ended."
            elif action == "unlock":
                await identity.UnlockUser(identity_pb2.UnlockUserRequest(user_id=user_id), metadata=md, timeout=t)
                message = "Account unlocked."
            elif action == "reset-password":
                pw = await identity.ResetPassword(identity_pb2.ResetPasswordRequest(user_id=user_id), metadata=md,
                                                  timeout=t)
                return self._secrets_page(request, pw.user, "given a new password", password=pw.generated_password)
            elif action == "reset-totp":
                tp = await identity.ResetTotp(identity_pb2.ResetTotpRequest(user_id=user_id), metadata=md, timeout=t)
                return self._secrets_page(request, tp.user, "given a new second factor", totp_secret=tp.totp_secret,
                                          uri=tp.totp_uri)
            else:
                return self.c.render(request, "error.html", {"status": 404, "message": "no such action"}, 404)
        except (FormError, grpc.aio.AioRpcError) as exc:
            return await self.user_page(request, error=form_error(exc), status=400)
        return await self.user_page(request, message=message)

    # --- cameras ------------------------------------------------------------------------------------------

    async def cameras_page(self, request: Request, message: str = "", error: str = "", secret: str = "",
                           secret_for: str = "", status: int = 200) -> Response:
        registry = self._registry()
        cameras = await registry.list(self._token(request))
        return self.c.render(request, "admin/cameras.html", {
            "cameras": cameras, "message": message, "error": error, "secret": secret, "secret_for": secret_for},
            status)

    def _registry(self) -> Any:
        if self.c.backends.cameras is None:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "the camera registry (ingest) is not configured on this console")
        return self.c.backends.cameras

    async def upsert_camera(self, request: Request) -> Response:
        data = await self.c.form(request)
        registry = self._registry()
        try:
            cam = forms.camera(str(data.get("camera_id", "")), str(data.get("name", "")),
                               str(data.get("latitude", "")), str(data.get("longitude", "")),
                               str(data.get("bearing", "")), data.get("active", "on") == "on")
            reply = await registry.upsert(self._token(request), cam)
        except (FormError, grpc.aio.AioRpcError) as exc:
            return await self.cameras_page(request, error=form_error(exc), status=400)
        if reply.secret:
            return await self.cameras_page(request, message=f"Camera {cam.camera_id} registered.",
                                           secret=reply.secret, secret_for=cam.camera_id)
        return await self.cameras_page(request, message=f"Camera {cam.camera_id} saved.")

    async def camera_action(self, request: Request) -> Response:
        await self.c.form(request)
        camera_id, action = request.path_params["camera_id"], request.path_params["action"]
        registry, token = self._registry(), self._token(request)
        if action == "rotate":
            secret = await registry.rotate(token, camera_id)
            return await self.cameras_page(request, message=f"New credential for camera {camera_id}: the old one no "
                                                            "longer works.", secret=secret, secret_for=camera_id)
        if action in ("deactivate", "activate"):
            current = next((c for c in await registry.list(token) if c.camera_id == camera_id), None)
            if current is None:
                return self.c.render(request, "error.html", {"status": 404, "message": "no such camera in your agency"},
                                     404)
            current.active = action == "activate"
            await registry.upsert(token, current)
            return await self.cameras_page(request, message=f"Camera {camera_id} {action}d.")
        return self.c.render(request, "error.html", {"status": 404, "message": "no such action"}, 404)

    # --- agency: sharing, case-number rule, retention ------------------------------------------------------

    async def agency_page(self, request: Request, message: str = "", error: str = "", status: int = 200) -> Response:
        md = self._md(request)
        agency = await self.c.backends.identity.GetAgency(identity_pb2.GetAgencyRequest(), metadata=md,
                                                          timeout=self._t)
        retention = None
        if self.c.backends.retention is not None:
            retention = await self.c.backends.retention.GetAgencyRetention(
                retention_pb2.GetAgencyRetentionRequest(), metadata=md, timeout=self._t)
        return self.c.render(request, "admin/agency.html", {"agency": agency, "retention": retention,
                                                            "message": message, "error": error}, status)

    async def agency_action(self, request: Request) -> Response:
        data = await self.c.form(request)
        md, action = self._md(request), request.path_params["action"]
        try:
            if action == "policy":
                await self.c.backends.identity.SetAgencyPolicy(identity_pb2.SetAgencyPolicyRequest(
                    share_with=forms.agency_ids(str(data.get("share_with", ""))),
                    hotlist_share_with=forms.agency_ids(str(data.get("hotlist_share_with", ""))),
                    case_number_required=data.get("case_number_required") == "on"), metadata=md, timeout=self._t)
                message = "Sharing and case-number rule saved."
            elif action == "retention" and self.c.backends.retention is not None:
                reply = await self.c.backends.retention.SetAgencyRetention(
                    forms.retention(str(data.get("state", "")), str(data.get("retention_days", ""))),
                    metadata=md, timeout=self._t)
                message = f"Reads are now kept {reply.retention_days} days (state cap {reply.cap_days})."
            else:
                return self.c.render(request, "error.html", {"status": 404, "message": "no such setting"}, 404)
        except (FormError, grpc.aio.AioRpcError) as exc:
            return await self.agency_page(request, error=form_error(exc), status=400)
        return await self.agency_page(request, message=message)

    # --- hot lists -----------------------------------------------------------------------------------------

    async def hotlists_page(self, request: Request, message: str = "", error: str = "", rejected: Any = (),
                            status: int = 200) -> Response:
        if not request.state.principal.can(Permission.HOTLIST_MANAGE):  # hotlist refuses (and audits) the rest
            raise HTTPException(403, "hot-list sources are managed by agency admins and supervisors")
        reply = await self.c.backends.hotlists.ListLists(hotlist_pb2.ListListsRequest(), metadata=self._md(request),
                                                         timeout=self._t)
        principal = request.state.principal
        own = [x for x in reply.lists if x.owner == principal.agency_id]
        shared = [x for x in reply.lists if x.owner != principal.agency_id]
        return self.c.render(request, "admin/hotlists.html", {"own": own, "shared": shared, "message": message,
                                                              "error": error, "rejected": rejected}, status)

    async def upsert_list(self, request: Request) -> Response:
        data = await self.c.form(request)
        try:
            hot = forms.hot_list(str(data.get("list_id", "")), str(data.get("name", "")),
                                 str(data.get("source", "")), data.get("fuzzy") == "on",
                                 str(data.get("max_edits", "0")))
            saved = await self.c.backends.hotlists.UpsertList(hotlist_pb2.UpsertListRequest(list=hot),
                                                              metadata=self._md(request), timeout=self._t)
        except FormError as exc:
            return await self.hotlists_page(request, error=str(exc), status=400)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (*_FORM_CODES, grpc.StatusCode.PERMISSION_DENIED):
                raise
            return await self.hotlists_page(request, error=exc.details() or "", status=403 if exc.code() ==
                                            grpc.StatusCode.PERMISSION_DENIED else 400)
        return await self.hotlists_page(request, message=f"List {saved.list_id} saved.")

    async def refresh_list(self, request: Request) -> Response:
        """A new version of the list from an uploaded hot file (ImportList: swapped in atomically)."""
        data = await self.c.form(request)
        list_id, upload = request.path_params["list_id"], data.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await self.hotlists_page(request, error="choose the hot file to load", status=400)

        async def chunks() -> AsyncIterator[hotlist_pb2.ImportListChunk]:
            first = True
            while piece := await upload.read(IMPORT_CHUNK):
                chunk = hotlist_pb2.ImportListChunk(data=piece)
                if first:
                    chunk.list_id, first = list_id, False
                yield chunk

        try:
            reply = await self.c.backends.hotlists.ImportList(chunks(), metadata=self._md(request),
                                                              timeout=IMPORT_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (*_FORM_CODES, grpc.StatusCode.PERMISSION_DENIED):
                raise
            return await self.hotlists_page(request, error=exc.details() or "", status=400)
        return await self.hotlists_page(
            request, message=f"List {reply.list.list_id} refreshed to version {reply.list.version}: "
                             f"{reply.accepted} entries, {reply.rejected_count} lines rejected.",
            rejected=list(reply.rejected)[:20])


class AccountPage:
    """/account: a person changes their own password (a one-time one first), with a TOTP code not used before."""

    def __init__(self, console: Console):
        self.c = console

    async def page(self, request: Request) -> Response:
        return self.c.render(request, "account.html")

    async def change_password(self, request: Request) -> Response:
        data = await self.c.form(request)
        new, again = str(data.get("new_password", "")), str(data.get("new_password_again", ""))
        if new != again:
            return self.c.render(request, "account.html", {"error": "the two new passwords differ"}, 400)
        try:
            await self.c.backends.identity.ChangePassword(identity_pb2.ChangePasswordRequest(
                old_password=str(data.get("old_password", "")), new_password=new,
                totp_code=str(data.get("totp_code", "")).strip()), metadata=self.c.metadata(request),
                timeout=self.c.backends.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED):
                raise
            return self.c.render(request, "account.html", {"error": exc.details()}, 400)
        # Identity revoked every session of this person, this one included: log in again.
        response = self.c.render(request, "login.html", {"notice": "Password changed: log in with the new one.",
                                                            "user": None})
        response.delete_cookie(SESSION_COOKIE, path="/", secure=request.url.scheme == "https", httponly=True,
                               samesite="strict")
        return response


def routes(console: Console) -> list[Any]:
    from starlette.routing import Route

    pages, account, auth = AdminPages(console), AccountPage(console), console.login_required

    async def users_get(request: Request) -> Response:
        return await pages.users_page(request)

    async def user_get(request: Request) -> Response:
        return await pages.user_page(request)

    async def cameras_get(request: Request) -> Response:
        return await pages.cameras_page(request)

    async def agency_get(request: Request) -> Response:
        return await pages.agency_page(request)

    async def hotlists_get(request: Request) -> Response:
        return await pages.hotlists_page(request)

    async def slash(request: Request) -> Response:
        return RedirectResponse("/admin", status_code=303)

    return [
        Route("/account", auth(account.page), methods=["GET"]),
        Route("/account", auth(account.change_password), methods=["POST"]),
        Route("/admin", auth(pages.home), methods=["GET"]),
        Route("/admin/", slash, methods=["GET"]),
        Route("/admin/users", auth(users_get), methods=["GET"]),
        Route("/admin/users", auth(pages.create_user), methods=["POST"]),
        Route("/admin/users/{user_id}", auth(user_get), methods=["GET"]),
        Route("/admin/users/{user_id}/{action}", auth(pages.user_action), methods=["POST"]),
        Route("/admin/cameras", auth(cameras_get), methods=["GET"]),
        Route("/admin/cameras", auth(pages.upsert_camera), methods=["POST"]),
        Route("/admin/cameras/{camera_id}/{action}", auth(pages.camera_action), methods=["POST"]),
        Route("/admin/agency", auth(agency_get), methods=["GET"]),
        Route("/admin/agency/{action}", auth(pages.agency_action), methods=["POST"]),
        Route("/admin/hotlists", auth(hotlists_get), methods=["GET"]),
        Route("/admin/hotlists", auth(pages.upsert_list), methods=["POST"]),
        Route("/admin/hotlists/{list_id}/refresh", auth(pages.refresh_list), methods=["POST"]),
    ]
