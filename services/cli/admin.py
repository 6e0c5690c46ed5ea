"""``sightline login``, ``sightline logout`` and ``sightline admin users|cameras|agency|hotlists ...``.

Agency administration for scripts, through the services' gRPC APIs with the admin's own token (the services
refuse other roles and other agencies, and audit every change before it takes effect). ``sightline login``
asks identity for a token (password and TOTP code from the terminal, or two lines on standard input with
``--stdin``; never from the command line) and keeps it, readable by its owner only (0600), in the local
state directory (``.local/data/cli/session``, or under $SIGHTLINE_DATA_DIR), where ``logout`` revokes and
deletes it. $SIGHTLINE_TOKEN, when set, is used instead. Service addresses: the local stack's ports, or
$SIGHTLINE_<SERVICE>_ADDRESS. ``--json`` prints one JSON document per command; one-time secrets (passwords,
TOTP secrets, camera credentials) are printed once, in either form.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from services.common.auth import KeySettings, auth_metadata
from services.common.qr import qr_text
from services.common.tls import secure_channel
from services.console.domain import admin as forms
from services.console.domain.forms import FormError
from services.ingest.client import CameraRegistry
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.retention.v1 import retention_pb2, retention_pb2_grpc

PORTS = {"identity": 50055, "ingest": 50051, "hotlist": 50053, "retention": 50056}
TIMEOUT_S = 15.0
IMPORT_TIMEOUT_S = 600.0
CHUNK = 256 * 1024


class Refused(Exception):
    """A command that cannot run; printed as 'refused: ...' (exit 1, or 2 for a usage problem)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def address(service: str) -> str:
    return os.environ.get(f"SIGHTLINE_{service.upper()}_ADDRESS", f"127.0.0.1:{PORTS[service]}")


def session_file() -> Path:
    return KeySettings().data_dir / "cli" / "session"


def save_token(token: str) -> Path:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.chmod(path, 0o600)
    return path


def stored_token() -> str:
    if token := os.environ.get("SIGHTLINE_TOKEN", ""):
        return token
    try:
        return session_file().read_text().strip()
    except FileNotFoundError:
        raise Refused("not logged in: run `sightline login --username NAME` first") from None


def _ask(prompt: str, secret: bool, use_stdin: bool) -> str:
    if use_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise Refused("no terminal to ask on: pass the password and the code as two lines on standard input "
                      "with --stdin", 2)
    return getpass.getpass(prompt) if secret else input(prompt)


def _dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text)


# --- login / logout -------------------------------------------------------------------------------------------


async def _login(args: argparse.Namespace) -> int:
    password = _ask("password: ", True, args.stdin)
    code = _ask("TOTP code: ", False, args.stdin).strip()
    if not password or not code:
        raise Refused("give the password and the code", 2)
    async with secure_channel(address("identity")) as channel:
        reply = await identity_pb2_grpc.IdentityServiceStub(channel).Login(identity_pb2.LoginRequest(
            username=args.username, password=password, totp_code=code), timeout=TIMEOUT_S)
    path = save_token(reply.access_token)
    expires = reply.expires_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
    _emit(args, {"username": reply.user.username, "agency_id": reply.user.agency_id, "expires_at": expires,
                 "session_file": str(path)},
          f"logged in as {reply.user.username} ({reply.user.agency_id}) until {expires}; session in {path}")
    return 0


async def _logout(args: argparse.Namespace) -> int:
    path = session_file()
    if not path.exists():
        _emit(args, {"logged_out": False}, "not logged in")
        return 0
    token = path.read_text().strip()
    try:
        async with secure_channel(address("identity")) as channel:
            await identity_pb2_grpc.IdentityServiceStub(channel).Logout(
                identity_pb2.LogoutRequest(), metadata=auth_metadata(token), timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:  # expired or revoked: logged out already
            raise
    path.unlink()
    _emit(args, {"logged_out": True}, "logged out: the session is revoked in every service")
    return 0


# --- users ------------------------------------------------------------------------------------------------------


def _user_line(u: identity_pb2.User) -> str:
    roles = ",".join(forms.role_name(r) for r in u.roles)
    until = u.training.expires_at.ToDatetime().strftime("%Y-%m-%d") if u.training.expires_at.seconds else "-"
    state = "locked" if u.locked_until.seconds else ("active" if u.active else "disabled")
    return f"{u.user_id}  {u.username:<24} {roles:<28} training until {until}  {state}"


def _secrets_text(user: identity_pb2.User, password: str, totp_secret: str, uri: str, with_qr: bool) -> str:
    lines = [f"{user.username} ({user.user_id}); shown once, hand over in person now:"]
    if password:
        lines.append(f"  one-time password: {password}")
    if totp_secret:
        lines.append(f"  TOTP secret: {totp_secret}")
        lines.append(f"  provisioning URI: {uri}")
        if with_qr:
            lines.append(qr_text(uri))
    return "\n".join(lines)


async def _users(args: argparse.Namespace, token: str) -> int:
    md = auth_metadata(token)
    async with secure_channel(address("identity")) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)

        async def resolve(who: str) -> str:
            if len(who) == 32 and all(c in "0123456789abcdef" for c in who):
                return who
            users = (await stub.ListUsers(identity_pb2.ListUsersRequest(), metadata=md, timeout=TIMEOUT_S)).users
            match = next((u.user_id for u in users if u.username == who.strip().lower()), None)
            if match is None:
                raise Refused(f"no user {who!r} in your agency")
            return match

        cmd = args.users_command
        if cmd == "list":
            reply = await stub.ListUsers(identity_pb2.ListUsersRequest(), metadata=md, timeout=TIMEOUT_S)
            _emit(args, [_dict(u) for u in reply.users], "\n".join(_user_line(u) for u in reply.users) or "no user")
            return 0
        if cmd == "create":
            req = forms.create_user(args.username, args.display_name, args.role, args.training_course,
                                    args.training_expires)
            created = await stub.CreateUser(req, metadata=md, timeout=TIMEOUT_S)
            _emit(args, _dict(created), _secrets_text(created.user, created.generated_password, created.totp_secret,
                                                      created.totp_uri, not args.no_qr))
            return 0
        user_id = await resolve(args.user)
        user: identity_pb2.User
        if cmd == "show":
            user = await stub.GetUser(identity_pb2.GetUserRequest(user_id=user_id), metadata=md, timeout=TIMEOUT_S)
        elif cmd == "roles":
            user = await stub.SetRoles(identity_pb2.SetRolesRequest(user_id=user_id, roles=forms.roles(args.role)),
                                       metadata=md, timeout=TIMEOUT_S)
        elif cmd == "training":
            user = await stub.RecordTraining(identity_pb2.RecordTrainingRequest(
                user_id=user_id, training=forms.training(args.course, args.expires)), metadata=md, timeout=TIMEOUT_S)
        elif cmd == "lock":
            user = await stub.LockUser(identity_pb2.LockUserRequest(user_id=user_id), metadata=md, timeout=TIMEOUT_S)
        elif cmd == "unlock":
            user = await stub.UnlockUser(identity_pb2.UnlockUserRequest(user_id=user_id), metadata=md,
                                         timeout=TIMEOUT_S)
        elif cmd == "reset-password":
            pw = await stub.ResetPassword(identity_pb2.ResetPasswordRequest(user_id=user_id), metadata=md,
                                          timeout=TIMEOUT_S)
            _emit(args, _dict(pw), _secrets_text(pw.user, pw.generated_password, "", "", False))
            return 0
        else:  # reset-totp
            tp = await stub.ResetTotp(identity_pb2.ResetTotpRequest(user_id=user_id), metadata=md, timeout=TIMEOUT_S)
            _emit(args, _dict(tp), _secrets_text(tp.user, "", tp.totp_secret, tp.totp_uri, not args.no_qr))
            return 0
        _emit(args, _dict(user), _user_line(user))
        return 0


# --- cameras ----------------------------------------------------------------------------------------------------


def _camera_line(c: Any) -> str:
    where = f"{c.location.latitude:.5f},{c.location.longitude:.5f}" if c.HasField("location") else "-"
    bearing = f"{c.bearing_degrees:.0f}°" if c.HasField("bearing_degrees") else "-"
    return f"{c.camera_id:<24} {c.name:<30} {where:<22} {bearing:>5}  {'active' if c.active else 'deactivated'}"


async def _cameras(args: argparse.Namespace, token: str) -> int:
    async with secure_channel(address("ingest")) as channel:
        registry = CameraRegistry(channel, TIMEOUT_S)
        cmd = args.cameras_command
        if cmd == "list":
            cameras = await registry.list(token)
            _emit(args, [_dict(c) for c in cameras], "\n".join(_camera_line(c) for c in cameras) or "no camera")
            return 0
        if cmd == "rotate":
            secret = await registry.rotate(token, args.camera_id)
            _emit(args, {"camera_id": args.camera_id, "secret": secret},
                  f"new credential of camera {args.camera_id} (shown once; the old one no longer works): {secret}")
            return 0
        current = {c.camera_id: c for c in await registry.list(token)}.get(args.camera_id)
        if cmd in ("deactivate", "activate"):
            if current is None:
                raise Refused(f"no camera {args.camera_id!r} in your agency")
            current.active = cmd == "activate"
            camera = current
        else:  # set: register, or change what is given
            camera = forms.camera(args.camera_id, args.name if args.name is not None else
                                  (current.name if current else ""),
                                  args.latitude or "", args.longitude or "", args.bearing or "",
                                  current.active if current and args.active is None else args.active is not False)
            if current is not None:
                if not camera.HasField("location") and current.HasField("location"):
                    camera.location.CopyFrom(current.location)
                if not camera.HasField("bearing_degrees") and current.HasField("bearing_degrees"):
                    camera.bearing_degrees = current.bearing_degrees
        reply = await registry.upsert(token, camera)
        data = _dict(reply)
        text = _camera_line(reply.camera)
        if reply.secret:
            text += f"\ncredential of camera {camera.camera_id} (shown once): {reply.secret}"
        _emit(args, data, text)
        return 0


# --- agency -----------------------------------------------------------------------------------------------------


async def _agency(args: argparse.Namespace, token: str) -> int:
    md = auth_metadata(token)
    async with secure_channel(address("identity")) as ich, \
            secure_channel(address("retention")) as rch:
        identity = identity_pb2_grpc.IdentityServiceStub(ich)
        retention = retention_pb2_grpc.RetentionServiceStub(rch)
        cmd = args.agency_command
        if cmd == "set-sharing":
            agency = await identity.GetAgency(identity_pb2.GetAgencyRequest(), metadata=md, timeout=TIMEOUT_S)
            req = identity_pb2.SetAgencyPolicyRequest(
                share_with=forms.agency_ids(args.share_with) if args.share_with is not None else agency.share_with,
                hotlist_share_with=(forms.agency_ids(args.hotlist_share_with) if args.hotlist_share_with is not None
                                    else agency.hotlist_share_with),
                case_number_required=(agency.case_number_required if args.case_number_required is None
                                      else args.case_number_required))
            await identity.SetAgencyPolicy(req, metadata=md, timeout=TIMEOUT_S)
        elif cmd == "set-retention":
            await retention.SetAgencyRetention(forms.retention(args.state, str(args.days)), metadata=md,
                                               timeout=TIMEOUT_S)
        agency = await identity.GetAgency(identity_pb2.GetAgencyRequest(), metadata=md, timeout=TIMEOUT_S)
        kept = await retention.GetAgencyRetention(retention_pb2.GetAgencyRetentionRequest(), metadata=md,
                                                  timeout=TIMEOUT_S)
        data = {"agency": _dict(agency), "retention": _dict(kept)}
        text = (f"{agency.agency_id} ({agency.name})\n"
                f"  reads shared with (searches): {', '.join(agency.share_with) or 'none'}\n"
                f"  reads shared with (hot-list matching): {', '.join(agency.hotlist_share_with) or 'none'}\n"
                f"  case number required on every search: {'yes' if agency.case_number_required else 'no'}\n"
                f"  retention: {kept.retention_days} days (state {kept.state or '-'}, cap {kept.cap_days} days)")
        _emit(args, data, text)
        return 0


# --- hot lists --------------------------------------------------------------------------------------------------


async def _file_chunks(path: Path, list_id: str) -> AsyncIterator[hotlist_pb2.ImportListChunk]:
    with path.open("rb") as f:
        first = True
        while data := f.read(CHUNK):
            chunk = hotlist_pb2.ImportListChunk(data=data)
            if first:
                chunk.list_id, first = list_id, False
            yield chunk


async def _hotlists(args: argparse.Namespace, token: str) -> int:
    md = auth_metadata(token)
    async with secure_channel(address("hotlist")) as channel:
        stub = hotlist_pb2_grpc.HotlistServiceStub(channel)
        cmd = args.hotlists_command
        if cmd == "list":
            reply = await stub.ListLists(hotlist_pb2.ListListsRequest(), metadata=md, timeout=TIMEOUT_S)
            _emit(args, [_dict(x) for x in reply.lists], "\n".join(
                f"{x.list_id:<24} {forms.source_name(x.source):<7} owner {x.owner:<12} version {x.version:<4} "
                f"{x.entry_count} entries  {x.name}" for x in reply.lists) or "no list")
            return 0
        if cmd == "set":
            saved = await stub.UpsertList(hotlist_pb2.UpsertListRequest(list=forms.hot_list(
                args.list_id, args.name or "", args.source, args.fuzzy, str(args.max_edits))), metadata=md,
                timeout=TIMEOUT_S)
            _emit(args, _dict(saved), f"list {saved.list_id} saved ({forms.source_name(saved.source)})")
            return 0
        if not args.file.is_file():
            raise Refused(f"no file {args.file}", 2)
        reply = await stub.ImportList(_file_chunks(args.file, args.list_id), metadata=md, timeout=IMPORT_TIMEOUT_S)
        _emit(args, _dict(reply), f"list {reply.list.list_id} refreshed to version {reply.list.version}: "
                                  f"{reply.accepted} entries, {reply.rejected_count} lines rejected")
        return 0 if reply.accepted or not reply.rejected_count else 1


# --- parser -----------------------------------------------------------------------------------------------------


def _run(command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    try:
        return asyncio.run(command(args))
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return exc.status
    except FormError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            print(f"refused: {exc.details()} (log in again: sightline login)", file=sys.stderr)
        else:
            print(f"refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


def _with_token(command: Callable[[argparse.Namespace, str], Coroutine[Any, Any, int]]):
    def run(args: argparse.Namespace) -> int:
        async def go(a: argparse.Namespace) -> int:
            return await command(a, stored_token())

        return _run(go, args)

    return run


def add_parsers(subparsers: Any) -> None:
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON (for scripts)")

    login = subparsers.add_parser("login", parents=[json_flag], help="log in for the admin commands")
    login.add_argument("--username", required=True)
    login.add_argument("--stdin", action="store_true",
                       help="read the password and the TOTP code as two lines of standard input")
    login.set_defaults(handler=lambda a: _run(_login, a))
    logout = subparsers.add_parser("logout", parents=[json_flag], help="revoke and forget the stored session")
    logout.set_defaults(handler=lambda a: _run(_logout, a))

    admin = subparsers.add_parser("admin", help="agency administration (agency-admin role; `sightline login` first)")
    areas = admin.add_subparsers(dest="admin_command", required=True)

    users = areas.add_parser("users", help="accounts of your agency").add_subparsers(dest="users_command",
                                                                                   required=True)
    users.add_parser("list", parents=[json_flag])
    create = users.add_parser("create", parents=[json_flag],
                              help="a new account; its one-time password and TOTP secret are printed once")
    create.add_argument("--username", required=True)
    create.add_argument("--display-name", required=True)
    create.add_argument("--role", action="append", required=True,
                        help=f"repeatable: {', '.join(n for _, n in forms.ROLES)}")
    create.add_argument("--training-course", required=True)
    create.add_argument("--training-expires", required=True, help="YYYY-MM-DD")
    create.add_argument("--no-qr", action="store_true")
    for name, helptext in (("show", "one user"), ("lock", "lock the account and end its sessions"),
                           ("unlock", "lift a lock and the failed-login backoff"),
                           ("reset-password", "a new one-time password, printed once"),
                           ("reset-totp", "a new TOTP secret, printed once"),
                           ("roles", "replace the roles"), ("training", "record renewed training")):
        p = users.add_parser(name, parents=[json_flag], help=helptext)
        p.add_argument("user", help="username or user id")
        if name == "roles":
            p.add_argument("--role", action="append", required=True)
        if name == "training":
            p.add_argument("--course", required=True)
            p.add_argument("--expires", required=True, help="YYYY-MM-DD")
        if name == "reset-totp":
            p.add_argument("--no-qr", action="store_true")

    cameras = areas.add_parser("cameras", help="your agency's cameras").add_subparsers(dest="cameras_command",
                                                                                     required=True)
    cameras.add_parser("list", parents=[json_flag])
    cam_set = cameras.add_parser("set", parents=[json_flag],
                                 help="register a camera (its credential printed once) or change it")
    cam_set.add_argument("camera_id")
    cam_set.add_argument("--name")
    cam_set.add_argument("--latitude")
    cam_set.add_argument("--longitude")
    cam_set.add_argument("--bearing", help="degrees from north")
    for name in ("deactivate", "activate", "rotate"):
        cameras.add_parser(name, parents=[json_flag]).add_argument("camera_id")
    cam_set.set_defaults(active=None)

    agency = areas.add_parser("agency", help="sharing, case-number rule, retention").add_subparsers(
        dest="agency_command", required=True)
    agency.add_parser("show", parents=[json_flag])
    sharing = agency.add_parser("set-sharing", parents=[json_flag],
                                help="replace what is given; what is not given stays")
    sharing.add_argument("--share-with", help="agency ids that may search your reads ('' for none)")
    sharing.add_argument("--hotlist-share-with", help="agency ids whose hot lists may match your reads")
    sharing.add_argument("--case-number-required", action=argparse.BooleanOptionalAction, default=None)
    keep = agency.add_parser("set-retention", parents=[json_flag], help="days reads are kept (within the state cap)")
    keep.add_argument("--state", required=True)
    keep.add_argument("--days", type=int, required=True)

    hot = areas.add_parser("hotlists", help="hot-list sources and their refresh").add_subparsers(
        dest="hotlists_command", required=True)
    hot.add_parser("list", parents=[json_flag])
    hot_set = hot.add_parser("set", parents=[json_flag], help="create or change a list of your agency")
    hot_set.add_argument("list_id")
    hot_set.add_argument("--name")
    hot_set.add_argument("--source", choices=sorted(forms.SOURCE_BY_NAME), default="agency")
    hot_set.add_argument("--fuzzy", action="store_true", help="tolerate OCR confusions")
    hot_set.add_argument("--max-edits", type=int, choices=(0, 1), default=0)
    refresh = hot.add_parser("refresh", parents=[json_flag], help="load a hot file as the list's next version")
    refresh.add_argument("list_id")
    refresh.add_argument("file", type=Path)

    for parser, handler in ((users, _users), (cameras, _cameras), (agency, _agency), (hot, _hotlists)):
        for choice in parser.choices.values():
            choice.set_defaults(handler=_with_token(handler))
