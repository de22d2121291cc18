"""Drive `python -m ssmatch.stack` (what `make run` runs) as a user would: start, find its processes, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ssmatch.stack.processes import free_port

REPO = Path(__file__).resolve().parents[3]
ADMIN = "ops-admin-token"


def launcher_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}
    env.update(
        SSMATCH_KAFKA_PORT=str(free_port()), SSMATCH_MONGO_PORT=str(free_port()), CATALOG_PORT=str(free_port()),
        MATCHER_PORT=str(free_port()), NOTIFY_PORT=str(free_port()), SSMATCH_DATA_DIR=str(data_dir),
        SSMATCH_ADMIN_TOKEN=ADMIN, SSMATCH_LOG_FORMAT="text", SSMATCH_DEMO="0", SSMATCH_RATE_LIMIT_PER_MINUTE="0",
    )
    env.update(extra)
    return env


class Launcher:
    """One `python -m ssmatch.stack` process; its output is collected as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssmatch.stack"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.lines: list[str] = []

    def read(self) -> str:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not printed within {timeout}s:\n{self.read()}")

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[service.upper() + '_PORT']}"

    def services(self) -> dict[str, int]:
        """name → pid of each service process (matcher workers named by their MATCHER_PORT)."""
        out: dict[str, int] = {}
        for pid in descendants(self.proc.pid):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                environ = dict(
                    kv.split(b"=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in kv
                )
            except OSError:
                continue
            if b"-m" in args and args[args.index(b"-m") + 1].startswith(b"services."):
                name = args[args.index(b"-m") + 1].decode().split(".")[1]
                if name == "matcher" and environ.get(b"MATCHER_PORT", b"").decode() != self.env["MATCHER_PORT"]:
                    name = f"matcher:{environ[b'MATCHER_PORT'].decode()}"
                out[name] = pid
        return out

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.read()
        return self.proc.returncode


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    found, frontier = set(), {pid}
    while frontier:
        kids = {p for p, pp in rows if pp in frontier}
        found |= kids
        frontier = kids
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def poll(fn: Callable[[], Any], timeout: float, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except httpx.TransportError as exc:  # a supervised service restarting, or a dropped keep-alive
            last = exc
        if last and not isinstance(last, httpx.TransportError):
            return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s; last: {last!r}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_org(catalog: str, name: str, type_: str, country: str) -> tuple[str, str]:
    org = httpx.post(f"{catalog}/v1/organizations", json={"name": name, "type": type_, "country": country}, headers=auth(ADMIN), timeout=30)
    assert org.status_code == 201, org.text
    tok = httpx.post(f"{catalog}/v1/tokens", json={"organization_id": org.json()["id"]}, headers=auth(ADMIN), timeout=30)
    assert tok.status_code == 201, tok.text
    return org.json()["id"], tok.json()["token"]


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def need(i: int, tag: str) -> dict[str, Any]:
    return {
        "title": f"Drought-tolerant seed systems {tag} {i}",
        "description": f"Training for extension workers on seed multiplication, district {i}.",
        "sdgs": [2], "sectors": ["agriculture"], "modalities": ["capacity_development"], "languages": ["en"],
    }


def offer(i: int, tag: str) -> dict[str, Any]:
    return {
        "title": f"Seed systems training for smallholders {tag} {i}",
        "description": f"We trained extension workers on seed multiplication in semi-arid districts ({i}).",
        "sdgs": [2], "sectors": ["agriculture"], "modalities": ["capacity_development"], "languages": ["en"],
    }
