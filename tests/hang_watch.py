"""When a test hangs, say where, and stop the run instead of letting every later test wait its timeout.

Two CI runs ended at the 5,400-s limit: one test hung, then every integration test after it waited its
300-s timeout in set-up, with the test process idle in `select` (an awaited reply that never came). A
stack of the test process alone cannot say what it waited for. So:

- before each test that uses the shared servers, the store must answer a write and a read, and the
  broker must accept a connection, within `PROBE_BOUND_S`;
- a test still running after `REPORT_AFTER_S` gets a report: the awaiting asyncio tasks of this process,
  whether the store and broker answer, and the store's own thread stacks (its entry point dumps them on
  SIGUSR1, `ssmatch/stack/secantus_main.py`);
- either way the run stops after that test, and the report is the last thing it prints.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_AFTER_S = float(os.environ.get("SSMATCH_TEST_HANG_REPORT_S", "200"))  # before faulthandler_timeout (240 s) and the test timeout (300 s)
PROBE_BOUND_S = 30.0


@dataclass
class HangReports:
    """What was found; printed at the end of the run (`pytest_terminal_summary`)."""

    texts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, text: str, path: Path | None) -> None:
        with self.lock:
            self.texts.append(text)
        if path is not None:
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(text + "\n\n")
            except OSError:
                pass


REPORTS = HangReports()


def probe_store(mongodb_uri: str, timeout_s: float = 5.0) -> str | None:
    """None when the store answers an insert, a read and a delete within `timeout_s`; else what failed."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    ms = int(timeout_s * 1000)
    started = time.monotonic()
    try:
        with MongoClient[dict[str, Any]](mongodb_uri, serverSelectionTimeoutMS=ms, socketTimeoutMS=ms, connectTimeoutMS=ms) as client:
            probes = client["t_hang_watch"]["probes"]
            key = uuid.uuid4().hex
            probes.insert_one({"_id": key})
            if probes.find_one({"_id": key}) is None:
                return "the store lost a probe it had just acknowledged"
            probes.delete_one({"_id": key})
    except PyMongoError as exc:
        return f"the store did not answer a probe within {timeout_s:.0f} s ({time.monotonic() - started:.1f} s): {type(exc).__name__}: {exc}"
    return None


def probe_broker(port: int, timeout_s: float = 5.0) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"the broker refused a connection: {exc}"


def store_threads(pid: int | None, log_path: Path, wait_s: float = 2.0) -> str:
    """The store's thread stacks: SIGUSR1 makes its entry point write them to its log."""
    if pid is None:
        return "(no store process)"
    try:
        start = log_path.stat().st_size
        os.kill(pid, signal.SIGUSR1)
    except OSError as exc:
        return f"(could not signal the store: {exc})"
    deadline = time.monotonic() + wait_s
    text, seen = "", -1
    while time.monotonic() < deadline:  # until the dump stops growing
        time.sleep(0.2)
        with open(log_path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        if "most recent call first" in text and len(text) == seen:
            break
        seen = len(text)
    return busy_threads(text)


def busy_threads(dump: str) -> str:
    """The threads of a faulthandler dump that are not idle (waiting for a request, a poll or a timer)."""
    idle_tops = ("in select", "in accept", "in recv_into", "in _recv", "in readinto", "in wait", "in sleep", "in _worker", "in poll", "in _readable")
    blocks = [b for b in dump.split("\n\n") if "most recent call first" in b]
    if not blocks:
        return dump[-4000:] or "(no dump written)"
    busy = []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip().startswith("File ")]
        top = lines[0] if lines else ""
        if not any(word in top for word in idle_tops) or "storage.py" in top or "transactions.py" in top:
            busy.append(block)
    return f"{len(busy)} of {len(blocks)} store threads not idle:\n" + "\n\n".join(busy)


def awaiting_tasks() -> str:
    """Every pending asyncio task of this process, with the await chain it is parked in."""
    for _ in range(5):
        try:
            tasks = [t for t in list(asyncio.tasks._all_tasks) if not t.done() and not _housekeeping(t)]  # type: ignore[attr-defined]
            break
        except RuntimeError:  # the set changed while copied (read from another thread)
            time.sleep(0.01)
    else:
        return "(could not list tasks)"
    out = io.StringIO()
    for task in tasks[:40]:
        try:
            task.print_stack(limit=12, file=out)
        except Exception as exc:  # noqa: BLE001 - a diagnostic must not raise
            out.write(f"{task!r}: {exc}\n")
    return f"{len(tasks)} pending tasks:\n{out.getvalue()}"


def _housekeeping(task: asyncio.Task[Any]) -> bool:
    """pymongo's monitors and cancellation pollers: always there, never what a test waits for."""
    name = getattr(task.get_coro(), "__qualname__", "")
    return name in ("AsyncPeriodicExecutor._run", "_poll_cancellation")


def report(title: str, servers: Any, *, tasks: bool) -> str:
    parts = [f"=== {title} ==="]
    if servers is not None:
        parts.append("store: " + (probe_store(servers.mongodb_uri) or "answers"))
        parts.append("broker: " + (probe_broker(servers.kafka_port) or "accepts connections"))
        parts.append("broker log tail:\n" + servers.broker.tail(8))
    if tasks:
        parts.append(awaiting_tasks())
    if servers is not None:
        parts.append("store threads: " + store_threads(servers.store.pid, servers.store.log_path))
    return "\n".join(parts)
