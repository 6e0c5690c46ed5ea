"""The camera gateway as the tests run it: a real `python -m services.gateway` process, its metrics scraped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    def __init__(self, workdir: Path, config: dict) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "site.yaml"
        self.config_path.write_text(yaml.safe_dump({**config, "http_host": "127.0.0.1", "http_port": self.port}))
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.gateway", "--config", str(self.config_path)],
                                     stdout=log, stderr=log, env=os.environ.copy())
        self.wait_for(lambda: self.healthz() is not None, 30, "gateway /healthz")
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def healthz(self) -> tuple[int, dict] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    def value(self, name: str, **labels: str) -> float:
        """A metric's value (0 when absent), summed over the labels not given."""
        return sum(v for (n, ls), v in self.metrics().items()
                   if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))

    def log(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return lines

    def wait_for(self, condition: Callable[[], object], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({self.proc.returncode}): {self.log_path.read_text()[-3000:]}")
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; log tail: {self.log_path.read_text()[-3000:]}")
