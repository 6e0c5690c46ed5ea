from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain.chain import (
    GENESIS_HASH,
    checkpoint_digest,
    entry_hash,
    new_entry,
    segment_problem,
    sign_checkpoint,
    verify_chain,
)

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
    genesis = sign_checkpoint(KEY, 0, GENESIS_HASH, start, GENESIS_HASH)
    checkpoints = [genesis, sign_checkpoint(KEY, 5, entries[4]["hash"], entries[4]["at"], checkpoint_digest(genesis))]
    head = {"seq": n, "hash": prev, "at": entries[-1]["at"]}
    return entries, checkpoints, head


def verify(entries, checkpoints, head, now=NOW, **kw):
    return verify_chain(entries, checkpoints, head, KEY.public_key(), YEAR, now, **kw)


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


def test_a_deleted_checkpoint_breaks_the_next_ones_link() -> None:
    entries, cps, head = chain(8)
    cps.append(sign_checkpoint(KEY, 8, entries[7]["hash"], entries[7]["at"], checkpoint_digest(cps[1])))
    assert verify(entries, cps, head).ok
    report = verify(entries, [cps[0], cps[2]], head)
    assert (report.problem.sequence, report.problem.kind) == (8, "checkpoint")
    assert "deleted" in report.problem.message


def test_checkpoints_from_before_the_checkpoint_chain_are_accepted_only_first() -> None:
    entries, cps, head = chain(8)
    legacy = {k: v for k, v in cps[0].items() if k != "prev"}
    legacy["signature"] = KEY.sign(b'{"at":"%s","hash":"%s","seq":0}' % (
        legacy["at"].isoformat(timespec="milliseconds").encode(), GENESIS_HASH.encode())).hex()
    linked = sign_checkpoint(KEY, 5, entries[4]["hash"], entries[4]["at"], checkpoint_digest(legacy))
    assert verify(entries, [legacy, linked], head).ok


def test_a_witness_must_still_be_in_the_chain() -> None:
    entries, cps, head = chain(8)
    witness = dict(cps[1])
    assert verify(entries, cps, head, witness=witness).ok
    report = verify(entries, cps[:1], head, witness=witness)  # checkpoint 5 deleted
    assert (report.problem.sequence, report.problem.kind) == (5, "checkpoint") and "missing" in report.problem.message
    forged = {**witness, "hash": "e" * 64}
    assert verify(entries, cps, head, witness=forged).problem.kind == "witness"


def test_a_witness_catches_the_rewrite_that_deleted_checkpoints() -> None:
    """The attack of issue #14: checkpoints after the first deleted, an entry rewritten, hashes recomputed."""
    entries, cps, head = chain(8)
    witness = dict(cps[1])
    prev = GENESIS_HASH
    entries[1]["event"]["action"] = "login"
    for e in entries:
        e["prev_hash"] = prev
        e["hash"] = prev = entry_hash(e["seq"], e["at"], e["event"], prev)
    head["hash"] = prev
    assert verify(entries, cps[:1], head).ok  # without anything outside the database, it looks intact ...
    assert verify(entries, cps[:1], head, witness=witness).problem.kind == "checkpoint"  # ... the witness is not
    stale = verify(entries, cps[:1], head, unsigned_grace=timedelta(minutes=3))  # nor the unsigned entries
    assert (stale.problem.sequence, stale.problem.kind) == (1, "checkpoint")


def test_recent_unsigned_entries_are_accepted() -> None:
    entries, cps, head = chain(8)
    assert verify(entries, cps, head, now=entries[5]["at"] + timedelta(seconds=30),
                  unsigned_grace=timedelta(minutes=3)).ok
    late = verify(entries, cps, head, unsigned_grace=timedelta(minutes=3))
    assert (late.problem.sequence, late.problem.kind) == (6, "checkpoint")


def test_segment_since_the_last_checkpoint() -> None:
    entries, _, head = chain(8)
    start = entries[4]
    assert segment_problem(entries[4:], 5, start["hash"], 8, head["hash"]) is None
    assert segment_problem(entries, 0, GENESIS_HASH, 8, head["hash"]) is None
    assert "missing" in segment_problem(entries[4:6], 5, start["hash"], 8, head["hash"])  # tail cut off
    assert "missing" in segment_problem(entries[5:], 5, start["hash"], 8, head["hash"])
    assert segment_problem(entries[5:], 5, start["hash"], 8, head["hash"], start_required=False) is None
    assert "differs from the head" in segment_problem(entries[4:], 5, start["hash"], 8, "a" * 64)
    rewritten = [dict(e, event=dict(e["event"])) for e in entries[4:]]
    rewritten[2]["event"]["action"] = "login"
    prev = start["hash"]
    for e in rewritten[1:]:
        e["prev_hash"] = prev
        e["hash"] = prev = entry_hash(e["seq"], e["at"], e["event"], prev)
    assert "differs from the head" in segment_problem(rewritten, 5, start["hash"], 8, head["hash"])
