"""The staff console without the services: form parsing, CSRF, and the session rules of the web app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from services.console.app import create_app
from services.console.domain import forms
from services.console.domain.forms import CSRF_COOKIE, Csrf, FormError, ViewTickets
from services.console.settings import ConsoleSettings
from sightline.hotlist.v1 import hotlist_pb2
from sightline.search.v1 import search_pb2

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_csrf_token_is_bound_to_the_nonce_and_the_key() -> None:
    csrf = Csrf(b"k" * 32)
    nonce = Csrf.new_nonce()
    assert csrf.valid(nonce, csrf.token(nonce))
    assert not csrf.valid(nonce, Csrf(b"other key").token(nonce))
    assert not csrf.valid(Csrf.new_nonce(), csrf.token(nonce))
    assert not csrf.valid(None, csrf.token(nonce)) and not csrf.valid(nonce, None)


def test_search_form_becomes_a_purpose_bound_request() -> None:
    req = forms.search_request({"kind": "plate_pattern", "plate": " AB?12* ", "purpose": "7", "case_number": "C-1 ",
                                "partners": "on", "hours": "2"}, NOW)
    assert req.WhichOneof("plate_query") == "plate_pattern" and req.plate_pattern == "AB?12*"
    assert req.purpose == search_pb2.PURPOSE_VEHICLE_THEFT and req.case_number == "C-1"
    assert req.include_partner_agencies
    assert req.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("form", [{"purpose": ""}, {"purpose": "abc"}, {"purpose": "999"},
                                  {"purpose": "1", "kind": "plate_regex"}, {"purpose": "1", "hours": "-1"}])
def test_bad_search_forms_are_refused_before_any_call(form) -> None:
    with pytest.raises(FormError):
        forms.search_request(form, NOW)


def test_prohibited_purposes_are_not_offered_but_reach_the_service_when_forged() -> None:
    offered = {value for value, _ in forms.PURPOSES}
    assert search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT not in offered
    # A forged form is passed on: the search service refuses it and audits the refusal.
    req = forms.search_request({"purpose": str(search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT)}, NOW)
    assert req.purpose == search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT


def test_alert_image_is_viewed_under_the_record_purpose() -> None:
    alert = hotlist_pb2.Alert(entry=hotlist_pb2.HotlistEntry(code="A", record_id="AMBER-7"))
    assert forms.alert_access(alert) == (search_pb2.PURPOSE_KIDNAPPING, "AMBER-7")
    alert.entry.code = "Z"
    assert forms.alert_access(alert)[0] == search_pb2.PURPOSE_OTHER_FELONY


def test_hold_and_hotlist_forms() -> None:
    hold = forms.hold_request({"read_ids": "r1, r2\nr3", "case_number": "C-9", "justification": "why"})
    assert list(hold.read_ids.ids) == ["r1", "r2", "r3"]
    with pytest.raises(FormError):
        forms.hold_request({"read_ids": "r1", "case_number": "C-9"})
    entry = forms.hotlist_entry({"list_id": "l", "plate": "ab 123", "state": "va", "code": "v"})
    assert (entry.plate, entry.state, entry.code) == ("AB 123", "VA", "V")
    # Past reads are searched only under a purpose (and, checked by hotlist, a case number).
    assert forms.back_search({"purpose": ""}, "l", "e1") is None
    search = forms.back_search({"purpose": str(search_pb2.PURPOSE_VEHICLE_THEFT), "case_number": " V-1 "}, "l", "e1")
    assert (search.list_id, list(search.entry_ids), search.purpose, search.case_number) == (
        "l", ["e1"], search_pb2.PURPOSE_VEHICLE_THEFT, "V-1")
    with pytest.raises(FormError):
        forms.back_search({"purpose": "nope"}, "l", "e1")


@pytest.fixture
async def client(tmp_path):
    app = create_app(ConsoleSettings(data_dir=tmp_path, csrf_secret="unit-test-key", allowed_hosts=["console"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as c:
        yield c


async def test_pages_need_a_session(client) -> None:
    reply = await client.get("/search")
    assert reply.status_code == 303 and reply.headers["location"] == "/login"
    client.cookies.set(forms.SESSION_COOKIE, "not-a-token")
    reply = await client.get("/search")
    assert reply.status_code == 303 and reply.headers["location"] == "/login"


async def test_login_page_sets_a_strict_httponly_csrf_cookie_and_a_strict_csp(client) -> None:
    reply = await client.get("/login")
    assert reply.status_code == 200
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS the cookies are Secure
    nonce = reply.cookies[CSRF_COOKIE]
    assert Csrf(b"unit-test-key").token(nonce) in reply.text
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    assert reply.headers["cache-control"] == "no-store"


async def test_posts_without_a_valid_csrf_token_are_refused(client) -> None:
    await client.get("/login")
    reply = await client.post("/login", data={"username": "u", "password": "p", "totp_code": "123456"})
    assert reply.status_code == 403 and "reload the page" in reply.text
    reply = await client.post("/login", data={"csrf": "0" * 64, "username": "u"})
    assert reply.status_code == 403


def test_view_links_work_only_for_their_session_path_and_access() -> None:
    """Finding 8 of the outside attack: an audited view needs a ticket of the viewer's own session."""
    tickets = ViewTickets(b"k" * 32)
    access = forms.access_params(search_pb2.PURPOSE_VEHICLE_THEFT, "C-1", False)
    link = urlsplit(tickets.link("session-a", "/images/ref/1", access, NOW))
    params = dict(parse_qsl(link.query, keep_blank_values=True))
    assert link.path == "/images/ref/1"
    assert tickets.check("session-a", "/images/ref/1", params, NOW) == (search_pb2.PURPOSE_VEHICLE_THEFT, "C-1", False)
    for session, path, changed, when in [("session-b", "/images/ref/1", {}, NOW),
                                         ("session-a", "/images/ref/2", {}, NOW),
                                         ("session-a", "/images/ref/1", {"case_number": "FRAMED"}, NOW),
                                         ("session-a", "/images/ref/1", {"ticket": ""}, NOW),
                                         ("session-a", "/images/ref/1", {}, NOW + timedelta(hours=1))]:
        with pytest.raises(FormError):
            tickets.check(session, path, {**params, **changed}, when)


async def test_a_forged_view_link_is_refused(client, tmp_path) -> None:
    from services.common.auth import TOKEN_KEY, KeySettings, Principal, TokenIssuer, load_private_key

    issuer = TokenIssuer(load_private_key(None, KeySettings(data_dir=tmp_path), TOKEN_KEY), timedelta(minutes=5))
    token, _ = issuer.issue(Principal("u1", "officer", "pd", frozenset({"officer"}), True, NOW + timedelta(days=9)),
                            datetime.now(UTC), ["pwd", "otp"])
    client.cookies.set(forms.SESSION_COOKIE, token)
    reply = await client.get("/images/ref?purpose=1&case_number=FRAMED")
    assert reply.status_code == 403 and "not issued to your session" in reply.text


async def test_unknown_hosts_are_refused_and_no_redirect_uses_the_host_header(client) -> None:
    """Finding 13: pages and redirects never come from a Host header the console was not configured for."""
    reply = await client.get("/search", headers={"host": "evil.example"})
    assert reply.status_code == 400 and "evil" not in reply.headers.get("location", "")
    reply = await client.get("/search/")  # no slash redirect (Starlette builds it from the Host header)
    assert reply.status_code == 404 and "location" not in reply.headers


@pytest.mark.parametrize("path", ["/login", "/search", "/static/console.css", "/nowhere", "/healthz"])
async def test_every_response_carries_the_security_headers(client, path: str) -> None:
    reply = await client.get(path)
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], path
    assert reply.headers["x-content-type-options"] == "nosniff", path


async def test_hsts_over_tls_only(tmp_path) -> None:
    app = create_app(ConsoleSettings(data_dir=tmp_path, allowed_hosts=["console"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console") as tls:
        assert "max-age" in (await tls.get("/login")).headers["strict-transport-security"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as plain:
        assert "strict-transport-security" not in (await plain.get("/login")).headers
