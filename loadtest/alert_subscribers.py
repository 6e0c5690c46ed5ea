"""Alert fan-out under load: N open SubscribeAlerts streams while gateways ingest reads, some of them plates on
a hot list. Reports alerts delivered per subscriber (each should see every alert), and the delay from a read
being stored to its alert reaching a subscriber (HDR histogram), next to the ingest rate achieved.

Starts its own stack (mongod, Redis, audit, identity, ingest, tracker, hotlist; no Triton: reads are
metadata-only); the hotlist matcher works on the tracker's vehicle passes.
The hot list holds `options.hot_plates` plates of the traffic's vehicle pool, so about hot_plates/vehicle_pool
of the reads raise an alert.

    .venv/bin/python loadtest/alert_subscribers.py loadtest/scenarios/alert_subscribers.yaml --out /tmp/alerts.json
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from ingest_load import GRPC_OPTIONS, reads_request, register_all
from local import AGENCY, login_new_user, start_stack
from runner import OpenLoop, Scenario, histogram, quantiles, write_summary
from synthetic import Traffic, cameras

from services.common.auth import auth_metadata
from services.common.tls import secure_channel
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.ingest.v1 import ingest_pb2_grpc


async def make_list(channel: grpc.aio.Channel, plates: list[str], token: str) -> str:
    """A list of the load agency, made by `token`'s holder (an agency admin: hotlists:manage)."""
    stub, md = hotlist_pb2_grpc.HotlistServiceStub(channel), auth_metadata(token)
    list_id = f"load-{uuid.uuid4().hex[:8]}"
    await stub.UpsertList(
        hotlist_pb2.UpsertListRequest(
            list=hotlist_pb2.HotList(
                list_id=list_id, name="load test", owner=AGENCY, source=hotlist_pb2.LIST_SOURCE_AGENCY
            )
        ),
        metadata=md,
        timeout=30,
    )
    for plate in plates:
        await stub.AddEntry(
            hotlist_pb2.AddEntryRequest(
                entry=hotlist_pb2.HotlistEntry(list_id=list_id, plate=plate, code="V", reason="stolen vehicle")
            ),
            metadata=md,
            timeout=30,
        )
    return list_id


async def run(scenario: Scenario, stack) -> dict[str, Any]:
    opts = scenario.options
    pool = int(opts.get("vehicle_pool", 20_000))
    traffic = Traffic(seed=1, pool=pool)  # the same pool reads_request draws from
    hot = sorted({v[0] for v in traffic.vehicles[: int(opts.get("hot_plates", 200))]})
    uri = stack.env["SIGHTLINE_MONGO_URI"]
    admin = await login_new_user(uri, stack.address("identity"), ["agency_admin"])
    officer = auth_metadata(await login_new_user(uri, stack.address("identity"), ["officer"]))
    delay = histogram()
    received: list[int] = []
    async with (
        secure_channel(stack.address("hotlist")) as hch,
        secure_channel(stack.address("ingest"), options=GRPC_OPTIONS) as ich,
    ):
        list_id = await make_list(hch, hot, admin)
        alerts = hotlist_pb2_grpc.AlertServiceStub(hch)
        n = int(opts.get("subscribers", 50))
        calls = [
            alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]), metadata=officer)
            for _ in range(n)
        ]
        received = [0] * n

        async def listen(i: int, call) -> None:
            try:
                async for alert in call:
                    received[i] += 1
                    stored = alert.read.stored_at.ToNanoseconds() / 1e9
                    delay.record_value(max(1, int((time.time() - stored) * 1e6)))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    raise

        listeners = [asyncio.create_task(listen(i, c)) for i, c in enumerate(calls)]
        await asyncio.sleep(2)  # subscriptions and the matcher's index in place
        cams = cameras(int(opts.get("cameras", 100)), "alert-load-cam")
        creds = await register_all(ich, cams, admin)
        ingest = OpenLoop(
            "ingest",
            scenario,
            reads_request(ingest_pb2_grpc.IngestServiceStub(ich), cams, creds, opts | {"vehicle_pool": pool}, "alerts"),
            processes={name: proc.popen.pid for name, proc in stack.procs.items()},
        )
        await ingest.run()
        await asyncio.sleep(float(opts.get("settle_s", 5)))
        for call in calls:
            call.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    return {
        "subscribers": n,
        "hot_plates": len(hot),
        "list_id": list_id,
        "alerts_per_subscriber": {"min": min(received), "max": max(received)},
        "alert_delay_stored_to_subscriber": quantiles(delay),
        "ingest": ingest.summary(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--rate-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scenario = Scenario.load(args.scenario).scaled(args.rate_scale, args.time_scale)
    stack = start_stack(
        ["audit", "identity", "ingest", "tracker", "hotlist"],
        SIGHTLINE_MATCHER__START_ID="0",
        SIGHTLINE_TRACKER__START_ID="0",
    )
    try:
        summary = asyncio.run(run(scenario, stack))
    finally:
        stack.stop()
    write_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
