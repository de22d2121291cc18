"""Matcher fixtures: a broker per test (the session broker's item topics carry other tests' items,
which a fresh matcher group would read from offset 0; Tansu starts in milliseconds), real matcher worker processes, and
the catalog's match projection running against the real store."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ssmatch.stack.embedded import start_tansu
from ssmatch.stack.processes import Child, free_port, stop_all, wait_until

RULES_FILE = Path(__file__).resolve().parents[3] / "services" / "matcher" / "rules" / "rules.v1.toml"


@dataclass
class Broker:
    bootstrap: str
    child: Child


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    from ssmatch.kafka import ensure_topics

    port = free_port()
    child = start_tansu(port, tmp_path_factory.mktemp("matcher-broker"))
    bootstrap = f"127.0.0.1:{port}"
    asyncio.run(ensure_topics(bootstrap))
    try:
        yield Broker(bootstrap, child)
    finally:
        stop_all([child], grace_s=3)


def rules_copy(path: Path, top_k: int, min_score: float, version: str) -> Path:
    """A copy of the shipped rules with other proposal thresholds and version."""
    text = RULES_FILE.read_text()
    text = re.sub(r'(?m)^version = ".*"', f'version = "{version}"', text)
    text = re.sub(r"(?m)^top_k = \d+", f"top_k = {top_k}", text)
    text = re.sub(r"(?m)^min_score = [0-9.]+", f"min_score = {min_score}", text)
    path.write_text(text)
    return path


@dataclass
class Workers:
    """N matcher worker processes in one group, each on its own MATCHER_PORT."""

    env: dict[str, str]
    log_dir: Path
    children: dict[int, Child] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)

    def start(self, i: int) -> Child:
        port = self.ports.setdefault(i, free_port())
        child = Child(f"matcher-{i}", [sys.executable, "-m", "services.matcher"], {**self.env, "MATCHER_PORT": str(port)},
                      self.log_dir / f"matcher-{i}.log").start()
        self.children[i] = child
        return child

    def kill(self, i: int) -> None:
        self.children[i].kill()
        self.children[i].wait(5)

    def ready(self, timeout_s: float = 90) -> None:
        def all_healthy() -> bool:
            for port in (self.ports[i] for i in self.children if self.children[i].exit_code() is None):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
            return True

        try:
            wait_until(all_healthy, timeout_s, "matcher workers", [c for c in self.children.values() if c.exit_code() is None])
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def processed(self) -> dict[tuple[str, int], int]:
        """Per item partition, the furthest offset any live worker has processed (from /metrics)."""
        out: dict[tuple[str, int], int] = {}
        for i, child in self.children.items():
            if child.exit_code() is not None:
                continue
            try:
                text = httpx.get(f"http://127.0.0.1:{self.ports[i]}/metrics", timeout=2).text
            except httpx.HTTPError:
                continue
            for m in re.finditer(r'ssmatch_matcher_processed_offset\{topic="([^"]+)",partition="(\d+)"\} ([0-9.e+]+)', text):
                key = (m.group(1), int(m.group(2)))
                out[key] = max(out.get(key, 0), int(float(m.group(3))))
        return out

    def stop(self) -> None:
        stop_all(list(self.children.values()), grace_s=5)
        self.children.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.tail(30)}" for c in self.children.values())


@pytest.fixture
def matcher_workers(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    made: list[Workers] = []

    def make(env: dict[str, str]) -> Workers:
        w = Workers({**os.environ, **env}, Path(os.environ.get("SSMATCH_TEST_LOG_DIR", tmp_path)) / "logs")
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()
