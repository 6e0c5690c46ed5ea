"""The hot-list index over plates: partial-plate patterns, the fuzzy index's keys, back-search regexes.

OCR confuses characters within a class (O/0/D/Q, I/1/L/T, B/8, S/5, Z/2, G/6). Mapping every character to
its class representative gives a plate's *skeleton*: two plates that differ only by confusions share one.
One substituted, missing or extra character is found with symmetric-delete keys (as in SymSpell): a plate's
skeleton with each single character removed; two strings within one edit share at least one such key.
"""

from __future__ import annotations

import re

from services.common.plates import CONFUSION_CLASSES, pattern_to_regex

WILDCARDS = "?*"


def delete_keys(key: str, max_edits: int) -> list[str]:
    """The key itself and, for one edit, the key with each character removed (duplicates dropped)."""
    if max_edits <= 0 or len(key) <= 1:
        return [key]
    return list(dict.fromkeys([key, *(key[:i] + key[i + 1:] for i in range(len(key)))]))


def is_pattern(plate: str) -> bool:
    return any(ch in WILDCARDS for ch in plate)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A partial plate ('AB?12*') as an anchored regex over normalised plates; raises InvalidQuery."""
    return re.compile(pattern_to_regex(pattern))


def candidate_regex(plate: str, confusions: bool, max_edits: int) -> str:
    """An anchored regex every plate that may match `plate` satisfies (a superset: the matcher verifies).

    Used to narrow a back-search of stored reads: each character becomes its confusion class, and with one
    edit tolerated, the alternatives with one position substituted, removed or inserted.
    """
    if is_pattern(plate):
        return pattern_to_regex(plate)
    groups = {ch: group for group in CONFUSION_CLASSES for ch in group} if confusions else {}
    atoms = [f"[{groups[ch]}]" if ch in groups else ch for ch in plate]
    alternatives = ["".join(atoms)]
    if max_edits >= 1:
        n = len(atoms)
        alternatives += ["".join(atoms[:i] + ["."] + atoms[i + 1:]) for i in range(n)]
        alternatives += ["".join(atoms[:i] + atoms[i + 1:]) for i in range(n)]
        alternatives += ["".join(atoms[:i] + ["."] + atoms[i:]) for i in range(n + 1)]
    return "^(?:" + "|".join(dict.fromkeys(a for a in alternatives if a)) + ")$"
