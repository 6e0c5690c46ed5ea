"""A department's first hour on the local stack (issue #16): the demo accounts of `python -m services.devstack
up` log in to the console and work in Chromium; demo mode refuses production settings; the CLI finds the
stack's state from any directory; Ctrl-C stops every server even with standard output gone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.async_api import expect

from services.common.auth import LOCAL_DATA_DIR, KeySettings
from services.common.tls import TlsSettings
from services.devstack.servers import port_open
from services.devstack.stack import LocalStack
from tests.e2e.test_browser import log_in, search, shot

pytestmark = pytest.mark.e2e

ACCOUNT_LINE = re.compile(r"^ +(\S+) +(demo\.\S+) +password (\S+) +TOTP secret (\S+)$", re.M)


def run_demo(stack: LocalStack, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.devstack.demo", "--identity", stack.address("identity"),
                           "--no-qr"], env={**os.environ, **stack.service_env("identity"), **env},
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def demo(stack: LocalStack, identity_addr: str, audit_addr: str, account_of) -> dict:
    first = run_demo(stack)
    assert first.returncode == 0, first.stderr
    accounts = {role: account_of(user, password, secret)
                for role, user, password, secret in ACCOUNT_LINE.findall(first.stdout)}
    assert set(accounts) == {"agency_admin", "officer", "investigator", "supervisor", "auditor"}
    return accounts


def test_demo_accounts_are_shown_once(stack: LocalStack, demo: dict) -> None:
    again = run_demo(stack)
    assert again.returncode == 0 and "exist already" in again.stdout
    assert not ACCOUNT_LINE.search(again.stdout)


def test_production_settings_never_turn_demo_mode_on(stack: LocalStack, identity_addr: str, mongo_db) -> None:
    before = mongo_db["users"].count_documents({})
    for production in ({"SIGHTLINE_DEV_KEYS": "false"}, {"SIGHTLINE_TOKEN_SIGNING_KEY_FILE": "/run/keys/token.pem"}):
        refused = run_demo(stack, **production)
        assert refused.returncode == 2 and "local stack only" in refused.stderr, production
    assert mongo_db["users"].count_documents({}) == before


async def test_demo_officer_searches_and_the_auditor_sees_it(browser, console_url, mongo_db, demo) -> None:
    officer = await log_in(browser, console_url, mongo_db, demo["officer"])
    await search(officer, "DEMO123", case="DEMO-2026-1")
    await expect(officer.locator("#result-count")).to_have_text("0")
    await shot(officer, "console-demo-officer-search")
    auditor = await log_in(browser, console_url, mongo_db, demo["auditor"])
    await auditor.goto("/audit?case_number=DEMO-2026-1")
    await expect(auditor.locator("#entries tr", has_text=demo["officer"].username).first).to_contain_text("DEMO123")
    admin = await log_in(browser, console_url, mongo_db, demo["agency_admin"])
    await search(admin, "DEMO123", case="DEMO-2026-1")  # the admin's role does not search: refused, and shown
    await expect(admin.locator(".error")).to_contain_text("reads:search")


def test_every_tool_finds_the_stacks_state_from_any_directory(tmp_path: Path) -> None:
    """The dev keys the CLI and tools use are the ones `python -m services.devstack up` uses, whatever the cwd."""
    os.chdir(tmp_path)
    try:
        assert KeySettings().data_dir == LOCAL_DATA_DIR == LocalStack(LOCAL_DATA_DIR.parent).data_dir
        # and the CA they verify the stack's servers against (TLS on every hop, issue #17)
        assert TlsSettings(tls_ca_file=None).ca_path() == LOCAL_DATA_DIR / "tls" / "ca.crt"
    finally:
        os.chdir(Path(__file__).resolve().parents[2])
    no_tty = subprocess.run([sys.executable, "-m", "services.cli", "identity", "bootstrap-admin", "--agency", "x",
                             "--agency-name", "X", "--username", "x.admin", "--display-name", "X",
                             "--training-course", "c", "--training-expires", "2030-01-01"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr and "Traceback" not in no_tty.stderr


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _command(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return f"{pid} (gone)"


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_every_server_even_with_stdout_closed(tmp_path: Path) -> None:
    """`scripts/up.sh | tee up.log`, then Ctrl-C: the pipe is gone before the stack stops."""
    up = subprocess.Popen([sys.executable, "-m", "services.devstack", "up", "--no-simulator", "--no-demo",
                           "--free-ports", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    ports: dict[str, int] = {}
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("ports "):
                ports = json.loads(line.removeprefix("ports "))
            if "staff console" in line:
                break
        assert ports and all(port_open(p) for p in ports.values())
        servers = _children(up.pid)
        assert len(servers) >= 10  # mongod, redis, triton, seven services, portal, console
        up.stdout.close()  # the reading end goes away, like tee killed by the same Ctrl-C
        up.send_signal(signal.SIGINT)
        try:  # how long it takes is not the point (a loaded CI machine is slow); that it stops is
            assert up.wait(300) == 0
        except subprocess.TimeoutExpired:
            pytest.fail(f"the stack did not stop within 300 s; still running: {sorted(map(_command, servers))}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in servers):
            time.sleep(0.5)
        assert not [pid for pid in servers if _alive(pid)]
        assert not [name for name, port in ports.items() if port_open(port)]
    finally:
        if up.poll() is None:
            up.kill()
