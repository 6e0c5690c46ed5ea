"""Caller-chosen identifiers are matched in full: a trailing newline never slips through."""

import pytest

from services.common.ids import valid_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["cam-1", "pd-alpha:list.2", "A" * 128])
def test_valid_ids(value: str) -> None:
    assert valid_id(value)


@pytest.mark.parametrize("value", ["", "list\n", "-lead", "a b", "x" * 129, "caméra", "a/b"])
def test_invalid_ids(value: str) -> None:
    assert not valid_id(value)

