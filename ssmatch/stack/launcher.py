"""`make run`: bring up the whole stack, load demo data, supervise, and stop cleanly.

Embedded servers are started only when KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI are not set; the
services get the same settings either way, so nothing in them knows which servers they talk to.

Supervision works like systemd's `Restart=always` with a start limit (or a Kubernetes pod's
CrashLoopBackOff): a process that exits is started again after a backoff that doubles with each
crash (0.5 s … 15 s); only when one crashes `SSMATCH_RESTART_LIMIT` times within
`SSMATCH_RESTART_WINDOW_S` does the launcher give up, stop everything and name it. A restarted
in-memory broker comes back empty: its topics are created again here, and the catalog's outbox
relay notices the loss and re-relays what the store still holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ssmatch.stack.embedded import mongo_uri, start_secantus, start_tansu
from ssmatch.stack.processes import Child, ChildExited, free_port, port_in_use, port_open, python, stop_all, wait_until

SERVICES = (("catalog", "CATALOG_PORT"), ("matcher", "MATCHER_PORT"), ("notify", "NOTIFY_PORT"))


class PortBusy(RuntimeError):
    pass


class GaveUp(ChildExited):
    """A process crashed too often within the window: the launcher stops everything."""


def _env_count(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SystemExit(f"ssmatch: {name}={raw!r} must be a whole number from {low} to {high}")
    return int(raw)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"ssmatch: {name}={raw!r} is not a port number")
    return int(raw)


@dataclass
class StackConfig:
    kafka_bootstrap: str | None = None
    mongodb_uri: str | None = None
    kafka_port: int = 9092
    mongo_port: int = 27017
    data_dir: Path = Path(".data")
    ports: dict[str, int] = field(default_factory=lambda: {"catalog": 8000, "matcher": 8001, "notify": 8002})
    admin_token: str = ""
    demo: bool = True
    log_format: str = "json"
    matcher_workers: int = 1
    restart_limit: int = 5
    restart_window_s: float = 120.0

    @classmethod
    def from_env(cls) -> StackConfig:
        return cls(
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            mongodb_uri=os.environ.get("MONGODB_URI") or None,
            kafka_port=_env_int("SSMATCH_KAFKA_PORT", 9092),
            mongo_port=_env_int("SSMATCH_MONGO_PORT", 27017),
            data_dir=Path(os.environ.get("SSMATCH_DATA_DIR") or ".data"),
            ports={name: _env_int(var, default) for (name, var), default in zip(SERVICES, (8000, 8001, 8002), strict=True)},
            admin_token=os.environ.get("SSMATCH_ADMIN_TOKEN") or "ssm_admin_" + secrets.token_urlsafe(24),
            demo=os.environ.get("SSMATCH_DEMO", "1").strip() not in ("0", "false", "no"),
            log_format=os.environ.get("SSMATCH_LOG_FORMAT", "json"),
            matcher_workers=_env_count("SSMATCH_MATCHER_WORKERS", 1, 1, 32),
            restart_limit=_env_count("SSMATCH_RESTART_LIMIT", 5, 1, 1000),
            restart_window_s=float(_env_count("SSMATCH_RESTART_WINDOW_S", 120, 1, 86400)),
        )


@dataclass
class Supervised:
    """One supervised process: its restart history and when it may start again."""

    child: Child
    health_url: str | None = None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    restarts_total: int = 0
    last_code: int | None = None
    after_start: Callable[[], object] | None = None  # run once a restarted infra server is started again

    @property
    def name(self) -> str:
        return self.child.name


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.log_dir = config.data_dir / "logs"
        self.infra: list[Child] = []
        self.services: list[Child] = []
        self.units: list[Supervised] = []
        self.matcher_ports: list[int] = []
        self.kafka_bootstrap = config.kafka_bootstrap or f"127.0.0.1:{config.kafka_port}"
        self.mongodb_uri = config.mongodb_uri or mongo_uri(config.mongo_port)

    # ---- start-up ------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Fail with one clear line per busy port, naming the variable that moves it."""
        wanted: list[tuple[int, str]] = []
        if not self.config.kafka_bootstrap:
            wanted.append((self.config.kafka_port, "SSMATCH_KAFKA_PORT"))
        if not self.config.mongodb_uri:
            wanted.append((self.config.mongo_port, "SSMATCH_MONGO_PORT"))
        wanted += [(self.config.ports[name], var) for name, var in SERVICES]
        busy = [f"port {port} is already in use: set {var} to a free port (e.g. {var}={port + 100})" for port, var in wanted if port_in_use(port)]
        if busy:
            raise PortBusy("\n".join(busy))

    def start_infra(self) -> None:
        if not self.config.kafka_bootstrap:
            broker = start_tansu(self.config.kafka_port, self.log_dir)
            self.infra.append(broker)
            port = self.config.kafka_port

            def broker_back() -> None:
                # An in-memory broker restarts empty: create the topics again with their fixed counts.
                self._wait_port(port, broker)
                self._ensure_topics()

            self.units.append(Supervised(broker, after_start=broker_back))
        if not self.config.mongodb_uri:
            store = start_secantus(self.config.mongo_port, self.config.data_dir / "mongo", self.log_dir)
            self.infra.append(store)
            port = self.config.mongo_port
            self.units.append(Supervised(store, after_start=lambda: self._wait_port(port, store)))
        self._ensure_topics()

    def _ensure_topics(self) -> None:
        from ssmatch.kafka import ensure_topics

        asyncio.run(ensure_topics(self.kafka_bootstrap))

    @staticmethod
    def _wait_port(port: int, child: Child) -> None:
        wait_until(lambda: port_open(port), 60, f"{child.name} on port {port}", [child])

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.kafka_bootstrap,
            MONGODB_URI=self.mongodb_uri,
            CATALOG_PORT=str(self.config.ports["catalog"]),
            MATCHER_PORT=str(self.config.ports["matcher"]),
            NOTIFY_PORT=str(self.config.ports["notify"]),
            SSMATCH_ADMIN_TOKEN=self.config.admin_token,
            SSMATCH_LOG_FORMAT=self.config.log_format,
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("SSMATCH_SEARCH_INDEX_DIR", str((self.config.data_dir / "search").resolve()))  # the catalog's word index
        if not self.config.kafka_bootstrap:
            # Tansu reports wrong end offsets after multi-record batches: one record per request.
            env["SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES"] = "1"
        return env

    def service_specs(self) -> list[tuple[str, str, int, dict[str, str]]]:
        """(name, module, port, env) per service process: matcher worker 0 on MATCHER_PORT, the others
        (SSMATCH_MATCHER_WORKERS > 1) on free ports, all in one consumer group."""
        env = self.service_env()
        self.matcher_ports = [self.config.ports["matcher"]] + [free_port() for _ in range(self.config.matcher_workers - 1)]
        specs: list[tuple[str, str, int, dict[str, str]]] = [("catalog", "services.catalog", self.config.ports["catalog"], env)]
        for i, port in enumerate(self.matcher_ports):
            specs.append(("matcher" if i == 0 else f"matcher-{i}", "services.matcher", port, {**env, "MATCHER_PORT": str(port)}))
        specs.append(("notify", "services.notify", self.config.ports["notify"], env))
        return specs

    def start_services(self, timeout_s: float = 120) -> None:
        for name, module, port, env in self.service_specs():
            child = Child(name, [python(), "-m", module], env, self.log_dir / f"{name}.log").start()
            self.services.append(child)
            self.units.append(Supervised(child, health_url=f"http://127.0.0.1:{port}/healthz"))
        self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float) -> None:
        """Wait until every service answers /healthz, restarting any that crash meanwhile."""
        deadline = time.monotonic() + timeout_s
        pending = [u for u in self.units if u.health_url]
        while pending:
            self.supervise()
            pending = [u for u in pending if not (u.restart_at is None and _healthy(u.health_url or ""))]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(u.name for u in pending)} not ready after {timeout_s:.0f}s")
            if pending:
                time.sleep(0.25)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.config.ports[service]}"

    @property
    def children(self) -> list[Child]:
        return self.infra + self.services

    def unit(self, name: str) -> Supervised:
        return next(u for u in self.units if u.name == name)

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart what exited (after its backoff); give up on one that keeps crashing. Returns what
        was restarted in this pass."""
        now = time.monotonic() if now is None else now
        restarted: list[str] = []
        for unit in self.units:
            code = unit.child.exit_code()
            if unit.restart_at is None and code is not None:
                unit.last_code = code
                unit.crashes.append(now)
                while unit.crashes and now - unit.crashes[0] > self.config.restart_window_s:
                    unit.crashes.popleft()
                if len(unit.crashes) >= self.config.restart_limit:
                    raise GaveUp(
                        f"{unit.name} exited with code {code}, {len(unit.crashes)} times within "
                        f"{self.config.restart_window_s:.0f}s: giving up; its log: {unit.child.log_path}\n{unit.child.tail()}"
                    )
                backoff = min(15.0, 0.5 * 2 ** (len(unit.crashes) - 1))
                unit.restart_at = now + backoff
                print(
                    f"ssmatch: {unit.name} exited with code {code}; restarting in {backoff:.1f}s "
                    f"(crash {len(unit.crashes)} of {self.config.restart_limit} allowed within {self.config.restart_window_s:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
            elif unit.restart_at is not None and now >= unit.restart_at:
                unit.child.start()
                unit.restart_at = None
                unit.restarts_total += 1
                if unit.after_start is not None:
                    unit.after_start()
                print(f"ssmatch: {unit.name} restarted (pid {unit.child.pid})", file=sys.stderr, flush=True)
                restarted.append(unit.name)
        return restarted

    def check(self) -> None:
        self.supervise()

    def stop(self) -> None:
        stop_all(self.services, grace_s=4.0)
        stop_all(list(reversed(self.infra)), grace_s=4.5)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _banner(stack: Stack, tokens: list[tuple[str, str, str]]) -> str:
    cfg = stack.config
    kafka = f"{stack.kafka_bootstrap} (embedded Tansu, in memory)" if not cfg.kafka_bootstrap else stack.kafka_bootstrap
    mongo = f"{stack.mongodb_uri} (embedded SecantusDB, data in {cfg.data_dir}/mongo)" if not cfg.mongodb_uri else "MONGODB_URI"
    lines = [
        "",
        "South-South Match is up.",
        f"  catalog  {stack.url('catalog')}   (API docs: {stack.url('catalog')}/docs)",
        f"  matcher  {stack.url('matcher')}"
        + (f"   ({len(stack.matcher_ports)} workers; the others on ports {', '.join(map(str, stack.matcher_ports[1:]))})" if len(stack.matcher_ports) > 1 else ""),
        f"  notify   {stack.url('notify')}",
        f"  kafka    {kafka}",
        f"  mongodb  {mongo}",
        f"  logs     {stack.log_dir}/",
        "",
        "Tokens (send as 'Authorization: Bearer <token>'):",
        f"  {'admin':<18} {'(SSMATCH_ADMIN_TOKEN)':<48} {cfg.admin_token}",
    ]
    shown: list[tuple[str, str, str]] = []
    for role in ("broker", "country office", "provider"):
        shown += [t for t in tokens if t[0] == role][: 2 if role != "broker" else 10]
    for role, name, token in shown:
        lines.append(f"  {role:<18} {name[:48]:<48} {token}")
    if len(tokens) > len(shown):
        lines.append(f"  … and {len(tokens) - len(shown)} more organizations' tokens in {cfg.data_dir}/demo-tokens.json")
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def run() -> int:
    config = StackConfig.from_env()
    stack = Stack(config)
    stopping = {"flag": False}

    def on_signal(signum: int, _frame: object) -> None:
        # One-shot: a second Ctrl-C (or make forwarding the signal) must not break the clean stop.
        if stopping["flag"]:
            return
        stopping["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.preflight()
    except PortBusy as exc:
        print(f"ssmatch: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        print("ssmatch: starting broker and document store…", flush=True)
        stack.start_infra()
        print("ssmatch: starting catalog, matcher and notify…", flush=True)
        stack.start_services()
        tokens: list[tuple[str, str, str]] = []
        if config.demo:
            from ssmatch.stack.demo import MongoRegistry, load_demo

            print("ssmatch: loading demo data…", flush=True)
            registry = MongoRegistry(stack.mongodb_uri, os.environ.get("SSMATCH_CATALOG_DB") or "ssmatch_catalog")
            try:
                tokens = load_demo(stack.url("catalog"), config.admin_token, registry=registry)
            finally:
                registry.close()
            (config.data_dir / "demo-tokens.json").write_text(
                json.dumps([{"role": r, "organization": n, "token": t} for r, n, t in tokens] + [{"role": "admin", "organization": None, "token": config.admin_token}], indent=2)
            )
        print(_banner(stack, tokens), flush=True)
        print(f"(ready in {time.monotonic() - started:.1f}s)", flush=True)
        while True:
            stack.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nssmatch: stopping…", flush=True)
        return 0
    except ChildExited as exc:
        print(f"ssmatch: {exc}\nssmatch: stopping everything.", file=sys.stderr, flush=True)
        return 1
    except (TimeoutError, OSError, RuntimeError) as exc:
        print(f"ssmatch: start-up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stopping["flag"] = True
        t0 = time.monotonic()
        stack.stop()
        print(f"ssmatch: stopped in {time.monotonic() - t0:.1f}s.", flush=True)
