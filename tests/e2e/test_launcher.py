"""`make run`'s launcher as a user meets it: a busy port; a service that keeps crashing.
(Ctrl-C, a second run on the same data and restarts under load: tests/integration/ops/.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssmatch.stack.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def launcher_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}
    env.update(
        SSMATCH_KAFKA_PORT=str(free_port()), SSMATCH_MONGO_PORT=str(free_port()), CATALOG_PORT=str(free_port()),
        MATCHER_PORT=str(free_port()), NOTIFY_PORT=str(free_port()), SSMATCH_DATA_DIR=str(data_dir),
        SSMATCH_ADMIN_TOKEN="launcher-admin", SSMATCH_LOG_FORMAT="text",
    )
    env.update(extra)
    return env


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ssmatch.stack"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_busy_port_gives_one_clear_line_naming_the_variable(tmp_path: Path) -> None:
    env = launcher_env(tmp_path / "data", SSMATCH_DEMO="0")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["CATALOG_PORT"])))
        squatter.listen()
        result = subprocess.run([sys.executable, "-m", "ssmatch.stack"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"ssmatch: port {env['CATALOG_PORT']} is already in use: set CATALOG_PORT to a free port (e.g. CATALOG_PORT={int(env['CATALOG_PORT']) + 100})"]
    assert "Traceback" not in result.stdout + result.stderr


def test_a_service_that_keeps_crashing_is_restarted_with_backoff_then_named_and_everything_stopped(tmp_path: Path) -> None:
    # A rules file that does not exist: the matcher exits at start-up every time it is started.
    env = launcher_env(tmp_path / "data", SSMATCH_DEMO="0", SSMATCH_RULES_FILE=str(tmp_path / "missing.toml"), SSMATCH_RESTART_LIMIT="3")
    proc = start(env)
    try:
        proc.wait(timeout=180)
        out = proc.stdout.read() if proc.stdout else ""
        assert proc.returncode == 1, out
        assert out.count("ssmatch: matcher exited with code 2; restarting in") == 2
        assert "restarting in 0.5s" in out and "restarting in 1.0s" in out  # backoff doubles
        assert "ssmatch: matcher exited with code 2, 3 times within 120s: giving up" in out
        assert "stopping everything" in out
        time.sleep(0.3)
        leftovers = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        assert env["SSMATCH_KAFKA_PORT"] not in leftovers and env["SSMATCH_MONGO_PORT"] not in leftovers  # broker and store stopped
    finally:
        if proc.poll() is None:
            proc.kill()
