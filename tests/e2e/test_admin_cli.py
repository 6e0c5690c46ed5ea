"""`sightline login`, `sightline admin users|cameras|agency|hotlists` and `sightline logout` against the real
stack (issue 16 item 3): what a department's scripts do, through the services' gRPC APIs, audited there."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.devstack.stack import LocalStack
from tests.conftest import create_account

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def audited(mongo_db, **match: object) -> list[dict]:
    flt = {f"event.{k}": v for k, v in match.items()}
    return [e["event"] for e in mongo_db.client["sightline_audit"]["audit_entries"].find(flt)]


class Cli:
    def __init__(self, stack: LocalStack, state: Path):
        self.env = {**os.environ, "SIGHTLINE_DATA_DIR": str(state)}
        self.env.pop("SIGHTLINE_TOKEN", None)
        for service in ("identity", "ingest", "hotlist", "retention"):
            self.env[f"SIGHTLINE_{service.upper()}_ADDRESS"] = stack.address(service)
        self.session = state / "cli" / "session"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.env, cwd=ROOT, input=stdin,
                              capture_output=True, text=True, timeout=120)

    def json(self, *args: str) -> object:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    async def login(self, account, mongo_db) -> None:
        done = self.run("login", "--username", account.username, "--stdin",
                        stdin=f"{account.password}\n{await account.fresh_code(mongo_db)}\n")
        assert done.returncode == 0, done.stderr


@pytest.fixture
def stack_services(stack, identity_addr, hotlist_addr, retention_addr, camera_registry_addr) -> LocalStack:
    return stack


async def test_admin_runs_the_department_from_the_command_line(stack_services, mongo_db, accounts, account_of,
                                                               identity_addr, tmp_path: Path) -> None:
    cli = Cli(stack_services, tmp_path / "state")
    # An admin of its own: logging out at the end revokes every token of the account, the session's too.
    admin = create_account(mongo_db, "cli_admin", "pd-alpha", ["agency_admin"])
    no_tty = cli.run("login", "--username", admin.username, stdin="")
    assert no_tty.returncode == 2 and "--stdin" in no_tty.stderr and "Traceback" not in no_tty.stderr
    assert "not logged in" in cli.run("admin", "users", "list").stderr

    await cli.login(admin, mongo_db)
    assert stat.S_IMODE(cli.session.stat().st_mode) == 0o600

    # Users: create (one-time password and TOTP secret printed once), then run the account by username.
    username = f"cli.officer.{uuid.uuid4().hex[:6]}"
    created = cli.json("admin", "users", "create", "--username", username, "--display-name", "CLI Officer",
                       "--role", "officer", "--training-course", "ALPR policy", "--training-expires", "2027-06-30")
    assert isinstance(created, dict) and created["generated_password"] and created["totp_secret"]
    user_id = created["user"]["user_id"]
    users = cli.json("admin", "users", "list")
    assert isinstance(users, list) and username in {u["username"] for u in users}
    roles = cli.json("admin", "users", "roles", username, "--role", "officer", "--role", "investigator")
    assert isinstance(roles, dict) and set(roles["roles"]) == {"ROLE_OFFICER", "ROLE_INVESTIGATOR"}
    training = cli.json("admin", "users", "training", username, "--course", "Refresher", "--expires", "2028-02-29")
    assert isinstance(training, dict) and training["training"]["expires_at"].startswith("2028-02-29")
    assert "locked_until" in cli.json("admin", "users", "lock", username)  # type: ignore[operator]
    assert "locked_until" not in cli.json("admin", "users", "unlock", user_id)  # type: ignore[operator]
    reset = cli.json("admin", "users", "reset-password", username)
    totp = cli.json("admin", "users", "reset-totp", username)
    assert isinstance(reset, dict) and isinstance(totp, dict)
    assert reset["generated_password"] != created["generated_password"]
    assert totp["totp_secret"] != created["totp_secret"]
    for action in ("user.create", "user.roles", "user.training", "user.lock", "user.unlock", "user.reset_password",
                   "user.reset_totp"):
        assert audited(mongo_db, action=action, subject=user_id, outcome="OUTCOME_ALLOWED"), action
    # The new password and second factor work: the user logs in with the CLI too.
    officer_cli = Cli(stack_services, tmp_path / "officer")
    await officer_cli.login(account_of(username, reset["generated_password"], totp["totp_secret"]), mongo_db)

    # Cameras: register (credential printed once), rename, rotate, deactivate.
    camera_id = f"cli-cam-{uuid.uuid4().hex[:6]}"
    registered = cli.json("admin", "cameras", "set", camera_id, "--name", "Main St", "--latitude", "38.9",
                          "--longitude", "-77.0", "--bearing", "180")
    assert isinstance(registered, dict) and len(registered["secret"]) >= 20
    renamed = cli.json("admin", "cameras", "set", camera_id, "--name", "Main St eastbound")
    assert isinstance(renamed, dict) and "secret" not in renamed and renamed["camera"]["bearing_degrees"] == 180
    rotated = cli.json("admin", "cameras", "rotate", camera_id)
    assert isinstance(rotated, dict) and rotated["secret"] != registered["secret"]
    cli.json("admin", "cameras", "deactivate", camera_id)
    cameras = cli.json("admin", "cameras", "list")
    assert isinstance(cameras, list)
    mine = next(c for c in cameras if c["camera_id"] == camera_id)
    assert mine["name"] == "Main St eastbound" and not mine.get("active")

    # Agency: sharing and the case-number rule (what is not given stays), retention within the state's cap.
    before = cli.json("admin", "agency", "show")
    assert isinstance(before, dict)
    try:
        shown = cli.json("admin", "agency", "set-sharing", "--hotlist-share-with", "pd-gamma",
                         "--case-number-required")
        assert isinstance(shown, dict) and shown["agency"]["share_with"] == before["agency"]["share_with"]
        assert shown["agency"]["hotlist_share_with"] == ["pd-gamma"] and shown["agency"]["case_number_required"]
        over = cli.run("admin", "agency", "set-retention", "--state", "VA", "--days", "30")
        assert over.returncode == 1 and "FAILED_PRECONDITION" in over.stderr and "21 days" in over.stderr
        kept = cli.json("admin", "agency", "set-retention", "--state", "VA", "--days", "14")
        assert isinstance(kept, dict) and kept["retention"]["retention_days"] == 14
    finally:
        cli.json("admin", "agency", "set-sharing", "--hotlist-share-with", ",".join(
            before["agency"].get("hotlist_share_with", [])), "--no-case-number-required")
        retention = before["retention"]
        if retention.get("state"):
            cli.json("admin", "agency", "set-retention", "--state", retention["state"], "--days",
                     str(retention["retention_days"]))
        else:  # no state was set, which no call can restore: the test puts the record back as it was
            mongo_db["agencies"].update_one({"_id": "pd-alpha"}, {"$unset": {"state": "", "retention_days": ""}})

    # Hot lists: a source and its refresh from a hot file.
    list_id = f"cli-list-{uuid.uuid4().hex[:6]}"
    cli.json("admin", "hotlists", "set", list_id, "--name", "NCIC extract", "--source", "ncic")
    hot_file = tmp_path / "ncic.csv"
    hot_file.write_text("LIC,LIS,TYP,NIC\nCLI0001,VA,V,V000000011\n")
    refreshed = cli.json("admin", "hotlists", "refresh", list_id, str(hot_file))
    assert isinstance(refreshed, dict) and refreshed["accepted"] == "1" and refreshed["list"]["version"] == "1"
    lists = cli.json("admin", "hotlists", "list")
    assert isinstance(lists, list) and any(x["list_id"] == list_id and x["source"] == "LIST_SOURCE_NCIC"
                                           for x in lists)

    # Logout revokes the session and forgets it.
    assert cli.run("logout").returncode == 0 and not cli.session.exists()
    assert "not logged in" in cli.run("admin", "agency", "show").stderr


async def test_other_roles_are_refused_and_audited(stack_services, mongo_db, accounts, tmp_path: Path) -> None:
    cli = Cli(stack_services, tmp_path / "state")
    await cli.login(accounts["supervisor"], mongo_db)
    for args, action in ((("admin", "users", "list"), "user.list"), (("admin", "cameras", "list"), "camera.list"),
                         (("admin", "agency", "show"), "agency.view")):
        refused = cli.run(*args)
        assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, args
        assert audited(mongo_db, action=action, user_id=accounts["supervisor"].user_id, outcome="OUTCOME_DENIED")
    # Another agency's user is answered as one that does not exist.
    admin = Cli(stack_services, tmp_path / "admin")
    await admin.login(accounts["admin"], mongo_db)
    other = admin.run("admin", "users", "lock", accounts["beta_officer"].user_id)
    assert other.returncode == 1 and "NOT_FOUND" in other.stderr
    assert not mongo_db["users"].find_one({"_id": accounts["beta_officer"].user_id}).get("locked_until")
