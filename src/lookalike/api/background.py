"""The server's own loops, beside its requests: webhook delivery and the scheduled wave check.

Each runs in a daemon thread from the app's start to its shutdown: delivery only when webhook URLs
are configured (it wakes as soon as a request writes an event), the wave check only when
LOOKALIKE_WAVES_EVERY_S is above 0. Neither ever answers a request or holds one up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from lookalike.usecases import waves, webhooks
from lookalike.usecases.context import Context

log = logging.getLogger(__name__)


class Background:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        settings = self.ctx.settings
        if webhooks.targets(self.ctx):
            self.ctx.workflow  # noqa: B018 - opened here, once, before the thread and the requests share it
            self._spawn("lookalike-webhooks", lambda: webhooks.run(self.ctx, self.stop, self.wake))
        if settings.waves_every_s > 0:
            every = settings.waves_every_s
            self._spawn("lookalike-waves", lambda: waves.run(self.ctx, self.stop, every_s=every))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self, timeout_s: float = 15.0) -> None:
        self.stop.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("%s is still busy at shutdown (a slow webhook receiver?)", thread.name)
        self.threads.clear()
