from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain.chain import GENESIS_HASH, entry_hash, new_entry, sign_checkpoint, verify_chain

pytestmark = pytest.mark.unit

KEY = Ed25519PrivateKey.generate()
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
YEAR = timedelta(days=400)


def chain(n: int, start: datetime = T0) -> tuple[list[dict], list[dict], dict]:
    entries, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        at = start + timedelta(seconds=seq)
        entries.append(new_entry(seq, at, {"action": "search", "result_count": seq, "plates": [f"P{seq}"]}, prev,
                                 at + YEAR))
        prev = entries[-1]["hash"]
    checkpoints = [sign_checkpoint(KEY, 0, GENESIS_HASH, start), sign_checkpoint(KEY, 5, entries[4]["hash"],
                                                                                  entries[4]["at"])]
    head = {"seq": n, "hash": prev, "at": entries[-1]["at"]}
    return entries, checkpoints, head


def verify(entries, checkpoints, head, now=NOW):
    return verify_chain(entries, checkpoints, head, KEY.public_key(), YEAR, now)


def test_intact_chain_verifies() -> None:
    report = verify(*chain(8))
    assert report.ok and report.checked == 8 and report.checkpoints == 2


def test_hash_covers_every_field() -> None:
    e = chain(8)[0][0]
    assert entry_hash(1, e["at"], e["event"], GENESIS_HASH) == e["hash"]
    assert entry_hash(2, e["at"], e["event"], GENESIS_HASH) != e["hash"]
    assert entry_hash(1, e["at"] + timedelta(milliseconds=1), e["event"], GENESIS_HASH) != e["hash"]


def test_edited_entry_is_named() -> None:
    entries, cps, head = chain(8)
    entries[2]["event"]["result_count"] = 0
    report = verify(entries, cps, head)
    assert (report.problem.sequence, report.problem.kind) == (3, "edited")


def test_edited_entry_with_recomputed_hash_is_named() -> None:
    entries, cps, head = chain(8)
    e = entries[6]
    e["event"]["plates"] = ["OTHER"]
    e["hash"] = entry_hash(7, e["at"], e["event"], e["prev_hash"])
    report = verify(entries, cps, head)
    assert (report.problem.sequence, report.problem.kind) == (7, "edited")


def test_recomputed_chain_is_caught_by_the_signed_checkpoint() -> None:
    entries, cps, head = chain(8)
    prev = GENESIS_HASH
    entries[1]["event"]["result_count"] = 99
    for e in entries:  # the attacker rewrites every hash after the edit
        e["prev_hash"] = prev
        e["hash"] = prev = entry_hash(e["seq"], e["at"], e["event"], prev)
    head["hash"] = prev
    report = verify(entries, cps, head)
    assert report.problem.kind == "edited" and report.problem.sequence == 1  # somewhere in 1..5


def test_deleted_entries_are_named() -> None:
    entries, cps, head = chain(8)
    report = verify(entries[:3] + entries[4:], cps, head)
    assert (report.problem.sequence, report.problem.kind) == (4, "deleted")
    report = verify(entries[:7], cps, head)
    assert (report.problem.sequence, report.problem.kind) == (8, "deleted")
    report = verify(entries[:4], cps, {"seq": 4, "hash": entries[3]["hash"]})  # head rewound too
    assert (report.problem.sequence, report.problem.kind) == (5, "deleted")  # the checkpoint names entry 5


def test_reordered_entries_are_named() -> None:
    entries, cps, head = chain(8)
    a, b = entries[2], entries[3]
    a["_id"], b["_id"] = 4, 3
    report = verify([entries[0], entries[1], b, a, *entries[4:]], cps, head)
    assert (report.problem.sequence, report.problem.kind) == (3, "reordered")


def test_leading_entries_may_expire_but_not_be_deleted_early() -> None:
    entries, cps, head = chain(8)
    young = verify(entries[5:], cps, head)  # cut before retention ran out
    assert (young.problem.sequence, young.problem.kind) == (5, "deleted")
    later = verify(entries[5:], cps, head, now=T0 + YEAR + timedelta(days=1))
    assert later.ok and later.first_sequence == 6 and "expired" in later.notes[0]


def test_forged_checkpoint_is_refused() -> None:
    entries, cps, head = chain(8)
    cps[1]["hash"] = "f" * 64
    assert verify(entries, cps, head).problem.kind == "checkpoint"
