"""Who may do what in MongoDB and Redis: one user per service, with exactly the privileges its code uses.

The matrix below is the single source of truth. The local stack (services/devstack) creates these users on
every start, and the chart's `storage-users` Job runs `sightline storage provision`, which does the same
against the release's MongoDB and Redis with an administrator's credentials. docs/security.md explains each
line; change both together when a service starts touching a new collection, key or command.

MongoDB: a role `sightline-<service>` (in `admin`) holding the service's privileges, and a user of the same
name with that role alone. Redis (7.0+): an ACL user `sightline-<service>`, each key space in its own selector
with only the commands the service runs on it, so a permission never spills from one key space to another.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from pymongo import MongoClient
from pymongo.errors import OperationFailure

MAIN_DB, AUDIT_DB = "sightline", "sightline_audit"  # the settings' defaults (SIGHTLINE_MONGO_DB, _AUDIT_MONGO_DB)

FIND, INSERT, UPDATE, REMOVE, INDEX = "find", "insert", "update", "remove", "createIndex"

# service -> {(database, collection): actions}. `database` is MAIN_DB or AUDIT_DB, renamed at provisioning.
MONGO_PRIVILEGES: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    # Insert-only on the trail: entries are added and read, never changed or removed by anyone (issue #17,
    # item 6); the chain head and checkpoints are updated, never removed.
    "audit": {
        (AUDIT_DB, "audit_entries"): (FIND, INSERT, INDEX),
        (AUDIT_DB, "audit_chain"): (FIND, INSERT, UPDATE),
        (AUDIT_DB, "audit_checkpoints"): (FIND, INSERT, UPDATE),
    },
    "identity": {
        (MAIN_DB, "users"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "agencies"): (FIND, INSERT, UPDATE, INDEX),
    },
    "ingest": {
        (MAIN_DB, "cameras"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "agencies"): (FIND,),
        (MAIN_DB, "frames"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "images"): (INSERT, INDEX),
        (MAIN_DB, "reads"): (FIND, INSERT, INDEX),
        (MAIN_DB, "data_keys"): (FIND, INSERT),
    },
    "search": {
        (MAIN_DB, "reads"): (FIND, INDEX),
        (MAIN_DB, "images"): (FIND,),
        (MAIN_DB, "data_keys"): (FIND,),
    },
    "hotlist": {
        (MAIN_DB, "hotlists"): (FIND, INSERT, UPDATE),
        (MAIN_DB, "hotlist_entries"): (FIND, INSERT, UPDATE, REMOVE, INDEX),
        (MAIN_DB, "alerts"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "reads"): (FIND,),  # back-search
        (MAIN_DB, "agencies"): (FIND,),  # which agencies share their reads for matching
    },
    "tracker": {
        (MAIN_DB, "passes"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "cameras"): (FIND,),
    },
    "retention": {
        (MAIN_DB, "reads"): (FIND, UPDATE, REMOVE, INDEX),
        (MAIN_DB, "images"): (FIND, UPDATE, REMOVE, INDEX),
        (MAIN_DB, "frames"): (INDEX,),
        (MAIN_DB, "cameras"): (INDEX,),
        (MAIN_DB, "agencies"): (FIND, UPDATE),
        (MAIN_DB, "holds"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "retention_reports"): (FIND, INSERT, UPDATE, INDEX),
        (MAIN_DB, "data_keys"): (FIND, INSERT, UPDATE, INDEX),
    },
    "portal": {
        (MAIN_DB, "agencies"): (FIND,),
        (MAIN_DB, "cameras"): (FIND,),
        (MAIN_DB, "alerts"): (FIND,),
        (MAIN_DB, "holds"): (FIND,),
        (MAIN_DB, "retention_reports"): (FIND,),
        (AUDIT_DB, "audit_entries"): (FIND,),
        (AUDIT_DB, "audit_checkpoints"): (FIND,),  # the latest signed checkpoint, published as a witness
    },
}

READ_STREAM, PASS_STREAM = "sightline:reads:v1", "sightline:passes:v1"  # SIGHTLINE_READ_STREAM, _PASS_STREAM
COUNTERS = "~sightline:count:reads:* ~sightline:hll:vehicles:*"
CONSUME = "+xgroup|create +xreadgroup +xack +xautoclaim +xinfo|groups"
# Identity's token revocation list: every service reads it, identity alone writes it.
REVOKED = "sightline:revoked:*"
READ_REVOKED = f"(%R~{REVOKED} +@read -@dangerous)"

# service -> ACL selectors (besides AUTH and PING, which every user has). `{reads}`/`{passes}`: the stream names.
REDIS_SELECTORS: dict[str, tuple[str, ...]] = {
    "ingest": ("(~{reads} +xadd)", f"({COUNTERS} +incrby +pfadd +expire)", READ_REVOKED),
    # The only user that may append to the pass stream, whose entries raise alerts.
    "tracker": (f"(~{{reads}} {CONSUME})", "(~{passes} +xadd)", READ_REVOKED),
    "hotlist": (f"(~{{passes}} {CONSUME})",
                "(~sightline:hotlist:* +@read +@write +@transaction +eval +evalsha +script|load -@dangerous)",
                "(&sightline:hotlist:alerts +publish +subscribe +unsubscribe)", READ_REVOKED),
    "retention": (f"({COUNTERS} +get +exists +pfcount)", READ_REVOKED),  # PFCOUNT is a write (it caches)
    "portal": (f"({COUNTERS} +mget +pfcount)", READ_REVOKED),
    # The revocation list, and its failed-login throttles (hashes updated by a script and transactions).
    "identity": (f"(~{REVOKED} ~sightline:login:* +@read +@write +@transaction +eval +evalsha -@dangerous)",),
    "audit": (READ_REVOKED,),
    "search": (READ_REVOKED,),
    "console": (READ_REVOKED,),
}

SERVICES = tuple(sorted(set(MONGO_PRIVILEGES) | set(REDIS_SELECTORS)))
ADMIN = "sightline-admin"


def user_name(service: str) -> str:
    return f"sightline-{service}"


# --- MongoDB ------------------------------------------------------------------------------------------------


def mongo_privileges(service: str, main_db: str = MAIN_DB, audit_db: str = AUDIT_DB) -> list[dict[str, Any]]:
    names = {MAIN_DB: main_db, AUDIT_DB: audit_db}
    return [{"resource": {"db": names[db], "collection": coll}, "actions": list(actions)}
            for (db, coll), actions in sorted(MONGO_PRIVILEGES[service].items())]


def provision_mongo(admin: MongoClient, passwords: Mapping[str, str], main_db: str = MAIN_DB,
                    audit_db: str = AUDIT_DB) -> None:
    """Create or update each service's role and user (in `admin`) to match the matrix; idempotent."""
    db = admin.admin
    for service, password in sorted(passwords.items()):
        name = user_name(service)
        privileges = mongo_privileges(service, main_db, audit_db)
        if db.command("rolesInfo", name)["roles"]:
            db.command("updateRole", name, privileges=privileges, roles=[])
        else:
            db.command("createRole", name, privileges=privileges, roles=[])
        if db.command("usersInfo", name)["users"]:
            db.command("updateUser", name, pwd=password, roles=[{"role": name, "db": "admin"}])
        else:
            db.command("createUser", name, pwd=password, roles=[{"role": name, "db": "admin"}])


def create_mongo_admin(direct: MongoClient, password: str) -> None:
    """The first user, through the localhost exception (a fresh server without users, reached on loopback)."""
    direct.admin.command("createUser", ADMIN, pwd=password, roles=["root"])


# --- Redis --------------------------------------------------------------------------------------------------


def redis_rules(service: str, password: str, read_stream: str = READ_STREAM,
                pass_stream: str = PASS_STREAM) -> list[str]:
    """ACL SETUSER arguments of the service's user (the password as its SHA-256: no clear text stored)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    selectors = [s.format(reads=read_stream, passes=pass_stream) for s in REDIS_SELECTORS[service]]
    return ["reset", "on", f"#{digest}", "resetkeys", "resetchannels", "-@all", "+ping",
            *selectors]


def redis_acl_file(passwords: Mapping[str, str], admin_password: str, read_stream: str = READ_STREAM,
                   pass_stream: str = PASS_STREAM) -> str:
    """An ACL file (redis-server --aclfile): the default user off, an administrator, one user per service."""
    admin_digest = hashlib.sha256(admin_password.encode()).hexdigest()
    # The default user is off: nobody can authenticate as it, and a client that does not authenticate can run
    # nothing. It keeps its permissions because Redis 7.0 replays MULTI/EXEC blocks of the append-only file
    # as the default user: restricted, a restart would refuse them and lose the hotlist's transactions.
    lines = ["user default off resetpass ~* &* +@all",
             f"user {ADMIN} on #{admin_digest} ~* &* +@all"]
    for service, password in sorted(passwords.items()):
        rules = [r for r in redis_rules(service, password, read_stream, pass_stream) if r != "reset"]
        lines.append(f"user {user_name(service)} " + " ".join(rules))
    return "\n".join(lines) + "\n"


def provision_redis(admin: redis.Redis, passwords: Mapping[str, str], read_stream: str = READ_STREAM,
                    pass_stream: str = PASS_STREAM) -> None:
    """ACL SETUSER each service's user to match the matrix and turn the default user off."""
    for service, password in sorted(passwords.items()):
        admin.execute_command("ACL", "SETUSER", user_name(service),
                              *redis_rules(service, password, read_stream, pass_stream))
    admin.execute_command("ACL", "SETUSER", "default", "off")
    try:
        admin.execute_command("ACL", "SAVE")
    except redis.ResponseError as exc:
        if "acl file" not in str(exc).lower():  # a server configured without an ACL file keeps users in memory
            raise


# --- `sightline storage provision` ---------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("storage", help="MongoDB and Redis users of the services")
    commands = parser.add_subparsers(dest="storage_command", required=True)
    prov = commands.add_parser(
        "provision", help="create or update each service's MongoDB role and user and Redis ACL user",
        description="Each service's connection string (its user and password) is read from a file named after "
                    "the service in --mongo-uris / --redis-urls (a mounted Secret); the administrator's from "
                    "the files named by SIGHTLINE_ADMIN_MONGO_URI_FILE and SIGHTLINE_ADMIN_REDIS_URL_FILE.")
    prov.add_argument("--mongo-uris", type=Path, help="folder of <service> files holding MongoDB URIs")
    prov.add_argument("--redis-urls", type=Path, help="folder of <service> files holding Redis URLs")
    prov.set_defaults(handler=run_provision)
    return parser


def passwords_from(folder: Path, scheme: str) -> dict[str, str]:
    """{service: password} from the user and password in each <service> file's URI (user must match)."""
    out = {}
    for service in SERVICES:
        path = folder / service
        if not path.exists():
            continue
        url = urlsplit(path.read_text().strip())
        if not url.scheme.startswith(scheme) or unquote(url.username or "") != user_name(service) or not url.password:
            raise SystemExit(f"{path}: expected a {scheme} URI with user {user_name(service)} and a password")
        out[service] = unquote(url.password)
    return out


def _admin_uri(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise SystemExit(f"{variable} is not set")
    return Path(path).read_text().strip()


def run_provision(args: argparse.Namespace) -> int:
    main_db = os.environ.get("SIGHTLINE_MONGO_DB", MAIN_DB)
    audit_db = os.environ.get("SIGHTLINE_AUDIT_MONGO_DB", AUDIT_DB)
    read_stream = os.environ.get("SIGHTLINE_READ_STREAM", READ_STREAM)
    pass_stream = os.environ.get("SIGHTLINE_PASS_STREAM", PASS_STREAM)
    if args.mongo_uris:
        passwords = passwords_from(args.mongo_uris, "mongodb")
        with MongoClient(_admin_uri("SIGHTLINE_ADMIN_MONGO_URI_FILE"), serverSelectionTimeoutMS=30_000) as admin:
            try:
                provision_mongo(admin, {s: p for s, p in passwords.items() if s in MONGO_PRIVILEGES}, main_db,
                                audit_db)
            except OperationFailure as exc:
                raise SystemExit(f"MongoDB refused provisioning: {exc}") from exc
        print(f"MongoDB: users of {', '.join(sorted(passwords))} provisioned")
    if args.redis_urls:
        passwords = passwords_from(args.redis_urls, "redis")
        with redis.Redis.from_url(_admin_uri("SIGHTLINE_ADMIN_REDIS_URL_FILE"), socket_timeout=30) as admin:
            provision_redis(admin, passwords, read_stream, pass_stream)
        print(f"Redis: users of {', '.join(sorted(passwords))} provisioned")
    return 0
