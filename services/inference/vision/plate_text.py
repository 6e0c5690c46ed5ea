"""Plate text rules: normalisation, plausibility of a read, and the region named by the other text lines."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.plates import normalize_plate

US_STATES = {
    "AL": "ALABAMA", "AK": "ALASKA", "AZ": "ARIZONA", "AR": "ARKANSAS", "CA": "CALIFORNIA",
    "CO": "COLORADO", "CT": "CONNECTICUT", "DE": "DELAWARE", "DC": "DISTRICTOFCOLUMBIA",
    "FL": "FLORIDA", "GA": "GEORGIA", "HI": "HAWAII", "ID": "IDAHO", "IL": "ILLINOIS",
    "IN": "INDIANA", "IA": "IOWA", "KS": "KANSAS", "KY": "KENTUCKY", "LA": "LOUISIANA",
    "ME": "MAINE", "MD": "MARYLAND", "MA": "MASSACHUSETTS", "MI": "MICHIGAN", "MN": "MINNESOTA",
    "MS": "MISSISSIPPI", "MO": "MISSOURI", "MT": "MONTANA", "NE": "NEBRASKA", "NV": "NEVADA",
    "NH": "NEWHAMPSHIRE", "NJ": "NEWJERSEY", "NM": "NEWMEXICO", "NY": "NEWYORK",
    "NC": "NORTHCAROLINA", "ND": "NORTHDAKOTA", "OH": "OHIO", "OK": "OKLAHOMA", "OR": "OREGON",
    "PA": "PENNSYLVANIA", "RI": "RHODEISLAND", "SC": "SOUTHCAROLINA", "SD": "SOUTHDAKOTA",
    "TN": "TENNESSEE", "TX": "TEXAS", "UT": "UTAH", "VT": "VERMONT", "VA": "VIRGINIA",
    "WA": "WASHINGTON", "WV": "WESTVIRGINIA", "WI": "WISCONSIN", "WY": "WYOMING",
}  # fmt: skip
# Slogans and site names printed on plates that identify the state as surely as its name.
US_STATE_HINTS = {
    "SUNSHINESTATE": "FL", "LANDOFLINCOLN": "IL", "EMPIRESTATE": "NY", "GARDENSTATE": "NJ",
    "GRANDCANYON": "AZ", "LONESTAR": "TX", "FAMOUSPOTATOES": "ID", "GREATLAKES": "MI",
    "LIVEFREEORDIE": "NH", "OCEANSTATE": "RI", "FIRSTINFLIGHT": "NC", "FIRSTINFREEDOM": "NC",
    "BIGSKY": "MT", "PEACHSTATE": "GA", "WASHINGTONDC": "DC", "LAKES10000": "MN",
    "10000LAKES": "MN", "SPORTSMANSPARADISE": "LA", "GREENMOUNTAIN": "VT", "AMERICASDAIRYLAND": "WI",
    "DMVCAGOV": "CA", "DMVCA": "CA", "PAGOV": "PA", "VISITPA": "PA", "NYGOV": "NY", "NEWJERSEY": "NJ",
    "MYFLORIDA": "FL", "THEFIRSTSTATE": "DE", "CONSTITUTIONSTATE": "CT", "HEARTOFITALL": "OH",
    "WILDWONDERFUL": "WV", "VIRGINIAISFORLOVERS": "VA", "SHOWMESTATE": "MO", "SILVERSTATE": "NV",
    "LANDOFENCHANTMENT": "NM", "BEAUTIFULWYOMING": "WY", "COLORFULCOLORADO": "CO", "ALOHA": "HI",
    "LASTFRONTIER": "AK", "NORTHTOTHEFUTURE": "AK", "HEARTOFDIXIE": "AL", "SWEETHOMEALABAMA": "AL",
    "TENNESSEEVOLUNTEER": "TN", "BLUEGRASS": "KY", "UNBRIDLEDSPIRIT": "KY", "NATURALSTATE": "AR",
    "MAGNOLIA": "MS", "HOOSIER": "IN", "CROSSROADSOFAMERICA": "IN", "MOUNTRUSHMORE": "SD",
    "PEACEGARDEN": "ND", "LEGENDARY": "ND", "NATIVEAMERICA": "OK", "BEAUTIFULUTAH": "UT",
    "GREATESTSNOW": "UT", "SPIRITOFAMERICA": "MA", "VACATIONLAND": "ME", "EVERGREEN": "WA",
}  # fmt: skip


@dataclass(frozen=True)
class Region:
    country: str = ""
    state: str = ""
    confidence: float = 0.0


def region_from_text(lines: list[str]) -> Region:
    """Find a US state named (or identified by slogan) in the non-plate text lines of a plate."""
    joined = "".join(normalize_plate(line) for line in lines)
    if len(joined) < 4:
        return Region()
    found = [(len(name), code, 0.9) for code, name in US_STATES.items() if name in joined]
    found += [(len(hint), code, 0.7) for hint, code in US_STATE_HINTS.items() if hint in joined]
    if found:
        _, code, confidence = max(found)  # the longest match: "WASHINGTONDC" over "WASHINGTON"
        return Region("US", code, confidence)
    for code, name in sorted(US_STATES.items(), key=lambda item: len(item[1]), reverse=True):
        if len(name) >= 6 and _fuzzy_contains(joined, name):
            return Region("US", code, 0.6)
    return Region()


STATE_TEXT = frozenset(US_STATES.values()) | frozenset(US_STATE_HINTS)


def is_state_text(text: str) -> bool:
    """True when a reading of four or more characters is part of, or holds, a state name or slogan
    (``FLORIDA``, ``SUNSHINE``, ``NEWYORKEMPIRESTATE``): a line that names the region, not a serial."""
    return len(text) >= 4 and any(text in words or words in text for words in STATE_TEXT)


def _fuzzy_contains(haystack: str, needle: str) -> bool:
    """True when ``needle`` appears with at most one substituted character (OCR of small print)."""
    for start in range(len(haystack) - len(needle) + 1):
        window = haystack[start : start + len(needle)]
        if sum(a != b for a, b in zip(window, needle, strict=True)) <= 1:
            return True
    return False


# Serial layouts (L letter, D digit) per plate family, as OpenALPR's per-country pattern files: the US
# (California DLLLDDD, many states LLLDDDD, LLLDDD, DDDLLL), Europe (Slovakia, France and Italy LLDDDLL,
# Great Britain LLDDLLL, Czechia DLDDDDD / DLLDDDD, Poland LLDDDDD / LLLDDDD, Spain DDDDLLL), Brazil (LLL-DDDD
# and Mercosur LLLDLDD) and Argentina (LLLDDD and Mercosur LLDDDLL). ``auto`` knows them all.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "us": ("LLLDDDD", "DLLLDDD", "LLLDDD", "DDDLLL"),
    "eu": ("LLDDDLL", "LLDDLLL", "DLDDDDD", "DLLDDDD", "LLDDDDD", "LLLDDDD", "DDDDLLL"),
    "br": ("LLLDDDD", "LLLDLDD"),
    "ar": ("LLLDDD", "LLDDDLL"),
}
LAYOUTS["auto"] = tuple(dict.fromkeys(layout for layouts in LAYOUTS.values() for layout in layouts))


def _german() -> tuple[str, ...]:
    """Germany: a district of 1-3 letters, 1-2 letters, 1-4 digits, 8 characters at most; E (electric) or H
    (historic) may follow."""
    plain = [("L" * letters) + ("D" * digits) for letters in range(2, 6) for digits in range(1, 5)
             if letters + digits <= 8]  # fmt: skip
    return (*plain, *(layout + "L" for layout in plain))


# Each European country's layouts, current series first, then earlier series still on the road (national
# registration rules): a deployment that knows its country sets it (``SIGHTLINE_VISION_PLATE_FAMILY=de``).
COUNTRY_LAYOUTS: dict[str, tuple[str, ...]] = {
    "be": ("DLLLDDD", "DDDLLL", "LLLDDD"),  # 1-ABC-123 (2010), 123-ABC (2008), ABC-123 (1973)
    "cz": ("DLDDDDD", "DLLDDDD"),  # 1A2 3456, 1AB 2345
    "de": _german(),  # B AB 1234, M X 12, HH AB 123E
    "dk": ("LLDDDDD",),  # AB 12 345
    "es": ("DDDDLLL", "LDDDDL", "LDDDDLL", "LLDDDDL", "LLDDDDLL"),  # 1234 ABC (2000), provincial M-1234-AB
    "fi": ("LLLDDD", "LLDDD"),  # ABC-123, AB-123
    "fr": ("LLDDDLL", "DDDLLLDD", "DDDDLLDD"),  # AB-123-CD (2009), FNI 123 ABC 75 and 1234 AB 75
    "gb": ("LLDDLLL", "LDDDLLL", "LDDLLL", "LDLLL"),  # AB12 CDE (2001), prefix A123 BCD, A12 BCD, A1 BCD
    "hr": ("LLDDDL", "LLDDDLL", "LLDDDDL", "LLDDDDLL"),  # ZG 123-A to ZG 1234-AB
    "it": ("LLDDDLL",),  # AB 123 CD
    "nl": ("LLDDDD", "DDDDLL", "DDLLDD", "LLDDLL", "LLLLDD", "DDLLLL", "DDLLLD", "DLLLDD", "LLDDDL", "LDDDLL",
           "LLLDDL", "LDDLLL", "DLLDDD", "DDDLLD"),  # sidecodes 1-14: 99-XX-99, 9-XXX-99, X-999-XX ...
    "pl": ("LLDDDDD", "LLDDDDL", "LLDDDLL", "LLLDDDD", "LLLDDDL", "LLLDDLL"),  # WA 12345, KR 1234A, WPR 1234
    "pt": ("LLDDLL", "DDLLDD", "DDDDLL", "LLDDDD"),  # AA-00-AA (2020), 00-AA-00, 00-00-AA, AA-00-00
    "se": ("LLLDDD", "LLLDDL"),  # ABC 123, ABC 12A (2019)
    "sk": ("LLDDDLL",),  # BA 123 AB
}  # fmt: skip
# Each US state's standard passenger series beside the layouts every state's older series share (``us``), used
# where the state is read from the plate or set for a deployment (``us-ny``). New York: ABC-1234 and the
# Taxi and Limousine Commission's for-hire plates, T + six digits + C.
STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "AZ": ("LLLDDDD",), "CA": ("DLLLDDD",), "GA": ("LLLDDDD",), "IL": ("LLDDDDD",), "MD": ("DLLDDDD",),
    "MI": ("LLLDDDD",), "NC": ("LLLDDDD",), "NJ": ("LDDLLL", "LLLDDL"), "NY": ("LLLDDDD", "LDDDDDDL"),
    "OH": ("LLLDDDD",), "PA": ("LLLDDDD",), "TX": ("LLLDDDD",), "VA": ("LLLDDDD",), "WA": ("LLLDDDD",),
}  # fmt: skip
LAYOUTS.update(COUNTRY_LAYOUTS)
LAYOUTS.update({f"us-{state.lower()}": tuple(dict.fromkeys((*layouts, *LAYOUTS["us"])))
                for state, layouts in STATE_LAYOUTS.items()})  # fmt: skip
FAMILIES = tuple(LAYOUTS)
# Characters printed alike, by the kind a layout expects at their position.
AS_LETTER = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "6": "G"}
AS_DIGIT = {letter: digit for digit, letter in AS_LETTER.items()}
# Families whose plates carry only their layouts' serials: a read is spelled to fit one where look-alikes allow.
STRICT_FAMILIES = frozenset({"eu", "br", "ar", "auto", *COUNTRY_LAYOUTS})
# Families whose every plate has one of their layouts (Brazil and Argentina issue no vanity serials): the
# likeliest candidate that fits one is chosen over likelier ones that do not (a dropped or extra character).
CLOSED_FAMILIES = frozenset({"br", "ar"})


def family_for(family: str, region: Region) -> str:
    """The family whose layouts a plate is read by: a US state's (``us-ny``) where the deployment's family is
    ``us`` and the plate names a state with layouts of its own, else the deployment's."""
    state_family = f"us-{region.state.lower()}"
    return state_family if family == "us" and region.state and state_family in LAYOUTS else family


def layout_of(text: str) -> str:
    return "".join("D" if char.isdigit() else "L" for char in text)


def matches_format(text: str, family: str = "auto") -> bool:
    """True when the text has one of the family's serial layouts exactly."""
    return layout_of(text) in LAYOUTS[family]


def resolve_look_alikes(text: str, layouts: tuple[str, ...], alternatives: tuple[str, ...] = ()) -> str:
    """A read that fits none of ``layouts`` but fits one once look-alike characters take the kind the layout
    expects at their position is spelled that way (``BA3020Z`` -> ``BA302OZ`` for LLDDDLL). Of several
    fits, the one needing fewest changes wins; a tie goes to the fit the reader ranked (``alternatives``),
    and an unresolved tie leaves the read as it is."""
    if layout_of(text) in layouts:
        return text
    fits: dict[str, int] = {}
    for layout in layouts:
        if len(layout) != len(text):
            continue
        chars, changed = list(text), 0
        for index, (char, kind) in enumerate(zip(text, layout, strict=True)):
            if (kind == "D") != char.isdigit():
                swap = (AS_DIGIT if kind == "D" else AS_LETTER).get(char)
                if swap is None:
                    break
                chars[index], changed = swap, changed + 1
        else:
            fits["".join(chars)] = changed
    if not fits:
        return text
    fewest = min(fits.values())
    best = [fitted for fitted, changed in fits.items() if changed == fewest]
    if len(best) == 1:
        return best[0]
    return next((alternative for alternative in alternatives if alternative in best), text)


def apply_conventions(text: str, family: str = "us", alternatives: tuple[str, ...] = ()) -> str:
    """The plate family's spelling of a read. Europe, Brazil, Argentina and ``auto``: look-alikes resolved by
    the layouts' positions, only where the read then fits one (``0XK3125`` -> ``OXK3125`` in Brazil). US:
    states print O and 0 alike and standard serials avoid the letter O, so a US read that fits no known
    layout (vanity plates) spells it 0, and one that fits keeps the letter where the layout puts a letter.
    The family is the deployment's: a plate whose state name went unread is spelled alike."""
    if family in STRICT_FAMILIES:
        return resolve_look_alikes(text, LAYOUTS[family], alternatives)
    if not matches_format(text, family):
        return text.replace("O", "0")
    return text


def choose_candidate(ranked: list[tuple[str, float]], family: str) -> tuple[str, float, str]:
    """The read among ``ranked`` (text, score; best first): the text as read, its score and its family spelling
    (``apply_conventions``). The best-ranked, or in a closed family the best-ranked whose spelling fits one of
    the family's layouts where any does (``KO8673`` loses to ``IKO8673`` in Brazil)."""
    alternatives = tuple(text for text, _ in ranked)
    spelled = [(text, score, apply_conventions(text, family, alternatives)) for text, score in ranked]
    if family in CLOSED_FAMILIES:
        return min(spelled, key=lambda item: not matches_format(item[2], family))  # the first that fits
    return spelled[0]


def plausibility(text: str) -> float:
    """How much a string looks like a plate number, 0..1: 5-8 characters, letters and digits mixed."""
    if not text:
        return 0.0
    score = 1.0
    length = len(text)
    if length < 4:
        score *= 0.3
    elif length < 5 or length > 8:
        score *= 0.7
    has_digit = any(c.isdigit() for c in text)
    has_letter = any(c.isalpha() for c in text)
    if not has_digit:
        score *= 0.4 if text not in US_STATES.values() else 0.05
    elif not has_letter:
        score *= 0.85
    return score
