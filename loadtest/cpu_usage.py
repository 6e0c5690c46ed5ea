"""CPU seconds used by this process's children (a local stack's servers), grouped by what each one serves,
read from /proc: for a benchmark to say where the cores went, not just how fast the whole was."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _label(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [arg.decode(errors="replace") for arg in args if arg]
    command = Path(words[0]).name if words else "?"
    if command == "triton_python_backend_stub":  # one per model instance: its model.py path names the model
        model = next((Path(w).parent.parent.name for w in words if w.endswith("model.py")), "?")
        return f"triton {model}"
    if "-m" in words and words.index("-m") + 1 < len(words):
        return words[words.index("-m") + 1].removesuffix(".__main__")
    return command


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of a process, from the fields after its command name in /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def children_cpu(root: int | None = None) -> Counter[str]:
    """CPU seconds so far of every descendant of ``root`` (default: this process), by label."""
    root = root or os.getpid()
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError, IndexError):  # exited while we looked
                continue
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    used: Counter[str] = Counter()
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            used[_label(pid)] += stats[pid][1]
        except OSError:
            continue
    return used


def report(before: Counter[str], after: Counter[str], seconds: float, frames: int) -> dict[str, float]:
    """Core-milliseconds per frame by label, largest first, and the cores used on average."""
    spent = {label: after[label] - before.get(label, 0.0) for label in after}
    spent = {label: value for label, value in spent.items() if value > 0.005 * seconds}
    ranked = dict(sorted(((k, round(1000 * v / frames, 1)) for k, v in spent.items()), key=lambda kv: -kv[1]))
    return {**ranked, "cores_busy": round(sum(spent.values()) / seconds, 2)}
