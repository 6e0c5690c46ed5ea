"""The ``sightline`` command line."""

from __future__ import annotations

import argparse

from services.cli import admin, audit, hotlist, identity, ops, recognize, storage
from services.gateway import command as gateway
from services.retention import command as retention
from services.simulator import command as simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sightline", description="Sightline ALPR platform tools")
    subparsers = parser.add_subparsers(dest="command", required=True)
    recognize.add_parser(subparsers)
    audit.add_parser(subparsers)
    ops.add_parser(subparsers)
    hotlist.add_parser(subparsers)
    identity.add_parser(subparsers)
    admin.add_parsers(subparsers)
    simulate.add_parser(subparsers)
    gateway.add_parser(subparsers)
    retention.add_parser(subparsers)
    storage.add_parser(subparsers)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
