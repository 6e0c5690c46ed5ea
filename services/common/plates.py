"""Plate text as every service sees it: the normalised form reads are stored and matched under, and the
partial-plate patterns officers and hotlists use. Pure (standard library only): the Triton image ships it.
"""

from __future__ import annotations

import re
import unicodedata

MAX_PLATE_LEN = 12
_NOT_PLATE_CHAR = re.compile(r"[^A-Z0-9]")
_PATTERN_RE = re.compile(r"[A-Z0-9?*]+")


# Characters OCR mistakes for one another on plates; the first of each class stands for the class.
CONFUSION_CLASSES: tuple[str, ...] = ("O0DQ", "I1LT", "B8", "S5", "Z2", "G6")
_SKELETON_TABLE = str.maketrans({ch: group[0] for group in CONFUSION_CLASSES for ch in group})


class InvalidQuery(ValueError):
    """A query or pattern that cannot be run; the message says why (returned as INVALID_ARGUMENT)."""


def normalize_plate(text: str) -> str:
    """Upper case, keeping only A-Z and 0-9 (what a reader's text is stored and matched under)."""
    return _NOT_PLATE_CHAR.sub("", text.upper())


# What a person types is folded before it is checked, never silently dropped: compatibility forms (full-width
# 'Ａ') by NFKC, the separators plates print, and the Cyrillic and Greek capitals that plates of those
# countries print with the Latin letter's shape (the Latin-script entries of Unicode's confusables, UTS #39,
# restricted to the letters plates use). Whatever is left outside A-Z, 0-9 refuses the query.
PLATE_SEPARATORS = " -·."
_HOMOGLYPHS = str.maketrans({
    **dict(zip("АВЕКМНОРСТУХІЈЅ", "ABEKMHOPCTYXIJS", strict=True)),  # Cyrillic
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),  # Greek
    **{ch: None for ch in PLATE_SEPARATORS},
})


def fold_plate_input(text: str) -> str:
    """A person's plate text or pattern folded to the stored alphabet (other characters are kept, to refuse)."""
    return unicodedata.normalize("NFKC", text).upper().translate(_HOMOGLYPHS)


def plate_query(text: str, field: str) -> str:
    """A plate a person asked for, folded; InvalidQuery when anything but A-Z and 0-9 remains."""
    plate = fold_plate_input(text)
    if not plate or len(plate) > MAX_PLATE_LEN or _NOT_PLATE_CHAR.search(plate):
        raise InvalidQuery(f"{field} must hold 1-{MAX_PLATE_LEN} letters A-Z or digits 0-9 (spaces, '-', '.' and "
                           "'·' are ignored; Cyrillic and Greek capitals shaped like Latin ones count as those)")
    return plate


def skeleton(plate: str) -> str:
    """Each character replaced by its confusion class's representative: 'B0G5' -> 'BOGS'. Two plates that
    differ only by OCR confusions share a skeleton, so a fuzzy search is one indexed equality."""
    return plate.translate(_SKELETON_TABLE)


def pattern_to_regex(pattern: str) -> str:
    """'AB?12*' -> '^AB.12.*$' over normalised plates. '?' one character, '*' any run.

    Built from a validated alphabet only, with runs of '*' collapsed, so the regex can neither inject
    operators nor backtrack catastrophically.
    """
    cleaned = fold_plate_input(pattern)
    if not cleaned or len(cleaned) > MAX_PLATE_LEN * 2 or not _PATTERN_RE.fullmatch(cleaned):
        raise InvalidQuery("plate_pattern may hold only letters, digits, '?' and '*' (at most 24)")
    cleaned = re.sub(r"\*+", "*", cleaned)
    if cleaned.strip("*?") == "":
        raise InvalidQuery("plate_pattern needs at least one letter or digit")
    if sum(ch.isalnum() for ch in cleaned) > MAX_PLATE_LEN:
        raise InvalidQuery(f"plate_pattern has more than {MAX_PLATE_LEN} characters")
    return "^" + cleaned.replace("?", ".").replace("*", ".*") + "$"


def confusable(a: str, b: str) -> bool:
    """Same character, or two characters OCR mistakes for one another."""
    return a == b or a.translate(_SKELETON_TABLE) == b.translate(_SKELETON_TABLE)


def explain_match(read: str, plate: str, fuzzy_confusions: bool, max_edits: int) -> str | None:
    """How `read` matches `plate` allowing OCR confusions (when `fuzzy_confusions`) and up to `max_edits`
    (0 or 1) substituted, missing or extra characters, or None. Parts read 'read→plate'."""
    same = confusable if fuzzy_confusions else str.__eq__
    if len(read) == len(plate):
        parts, edits = [], 0
        for r, p in zip(read, plate, strict=True):
            if r == p:
                continue
            if same(r, p):
                parts.append(f"{r}→{p}")
            else:
                edits += 1
                parts.append(f"{r}→{p} substituted")
        if edits > max_edits:
            return None
        return "exact" if not parts else "fuzzy: " + ", ".join(parts)
    if max_edits < 1 or abs(len(read) - len(plate)) != 1:
        return None
    longer, shorter = (plate, read) if len(plate) > len(read) else (read, plate)
    best: list[str] | None = None
    for i in range(len(longer)):  # the gap that needs the fewest confusions explains it best
        rest = longer[:i] + longer[i + 1:]
        if all(same(a, b) for a, b in zip(rest, shorter, strict=True)):
            pairs = zip(shorter, rest, strict=True) if shorter is read else zip(rest, shorter, strict=True)
            parts = [f"{r}→{p}" for r, p in pairs if r != p]
            parts.append(f"missing {longer[i]}" if longer is plate else f"extra {longer[i]}")
            if best is None or len(parts) < len(best):
                best = parts
    return None if best is None else "fuzzy: " + ", ".join(best)
