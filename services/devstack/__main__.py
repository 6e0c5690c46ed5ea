"""python -m services.devstack up — the whole Sightline stack on this machine, fed by the simulator.

Starts mongod (one-node replica set), Redis, Triton, the services, the transparency portal (:8080) and the staff
console (:8081) on their standard ports, with data under .local/ (kept between runs), creates the demo agency
and its accounts on the first run (services/devstack/demo.py; printed once), registers demo cameras, and
streams synthetic camera frames through ingest, printing each read as it is stored.

Ctrl-C, SIGTERM or SIGHUP stops every server it started, whatever has become of its standard output (a closed
pipe included).
MongoDB and Redis require authentication: each service connects as its own user, with credentials generated
once under .local/data/storage/.

python -m services.devstack run SERVICE COMMAND... — run a command (e.g. `sightline identity bootstrap-admin`)
with the settings SERVICE has in the running stack: its MongoDB and Redis users, keys and addresses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from services.common.auth import LOCAL_DATA_DIR
from services.devstack.stack import SERVICES, WEB, LocalStack, Ports
from services.devstack.tokens import dev_token


class Stopped(Exception):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP: stop every server."""


def _stop_on(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def say(text: str, end: str = "\n") -> None:
    """Print progress; a closed or broken standard output must not keep the stack from stopping."""
    with contextlib.suppress(OSError, ValueError):
        print(text, end=end, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything and feed frames until Ctrl-C")
    up.add_argument("--no-simulator", action="store_true", help="start the servers only")
    up.add_argument("--no-demo", action="store_true", help="do not create the demo agency and accounts")
    up.add_argument("--free-ports", action="store_true", help="listen on free ports instead of the standard ones")
    up.add_argument("--cameras", type=int, default=2)
    up.add_argument("--fps", type=float, default=1.0, help="frames per second per camera")
    run = commands.add_parser("run", help="run a command with a service's settings in the running stack")
    run.add_argument("service", choices=[*SERVICES, *WEB])
    run.add_argument("argv", nargs=argparse.REMAINDER, help="the command and its arguments")
    for sub in (up, run):
        sub.add_argument("--data-dir", type=Path, default=LOCAL_DATA_DIR.parent)
    args = parser.parse_args()

    if args.command == "run":
        if not args.argv:
            run.error("name the command to run")
        borrowed = LocalStack(args.data_dir)
        return subprocess.call(args.argv, env={**os.environ, **borrowed.storage_env(args.service),
                                               **borrowed.tls_env(args.service)})
    stack = LocalStack(args.data_dir, Ports.free() if args.free_ports else Ports())
    if busy := stack.ports_in_use():
        say(f"ports already in use: {busy} — is another stack running?")
        return 1
    # SIGINT too: a process started in the background by a shell without job control inherits SIGINT ignored,
    # and Python then leaves it so (no KeyboardInterrupt): Ctrl-C must stop the stack however it was started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on)
    steps = [("MongoDB", stack.start_mongo), ("Redis", stack.start_redis), ("Triton (loads models)",
             stack.start_triton)] + [(name, lambda n=name: stack.start_service(n)) for name in SERVICES]
    steps += [(name, lambda n=name: stack.start_web(n)) for name in WEB]
    simulator: subprocess.Popen | None = None
    try:
        for label, start in steps:
            t0 = time.monotonic()
            say(f"starting {label} …", end=" ")
            start()
            say(f"up in {time.monotonic() - t0:.1f}s")
        say(f"ports {json.dumps(vars(stack.ports))}")
        say(f"ingest {stack.address('ingest')}  search {stack.address('search')}  logs {stack.logs}")
        say(f"transparency portal {stack.url('portal')}/  staff console {stack.url('console')}/")
        if not args.no_demo:
            subprocess.run([sys.executable, "-m", "services.devstack.demo", "--identity", stack.address("identity"),
                            "--console-url", stack.url("console")], env={**os.environ, **stack.service_env("identity")},
                           check=False)
        if args.no_simulator:
            while True:
                time.sleep(3600)
        sim_env = {**os.environ, "SIGHTLINE_SIM_ADMIN_TOKEN": dev_token(stack.data_dir, "demo-pd", ["agency_admin"]),
                   "SIGHTLINE_SIM_CREDENTIALS_FILE": str(args.data_dir / "camera-credentials.json"),
                   **stack.client_env()}
        simulator = subprocess.Popen([sys.executable, "-m", "services.simulator", "--target", stack.address("ingest"),
                                      "--cameras", str(args.cameras), "--fps", str(args.fps), "--print-reads"],
                                     env=sim_env)
        return simulator.wait()
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        # Servers first, then words: nothing said on a broken terminal or pipe may leave one running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if simulator is not None and simulator.poll() is None:
            simulator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                simulator.wait(10)
        stack.stop()
        say("stopped")


if __name__ == "__main__":
    code = main()
    # A closed standard output would make the interpreter's final flush fail noisily: point it at /dev/null.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(code)
