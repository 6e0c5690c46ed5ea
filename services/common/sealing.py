"""Envelope encryption of stored reads and images (AES-256-GCM from `cryptography`).

Each agency's capture day has its own data key; a held record is re-sealed under its hold's key. Data keys
are stored wrapped (encrypted) by a master key. Destroying a data key makes every copy of what it sealed,
in a backup or a replica, unreadable: crypto-shredding.

A sealed value is `nonce (12 bytes) || ciphertext+tag`, authenticated with the document's id (and the field
name), so a ciphertext moved to another document does not open.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32
# Fields of a read document sealed together in `sealed`: the raw plate text and the OCR candidates.
# `plate_normalized` stays in clear: search's indexes need it.
SEALED_READ_FIELDS = ("plate", "candidates")


class Unreadable(Exception):
    """A sealed value whose key is gone (shredded) or that does not authenticate."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, aad: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad.encode())


def open_sealed(key: bytes, blob: bytes, aad: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode())
    except (InvalidTag, ValueError) as exc:
        raise Unreadable(f"sealed value for {aad!r} does not open") from exc


def wrap(master: bytes, key_id: str, key: bytes) -> bytes:
    return seal(master, key, f"data-key:{key_id}")


def unwrap(master: bytes, key_id: str, wrapped: bytes) -> bytes:
    return open_sealed(master, wrapped, f"data-key:{key_id}")


def _read_aad(doc_id: str) -> str:
    return f"reads/{doc_id}"


def _image_aad(doc_id: str) -> str:
    return f"images/{doc_id}"


def seal_read(doc: dict[str, Any], key_id: str, key: bytes) -> dict[str, Any]:
    """The read document with its plate text and candidates replaced by one sealed field."""
    clear = {name: doc.pop(name) for name in SEALED_READ_FIELDS if name in doc}
    doc["sealed"] = seal(key, json.dumps(clear, separators=(",", ":")).encode(), _read_aad(doc["_id"]))
    doc["key_id"] = key_id
    return doc


def open_read(doc: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The read document with its sealed fields back in clear."""
    clear = json.loads(open_sealed(key, bytes(doc.pop("sealed")), _read_aad(doc["_id"])))
    doc.update(clear)
    return doc


def seal_image(image_id: str, data: bytes, key: bytes) -> bytes:
    return seal(key, data, _image_aad(image_id))


def open_image(image_id: str, blob: bytes, key: bytes) -> bytes:
    return open_sealed(key, blob, _image_aad(image_id))


def reseal_read(doc: dict[str, Any], old: bytes, new: bytes) -> bytes:
    """The read's `sealed` value under the `new` key."""
    aad = _read_aad(doc["_id"])
    return seal(new, open_sealed(old, bytes(doc["sealed"]), aad), aad)


def reseal_image(doc: dict[str, Any], old: bytes, new: bytes) -> bytes:
    return seal_image(doc["_id"], open_image(doc["_id"], bytes(doc["data"]), old), new)


def _totp_aad(user_id: str) -> str:
    return f"totp:{user_id}"


def seal_totp(master: bytes, user_id: str, secret: str) -> bytes:
    """A user's TOTP secret sealed with the master key, bound to the user (identity stores only this)."""
    return seal(master, secret.encode(), _totp_aad(user_id))


def open_totp(master: bytes, user_id: str, blob: bytes) -> str:
    return open_sealed(master, bytes(blob), _totp_aad(user_id)).decode()
