"""kill -9 and restart, one at a time, MongoDB, Redis and each service while a metadata gateway streams read
batches (StreamReads) with hot plates planted among them and an investigator searches.

Afterwards: every batch acknowledged to the gateway has its reads stored exactly once, every planted hot
plate raised exactly one alert, the services that depend on a killed server reported NOT_SERVING and came
back to SERVING without being restarted, and the gateway resent what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fault_harness import (
    FaultRow,
    HealthWatch,
    ReadGateway,
    Searcher,
    alerts_settled,
    hot_list,
    kill_and_restart,
    mongo,
    register_cameras,
    start_fault_stack,
    stored_once,
    token,
)

from services.common.tls import secure_channel
from services.devstack.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.faults]



@dataclass(frozen=True)
class Fault:
    component: str  # a LocalStack process name
    watch: tuple[str, ...]  # services whose health is watched
    not_serving: tuple[str, ...] = ()  # ... of which these must report NOT_SERVING while it is down
    stream_breaks: bool = False  # the gateway's stream must have broken (and been reopened)


FAULTS = [
    Fault("redis", ("tracker", "hotlist", "retention"), ("tracker", "hotlist", "retention")),
    Fault("mongod", ("audit", "identity", "tracker", "hotlist", "search", "retention"),
          ("audit", "identity", "tracker", "hotlist", "search", "retention")),
    Fault("hotlist", ("hotlist",)),
    Fault("tracker", ("tracker",)),
    Fault("ingest", ("tracker",), stream_breaks=True),
    Fault("audit", ("audit", "search", "identity", "retention"), ("search", "identity", "retention")),
    Fault("search", ("search",)),
    Fault("identity", ("identity",)),
    Fault("retention", ("retention",)),
]


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_fault_stack(tmp_path_factory.mktemp("faults"), triton=False)
    yield stack
    stack.stop()


async def run_fault(stack: LocalStack, fault: Fault) -> None:
    tag = uuid.uuid4().hex[:3].upper()
    run_id = f"{fault.component}-{tag}"
    cameras, credentials = await register_cameras(stack, run_id, 4)
    plates = [f"HOT{tag}{i:02d}" for i in range(12)]
    list_id = await hot_list(stack, plates)
    stop = asyncio.Event()
    watch = HealthWatch(stack, list(fault.watch))
    async with secure_channel(stack.address("ingest")) as ingest, \
            secure_channel(stack.address("search")) as search:
        gateway = ReadGateway(ingest, credentials, cameras, run_id, rate=20, frames_per_batch=10,
                              hot_plates=plates, plant_every=150)
        searcher = Searcher(search, token(stack, "investigator"), plates[0])
        tasks = [asyncio.create_task(gateway.run(stop)), asyncio.create_task(searcher.run(stop)),
                 asyncio.create_task(watch.run(stop))]
        await asyncio.sleep(3)
        recovery_s = await kill_and_restart(stack, fault.component, watch)
        searches_before = searcher.ok
        acked_before = len(gateway.acked)
        await asyncio.sleep(3)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await watch.close()
    assert len(gateway.acked) > acked_before, "no batch acknowledged after the restart"
    with mongo(stack) as client:
        exact, acked, exact_n = stored_once(client, gateway.acked)
        alerts = await alerts_settled(client, list_id, len(gateway.planted))
    distinct = {a["entry"]["entry_id"] for a in alerts}
    c = gateway.counts
    row = FaultRow(fault.component, acked, exact_n, len(gateway.planted), len(alerts), len(alerts) - len(distinct),
                   not_serving=watch.observed(), recovery_s=round(recovery_s, 1),
                   retried=f"{c.batches_resent} resent / {c.stream_failures} stream failures",
                   searches=f"{searcher.ok} ok / {sum(searcher.failed.values())} failed")
    row.save()
    assert exact, f"reads of {acked - exact_n} acknowledged frames not stored exactly once"
    assert len(alerts) == len(distinct) == len(gateway.planted) > 0, row
    assert set(fault.not_serving) <= watch.not_serving, f"NOT_SERVING seen only from {watch.not_serving}"
    assert not fault.stream_breaks or c.stream_failures > 0, c
    assert not c.frames_rejected, c.frames_rejected
    assert searcher.ok > searches_before, "no search answered after the restart"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.component for f in FAULTS])
async def test_kill_restart_loses_and_duplicates_nothing(fault_stack: LocalStack, fault: Fault) -> None:
    await run_fault(fault_stack, fault)
