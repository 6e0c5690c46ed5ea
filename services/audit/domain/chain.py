"""The tamper-evident audit chain: entry hashing, signed checkpoints and whole-chain verification. Pure.

Entry n stores `hash = sha256(canonical JSON of {seq, at, event, prev})` where `prev` is entry n-1's hash
(GENESIS_HASH for entry 1). Sequence numbers are assigned one at a time by the store (a transaction on a
head document), and `at` never goes backwards along the chain. Every interval the service signs the head it
wrote itself (seq, hash, and the head entry's time `at`) with its Ed25519 key: a checkpoint. Checkpoints
form their own chain: each signs the digest of the one before it (`prev`; GENESIS_HASH for the genesis
checkpoint, sequence 0, written when the chain is created), so a deleted checkpoint breaks the next one's
link. The latest checkpoint is also published outside the database (the transparency portal); a saved copy,
a witness, must still be in the chain.

`verify_chain` reads entries in sequence order and names the first one edited, deleted or reordered:
- edited: an entry's hash does not match its content, or the next entry does not link to it (the entry was
  changed and its hash recomputed), or it differs from a signed checkpoint (the chain after it recomputed);
- deleted: a gap in the sequence, entries missing after the last one although a checkpoint or the head
  names them, or missing leading entries that are younger than the retention period (the latest checkpoint
  before them is younger than it); leading entries older than the retention period expired normally;
- reordered: an entry stored at another sequence than it says, linking to an entry other than its
  predecessor, or recorded earlier than its predecessor;
- checkpoint: a checkpoint with a bad signature, one that does not link to the checkpoint before it (those
  between were deleted), a witness that is not in the chain, or entries left unsigned for longer than the
  service ever leaves them (the checkpoints after them were deleted, or the service has not run since).
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


def new_entry(seq: int, at: datetime, event: Mapping[str, Any], prev_hash: str, expire_at: datetime) -> dict[str, Any]:
    """The document stored for entry `seq` (`expire_at` drives the audit TTL and is not hashed)."""
    return {"_id": seq, "seq": seq, "at": at, "event": dict(event), "prev_hash": prev_hash,
            "hash": entry_hash(seq, at, event, prev_hash), "expire_at": expire_at}


def _checkpoint_payload(cp: Mapping[str, Any]) -> bytes:
    """What a checkpoint signs; checkpoints written before they were chained have no `prev`."""
    body = {"seq": cp["seq"], "hash": cp["hash"], "at": _iso(cp["at"])}
    if "prev" in cp:
        body["prev"] = cp["prev"]
    return canonical(body)


def checkpoint_digest(cp: Mapping[str, Any]) -> str:
    """The value the next checkpoint signs as its `prev`."""
    return hashlib.sha256(_checkpoint_payload(cp)).hexdigest()


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, hash_: str, at: datetime, prev: str) -> dict[str, Any]:
    """Checkpoint of entry `seq` (hash `hash_`, recorded `at`), following the checkpoint of digest `prev`."""
    cp: dict[str, Any] = {"_id": seq, "seq": seq, "hash": hash_, "at": truncate_ms(at), "prev": prev}
    cp["signature"] = key.sign(_checkpoint_payload(cp)).hex()
    return cp


def checkpoint_valid(key: Ed25519PublicKey, cp: Mapping[str, Any]) -> bool:
    try:
        key.verify(bytes.fromhex(cp["signature"]), _checkpoint_payload(cp))
    except (InvalidSignature, ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(cp.get("_id", cp["seq"]) == cp["seq"])


def checkpoint_link_problem(checkpoints: Sequence[Mapping[str, Any]]) -> Problem | None:
    """The first checkpoint (ascending `seq`) that does not sign its predecessor's digest. Checkpoints from
    before they were chained (no `prev`) are accepted only ahead of every chained one."""
    before: Mapping[str, Any] | None = None
    for cp in checkpoints:
        if "prev" not in cp:
            if before is not None and "prev" in before:
                return Problem(cp["seq"], "checkpoint", f"checkpoint {cp['seq']} is not chained to the one before")
        elif cp["prev"] != (checkpoint_digest(before) if before is not None else GENESIS_HASH):
            after = f"checkpoint {before['seq']}" if before is not None else "the genesis checkpoint"
            return Problem(cp["seq"], "checkpoint", f"checkpoint {cp['seq']} does not follow {after}: the "
                           "signed checkpoints between them were deleted")
        before = cp
    return None


def segment_problem(entries: Iterable[Mapping[str, Any]], start_seq: int, start_hash: str, end_seq: int,
                    end_hash: str, start_required: bool = True) -> str | None:
    """What is wrong with the stored entries from the checkpoint (`start_seq`, `start_hash`) to the head the
    service wrote itself (`end_seq`, `end_hash`), or None. `entries`: those in `start_seq..end_seq`, ascending.
    The checkpoint's own entry must be there and match unless `start_required` is off (it expired)."""
    prev, expected = start_hash, start_seq + 1
    start_seen = start_seq == 0
    for doc in entries:
        seq = doc["_id"]
        if doc.get("seq") != seq or entry_hash(seq, doc["at"], doc["event"], doc["prev_hash"]) != doc["hash"]:
            return f"entry {seq} does not match its hash"
        if seq == start_seq:
            if doc["hash"] != start_hash:
                return f"entry {seq} differs from its signed checkpoint"
            start_seen = True
            continue
        if seq != expected:
            return f"entries {expected}..{seq - 1} are missing"
        if doc["prev_hash"] != prev:
            return f"entry {seq} does not link to entry {seq - 1}"
        prev, expected = doc["hash"], seq + 1
    if not start_seen and start_required:
        return f"entry {start_seq}, named by a signed checkpoint, is missing"
    if expected <= end_seq:
        return f"entries {expected}..{end_seq} are missing"
    if prev != end_hash:
        return f"entry {end_seq} differs from the head this service wrote"
    return None


def verify_chain(entries: Iterable[Mapping[str, Any]], checkpoints: Sequence[Mapping[str, Any]],
                 head: Mapping[str, Any] | None, public_key: Ed25519PublicKey, retention: timedelta,
                 now: datetime, *, unsigned_grace: timedelta | None = None,
                 witness: Mapping[str, Any] | None = None) -> Report:
    """Check the whole chain. `entries` must come in ascending `_id` order; stops at the first problem.

    `unsigned_grace`: the longest the audit service leaves an entry without a signed checkpoint; an older
    unsigned entry is reported. `witness`: a checkpoint saved outside the database (published by the portal),
    which must be in the chain unchanged, with the chain extending it."""
    report = Report()
    cps = sorted(checkpoints, key=lambda c: c["seq"])
    for cp in cps:
        if not checkpoint_valid(public_key, cp):
            report.problem = Problem(cp["seq"], "checkpoint", f"checkpoint at sequence {cp['seq']} has an "
                                     "invalid signature (forged or altered)")
            return report
    report.checkpoints = len(cps)
    if (link := checkpoint_link_problem(cps)) is not None:
        report.problem = link
        return report
    if witness is not None and (gone := _witness_problem(witness, cps, public_key)) is not None:
        report.problem = gone
        return report
    last_cp_seq = cps[-1]["seq"] if cps else 0
    first_unsigned: Mapping[str, Any] | None = None
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
        signed = cp_by_seq.get(seq)
        if signed is not None:
            if signed["hash"] != doc["hash"]:
                return fail(last_good_cp + 1, "edited",
                            f"entry {seq} differs from its signed checkpoint: an entry in {last_good_cp + 1}..{seq}"
                            " was changed and the chain after it recomputed")
            last_good_cp = seq
        if seq == last_cp_seq + 1:
            first_unsigned = doc
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
    if unsigned_grace is not None and first_unsigned is not None and first_unsigned["at"] < now - unsigned_grace:
        return fail(first_unsigned["_id"], "checkpoint", f"entries {first_unsigned['_id']}..{last_seq} have no signed "
                    f"checkpoint although entry {first_unsigned['_id']} was recorded at "
                    f"{first_unsigned['at']:%Y-%m-%d %H:%M:%S}: the checkpoints after sequence {last_cp_seq} were "
                    "deleted, or the audit service has not run since")
    return report


def _witness_problem(witness: Mapping[str, Any], cps: Sequence[Mapping[str, Any]],
                     public_key: Ed25519PublicKey) -> Problem | None:
    seq = witness["seq"]
    if not checkpoint_valid(public_key, witness):
        return Problem(seq, "witness", f"the witnessed checkpoint at sequence {seq} does not carry a valid "
                       "signature: the saved copy is not a checkpoint of this trail")
    stored = next((cp for cp in cps if cp["seq"] == seq), None)
    if stored is None:
        return Problem(seq, "checkpoint", f"the witnessed checkpoint at sequence {seq} is missing from the trail: "
                       "signed checkpoints were deleted")
    if stored["hash"] != witness["hash"] or stored["signature"] != witness["signature"]:
        return Problem(seq, "checkpoint", f"the checkpoint at sequence {seq} differs from the witnessed one")
    return None
