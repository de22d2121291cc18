"""`make run`: bring up the whole stack, load demo data, supervise, and stop cleanly.

Embedded servers are started only when KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI are not set; the
services get the same settings either way, so nothing in them knows which servers they talk to.
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
from dataclasses import dataclass, field
from pathlib import Path

from ssmatch.stack.embedded import mongo_uri, start_secantus, start_tansu
from ssmatch.stack.processes import Child, ChildExited, port_in_use, python, stop_all, wait_until

SERVICES = (("catalog", "CATALOG_PORT"), ("matcher", "MATCHER_PORT"), ("notify", "NOTIFY_PORT"))


class PortBusy(RuntimeError):
    pass


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
        )


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.log_dir = config.data_dir / "logs"
        self.infra: list[Child] = []
        self.services: list[Child] = []
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
            self.infra.append(start_tansu(self.config.kafka_port, self.log_dir))
        if not self.config.mongodb_uri:
            self.infra.append(start_secantus(self.config.mongo_port, self.config.data_dir / "mongo", self.log_dir))
        from ssmatch.kafka import ensure_topics

        asyncio.run(ensure_topics(self.kafka_bootstrap))

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
        if not self.config.kafka_bootstrap:
            # Tansu reports wrong end offsets after multi-record batches: one record per request.
            env["SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES"] = "1"
        return env

    def start_services(self, timeout_s: float = 120) -> None:
        env = self.service_env()
        for name, _ in SERVICES:
            self.services.append(Child(name, [python(), "-m", f"services.{name}"], env, self.log_dir / f"{name}.log").start())
        for name, _ in SERVICES:
            url = f"{self.url(name)}/healthz"
            wait_until(lambda url=url: _healthy(url), timeout_s, f"{name} at {url}", self.children, interval=0.25)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.config.ports[service]}"

    @property
    def children(self) -> list[Child]:
        return self.infra + self.services

    def check(self) -> None:
        for child in self.children:
            child.check_alive()

    def stop(self) -> None:
        stop_all(self.services, grace_s=4.0)
        stop_all(list(reversed(self.infra)), grace_s=4.5)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
            return resp.status == 200
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
        f"  matcher  {stack.url('matcher')}",
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
            from ssmatch.stack.demo import load_demo

            print("ssmatch: loading demo data…", flush=True)
            tokens = load_demo(stack.url("catalog"), config.admin_token)
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
        print(f"ssmatch: {exc}\nssmatch: stopping the rest.", file=sys.stderr, flush=True)
        return 1
    except (TimeoutError, OSError, RuntimeError) as exc:
        print(f"ssmatch: start-up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stopping["flag"] = True
        t0 = time.monotonic()
        stack.stop()
        print(f"ssmatch: stopped in {time.monotonic() - t0:.1f}s.", flush=True)
