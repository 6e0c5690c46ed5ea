"""The staff console and the transparency portal, used as a person would: headless Chromium through Playwright.

The stack is real (mongod, Redis, identity, audit, search, hotlist, retention, the console and the portal);
reads are written into MongoDB as ingest stores them (without Triton, which these tests do not exercise).
Each test saves screenshots under docs/screenshots/.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from services.common.auth import auth_metadata
from services.common.counters import reads_key, vehicles_key
from services.common.reads import CAMERAS, IMAGES, READS, read_to_document
from services.devstack.tokens import dev_token
from services.simulator.render import SceneOptions, render_scene
from sightline.common.v1 import read_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.search.v1 import search_pb2

pytestmark = pytest.mark.e2e

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
AGENCY = "pd-alpha"
CAMERA = "web-cam-1"
CASE = "WEB-2026-0042"
HOT_LIST = "web-agency-list"
SEED = 11


async def shot(page: Page, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


async def log_in(browser: Browser, console_url: str, mongo_db, account, screenshot: str = "") -> Page:
    context = await browser.new_context(base_url=console_url, viewport={"width": 1280, "height": 800},
                                        ignore_https_errors=True)
    page = await context.new_page()
    await page.goto("/search")
    await expect(page).to_have_url(re.compile(r"/login$"))  # no session: sent to the login page
    await page.fill("#username", account.username)
    await page.fill("#password", account.password)
    await page.fill("#totp_code", await account.fresh_code(mongo_db))
    if screenshot:
        await shot(page, screenshot)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/search$"))
    session = next(c for c in await context.cookies() if c["name"] == "sightline_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    return page


async def search(page: Page, plate: str, case: str = CASE) -> None:
    """The search form, filled as an officer would: an exact plate, vehicle theft, the case number."""
    await page.select_option("#kind", "plate_exact")
    await page.fill("#plate", plate)
    await page.select_option("#purpose", str(search_pb2.PURPOSE_VEHICLE_THEFT))
    await page.fill("#case_number", case)
    await page.click("button[type=submit]")


@pytest.fixture(scope="module")
def seeded(mongo_db) -> dict[str, str]:
    """A camera of pd-alpha and two reads of one vehicle from it, with their (synthetic) frames."""
    mongo_db[CAMERAS].replace_one({"_id": CAMERA}, {"agency_id": AGENCY, "name": "Harbour Rd northbound",
                                                    "active": True, "location": {"type": "Point",
                                                                                 "coordinates": [-73.99, 40.73]}},
                                  upsert=True)
    scene = render_scene(SEED, SceneOptions(width=640, height=360))
    plate = scene.truth.plate_text
    now = datetime.now(UTC).replace(microsecond=0)
    for i, minutes in enumerate((5, 50)):
        read_id = f"web-read-{i}"
        read = read_pb2.Read(read_id=read_id, camera_id=CAMERA, agency_id=AGENCY, frame_id=read_id, plate=plate,
                             plate_normalized=plate, confidence=0.93, image_ref=f"web-img-{i}",
                             region=read_pb2.Region(country=scene.truth.country, state=scene.truth.state))
        for field in (read.captured_at, read.stored_at):
            field.FromDatetime(now - timedelta(minutes=minutes))
        read.expires_at.FromDatetime(now + timedelta(days=30))
        read.vehicle.type = read_pb2.VEHICLE_TYPE_CAR
        read.vehicle.colour = scene.truth.vehicle_colour
        read.location.latitude, read.location.longitude = 40.73, -73.99
        mongo_db[READS].replace_one({"_id": read_id}, read_to_document(read), upsert=True)
        mongo_db[IMAGES].replace_one({"_id": read.image_ref}, {"content_type": "image/jpeg", "data": scene.jpeg,
                                                                "agency_id": AGENCY,
                                                                "captured_at": now - timedelta(minutes=minutes),
                                                                "expire_at": now + timedelta(days=30)}, upsert=True)
    return {"plate": plate}


async def test_officer_search_is_seen_by_the_supervisor(browser, console_url, mongo_db, accounts, seeded) -> None:
    officer = await log_in(browser, console_url, mongo_db, accounts["officer"], screenshot="console-login")
    await search(officer, seeded["plate"])
    await expect(officer.locator("#result-count")).to_have_text("2")
    await expect(officer.locator("#results")).to_contain_text(seeded["plate"])
    await shot(officer, "console-search-results")

    await officer.click("#results a >> nth=0")
    await expect(officer.locator("h1")).to_contain_text(seeded["plate"])
    image = officer.locator("#read-image")
    await expect(image).to_be_visible()
    await expect(image).to_have_js_property("complete", True)  # property reads go through CDP, not page eval (CSP)
    assert await image.evaluate("img => img.naturalWidth") > 0
    await shot(officer, "console-read-detail", full_page=True)

    supervisor = await log_in(browser, console_url, mongo_db, accounts["supervisor"])
    await supervisor.goto(f"/audit?case_number={CASE}")
    rows = supervisor.locator("#entries tr", has_text=accounts["officer"].username)
    await expect(rows.filter(has_text="search").first).to_contain_text(seeded["plate"])
    await expect(rows.filter(has_text="image.view").first).to_be_visible()
    await shot(supervisor, "console-audit-review", full_page=True)

    # The officer has no audit review: the page says so.
    response = await officer.goto("/audit")
    assert response is not None and response.status == 403


async def test_partner_user_is_refused(browser, console_url, mongo_db, accounts, seeded) -> None:
    partner = await log_in(browser, console_url, mongo_db, accounts["partner"])
    await partner.fill("#plate", seeded["plate"])
    await partner.select_option("#purpose", str(search_pb2.PURPOSE_VEHICLE_THEFT))
    await partner.check("#partners")
    await partner.click("button[type=submit]")
    await expect(partner.locator(".error")).to_contain_text("active criminal investigation")
    await shot(partner, "console-partner-refused")
    entry = mongo_db.client["sightline_audit"]["audit_entries"].find_one(
        {"event.user_id": accounts["partner"].user_id, "event.action": "search"}, sort=[("_id", -1)])
    assert entry["event"]["outcome"] == "OUTCOME_DENIED"


async def test_hotlist_entry_raises_an_alert_that_the_officer_works_through(
        browser, console_url, mongo_db, accounts, seeded, stack, channel_factory) -> None:
    hotlists = hotlist_pb2_grpc.HotlistServiceStub(channel_factory(stack.address("hotlist")))
    await hotlists.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=HOT_LIST, name="Alpha PD stolen vehicles", source=hotlist_pb2.LIST_SOURCE_AGENCY, owner=AGENCY)),
        # Signed with the stack's dev key: a login here would spend the supervisor's TOTP step the browser needs.
        metadata=auth_metadata(dev_token(Path(stack.env["SIGHTLINE_DATA_DIR"]), AGENCY, ["supervisor"])))
    page = await log_in(browser, console_url, mongo_db, accounts["supervisor"])
    await page.goto("/hotlists")
    await page.select_option("#list_id", HOT_LIST)
    await page.fill("#plate", seeded["plate"])
    await page.select_option("#code", "V")
    await page.fill("#record_id", "V-2026-77")
    # Searching past reads is a search: under a purpose and a case number, audited.
    await page.select_option("#purpose", str(search_pb2.PURPOSE_VEHICLE_THEFT))
    await page.fill("#case_number", "V-2026-77")
    await page.click("form[action='/hotlists/entries'] button")
    await expect(page.locator(".ok")).to_contain_text("2 past read(s) matched")

    await page.goto("/alerts")
    row = page.locator("#alerts tbody tr", has_text=seeded["plate"]).first
    await expect(row).to_contain_text("new")
    await expect(page.locator("#stream-state")).to_have_text("connected")
    await shot(page, "console-alerts")

    await row.locator("a").click()
    await page.check("#plate_matches")
    await page.check("#state_matches")
    await page.click("button[type=submit]")
    await expect(page.locator("#alert-status")).to_have_text("verified")
    await page.check("#record_active")
    await page.click("button[type=submit]")
    await expect(page.locator("#alert-status")).to_have_text("reconfirmed")
    await page.select_option("#disposition", str(hotlist_pb2.DISPOSITION_VEHICLE_NOT_LOCATED))
    await page.click("button[type=submit]")
    await expect(page.locator("#alert-status")).to_have_text("disposed")
    await shot(page, "console-alert-disposed", full_page=True)
    assert mongo_db["alerts"].count_documents({"entry.record_id": "V-2026-77", "status": "disposed"}) == 1
    # Hotlist audited the entry and each step as the supervisor; the console wrote no event of its own.
    trail = mongo_db.client["sightline_audit"]["audit_entries"]
    mine = {"event.user_id": accounts["supervisor"].user_id, "event.outcome": "OUTCOME_ALLOWED"}
    assert trail.count_documents({**mine, "event.action": "hotlist.entry.add", "event.subject": HOT_LIST}) >= 1
    assert trail.count_documents({**mine, "event.action": "hotlist.backsearch", "event.subject": HOT_LIST,
                                  "event.purpose": "PURPOSE_VEHICLE_THEFT", "event.case_number": "V-2026-77"}) >= 1
    for action in ("alert.verify", "alert.reconfirm", "alert.dispose"):
        assert trail.count_documents({**mine, "event.action": action}) >= 1
    assert trail.count_documents({"event.action": "hotlist.change"}) == 0


async def test_supervisor_holds_a_read_as_evidence_and_releases_it(browser, console_url, mongo_db, accounts,
                                                                   seeded) -> None:
    page = await log_in(browser, console_url, mongo_db, accounts["supervisor"])
    await search(page, seeded["plate"])
    await page.click("#results a[href^='/reads/web-read-1?']")  # a read opens from a search (a link of this session)
    await page.click("#hold-link")
    await expect(page.locator("#read_ids")).to_have_value("web-read-1")
    await page.fill("#justification", "vehicle seen leaving the scene")
    await page.click("form[action='/holds'] button")
    await expect(page.locator(".ok")).to_contain_text("1 read(s)")
    row = page.locator("#holds tr", has_text=CASE).first
    await expect(row).to_contain_text("active")
    await shot(page, "console-holds")
    assert mongo_db[READS].find_one({"_id": "web-read-1"}).get("held_by")
    await row.locator("input[name=reason]").fill("case closed")
    await row.locator("button").click()
    await expect(page.locator(".ok")).to_contain_text("released")
    assert not mongo_db[READS].find_one({"_id": "web-read-1"}).get("held_by")


def expected_figures(mongo_db, redis_url: str, days: list[str]) -> dict[str, int]:
    """The portal's figures, counted here straight from the records."""
    import redis

    since = datetime.fromisoformat(days[0]).replace(tzinfo=UTC)
    with redis.Redis.from_url(redis_url) as r:
        reads = sum(int(r.get(reads_key(AGENCY, d)) or 0) for d in days)
        vehicles = r.pfcount(*(vehicles_key(AGENCY, d) for d in days))
    audit = mongo_db.client["sightline_audit"]["audit_entries"]
    # Searches of reads as the service running each recorded them: SearchReads and FindConvoy, hot-list back-search.
    search = {"event.agency_id": AGENCY, "at": {"$gte": since}, "$or": [
        {"event.action": {"$in": ["search", "convoy"]}, "event.recorded_by": "service:search"},
        {"event.action": "hotlist.backsearch", "event.recorded_by": "service:hotlist"}]}
    return {
        "reads": reads, "unique_vehicles": vehicles,
        "searches": audit.count_documents({**search, "event.outcome": "OUTCOME_ALLOWED"}),
        "searches_refused": audit.count_documents({**search, "event.outcome": {"$ne": "OUTCOME_ALLOWED"}}),
        "hotlist_hits": mongo_db["alerts"].count_documents({"agency_id": AGENCY, "read.agency_id": AGENCY,
                                                            "raised_at": {"$gte": since}}),
        "cameras": mongo_db[CAMERAS].count_documents({"agency_id": AGENCY, "active": True}),
    }


async def test_portal_figures_equal_the_records(browser, portal_url, mongo_db, redis_url, seeded) -> None:
    import redis

    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    with redis.Redis.from_url(redis_url) as r:  # what ingest counts (services/common/counters.py)
        for i, day in enumerate(days[-12:]):
            r.set(reads_key(AGENCY, day), 40 + 7 * i)
            r.pfadd(vehicles_key(AGENCY, day), *(f"P{i}X{n}" for n in range(20 + 3 * i)))
    # The session's development CA: Chromium is told to accept it (conftest), Playwright's API requests here.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    page = await context.new_page()
    await page.goto(f"{portal_url}/")
    await page.click(f"a[href='/agencies/{AGENCY}']")
    await expect(page.locator("h1")).to_have_text("Alpha PD")
    expected = expected_figures(mongo_db, redis_url, days)
    for name, value in expected.items():
        await expect(page.locator(f"[data-figure={name}] b")).to_have_text(str(value))
    assert expected["reads"] > 0 and expected["unique_vehicles"] > 0
    await expect(page.locator("[data-plot=reads] svg rect")).to_have_count(30)
    await expect(page.locator("body")).to_contain_text("Immigration enforcement")
    await shot(page, "portal-agency", full_page=True)

    doc = await (await page.request.get(f"{portal_url}/api/agencies/{AGENCY}.json")).json()
    assert doc["reads"]["total"] == expected["reads"] and doc["unique_vehicles"] == expected["unique_vehicles"]
    assert doc["searches"]["total"] == expected["searches"] and len(doc["cameras"]) == expected["cameras"]
    assert doc["shares_with"] == ["pd-beta"] and doc["retention_days"] >= 1
