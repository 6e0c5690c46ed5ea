"""Envelope encryption of reads and images (pure)."""

import pytest

from services.common import sealing

pytestmark = pytest.mark.unit


def test_a_read_is_sealed_and_opened_with_its_key() -> None:
    key = sealing.new_key()
    doc = sealing.seal_read({"_id": "r1", "plate": "ABC 123", "candidates": [{"text": "ABC123", "confidence": 0.8}],
                             "plate_normalized": "ABC123"}, "day:pd:2025-01-01", key)
    assert "plate" not in doc and "candidates" not in doc and doc["plate_normalized"] == "ABC123"
    assert b"ABC" not in doc["sealed"] and doc["key_id"] == "day:pd:2025-01-01"
    assert sealing.open_read(dict(doc), key)["plate"] == "ABC 123"
    with pytest.raises(sealing.Unreadable):
        sealing.open_read(dict(doc), sealing.new_key())


def test_a_ciphertext_does_not_open_in_another_document() -> None:
    key = sealing.new_key()
    doc = sealing.seal_read({"_id": "a", "plate": "ABC"}, "k", key)
    doc["_id"] = "b"
    with pytest.raises(sealing.Unreadable):
        sealing.open_read(doc, key)
    blob = sealing.seal_image("img-1", b"jpeg", key)
    with pytest.raises(sealing.Unreadable):
        sealing.open_image("img-2", blob, key)


def test_reseal_moves_a_record_to_another_key() -> None:
    day, hold = sealing.new_key(), sealing.new_key()
    doc = sealing.seal_read({"_id": "r", "plate": "HELD1"}, "day", day)
    doc["sealed"] = sealing.reseal_read(doc, day, hold)
    assert sealing.open_read(dict(doc), hold)["plate"] == "HELD1"
    image = {"_id": "i", "data": sealing.seal_image("i", b"\xff\xd8", day)}
    assert sealing.open_image("i", sealing.reseal_image(image, day, hold), hold) == b"\xff\xd8"


def test_data_keys_are_wrapped_by_the_master_key_for_their_id() -> None:
    master, key = sealing.new_key(), sealing.new_key()
    wrapped = sealing.wrap(master, "day:a:2025-01-01", key)
    assert sealing.unwrap(master, "day:a:2025-01-01", wrapped) == key
    with pytest.raises(sealing.Unreadable):
        sealing.unwrap(master, "day:b:2025-01-01", wrapped)
