"""``sightline hotlist import FILE --list LIST``: load an NCIC-style hot file, replacing the list's version.

The file is streamed to HotlistService.ImportList in chunks with a progress bar; the service swaps the
list's active version atomically once the whole file is parsed, and answers with the accepted count and
the rejected lines with their reasons, printed here (partial plates beyond the service's limits among
them). The call carries SIGHTLINE_TOKEN: an access token of a user with hotlists:manage in the agency that
owns the list (the import is audited before it takes effect).

Past reads are searched for the new entries only with `--purpose` and `--case-number`: a back-search is a
search of reads (HotlistService.BackSearch), refused without them and audited like any search.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from tqdm import tqdm

from services.common.auth import auth_metadata
from services.common.purpose import CRIMINAL, NON_CRIMINAL
from services.common.tls import secure_channel
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.search.v1 import search_pb2

CHUNK_BYTES = 256 * 1024
FORMATS = {"auto": hotlist_pb2.FILE_FORMAT_UNSPECIFIED, "csv": hotlist_pb2.FILE_FORMAT_CSV,
           "fixed": hotlist_pb2.FILE_FORMAT_FIXED_WIDTH}
PURPOSES = {search_pb2.Purpose.Name(p).removeprefix("PURPOSE_").lower(): p for p in CRIMINAL | NON_CRIMINAL}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("hotlist", help="hotlist tools")
    commands = parser.add_subparsers(dest="hotlist_command", required=True)
    imp = commands.add_parser("import", help="replace a hotlist with the entries of an NCIC-style hot file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--list", dest="list_id", required=True, help="id of an existing list (UpsertList)")
    imp.add_argument("--format", choices=sorted(FORMATS), default="auto")
    imp.add_argument("--address", default=os.environ.get("SIGHTLINE_HOTLIST_ADDRESS", "127.0.0.1:50053"))
    imp.add_argument("--show-rejected", type=int, default=20, help="rejected lines to print (default 20)")
    imp.add_argument("--purpose", choices=sorted(PURPOSES),
                     help="search past reads for the imported entries under this purpose (needs --case-number)")
    imp.add_argument("--case-number", default="", help="case or incident number of that search")
    imp.set_defaults(handler=run_import)
    return parser


async def _chunks(path: Path, list_id: str, fmt: int, bar: tqdm) -> AsyncIterator[hotlist_pb2.ImportListChunk]:
    with path.open("rb") as f:
        first = True
        while data := f.read(CHUNK_BYTES):
            chunk = hotlist_pb2.ImportListChunk(data=data)
            if first:
                chunk.list_id, chunk.format, first = list_id, fmt, False
            yield chunk
            bar.update(len(data))


async def _import(args: argparse.Namespace) -> int:
    token = os.environ.get("SIGHTLINE_TOKEN", "")
    metadata = auth_metadata(token) if token else None
    async with secure_channel(args.address) as channel:
        stub = hotlist_pb2_grpc.HotlistServiceStub(channel)
        with tqdm(total=args.file.stat().st_size, unit="B", unit_scale=True, desc=f"import {args.list_id}") as bar:
            try:
                reply = await stub.ImportList(_chunks(args.file, args.list_id, FORMATS[args.format], bar),
                                              metadata=metadata, timeout=600)
            except grpc.aio.AioRpcError as exc:
                print(f"import refused: {exc.code().name}: {exc.details()}")
                return 1
        print(f"list {reply.list.list_id} now at version {reply.list.version}: {reply.accepted} entries accepted, "
              f"{reply.rejected_count} lines rejected")
        for line in reply.rejected[: args.show_rejected]:
            print(f"  line {line.line_number}: {line.reason}")
        status = 0 if reply.accepted or not reply.rejected_count else 1
        if args.purpose is None or not reply.accepted:
            return status
        try:
            found = await stub.BackSearch(hotlist_pb2.BackSearchRequest(
                list_id=args.list_id, purpose=PURPOSES[args.purpose], case_number=args.case_number),
                metadata=metadata, timeout=600)
        except grpc.aio.AioRpcError as exc:
            print(f"back-search refused: {exc.code().name}: {exc.details()}")
            return 1
        print(f"past reads searched: {found.historical_alerts} historical alerts raised"
              + (" (stopped at the service's limit)" if found.truncated else ""))
        return status


def run_import(args: argparse.Namespace) -> int:
    if args.purpose is not None and not args.case_number.strip():
        print("a back-search (--purpose) needs --case-number")
        return 2
    return asyncio.run(_import(args))
