"""Agency administration's pure parts: the console's and the CLI's form parsing, generated one-time secrets."""

from __future__ import annotations

import pytest

from services.common.qr import qr_svg, qr_text
from services.console.domain import admin
from services.console.domain.forms import FormError
from services.identity.domain.accounts import generate_password, new_totp_secret
from sightline.hotlist.v1 import hotlist_pb2
from sightline.identity.v1 import identity_pb2

pytestmark = pytest.mark.unit


def test_roles_by_name_or_value_at_least_one() -> None:
    assert admin.roles(["officer", " Investigator ", "officer"]) == [identity_pb2.ROLE_OFFICER,
                                                                     identity_pb2.ROLE_INVESTIGATOR]
    assert admin.roles(["5"]) == [identity_pb2.ROLE_AGENCY_ADMIN]
    for bad in ([], [""], ["root"], ["0"], ["99"]):
        with pytest.raises(FormError):
            admin.roles(bad)
    assert admin.role_name(identity_pb2.ROLE_AGENCY_ADMIN) == "agency_admin"


def test_training_runs_to_the_end_of_its_day() -> None:
    training = admin.training(" ALPR policy ", "2027-06-30")
    assert training.course == "ALPR policy"
    assert training.expires_at.ToDatetime().isoformat() == "2027-06-30T23:59:59"
    for course, day in (("", "2027-06-30"), ("x", "30/06/2027"), ("x", "")):
        with pytest.raises(FormError):
            admin.training(course, day)


def test_create_user_asks_identity_to_generate_the_password() -> None:
    req = admin.create_user(" a.user ", "A User", ["officer"], "ALPR policy", "2027-01-01")
    assert req.username == "a.user" and not req.initial_password and req.training.course == "ALPR policy"
    with pytest.raises(FormError):
        admin.create_user(" ", "A User", ["officer"], "ALPR policy", "2027-01-01")


def test_agency_ids_split_on_commas_and_spaces() -> None:
    assert admin.agency_ids(" pd-beta,PD-gamma  pd-beta,,") == ["pd-beta", "pd-gamma"]
    assert admin.agency_ids("") == []


def test_camera_location_both_or_neither_bearing_in_range() -> None:
    cam = admin.camera("cam-1", " Main St ", "38.9", "-77.0", "360")
    assert cam.name == "Main St" and cam.location.latitude == pytest.approx(38.9) and cam.bearing_degrees == 0
    bare = admin.camera("cam-1", "", active=False)
    assert not bare.HasField("location") and not bare.HasField("bearing_degrees") and not bare.active
    for args in (("", "x"), ("c", "x", "38.9", ""), ("c", "x", "91", "0"), ("c", "x", "0", "181"),
                 ("c", "x", "", "", "-1"), ("c", "x", "north", "0")):
        with pytest.raises(FormError):
            admin.camera(*args)


def test_retention_needs_a_state_code_and_whole_days() -> None:
    req = admin.retention(" va ", "21")
    assert (req.state, req.retention_days) == ("VA", 21)
    for state, days in (("Virginia", "21"), ("VA", "0"), ("VA", "three"), ("", "21")):
        with pytest.raises(FormError):
            admin.retention(state, days)


def test_hot_list_source_and_edits() -> None:
    hot = admin.hot_list("stolen", "", "ncic", True, "1")
    assert (hot.name, hot.source, hot.fuzzy_confusions, hot.max_edits) == ("stolen", hotlist_pb2.LIST_SOURCE_NCIC,
                                                                           True, 1)
    assert admin.source_name(hotlist_pb2.LIST_SOURCE_STATE) == "state"
    for args in (("", "n", "ncic"), ("l", "n", "fbi"), ("l", "n", "ncic", False, "2"), ("l", "n", "ncic", False, "x")):
        with pytest.raises(FormError):
            admin.hot_list(*args)


def test_generated_secrets_are_long_and_fresh() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50 and all(len(p) >= 20 for p in passwords)
    assert new_totp_secret() != new_totp_secret()


def test_qr_codes_for_a_terminal_and_an_inline_svg() -> None:
    uri = "otpauth://totp/a@pd?secret=ABCDEFGHIJKLMNOP&issuer=Sightline"
    svg = qr_svg(uri)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "style=" not in svg and "<script" not in svg
    assert "█" in qr_text(uri) or "▀" in qr_text(uri)
