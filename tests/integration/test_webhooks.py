"""Webhooks end to end with a receiver on 127.0.0.1: events written with each flag and decision,
delivered signed, retried with backoff, listed as failed, replayed; the writes never wait for them;
the server's worker delivers on its own; outgoing addresses follow the fetch rules."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.errors import ConfigError
from lookalike.usecases import Context, ingest, policies, review, webhooks
from lookalike.workflow import DeliveryStatus, FlagStatus
from lookalike.workflow.outbox import backoff
from tests.helpers import FakeEmbedder, make_image, write_images
from tests.receiver import receiver
from tests.serving import serving
from tests.unit.test_policies import PLANTED, plant, write_policy

SECRET = "whsec-integration-test-secret"


def hooked(tmp_path: Path, urls: str, **settings: object) -> Context:
    """The planted-policy world of test_policies, with webhooks to ``urls``: 3 flags when indexed."""
    embedder = FakeEmbedder()
    embedder.concepts["a prohibited thing"] = embedder.embed_images([make_image(PLANTED)])[0]
    options = {"webhook_urls": urls, "webhook_secret": SECRET, "webhook_backoff_s": 0.05, **settings}
    ctx = Context(load_settings(db=str(tmp_path / "lookalike.db"), workers=2, **options), embedder=embedder)
    policies.add(ctx, str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 4)
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    return ctx


def test_flags_and_decisions_arrive_signed_with_the_item(tmp_path: Path) -> None:
    with receiver(SECRET) as shop:
        ctx = hooked(tmp_path, shop.url)
        assert webhooks.deliver_all_due(ctx).delivered == 3  # three flags raised at ingest
        created = shop.wait_for(3)
        assert all(r.verified and r.path == "/hooks/lookalike" for r in created), [r.why for r in created]
        events = [r.event for r in created]
        assert {e["type"] for e in events} == {"flag.created"}
        flag = events[0]["flag"]
        assert flag["policy"] == "prohibited" and flag["label"] == "contraband" and flag["status"] == "open"
        assert isinstance(flag["item"], str) and events[0]["item"]["source"] and events[0]["item"]["sha256"]
        assert created[0].headers["X-Lookalike-Event"] == "flag.created"
        assert created[0].headers["X-Lookalike-Delivery"] == str(events[0]["id"])

        review.review(ctx, flag["id"], FlagStatus.CONFIRMED, reviewer="ana", note="fake", take_down=True)
        assert webhooks.deliver_all_due(ctx).delivered == 1
        decided = shop.wait_for(4)[3].event
        assert decided["type"] == "flag.decided" and decided["flag"]["status"] == "confirmed"
        assert decided["decision"]["by"] == "ana" and decided["decision"]["took_down"] is True
        assert decided["item"]["item_id"] == events[0]["item"]["item_id"]  # the item, though it is gone
        assert webhooks.deliveries(ctx, status=DeliveryStatus.DELIVERED)[0] == 4
        assert webhooks.deliver_all_due(ctx).attempted == 0  # each sent once


def test_a_failing_receiver_gets_retries_with_backoff_then_a_failed_delivery_that_replays(
    tmp_path: Path,
) -> None:
    assert [backoff(n, 5.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(40, 5.0) == 3600.0  # at most an hour
    with receiver(SECRET) as shop:
        shop.status = 503
        ctx = hooked(tmp_path, shop.url, webhook_attempts=3)
        first = webhooks.deliver_all_due(ctx)
        assert (first.delivered, first.retrying) == (0, 3)
        assert webhooks.deliver_all_due(ctx).attempted == 0  # nothing is due until the backoff passes
        _, pending = webhooks.deliveries(ctx, status=DeliveryStatus.PENDING)
        assert all(d.attempts == 1 and "HTTP 503" in d.last_error for d in pending)
        deadline = time.monotonic() + 20
        while webhooks.deliveries(ctx, status=DeliveryStatus.FAILED)[0] < 3:
            assert time.monotonic() < deadline
            webhooks.deliver_all_due(ctx)
            time.sleep(0.05)
        total, failed = webhooks.deliveries(ctx, status=DeliveryStatus.FAILED)
        assert total == 3 and all(d.attempts == 3 for d in failed)
        assert len(shop.received) == 9  # three attempts each, every one signed
        assert all(r.verified for r in shop.received)

        shop.status = 200
        assert webhooks.replay(ctx, [failed[0].id]) == [failed[0].id]
        with pytest.raises(ConfigError, match="only a failed one"):
            webhooks.replay(ctx, [failed[0].id])
        assert webhooks.deliver_all_due(ctx).delivered == 1
        assert webhooks.replay(ctx) == [d.id for d in failed[1:]]
        assert webhooks.deliver_all_due(ctx).delivered == 2
        assert webhooks.deliveries(ctx, status=DeliveryStatus.DELIVERED)[0] == 3
        delivered = [r.headers["X-Lookalike-Delivery"] for r in shop.received[9:]]
        assert sorted(delivered) == sorted(str(d.event) for d in failed)  # the same event ids again


def test_writes_never_wait_for_a_slow_receiver(tmp_path: Path) -> None:
    """The receiver takes 3 s to answer while the server's worker is delivering to it: the
    decisions asked of the API meanwhile answer at once, and every one is delivered later."""
    with receiver(SECRET) as shop:
        ctx = hooked(tmp_path, shop.url, webhook_timeout_s=30)
        shop.delay_s = 3.0
        with serving(create_app(ctx)) as url, httpx.Client(base_url=url, timeout=30) as http:
            shop.wait_for(1)  # the worker is busy with the first flag's slow delivery by now
            flags = http.get("/flags", params={"status": "open"}).json()["flags"]
            for flag in flags:
                started = time.perf_counter()
                done = http.post(f"/flags/{flag['id']}/review", json={"decision": "dismiss", "by": "ana"})
                assert done.status_code == 200 and time.perf_counter() - started < 1.5
            shop.delay_s = 0.0
            arrived = shop.wait_for(6, timeout_s=60)
            decided = [r.event for r in arrived if r.event["type"] == "flag.decided"]
            assert sorted(e["flag"]["id"] for e in decided) == sorted(f["id"] for f in flags)
            failed = http.get("/webhooks/deliveries", params={"status": "failed"}).json()
            assert failed["total"] == 0
            listed = http.get("/webhooks/deliveries").json()
            assert listed["total"] == 6 and {d["status"] for d in listed["deliveries"]} == {"delivered"}


def test_the_api_lists_failed_deliveries_and_replays_them(tmp_path: Path) -> None:
    with receiver(SECRET) as shop:
        shop.status = 500
        ctx = hooked(tmp_path, shop.url, webhook_attempts=1)
        with serving(create_app(ctx)) as url, httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 30
            while http.get("/webhooks/deliveries", params={"status": "failed"}).json()["total"] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            failed = http.get("/webhooks/deliveries", params={"status": "failed"}).json()["deliveries"]
            assert (
                failed[0]["last_error"].startswith("HTTP 500") and failed[0]["body"]["type"] == "flag.created"
            )
            shop.status = 200
            assert http.post(f"/webhooks/deliveries/{failed[0]['id']}/replay").json() == {
                "replayed": [failed[0]["id"]]
            }
            assert http.post("/webhooks/deliveries/999999/replay").status_code == 404
            assert http.post("/webhooks/replay").json()["replayed"] == [d["id"] for d in failed[1:]]
            assert http.post("/webhooks/ping").json()["event"] > 0
            shop.wait_for(7)  # three failed, three replayed, one ping
            while http.get("/webhooks/deliveries", params={"status": "delivered"}).json()["total"] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert shop.received[-1].event["type"] in ("ping", "flag.created")


def test_outgoing_addresses_follow_the_fetch_rules_and_redirects_are_not_followed(tmp_path: Path) -> None:
    with receiver(SECRET) as shop, receiver(SECRET) as elsewhere:
        shop.status, shop.location = 302, elsewhere.url
        metadata = "http://169.254.169.254/latest/meta-data/"
        ctx = hooked(tmp_path, f"{shop.url} {metadata}", webhook_attempts=1)
        done = webhooks.deliver_all_due(ctx)
        assert done.failed == 6
        errors = {d.url: d.last_error for d in webhooks.deliveries(ctx, status=DeliveryStatus.FAILED)[1]}
        assert "do not follow redirects" in errors[shop.url]
        assert (
            "link-local or cloud metadata" in errors[metadata]
            and "LOOKALIKE_ALLOW_NETWORKS" in errors[metadata]
        )
        assert elsewhere.received == []  # the redirect's target never saw a request


def test_a_url_dropped_from_the_settings_fails_its_deliveries_and_no_url_writes_no_event(
    tmp_path: Path,
) -> None:
    with receiver(SECRET) as shop:
        ctx = hooked(tmp_path, shop.url)
        ctx.close()
        other = Context(
            ctx.settings.model_copy(update={"webhook_urls": "http://127.0.0.1:9/other"}),
            embedder=FakeEmbedder(),
        )
        assert webhooks.deliver_all_due(other).failed == 3  # pending for a URL no longer configured
        listed = webhooks.deliveries(other, status=DeliveryStatus.FAILED)[1]
        assert all("no longer" in d.last_error for d in listed)
        other.close()
        quiet = Context(ctx.settings.model_copy(update={"webhook_urls": ""}), embedder=FakeEmbedder())
        flag = review.flags(quiet, status=FlagStatus.OPEN)[1][0].flag
        review.review(quiet, flag.id, FlagStatus.DISMISSED, reviewer="ana")
        assert webhooks.deliveries(quiet)[0] == 3  # no URL configured: no event written
        with pytest.raises(ConfigError, match="not set"):
            webhooks.deliver(quiet)
        quiet.close()
        assert shop.received == []
