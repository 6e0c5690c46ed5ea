"""``sightline audit verify``: check the whole audit chain and name the first edited, deleted or reordered entry.

Reads the audit database directly (settings as for the audit service: SIGHTLINE_MONGO_URI,
SIGHTLINE_AUDIT_MONGO_DB, SIGHTLINE_AUDIT_PUBLIC_KEY_FILE, SIGHTLINE_CHECKPOINT_INTERVAL_S), so it works while
the service is down. `--witness FILE` also checks a checkpoint saved outside the database (the JSON the
transparency portal publishes at /api/audit/checkpoint.json): it must still be in the chain, unchanged, and
the chain must extend it. Exit status 0 when the chain is intact, 1 when it is not.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.read_concern import ReadConcern

from services.audit.adapters.store import CHAIN, CHECKPOINTS, ENTRIES, HEAD
from services.audit.domain.chain import Report, verify_chain
from services.audit.settings import AUDIT_KEY, AuditSettings
from services.common.auth import load_public_key


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("audit", help="audit trail tools")
    commands = parser.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser("verify", help="verify the hash chain and the signed checkpoints")
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.add_argument("--witness", type=Path, metavar="FILE",
                        help="a signed checkpoint saved earlier (the portal's /api/audit/checkpoint.json)")
    verify.set_defaults(handler=run_verify)
    return parser


def read_witness(path: Path) -> dict[str, Any]:
    """A published checkpoint: {"seq", "hash", "at" (ISO 8601), "prev", "signature"}."""
    doc = json.loads(path.read_text())
    witness = {"seq": int(doc["seq"]), "hash": str(doc["hash"]), "at": datetime.fromisoformat(doc["at"]),
               "signature": str(doc["signature"])}
    if "prev" in doc:
        witness["prev"] = str(doc["prev"])
    return witness


def verify(settings: AuditSettings, witness: dict[str, Any] | None = None) -> Report:
    """Stream the entries in sequence order (constant memory) through `verify_chain`."""
    key = load_public_key(settings.audit_public_key_file, settings, AUDIT_KEY)
    retention = timedelta(days=settings.audit_retention_days)
    # The service signs its head every interval (and before it stops); allow two rounds and a minute.
    unsigned_grace = timedelta(seconds=2 * settings.checkpoint_interval_s + 60)
    with MongoClient(settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=settings.mongo_timeout_ms) as client:
        db = client.get_database(settings.audit_mongo_db, read_concern=ReadConcern("majority"))
        checkpoints = list(db[CHECKPOINTS].find({}).sort("_id", ASCENDING))
        head = db[CHAIN].find_one({"_id": HEAD})
        entries = db[ENTRIES].find({}, batch_size=10_000).sort("_id", ASCENDING)
        return verify_chain(entries, checkpoints, head, key, retention, datetime.now(UTC),
                            unsigned_grace=unsigned_grace, witness=witness)


def run_verify(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        witness = read_witness(args.witness) if args.witness else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read the witness {args.witness}: {exc}")
        return 2
    report = verify(AuditSettings(), witness)
    seconds = time.perf_counter() - started
    summary = {"ok": report.ok, "entries": report.checked, "first": report.first_sequence,
               "last": report.last_sequence, "checkpoints": report.checkpoints, "seconds": round(seconds, 3),
               "notes": report.notes}
    if report.problem is not None:
        summary["problem"] = {"sequence": report.problem.sequence, "kind": report.problem.kind,
                              "message": report.problem.message}
    if args.json:
        print(json.dumps(summary))
    elif report.problem is None:
        print(f"audit chain intact: {report.checked} entries ({report.first_sequence}..{report.last_sequence}), "
              f"{report.checkpoints} signed checkpoints, {seconds:.1f}s")
        if witness is not None:
            print(f"witnessed checkpoint {witness['seq']} is in the chain")
        for note in report.notes:
            print(f"note: {note}")
    else:
        print(f"audit chain BROKEN at entry {report.problem.sequence} ({report.problem.kind}): "
              f"{report.problem.message}")
    return 0 if report.ok else 1
