"""`make run`'s launcher as a user meets it: start, Ctrl-C, start again; a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
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


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line)
            if needle in line:
                return lines
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"{needle!r} not printed within {timeout}s:\n{''.join(lines)}")


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,sid="], capture_output=True, text=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    found, frontier = set(), {pid}
    while frontier:
        kids = {p for p, pp, _ in rows if pp in frontier}
        found |= kids
        frontier = kids
    return found


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ssmatch.stack"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ctrl_c_stops_everything_within_10s_and_a_second_run_works(tmp_path: Path) -> None:
    env = launcher_env(tmp_path / "data", SSMATCH_DEMO="0")
    for attempt in range(2):
        proc = start(env)
        try:
            wait_for_line(proc, "Press Ctrl-C to stop.", timeout=120)
            children = descendants(proc.pid)
            assert len(children) >= 5  # broker, store, catalog, matcher, notify
            catalog = f"http://127.0.0.1:{env['CATALOG_PORT']}"
            assert httpx.get(f"{catalog}/healthz").status_code == 200
            orgs = httpx.get(f"{catalog}/v1/organizations", headers={"Authorization": "Bearer launcher-admin"})
            assert orgs.status_code == 200
            if attempt == 1:  # data kept across runs by the embedded store
                assert [o["name"] for o in orgs.json()["items"]] == ["Kept across restarts"]
            else:
                httpx.post(f"{catalog}/v1/organizations", json={"name": "Kept across restarts", "type": "broker", "country": "KEN"},
                           headers={"Authorization": "Bearer launcher-admin"}).raise_for_status()
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=15)
            elapsed = time.monotonic() - t0
            assert elapsed < 10, f"stop took {elapsed:.1f}s"
            assert proc.returncode == 0
            time.sleep(0.3)
            alive = [pid for pid in children if _alive(pid)]
            assert alive == [], f"orphans left behind: {alive}"
        finally:
            if proc.poll() is None:
                proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


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
