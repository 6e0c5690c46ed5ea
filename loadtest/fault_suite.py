"""The fault suite: runs tests/faults (kill -9 and restart of MongoDB, Redis, Triton and every service while
frames and read batches stream and searches run; a stalled Triton; deletion under load), each on its own
local stack, and prints what happened as tables (Markdown, as in docs/faults.md).

    .venv/bin/python loadtest/fault_suite.py                 # the whole suite, 5-7 minutes on 2 cores
    .venv/bin/python loadtest/fault_suite.py -k "redis"      # extra arguments go to pytest
    .venv/bin/python loadtest/fault_suite.py --rows rows.jsonl   # print the tables of an earlier run

Exit status: pytest's (0 when every case held up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FAULT_COLUMNS = ["component killed", "frames/reads acked", "stored exactly once", "alerts planted/raised/dup",
                 "NOT_SERVING observed", "recovery s", "gateway resends", "searches ok/failed", "lost", "note"]
DELETION_COLUMNS = ["reads acked", "reads/s", "max backlog past expire_at", "mean backlog", "left at end",
                    "held kept", "gateway resends"]


def markdown(columns: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fault_cells(r: dict) -> list[object]:
    exact = f"{'yes' if r['exact'] == r['acked'] else 'NO'} ({r['exact']}/{r['acked']})"
    alerts = f"{r['planted']}/{r['alerts']}/{r['duplicates']}" if r["planted"] or r["alerts"] else "-"
    return [r["component"], r["acked"], exact, alerts, r["not_serving"], r["recovery_s"], r["retried"],
            r["searches"], r["lost"], r["note"]]


def deletion_cells(r: dict) -> list[object]:
    return [r["reads_acked"], r["reads_per_s"], r["max_backlog"], r["mean_backlog"], r["final_backlog"],
            f"{r['held_kept']}/{r['held']}", r["retried"]]


def tables(rows: list[dict]) -> str:
    faults = [fault_cells(r) for r in rows if r.get("kind") != "deletion"]
    deletion = [deletion_cells(r) for r in rows if r.get("kind") == "deletion"]
    out = []
    if faults:
        out.append(markdown(FAULT_COLUMNS, faults))
    if deletion:
        out.append(markdown(DELETION_COLUMNS, deletion))
    return "\n\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=Path, help="print the tables of this results file instead of running")
    args, pytest_args = parser.parse_known_args()
    rc = 0
    if args.rows is None:
        args.rows = Path(tempfile.mkdtemp(prefix="sightline-faults-")) / "rows.jsonl"
        env = {**os.environ, "SIGHTLINE_FAULT_RESULTS": str(args.rows)}
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "faults", "--faults"]
        rc = subprocess.call([*pytest, "tests/faults", *pytest_args], cwd=REPO, env=env)
    rows = [json.loads(line) for line in args.rows.read_text().splitlines()] if args.rows.exists() else []
    print(tables(rows) if rows else "no results")
    print(f"\nrows: {args.rows}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
