"""Command line of the gateway simulator: `python -m services.simulator` or `sightline simulate`.

Every flag defaults to its `SIGHTLINE_SIM_*` setting (see settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from services.common.logging import setup_logging
from services.common.tls import secure_channel
from services.gateway.window import AckOutcome
from sightline.ingest.v1 import ingest_pb2

from .gateway import Gateway
from .settings import SimulatorSettings, gateway_tls
from .sources import OutgoingFrame, jpeg_files, make_cameras

HELP = "stream frames from simulated camera gateways to the ingest service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    # Defaults stay None so that only flags given on the command line override the settings.
    add("--target", help="ingest service host:port (default localhost:50051)")
    add("--agency-id", help="agency the cameras are registered to (default demo-pd)")
    add("--cameras", type=int, help="number of simulated cameras (default 1)")
    add("--camera-prefix", help="camera ids are <prefix>-001, <prefix>-002, ...")
    add("--fps", type=float, help="frames per second per camera; 0 = as fast as acknowledgements allow")
    add("--max-rate", type=float, help="frames per second over all cameras at most; 0 = no limit")
    add("--frames", type=int, help="frames per camera (default: until --duration or Ctrl-C)")
    add("--duration", dest="duration_s", type=float, help="seconds of sending")
    add("--folder", type=Path, help="send the JPEGs of this folder instead of synthetic scenes")
    add("--seed", type=int, help="seed of the synthetic scenes and camera positions")
    add("--difficulty", type=float, help="synthetic scene difficulty, 0 (easy) to 1")
    add("--pass-frames", type=int, help="frames per synthetic vehicle pass")
    add("--run-id", help="frame id prefix; reuse it (same seed) to resend the same frames")
    add("--window", type=int, help="unacknowledged frames at most (default 32)")
    add("--credentials-file", type=Path, help="where the cameras' gateway secrets are kept between runs")
    add("--no-location", dest="send_location", action="store_const", const=False, help="send no GPS/heading")
    add("--print-reads", action="store_const", const=True, help="print the reads of every acknowledgement")
    add("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    add("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("simulate", help=HELP, description=__doc__)
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    overrides = {
        key: value for key, value in vars(args).items() if value is not None and key in SimulatorSettings.model_fields
    }
    return SimulatorSettings(**overrides)


def _print_reads(ack: ingest_pb2.FrameAck, outgoing: OutgoingFrame | None, outcome: AckOutcome) -> None:
    truth = outgoing.truth if outgoing is not None else None
    head = f"{ack.camera_id} {ack.frame_id} {outcome.value}"
    if truth is not None:
        head += f" (truth {truth.plate_text or '-'} {truth.vehicle_colour})"
    if ack.status == ingest_pb2.FRAME_STATUS_REJECTED:
        tqdm.write(f"{head}: {ack.error_message}")
        return
    if not ack.reads:
        tqdm.write(f"{head}: no reads")
    for read in ack.reads:
        region = read.region.state or read.region.country or "-"
        tqdm.write(
            f"{head}: {read.plate_normalized or '(no plate)'} conf {read.confidence:.2f} region {region} "
            f"{read.vehicle.colour or '-'} box {read.plate_box.x},{read.plate_box.y},"
            f"{read.plate_box.width}x{read.plate_box.height}"
        )


async def simulate(settings: SimulatorSettings) -> int:
    run_id = settings.run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    cameras = make_cameras(settings)
    total = settings.frames * len(cameras) if settings.frames else None
    gateway: Gateway  # bound below, once the channel is open
    bar = tqdm(total=total, unit="frame", desc="acknowledged", disable=not settings.progress, file=sys.stderr)

    def on_ack(ack: ingest_pb2.FrameAck, outgoing: OutgoingFrame | None, outcome: AckOutcome) -> None:
        if outcome in (AckOutcome.STORED, AckOutcome.DUPLICATE, AckOutcome.REJECTED):
            bar.update(1)
            s = gateway.stats
            bar.set_postfix(
                stored=s.stored,
                dup=s.duplicate,
                rejected=sum(s.rejected.values()),
                resent=s.resent,
                reads=s.reads,
                refresh=False,
            )
        if settings.print_reads and outcome is not AckOutcome.UNEXPECTED:
            _print_reads(ack, outgoing, outcome)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    # First Ctrl-C: stop capturing and deliver what is unacknowledged; the second one aborts.
    loop.add_signal_handler(signal.SIGINT, lambda: stop.set() if not stop.is_set() else main_task.cancel())
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    options = [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
    ]
    try:
        async with secure_channel(settings.target, gateway_tls(), options) as channel:
            gateway = Gateway(channel, settings, on_ack)
            await gateway.register(cameras)
            stats = await gateway.run(cameras, run_id, stop)
    finally:
        bar.close()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    print(f"run {run_id}, {len(cameras)} camera(s): {stats.summary()}")
    return 1 if sum(stats.rejected.values()) else 0


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    if not settings.admin_token:
        print("registering cameras needs an agency admin's access token: set SIGHTLINE_SIM_ADMIN_TOKEN",
              file=sys.stderr)
        return 2
    if settings.folder is not None:
        try:
            jpeg_files(settings.folder)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
    setup_logging("simulator", settings.log_level)
    # Log lines go through tqdm.write, above the progress bar, instead of printing over it.
    with contextlib.suppress(asyncio.CancelledError), logging_redirect_tqdm():
        return asyncio.run(simulate(settings))
    return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.simulator", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
