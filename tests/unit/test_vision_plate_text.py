import pytest

from services.inference.vision.plate_text import (
    Region,
    choose_candidate,
    normalize_plate,
    plausibility,
    region_from_text,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ab-123 cd", "AB123CD"), (" 7xyz·889 ", "7XYZ889"), ("", ""), ("Ö-é", ""), ("m5 xsx\n", "M5XSX")],
)
def test_normalize_plate_keeps_upper_case_letters_and_digits(raw: str, expected: str) -> None:
    assert normalize_plate(raw) == expected


def test_region_from_state_name_slogan_and_misread_name() -> None:
    assert region_from_text(["California", "dmv.ca.gov"]) == Region("US", "CA", 0.9)
    assert region_from_text(["Washington DC"]).state == "DC"
    assert region_from_text(["SUNSHINE STATE"]) == Region("US", "FL", 0.7)
    assert region_from_text(["PENNSYIVANIA"]).state == "PA"
    assert region_from_text(["ABC123"]) == Region()


def test_plausibility_prefers_mixed_letters_and_digits_of_plate_length() -> None:
    assert plausibility("7ABC123") > plausibility("TEXAS") > 0
    assert plausibility("7ABC123") > plausibility("12")
    assert plausibility("") == 0.0


def test_known_layouts_and_us_o_convention() -> None:
    from services.inference.vision.plate_text import apply_conventions, matches_format

    assert matches_format("RK828AG") and matches_format("7ABC123") and not matches_format("RRK828AG")
    assert apply_conventions("GOLFING") == "G0LFING"  # a vanity plate: US labels spell O as 0
    assert apply_conventions("WHO515") == "WHO515"  # LLLDDD: a letter where the layout puts one
    assert apply_conventions("XYO99AN") == "XY099AN"  # no state named: the deployment's family decides


def test_european_reads_take_the_layout_spelling_of_look_alikes() -> None:
    from services.inference.vision.plate_text import LAYOUTS, apply_conventions, resolve_look_alikes

    eu = LAYOUTS["eu"]
    assert resolve_look_alikes("ZA834C0", eu) == "ZA834CO"  # LLDDDLL: a letter at the end
    assert resolve_look_alikes("BA2681M", eu) == "BA268IM"
    assert resolve_look_alikes("RK828AG", eu) == "RK828AG"  # fits already: untouched
    # Two layouts fit with one change each (LLDDDLL, LLDDDDD): the reader's ranking decides, or nothing does.
    assert resolve_look_alikes("BA3020Z", eu, ("BA3020Z", "BA302OZ")) == "BA302OZ"
    assert resolve_look_alikes("BA3020Z", eu) == "BA3020Z"
    assert apply_conventions("N0626AT", "eu") == "NO626AT"
    assert apply_conventions("N0626AT", "us") == "N0626AT"


def test_brazilian_and_argentine_families_put_letters_and_digits_where_their_layouts_do() -> None:
    from services.inference.vision.plate_text import apply_conventions, matches_format

    assert apply_conventions("0XK3125", "br") == "OXK3125"  # LLL-NNNN: the first letter O, not a zero
    assert apply_conventions("BRA2E1S", "br") == "BRA2E15"  # Mercosur LLLNLNN
    assert apply_conventions("AD0S4JI", "ar") == "AD054JI"  # Mercosur LLNNNLL
    assert apply_conventions("JPU238", "ar") == "JPU238"
    assert apply_conventions("0XK3125", "us") == "0XK3125"  # the US family does not know the layout
    # A read that fits no layout of the family is left as read, frames and slogans included.
    assert apply_conventions("COLLINS", "br") == "COLLINS" and apply_conventions("DOMINION", "auto") == "DOMINION"
    assert matches_format("ABC1D23", "br") and not matches_format("ABC1D23", "us")
    # auto knows every layout: the read fits Czechia's DLLDDDD as it is, so nothing is folded.
    assert apply_conventions("0XK3125", "auto") == "0XK3125"
    assert apply_conventions("BRA2E1S", "auto") == "BRA2E15"


def test_a_plate_naming_its_state_is_read_by_that_states_series() -> None:
    from services.inference.vision.plate_text import choose_candidate, family_for, matches_format

    new_york = Region("US", "NY", 0.9)
    assert family_for("us", new_york) == "us-ny"
    assert family_for("us", Region()) == "us"  # no state read: every state's shared series
    assert family_for("us", Region("US", "WY", 0.9)) == "us"  # a state without series of its own here
    assert family_for("eu", new_york) == "eu" and family_for("us-ca", new_york) == "us-ca"  # set by deployment
    # New York's for-hire plates (T + six digits + C) are a New York series, not every state's.
    assert matches_format("T710974C", "us-ny") and not matches_format("T710974C", "us")
    assert matches_format("ABC1234", "us-ny") and matches_format("7ABC123", "us-ny")  # and the shared ones
    assert choose_candidate([("T71O974C", 1.0)], "us-ny") == ("T71O974C", 1.0, "T710974C")


def test_a_european_country_is_read_by_its_own_series() -> None:
    from services.inference.vision.plate_text import LAYOUTS, apply_conventions, matches_format

    assert apply_conventions("AB1Z3CD", "fr") == "AB123CD"  # France AB-123-CD
    assert apply_conventions("AB1ZCDE", "gb") == "AB12CDE"  # Great Britain AB12 CDE
    assert matches_format("12XBB3", "nl") and not matches_format("12XBB3", "eu")  # a Dutch sidecode, 99-XXX-9
    assert matches_format("MAB1234", "de") and matches_format("HHAB123E", "de")  # Germany, an electric car's E
    assert not matches_format("ABC123456", "de")  # nine characters, more than a German serial holds
    # Germany's district, letters and digits vary in length, so a look-alike is not folded where two fit.
    assert apply_conventions("MAB1Z34", "de") == "MAB1Z34"
    assert set(LAYOUTS["auto"]) == {layout for family in ("us", "eu", "br", "ar") for layout in LAYOUTS[family]}


def test_closed_families_choose_the_likeliest_read_that_fits_a_layout() -> None:
    ranked = [("KO8673", 0.6), ("IKO8673", 0.3), ("K08673", 0.1)]
    assert choose_candidate(ranked, "br") == ("IKO8673", 0.3, "IKO8673")
    assert choose_candidate(ranked, "us") == ("KO8673", 0.6, "K08673")  # vanity plates: nothing is closed
    assert choose_candidate([("0XK3125", 0.9), ("XK3125", 0.1)], "br") == ("0XK3125", 0.9, "OXK3125")
    assert choose_candidate([("QTW20", 0.7), ("QTW2", 0.3)], "ar") == ("QTW20", 0.7, "QTW20")  # none fits


def test_the_family_setting_takes_only_known_families() -> None:
    import pydantic

    from services.inference.vision.plate_text import FAMILIES
    from services.inference.vision.settings import VisionSettings

    for family in FAMILIES:
        assert VisionSettings(plate_family=family).plate_family == family
    with pytest.raises(pydantic.ValidationError):
        VisionSettings(plate_family="mars")
