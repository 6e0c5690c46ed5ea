"""The tamper-evident audit chain: entry hashing, signed checkpoints and whole-chain verification. Pure.

Entry n stores `hash = sha256(canonical JSON of {seq, at, event, prev})` where `prev` is entry n-1's hash
(GENESIS_HASH for entry 1). Sequence numbers are assigned one at a time by the store (a transaction on a
head document), and `at` never goes backwards along the chain. Every interval the service signs the head
(seq, hash, and the head entry's time `at`) with its Ed25519 key: a checkpoint. Sequence 0 is the genesis
checkpoint, written when the chain is created.

`verify_chain` reads entries in sequence order and names the first one edited, deleted or reordered:
- edited: an entry's hash does not match its content, or the next entry does not link to it (the entry was
  changed and its hash recomputed), or it differs from a signed checkpoint (the chain after it recomputed);
- deleted: a gap in the sequence, entries missing after the last one although a checkpoint or the head
  names them, or missing leading entries that are younger than the retention period (the latest checkpoint
  before them is younger than it); leading entries older than the retention period expired normally;
- reordered: an entry stored at another sequence than it says, linking to an entry other than its
  predecessor, or recorded earlier than its predecessor.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_HASH = "0" * 64
_RECENT = 256  # hashes remembered to tell a reordered link from an edited one


def truncate_ms(at: datetime) -> datetime:
    """MongoDB keeps milliseconds: hash exactly what is stored."""
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def entry_hash(seq: int, at: datetime, event: Mapping[str, Any], prev_hash: str) -> str:
    return hashlib.sha256(canonical({"seq": seq, "at": _iso(at), "event": event, "prev": prev_hash})).hexdigest()


def new_entry(seq: int, at: datetime, event: Mapping[str, Any], prev_hash: str, expire_at: datetime) -> dict:
    """The document stored for entry `seq` (`expire_at` drives the audit TTL and is not hashed)."""
    return {"_id": seq, "seq": seq, "at": at, "event": dict(event), "prev_hash": prev_hash,
            "hash": entry_hash(seq, at, event, prev_hash), "expire_at": expire_at}


def _checkpoint_payload(seq: int, hash_: str, at: datetime) -> bytes:
    return canonical({"seq": seq, "hash": hash_, "at": _iso(at)})


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, hash_: str, at: datetime) -> dict:
    at = truncate_ms(at)
    return {"_id": seq, "seq": seq, "hash": hash_, "at": at,
            "signature": key.sign(_checkpoint_payload(seq, hash_, at)).hex()}


def checkpoint_valid(key: Ed25519PublicKey, cp: Mapping[str, Any]) -> bool:
    try:
        key.verify(bytes.fromhex(cp["signature"]), _checkpoint_payload(cp["seq"], cp["hash"], cp["at"]))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return cp.get("_id", cp["seq"]) == cp["seq"]


@dataclass(frozen=True)
class Problem:
    sequence: int
    kind: str  # "edited" | "deleted" | "reordered" | "checkpoint"
    message: str


@dataclass
class Report:
    checked: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    checkpoints: int = 0
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(entries: Iterable[Mapping[str, Any]], checkpoints: Sequence[Mapping[str, Any]],
                 head: Mapping[str, Any] | None, public_key: Ed25519PublicKey, retention: timedelta,
                 now: datetime) -> Report:
    """Check the whole chain. `entries` must come in ascending `_id` order; stops at the first problem."""
    report = Report()
    cps = sorted(checkpoints, key=lambda c: c["seq"])
    for cp in cps:
        if not checkpoint_valid(public_key, cp):
            report.problem = Problem(cp["seq"], "checkpoint", f"checkpoint at sequence {cp['seq']} has an "
                                     "invalid signature (forged or altered)")
            return report
    report.checkpoints = len(cps)
    cp_by_seq = {cp["seq"]: cp for cp in cps}
    cp_seqs = [cp["seq"] for cp in cps]
    recent: OrderedDict[str, int] = OrderedDict()
    prev: Mapping[str, Any] | None = None
    last_good_cp = 0

    def fail(seq: int, kind: str, message: str) -> Report:
        report.problem = Problem(seq, kind, message)
        return report

    for doc in entries:
        seq = doc["_id"]
        if doc.get("seq") != seq:
            return fail(seq, "reordered", f"the entry stored at sequence {seq} says it is {doc.get('seq')}")
        if entry_hash(seq, doc["at"], doc["event"], doc["prev_hash"]) != doc["hash"]:
            return fail(seq, "edited", f"entry {seq} does not match its hash: its content was changed")
        if prev is None:
            report.first_sequence = seq
            if seq == 1:
                if doc["prev_hash"] != GENESIS_HASH:
                    return fail(1, "edited", "entry 1 does not start from the genesis hash")
            else:
                before = [s for s in cp_seqs if s < seq]
                if not before:
                    return fail(1, "deleted", f"entries 1..{seq - 1} are missing and no checkpoint accounts "
                                "for them")
                cp = cp_by_seq[before[-1]]
                if cp["at"] > now - retention:
                    gone = max(cp["seq"], 1)
                    return fail(gone, "deleted", f"entries {gone}..{seq - 1} are missing but were recorded after "
                                f"{cp['at']:%Y-%m-%d %H:%M}, within the retention period")
                if cp["seq"] == seq - 1 and doc["prev_hash"] != cp["hash"]:
                    return fail(seq, "edited", f"entry {seq} does not link to checkpoint {cp['seq']}")
                report.notes.append(f"entries 1..{seq - 1} expired under the retention period")
        else:
            if seq != prev["_id"] + 1:
                return fail(prev["_id"] + 1, "deleted", f"entries {prev['_id'] + 1}..{seq - 1} are missing")
            if doc["prev_hash"] != prev["hash"]:
                if doc["prev_hash"] in recent:
                    return fail(seq, "reordered", f"entry {seq} follows entry {recent[doc['prev_hash']]} in the "
                                f"chain but is stored after entry {prev['_id']}")
                return fail(prev["_id"], "edited", f"entry {prev['_id']} was changed and its hash recomputed "
                            f"(entry {seq} does not link to it)")
            if doc["at"] < prev["at"]:
                return fail(seq, "reordered", f"entry {seq} was recorded before entry {prev['_id']}")
        cp = cp_by_seq.get(seq)
        if cp is not None:
            if cp["hash"] != doc["hash"]:
                return fail(last_good_cp + 1, "edited",
                            f"entry {seq} differs from its signed checkpoint: an entry in {last_good_cp + 1}..{seq}"
                            " was changed and the chain after it recomputed")
            last_good_cp = seq
        recent[doc["hash"]] = seq
        if len(recent) > _RECENT:
            recent.popitem(last=False)
        prev = doc
        report.checked += 1

    last_seq = prev["_id"] if prev is not None else 0
    report.last_sequence = prev["_id"] if prev is not None else None
    if cps and cps[-1]["seq"] > last_seq:
        return fail(last_seq + 1, "deleted", f"entries {last_seq + 1}..{cps[-1]['seq']} are missing although a "
                    "signed checkpoint names them")
    if head is not None and head.get("seq", 0) > last_seq:
        return fail(last_seq + 1, "deleted", f"entries {last_seq + 1}..{head['seq']} are missing at the end")
    if head is not None and prev is not None and head.get("seq") == last_seq and head.get("hash") != prev["hash"]:
        return fail(last_seq, "edited", f"entry {last_seq} differs from the chain head")
    return report
