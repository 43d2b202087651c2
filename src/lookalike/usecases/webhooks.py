"""Webhooks: deliver the outbox's events, list deliveries, replay failed ones, run the delivery loop.

The events themselves are written by the workflow database in the transaction of each flag and
decision (workflow/outbox.py); nothing here runs inside a write. ``run`` is the loop
``lookalike serve`` keeps in a thread and ``lookalike webhooks deliver --watch`` runs in the
foreground; ``deliver`` is one pass of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lookalike.errors import ConfigError
from lookalike.usecases.context import Context
from lookalike.workflow import Delivery, DeliveryStatus

log = logging.getLogger(__name__)
BATCH = 50
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Pass:
    """What one delivery pass did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed

    def __add__(self, other: Pass) -> Pass:
        return Pass(
            self.delivered + other.delivered, self.retrying + other.retrying, self.failed + other.failed
        )


def targets(ctx: Context) -> tuple[str, ...]:
    """The webhook URLs this process delivers to (checked; ConfigError if misconfigured)."""
    return ctx.settings.webhook_targets()


def deliver(ctx: Context, *, ids: Sequence[int] | None = None, limit: int = BATCH) -> Pass:
    """Attempt every due delivery once (``ids``: these, due or not), up to ``limit``."""
    from lookalike.webhooks.post import DeliveryError, post
    from lookalike.webhooks.signing import sign

    settings = ctx.settings
    urls = set(targets(ctx))
    if not urls:  # delivering here would fail every pending delivery as "no longer configured"
        raise ConfigError(
            "LOOKALIKE_WEBHOOK_URLS is not set in this process: there is nowhere to deliver to."
        )
    outbox = ctx.workflow.outbox
    # Locked for longer than an attempt can take, so another worker never sends the same one meanwhile.
    taken = outbox.take(limit=limit, lock_s=settings.webhook_timeout_s * 3 + 30, ids=ids)
    done = Pass()
    for delivery in taken:
        if delivery.url not in urls:
            outbox.give_up(delivery.id, "this URL is no longer in LOOKALIKE_WEBHOOK_URLS")
            done += Pass(failed=1)
            continue
        body = delivery.body.encode()
        headers = sign(settings.webhook_secret, body, event=delivery.type, delivery=str(delivery.event))
        try:
            post(
                delivery.url,
                body,
                headers,
                timeout_s=settings.webhook_timeout_s,
                allow_networks=settings.allowed_networks(),
            )
        except DeliveryError as exc:
            status = outbox.attempt_failed(
                delivery.id,
                str(exc),
                max_attempts=settings.webhook_attempts,
                backoff_s=settings.webhook_backoff_s,
            )
            log.warning("webhook %s of event %s to %s: %s", delivery.id, delivery.event, delivery.url, exc)
            done += Pass(failed=1) if status is DeliveryStatus.FAILED else Pass(retrying=1)
            continue
        outbox.delivered(delivery.id)
        done += Pass(delivered=1)
    return done


def deliver_all_due(ctx: Context, *, ids: Sequence[int] | None = None) -> Pass:
    """Passes until nothing more is due now (retries wait for their backoff)."""
    done = Pass()
    while True:
        step = deliver(ctx, ids=ids)
        done += step
        if step.attempted < BATCH or ids is not None:
            return done


def run(ctx: Context, stop: threading.Event, wake: threading.Event, *, poll_s: float = 30.0) -> None:
    """Deliver until ``stop`` is set: due deliveries at once, then sleep until the next is due,
    ``wake`` is set (an event was written, a delivery replayed) or ``poll_s`` has passed (events
    written by other processes)."""
    outbox = ctx.workflow.outbox
    outbox.on_enqueue = wake.set
    pruned = 0.0
    while not stop.is_set():
        wake.clear()
        try:
            deliver_all_due(ctx)
            if time.monotonic() - pruned > PRUNE_EVERY_S:
                outbox.prune(ctx.settings.webhook_keep_days * 86400)
                pruned = time.monotonic()
            due = outbox.next_due()
        except Exception:  # a full disk, a locked database: logged, tried again, never the end of the loop
            log.exception("webhook delivery pass failed")
            due = None
        pause = poll_s if due is None else max(0.0, min(poll_s, due - time.time()))
        if pause > 0:
            wake.wait(pause)


def deliveries(
    ctx: Context, *, status: DeliveryStatus | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[Delivery]]:
    return ctx.workflow.outbox.deliveries(status=status, limit=limit, offset=offset)


def replay(ctx: Context, ids: Sequence[int] | None = None) -> list[int]:
    """Failed deliveries (``ids``, or all) made pending again, due now; the worker sends them."""
    return ctx.workflow.outbox.replay(ids)


def ping(ctx: Context) -> int | None:
    """A ``ping`` event for every configured URL; its id (None: no URL configured)."""
    targets(ctx)
    return ctx.workflow.outbox.ping()
