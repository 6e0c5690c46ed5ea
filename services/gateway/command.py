"""`sightline gateway --config SITE.yaml`: the camera gateway of one site (see services/gateway/config.py).

`--check` validates the configuration (secret files included) and exits. Secrets are never flags: each is read
from the file the configuration names.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from services.common.logging import setup_logging

from .config import SiteConfig, load_config

HELP = "run the camera gateway of one site: cameras in, picked stills spooled and sent to ingest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the site's YAML configuration")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("gateway", help=HELP, description=__doc__)
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


async def serve(config: SiteConfig) -> None:
    from .gateway import Gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Gateway(config).run(stop)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"invalid gateway configuration {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: site {config.site_id}, {len(config.cameras)} camera(s): valid")
        return 0
    setup_logging("gateway", config.log_level)
    asyncio.run(serve(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
