"""The linters are part of the build: ruff on everything, mypy strict on the shared package and the
pure domain packages (configured in pyproject.toml). A finding fails `make test` like a failing test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    result = run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_is_clean_on_the_strict_packages() -> None:
    result = run(str(BIN / "mypy"), "ssmatch", "services/catalog/domain", "services/matcher/scoring", "services/matcher/lists.py",
                 "services/matcher/candidates.py", "services/matcher/search.py")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
