"""Identifiers that callers choose (camera, frame, list and entry ids): one rule, matched in full."""

from __future__ import annotations

import re

# fullmatch, never `^…$` with re.match: "$" also matches before a trailing newline, so "list\n" would pass.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def valid_id(value: str) -> bool:
    """1–128 characters: a letter or digit, then letters, digits, '.', '_', ':' or '-'."""
    return _ID.fullmatch(value) is not None
