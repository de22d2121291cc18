"""SecantusDB's own command line, with two additions the embedded stack needs.

- **Abandoned transactions end on a timer.** SecantusDB aborts a transaction idle past its lifetime
  only when another transaction statement arrives. A process killed inside a transaction (a crash
  test, `kill -9` of a service) leaves its row locks held; the next plain write to such a row waits
  for them, a `dropDatabase` then waits behind it holding the store-wide lock, and from there every
  request of every client waits, for good (measured: still stuck after 150 s). mongod aborts such a
  transaction after `transactionLifetimeLimitSeconds` (60 s) whatever else happens. Here a reaper
  thread does the same every `REAP_EVERY_S`, with a lifetime of `SSMATCH_STORE_TXN_LIFETIME_S`
  [15 s] of idleness (this project's transactions last milliseconds).
- **A thread dump on SIGUSR1.** When the store stops answering, `kill -USR1 <pid>` writes every
  thread's stack to its log (stderr), so a hang says where it is.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
from typing import Any

from secantus import cli
from secantus.server import SecantusDBServer

REAP_EVERY_S = 2.0
log = logging.getLogger("ssmatch.store")


def txn_lifetime_s() -> float:
    return float(os.environ.get("SSMATCH_STORE_TXN_LIFETIME_S", "15"))


class ReapingServer(SecantusDBServer):  # type: ignore[misc]  # secantus ships no type hints
    """SecantusDB whose idle transactions are aborted on a timer (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transaction_lifetime_seconds", txn_lifetime_s())
        super().__init__(*args, **kwargs)
        self._reaper_stop = threading.Event()

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._reap, name="ssmatch-txn-reaper", daemon=True).start()

    def stop(self) -> None:
        self._reaper_stop.set()
        super().stop()

    def _reap(self) -> None:
        while not self._reaper_stop.wait(REAP_EVERY_S):
            try:
                reaped = self.transactions.prune_expired()
            except Exception:  # the reaper must outlive one bad pass
                log.exception("aborting idle transactions failed")
                continue
            if reaped:
                log.warning("aborted %d transaction(s) idle for more than %.0f s (a client died inside them?)", reaped, txn_lifetime_s())


def main() -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    cli.SecantusDBServer = ReapingServer  # cli.main builds the server by this name
    return int(cli.main())


if __name__ == "__main__":
    raise SystemExit(main())
