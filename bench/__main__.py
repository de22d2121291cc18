"""`make bench`: run every bench/bench_*.py and print their `name=value` lines.

Each benchmark measures its own baseline in the same run and prints ratios against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = float(os.environ.get("SSMATCH_BENCH_TIMEOUT_S", "2400"))  # per script; the 100k matcher bench is the longest


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"# {script.stem}", flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, timeout=TIMEOUT_S)
        if result.returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
