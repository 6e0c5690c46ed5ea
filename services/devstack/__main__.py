"""python -m services.devstack up — the whole Sightline stack on this machine, fed by the simulator.

Starts mongod (one-node replica set), Redis, Triton, the services, the transparency portal (:8080) and the staff
console (:8081) on their standard ports, with data under .local/ (kept between runs), registers demo cameras,
and streams synthetic camera frames through ingest, printing each read as it is stored, until Ctrl-C.
MongoDB and Redis require authentication: each service connects as its own user, with credentials generated
once under .local/data/storage/.

python -m services.devstack run SERVICE COMMAND... — run a command (e.g. `sightline identity bootstrap-admin`)
with the settings SERVICE has in the running stack: its MongoDB and Redis users, keys and addresses.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from services.devstack.stack import SERVICES, WEB, LocalStack
from services.devstack.tokens import dev_token
from services.inference.launcher import REPO_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "run"],
                        help="up: start everything and feed frames until Ctrl-C; run: see above")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="run: SERVICE COMMAND...")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".local")
    parser.add_argument("--no-simulator", action="store_true", help="start the servers only")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second per camera")
    args = parser.parse_args()

    stack = LocalStack(args.data_dir)
    if args.command == "run":
        if len(args.run_args) < 2 or args.run_args[0] not in (*SERVICES, *WEB):
            parser.error(f"run needs a service ({', '.join((*SERVICES, *WEB))}) and a command")
        return subprocess.call(args.run_args[1:], env={**os.environ, **stack.storage_env(args.run_args[0])})
    if busy := stack.ports_in_use():
        print(f"ports already in use: {busy} — is another stack running?", file=sys.stderr)
        return 1
    steps = [("MongoDB", stack.start_mongo), ("Redis", stack.start_redis), ("Triton (loads models)",
             stack.start_triton)] + [(name, lambda n=name: stack.start_service(n)) for name in SERVICES]
    steps += [(name, lambda n=name: stack.start_web(n)) for name in WEB]
    try:
        for label, start in steps:
            t0 = time.monotonic()
            print(f"starting {label} …", end=" ", flush=True)
            start()
            print(f"up in {time.monotonic() - t0:.1f}s", flush=True)
        print(f"ingest {stack.address('ingest')}  search {stack.address('search')}  logs {stack.logs}", flush=True)
        print(f"transparency portal {stack.url('portal')}/  staff console {stack.url('console')}/", flush=True)
        if args.no_simulator:
            while True:
                time.sleep(3600)
        sim_env = {**os.environ, "SIGHTLINE_SIM_ADMIN_TOKEN": dev_token(stack.data_dir, "demo-pd", ["agency_admin"]),
                   "SIGHTLINE_SIM_CREDENTIALS_FILE": str(args.data_dir / "camera-credentials.json")}
        return subprocess.call([sys.executable, "-m", "services.simulator", "--target", stack.address("ingest"),
                                "--cameras", str(args.cameras), "--fps", str(args.fps), "--print-reads"], env=sim_env)
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping …", flush=True)
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
