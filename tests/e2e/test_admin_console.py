"""Agency administration in the console (issue 16 item 3), in Chromium on the real stack: the agency admin
creates an account whose one-time password and TOTP secret work, changes its roles and training, locks,
unlocks and resets it; registers, deactivates and rotates a camera; sets sharing, the case-number rule and
retention; creates a hot list and refreshes it from a file. Every page refuses a role that may not use it,
and the services audit those refusals. Screenshots: docs/screenshots/admin-*.png.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.test_browser import log_in, shot

pytestmark = pytest.mark.e2e

EXPIRES = "2027-06-30"


def audited(mongo_db, **match: object) -> list[dict]:
    flt = {f"event.{k}": v for k, v in match.items()}
    return [e["event"] for e in mongo_db.client["sightline_audit"]["audit_entries"].find(flt, sort=[("_id", 1)])]


async def try_login(browser: Browser, console_url: str, username: str, password: str, code: str) -> Page:
    context = await browser.new_context(base_url=console_url, viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.fill("#totp_code", code)
    await page.click("button[type=submit]")
    return page


async def test_admin_creates_a_user_and_runs_the_account(browser, console_url, mongo_db, accounts, account_of) -> None:
    admin = await log_in(browser, console_url, mongo_db, accounts["admin"])
    await admin.click("header >> text=Administration")
    await expect(admin).to_have_url(re.compile(r"/admin$"))
    await expect(admin.locator("#admin-links")).to_contain_text("Users")
    await shot(admin, "admin-home")

    await admin.goto("/admin/users")
    username = f"new.officer.{uuid.uuid4().hex[:6]}"
    await admin.fill("#username", username)
    await admin.fill("#display_name", "New <b>Officer</b>")
    await admin.fill("#expires", EXPIRES)
    await admin.check("#role-officer")
    await shot(admin, "admin-users")
    await admin.click("#create-user button[type=submit]")
    password = await admin.locator("#password").inner_text()
    secret = await admin.locator("#totp-secret").inner_text()
    await expect(admin.locator("#qr svg")).to_be_visible()
    await shot(admin, "admin-user-created")
    assert len(password) >= 12 and len(secret) >= 16
    created = mongo_db["users"].find_one({"username": username})
    assert created["display_name"] == "New <b>Officer</b>" and "password" not in str(created.get("password_hash"))
    assert audited(mongo_db, action="user.create", subject=created["_id"], outcome="OUTCOME_ALLOWED")

    # The new officer logs in with what was shown once.
    officer = account_of(username, password, secret)
    own = await log_in(browser, console_url, mongo_db, officer)
    # ... and replaces the one-time password on their account page (which ends their sessions).
    await own.click("header a.who")
    await expect(own).to_have_url(re.compile(r"/account$"))
    chosen = "a password of my own choosing"
    await own.fill("#old_password", password)
    await own.fill("#new_password", chosen)
    await own.fill("#new_password_again", chosen)
    await own.fill("#totp_code", await officer.fresh_code(mongo_db))
    await shot(own, "console-account")
    await own.click("#password-form button[type=submit]")
    await expect(own.locator(".ok")).to_contain_text("Password changed")
    await log_in(browser, console_url, mongo_db, account_of(username, chosen, secret))

    # Roles, training, lock; the name is escaped, never markup.
    await admin.goto(f"/admin/users/{created['_id']}")
    await expect(admin.locator("h1")).to_have_text(username)
    assert await admin.locator("b", has_text="Officer").count() == 0
    await admin.check("#role-investigator")
    await admin.click("#roles-form button[type=submit]")
    await expect(admin.locator(".ok")).to_contain_text("Roles saved")
    assert mongo_db["users"].find_one({"_id": created["_id"]})["roles"] == ["investigator", "officer"]
    await admin.fill("#course", "ALPR policy 2027")
    await admin.fill("#expires", "2028-01-31")
    await admin.click("#training-form button[type=submit]")
    await expect(admin.locator("#training")).to_contain_text("ALPR policy 2027, valid until 2028-01-31")
    await admin.click("#lock")
    await expect(admin.locator("#state")).to_have_text("locked")
    await shot(admin, "admin-user", full_page=True)
    locked = await try_login(browser, console_url, username, password, await officer.fresh_code(mongo_db))
    await expect(locked.locator(".error")).to_be_visible()
    await admin.click("#unlock")
    await expect(admin.locator("#state")).to_have_text("active")

    # Reset password and second factor: each shown once; the old ones stop working.
    await admin.click("#reset-password")
    new_password = await admin.locator("#password").inner_text()
    assert new_password != password
    await admin.goto(f"/admin/users/{created['_id']}")
    await admin.click("#reset-totp")
    new_secret = await admin.locator("#totp-secret").inner_text()
    assert new_secret != secret
    for action in ("user.roles", "user.training", "user.lock", "user.unlock", "user.reset_password",
                   "user.reset_totp"):
        assert audited(mongo_db, action=action, subject=created["_id"], outcome="OUTCOME_ALLOWED"), action
    await log_in(browser, console_url, mongo_db, account_of(username, new_password, new_secret))


async def test_admin_registers_deactivates_and_rotates_a_camera(browser, console_url, camera_registry_addr, mongo_db,
                                                                accounts) -> None:
    admin = await log_in(browser, console_url, mongo_db, accounts["admin"])
    camera_id = f"admin-cam-{uuid.uuid4().hex[:6]}"
    await admin.goto("/admin/cameras")
    await admin.fill("#camera_id", camera_id)
    await admin.fill("#name", "Harbour Rd <northbound>")
    await admin.fill("#latitude", "38.8951")
    await admin.fill("#longitude", "-77.0364")
    await admin.fill("#bearing", "90")
    await admin.click("#camera-form button[type=submit]")
    first = await admin.locator("#secret").inner_text()
    assert len(first) >= 20
    row = admin.locator("#cameras tr", has_text=camera_id)
    await expect(row).to_contain_text("Harbour Rd <northbound>")
    await expect(row).to_contain_text("90°")
    await row.locator("button", has_text="Rotate credential").click()
    second = await admin.locator("#secret").inner_text()
    assert second != first
    await admin.locator("#cameras tr", has_text=camera_id).locator("button", has_text="Deactivate").click()
    await expect(admin.locator("#cameras tr", has_text=camera_id)).to_contain_text("deactivated")
    await shot(admin, "admin-cameras", full_page=True)
    doc = mongo_db["cameras"].find_one({"_id": camera_id})
    assert doc["agency_id"] == "pd-alpha" and doc["active"] is False
    assert len(audited(mongo_db, action="camera.upsert", subject=camera_id, outcome="OUTCOME_ALLOWED")) == 2
    assert audited(mongo_db, action="camera.rotate_secret", subject=camera_id, outcome="OUTCOME_ALLOWED")


async def test_admin_sets_sharing_case_rule_and_retention(browser, console_url, mongo_db, accounts) -> None:
    admin = await log_in(browser, console_url, mongo_db, accounts["admin"])
    await admin.goto("/admin/agency")
    state = await admin.input_value("#state")
    days = await admin.input_value("#retention_days")
    try:
        await admin.fill("#share_with", "pd-beta, pd-gamma")
        await admin.check("#case_number_required")
        await admin.click("#policy-form button[type=submit]")
        await expect(admin.locator(".ok")).to_contain_text("saved")
        agency = mongo_db["agencies"].find_one({"_id": "pd-alpha"})
        assert agency["share_with"] == ["pd-beta", "pd-gamma"] and agency["case_number_required"] is True
        await admin.fill("#state", "VA")
        await admin.fill("#retention_days", "40")
        await admin.click("#retention-form button[type=submit]")
        await expect(admin.locator(".error")).to_contain_text("VA allows at most 21 days")  # the state's cap
        await admin.fill("#state", "VA")
        await admin.fill("#retention_days", "20")
        await admin.click("#retention-form button[type=submit]")
        await expect(admin.locator("#retention")).to_contain_text("kept 20 days; the state's cap is 21 days")
        await shot(admin, "admin-agency", full_page=True)
        assert audited(mongo_db, action="agency.policy", subject="pd-alpha", outcome="OUTCOME_ALLOWED")
    finally:  # the other browser tests rely on pd-alpha sharing with pd-beta only, without the case rule
        await admin.goto("/admin/agency")
        await admin.fill("#share_with", "pd-beta")
        await admin.uncheck("#case_number_required")
        await admin.click("#policy-form button[type=submit]")
        await expect(admin.locator(".ok")).to_be_visible()
        if state:
            await admin.fill("#state", state)
            await admin.fill("#retention_days", days)
            await admin.click("#retention-form button[type=submit]")
            await expect(admin.locator(".ok")).to_be_visible()
        else:  # no state was set, which no call can restore: the test puts the record back as it was
            mongo_db["agencies"].update_one({"_id": "pd-alpha"}, {"$unset": {"state": "", "retention_days": ""}})


async def test_admin_creates_a_hot_list_and_refreshes_it(browser, console_url, mongo_db, accounts,
                                                         tmp_path: Path) -> None:
    admin = await log_in(browser, console_url, mongo_db, accounts["admin"])
    list_id = f"admin-list-{uuid.uuid4().hex[:6]}"
    await admin.goto("/admin/hotlists")
    await admin.fill("#list_id", list_id)
    await admin.fill("#name", "Stolen vehicles (state extract)")
    await admin.select_option("#source", "state")
    await admin.click("#list-form button[type=submit]")
    await expect(admin.locator(".ok")).to_contain_text(f"List {list_id} saved")
    hot_file = tmp_path / "extract.csv"
    hot_file.write_text("LIC,LIS,TYP,NIC\nADM1N01,VA,V,V000000001\nADM1N02,VA,V,V000000002\n!!,VA,V,bad\n")
    row = admin.locator("#lists tr", has_text=list_id)
    await row.locator("input[type=file]").set_input_files(str(hot_file))
    await row.locator("button", has_text="Load").click()
    await expect(admin.locator(".ok")).to_contain_text("version 1: 2 entries")
    await expect(admin.locator("#lists tr", has_text=list_id)).to_contain_text("state")
    await shot(admin, "admin-hotlists", full_page=True)
    assert audited(mongo_db, action="hotlist.import", user_id=accounts["admin"].user_id)


async def test_roles_that_may_not_administer_are_refused(browser, console_url, camera_registry_addr, mongo_db,
                                                         accounts) -> None:
    officer = await log_in(browser, console_url, mongo_db, accounts["officer"])
    assert await officer.locator("header >> text=Administration").count() == 0
    for path in ("/admin", "/admin/users", f"/admin/users/{accounts['admin'].user_id}", "/admin/cameras",
                 "/admin/agency", "/admin/hotlists"):
        response = await officer.goto(path)
        assert response is not None and response.status == 403, path
    await shot(officer, "admin-refused")
    officer_id = accounts["officer"].user_id
    for action in ("agency.view", "user.list", "user.view", "camera.list"):
        assert audited(mongo_db, action=action, user_id=officer_id, outcome="OUTCOME_DENIED"), action

    # A refused form post changes nothing: the officer's token may not create users.
    auditor = await log_in(browser, console_url, mongo_db, accounts["auditor"])
    response = await auditor.goto("/admin/hotlists")
    assert response is not None and response.status == 403

    # An admin of pd-alpha cannot see or change a user of pd-beta: the answer a missing user gets, audited.
    admin = await log_in(browser, console_url, mongo_db, accounts["admin"])
    beta = accounts["beta_officer"].user_id
    response = await admin.goto(f"/admin/users/{beta}")
    assert response is not None and response.status == 404
    await expect(admin.locator("main")).to_contain_text("no such user in your agency")
    assert audited(mongo_db, action="user.view", subject=beta, outcome="OUTCOME_DENIED")


async def test_admin_forms_need_the_csrf_token(browser, console_url, mongo_db, accounts) -> None:
    admin = await log_in(browser, console_url, mongo_db, accounts["admin"])
    response = await admin.request.post(f"{console_url}/admin/users/{accounts['officer'].user_id}/lock",
                                        form={"csrf": "forged"})
    assert response.status == 403
    assert not mongo_db["users"].find_one({"_id": accounts["officer"].user_id}).get("locked_until")
