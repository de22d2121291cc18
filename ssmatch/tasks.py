"""BackgroundTask: the start / stop / wake plumbing of a service's long-running loop."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundTask:
    """Subclasses implement `_run`; `wake()` cuts a `wait_for_wake` short (e.g. after a commit)."""

    task_name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    def wake(self) -> None:
        self._wakeup.set()

    async def wait_for_wake(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=timeout_s)
        self._wakeup.clear()

    async def _run(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        """Release what the loop held (producers, clients); called by stop()."""
