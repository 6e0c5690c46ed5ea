"""``sightline retention verify``: run the verification job once (settings as for the retention service).

Shreds every capture day whose retention has ended, saves and prints its report. Exit status 0 when every
report is ok, 1 when one is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from services.common.data_keys import KeyStore, load_master_key
from services.common.storage import mongo_client, mongo_database, redis_client
from services.retention.adapters.store import RetentionStore
from services.retention.service_layer.verify import Verifier
from services.retention.settings import RetentionSettings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("retention", help="retention tools")
    commands = parser.add_subparsers(dest="retention_command", required=True)
    verify = commands.add_parser("verify", help="shred the days whose retention ended and report on them")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(handler=run_verify)
    return parser


async def verify(settings: RetentionSettings, now: datetime) -> list[dict[str, Any]]:
    mongo = mongo_client(settings)
    redis = redis_client(settings)
    try:
        store = RetentionStore(mongo_database(mongo, settings))
        keys = KeyStore(store.db, load_master_key(settings), settings.data_key_cache_s)
        return await Verifier(store, keys, redis, settings.cap_table(), settings.read_retention_days).run(now)
    finally:
        await redis.aclose()
        await mongo.close()


def run_verify(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    reports = asyncio.run(verify(RetentionSettings(), datetime.now(UTC)))
    seconds = time.perf_counter() - started
    ok = all(r["ok"] for r in reports)
    if args.json:
        print(json.dumps({"ok": ok, "days": len(reports), "seconds": round(seconds, 3), "reports": reports},
                         default=str))
    else:
        for r in reports:
            print(f"{r['agency_id']} {r['day']}: {'ok' if r['ok'] else 'NOT OK'}; held {r['reads_held']} reads, "
                  f"deleted {r['reads_deleted_by_job']} left over, key destroyed: {r['key_destroyed']}")
        print(f"{len(reports)} capture days shredded and verified in {seconds:.1f}s")
    return 0 if ok else 1
