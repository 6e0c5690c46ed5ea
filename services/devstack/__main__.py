"""python -m services.devstack up — the whole Sightline stack on this machine, fed by the simulator.

Starts mongod (one-node replica set), Redis, Triton and the services on their standard ports, with data
under .local/ (kept between runs), registers demo cameras, and streams synthetic camera frames through
ingest, printing each read as it is stored, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from services.devstack.stack import SERVICES, LocalStack
from services.inference.launcher import REPO_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up"], help="start everything and feed frames until Ctrl-C")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".local")
    parser.add_argument("--no-simulator", action="store_true", help="start the servers only")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second per camera")
    args = parser.parse_args()

    stack = LocalStack(args.data_dir)
    if busy := stack.ports_in_use():
        print(f"ports already in use: {busy} — is another stack running?", file=sys.stderr)
        return 1
    steps = [("MongoDB", stack.start_mongo), ("Redis", stack.start_redis), ("Triton (loads models)",
             stack.start_triton)] + [(name, lambda n=name: stack.start_service(n)) for name in SERVICES]
    try:
        for label, start in steps:
            t0 = time.monotonic()
            print(f"starting {label} …", end=" ", flush=True)
            start()
            print(f"up in {time.monotonic() - t0:.1f}s", flush=True)
        print(f"ingest {stack.address('ingest')}  search {stack.address('search')}  logs {stack.logs}", flush=True)
        if args.no_simulator:
            while True:
                time.sleep(3600)
        return subprocess.call([sys.executable, "-m", "services.simulator", "--target", stack.address("ingest"),
                                "--cameras", str(args.cameras), "--fps", str(args.fps), "--print-reads"])
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping …", flush=True)
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
