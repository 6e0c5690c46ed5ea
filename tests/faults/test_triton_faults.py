"""Faults on the vision path: the camera-gateway simulator streams real JPEG frames (StreamFrames) through
ingest and Triton while Triton, ingest, MongoDB or Redis is killed (-9) and restarted, or Triton stalls
(SIGSTOP for 10 s).

Afterwards every frame acknowledged STORED or DUPLICATE has exactly the reads its acknowledgement named,
ingest reported NOT_SERVING while a dependency was down and SERVING again without being restarted, the
gateway sent again what was not acknowledged, and a stalled Triton gave backpressure (UNAVAILABLE, retried)
rather than memory growth in ingest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from fault_harness import (
    AGENCY,
    FaultRow,
    FrameKey,
    HealthWatch,
    kill_and_restart,
    mongo,
    start_fault_stack,
    stored_once,
    vm_rss_kib,
)

from services.common.tls import secure_channel
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack
from services.devstack.tokens import dev_token
from services.gateway.window import AckOutcome
from services.simulator.gateway import Gateway
from services.simulator.settings import SimulatorSettings
from services.simulator.sources import make_cameras

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

STALL_S = 10.0
# The longest ingest waits for Triton: a stalled Triton turns into UNAVAILABLE ("retry the frame") in 5 s.
# (Much less and a busy 2-core machine makes Triton time out on healthy frames, which it then still runs.)
TRITON_TIMEOUT_S = "5"
RSS_GROWTH_LIMIT_KIB = 64 * 1024


@pytest.fixture(scope="module")
def vision_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_fault_stack(tmp_path_factory.mktemp("faults-vision"), triton=True,
                              SIGHTLINE_TRITON_TIMEOUT_S=TRITON_TIMEOUT_S, SIGHTLINE_STREAM_CONCURRENCY="4")
    yield stack
    stack.stop()


Fault = Callable[[LocalStack, HealthWatch], Awaitable[tuple[float, str]]]


def kill(name: str) -> Fault:
    async def fault(stack: LocalStack, watch: HealthWatch) -> tuple[float, str]:
        return await kill_and_restart(stack, name, watch), ""

    return fault


async def stall_triton(stack: LocalStack, watch: HealthWatch) -> tuple[float, str]:
    """SIGSTOP the Triton server process for STALL_S, then SIGCONT; ingest RSS before, during, after."""
    ingest, triton = stack.procs["ingest"].popen.pid, stack.procs["triton"].popen.pid
    before = vm_rss_kib(ingest)
    stopped = time.monotonic()
    os.kill(triton, signal.SIGSTOP)
    peak = before
    try:
        while time.monotonic() - stopped < STALL_S:
            await asyncio.sleep(0.5)
            peak = max(peak, vm_rss_kib(ingest))
    finally:
        os.kill(triton, signal.SIGCONT)
    assert await watch.all_serving(30), f"not SERVING again: {sorted(watch.last_bad)}"
    recovery = time.monotonic() - stopped
    await asyncio.sleep(2)
    after = vm_rss_kib(ingest)
    assert max(peak, after) - before < RSS_GROWTH_LIMIT_KIB, (before, peak, after)
    return recovery, f"ingest RSS {before // 1024}/{peak // 1024}/{after // 1024} MiB before/peak/after"


async def run_frames_fault(stack: LocalStack, name: str, fault: Fault, tmp: Path) -> tuple[Gateway, set[str]]:
    settings = SimulatorSettings(target=stack.address("ingest"), agency_id=AGENCY, cameras=2, camera_prefix=name,
                                 fps=1.0, window=4, backoff_initial_s=0.2, backoff_max_s=2.0, run_id=name,
                                 admin_token=dev_token(Path(stack.env["SIGHTLINE_DATA_DIR"]), AGENCY,
                                                       ["agency_admin"]),
                                 credentials_file=tmp / "credentials.json", progress=False)
    acked: dict[FrameKey, list[str]] = {}

    def on_ack(ack, outgoing, outcome: AckOutcome) -> None:
        if outcome in (AckOutcome.STORED, AckOutcome.DUPLICATE):
            acked[ack.camera_id, ack.frame_id] = list(ack.read_ids)

    cameras = make_cameras(settings)
    stop = asyncio.Event()
    watch = HealthWatch(stack, ["ingest"])
    async with secure_channel(stack.address("ingest"),
                                         options=[("grpc.max_send_message_length", 16 << 20)]) as channel:
        gateway = Gateway(channel, settings, on_ack)
        await gateway.register(cameras)
        run = asyncio.create_task(gateway.run(cameras, name, stop))
        watching = asyncio.create_task(watch.run(stop))
        await wait_for("frames acknowledged before the fault", lambda: len(acked) >= 4, 60)
        recovery_s, note = await fault(stack, watch)
        acked_before = len(acked)
        await wait_for("frames acknowledged after it", lambda: len(acked) > acked_before + 4, 45)
        stop.set()
        await asyncio.wait_for(asyncio.gather(run, watching), 60)
        await watch.close()
    with mongo(stack) as client:
        exact, total, exact_n = stored_once(client, acked)
    s = gateway.stats
    row = FaultRow(name, total, exact_n, not_serving=watch.observed(),
                   recovery_s=round(recovery_s, 1),
                   retried=f"{s.resent} resent / {s.retried} retryable / {s.stream_failures} stream failures",
                   searches="-", note=note)
    row.save()
    assert exact, f"reads of {total - exact_n} acknowledged frames not stored exactly once"
    assert not s.rejected, s.rejected
    return gateway, watch.not_serving


@pytest.mark.parametrize("component", ["triton", "mongod", "redis"])
async def test_ingest_not_serving_while_a_dependency_is_down(vision_stack: LocalStack, component: str,
                                                             tmp_path: Path) -> None:
    gateway, not_serving = await run_frames_fault(vision_stack, f"{component}-frames", kill(component), tmp_path)
    assert "ingest" in not_serving
    if component == "triton":  # frames refused UNAVAILABLE meanwhile, sent again (MongoDB or Redis being
        # down only delays a frame's acknowledgement, or defers its publication to the outbox)
        assert gateway.stats.retried > 0


async def test_ingest_killed_mid_stream_resends_without_duplicates(vision_stack: LocalStack, tmp_path: Path) -> None:
    gateway, _ = await run_frames_fault(vision_stack, "ingest-frames", kill("ingest"), tmp_path)
    assert gateway.stats.stream_failures > 0  # and the frames in flight then, if any, were resent


async def test_stalled_triton_gives_backpressure_not_memory_growth(vision_stack: LocalStack, tmp_path: Path) -> None:
    gateway, not_serving = await run_frames_fault(vision_stack, "triton-stall", stall_triton, tmp_path)
    assert "ingest" in not_serving
    assert gateway.stats.retried > 0  # UNAVAILABLE "inference timed out; retry the frame", sent again
