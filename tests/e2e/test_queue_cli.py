"""`lookalike waves`, `claim` and `webhooks` as a user runs them, over a collection built with the fake
embedder (none of these commands loads a model); the webhook receiver listens on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from lookalike.api import create_app
from tests.cli import lookalike
from tests.receiver import receiver
from tests.serving import serving
from tests.unit.test_waves import wave_world

pytestmark = pytest.mark.slow
SECRET = "whsec-cli-test-secret"


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    wave_world(tmp_path).close()
    return {
        **os.environ,
        "LOOKALIKE_DB": str(tmp_path / "lookalike.db"),
        "COLUMNS": "200",
        "LOOKALIKE_WEBHOOK_BACKOFF_S": "0.05",
        **extra,
    }


def test_waves_claim_review_and_webhooks_from_the_command_line(tmp_path: Path) -> None:
    with receiver(SECRET) as shop:
        env = environment(tmp_path, LOOKALIKE_WEBHOOK_URLS=shop.url, LOOKALIKE_WEBHOOK_SECRET=SECRET)
        window = ("--since", "2023-11-13", "--until", "2023-11-15")
        dry = lookalike(env, "waves", *window, "--dry-run")
        assert (
            dry.returncode == 0
            and "found (dry run)" in dry.stderr + dry.stdout
            and "s1, s2, s3, s4" in dry.stdout
        )
        found = lookalike(env, "waves", *window, "--min-sellers", "3", "--json")
        assert found.returncode == 0, found.stderr
        body = json.loads(found.stdout)
        assert body["new_waves"] == 1 and body["waves"][0]["sellers"] == 4
        members = body["waves"][0]["items"]  # as the API names them: item ids as strings
        assert all(isinstance(m["item"], str) and m["item"].isdigit() for m in members)
        flag = body["waves"][0]["flag"]
        again = lookalike(env, "waves", *window)
        assert (
            again.returncode == 0
            and "known" in again.stdout
            and "0 new waves flagged" in again.stderr + again.stdout
        )
        assert json.loads(lookalike(env, "flags", "--policy", "waves", "--json").stdout)["total"] == 1
        bad = lookalike(env, "waves", "--since", "yesterday")
        assert bad.returncode == 2 and "span ago" in bad.stderr

        held = lookalike(env, "claim", "--by", "ana", "--json")
        assert held.returncode == 0 and json.loads(held.stdout)["id"] == flag
        assert "no open flag left" in lookalike(env, "claim", "--by", "bo").stdout
        refused = lookalike(env, "review", str(flag), "--dismiss", "--by", "bo")
        assert refused.returncode == 6 and "being reviewed by 'ana'" in refused.stderr
        take = lookalike(env, "review", str(flag), "--confirm", "--take-down", "--by", "ana")
        assert take.returncode == 2 and "one by one" in take.stderr  # a wave is not one picture
        assert "released by ana" in lookalike(env, "claim", str(flag), "--by", "ana", "--release").stdout
        decided = lookalike(env, "review", str(flag), "--confirm", "--by", "bo", "--note", "fakes")
        assert decided.returncode == 0

        pending = json.loads(lookalike(env, "webhooks", "list", "--status", "pending", "--json").stdout)
        assert [d["type"] for d in pending["deliveries"]] == ["flag.created", "flag.decided"]
        delivered = lookalike(env, "webhooks", "deliver")
        assert delivered.returncode == 0 and "2 delivered, 0 to retry, 0 failed" in delivered.stdout
        events = [r.event for r in shop.wait_for(2)]
        assert all(r.verified for r in shop.received)
        assert events[0]["wave"]["sellers"] == 4 and len(events[0]["wave"]["items"]) == 4
        assert events[1]["decision"] == {
            **events[1]["decision"],
            "decision": "confirmed",
            "by": "bo",
            "note": "fakes",
        }

        shop.status = 500
        env["LOOKALIKE_WEBHOOK_ATTEMPTS"] = "1"
        ping = lookalike(env, "webhooks", "ping")
        assert ping.returncode == 1 and "0 delivered, 0 to retry, 1 failed" in ping.stdout
        failed = lookalike(env, "webhooks", "list", "--status", "failed")
        assert "ping" in failed.stdout and "HTTP 500" in failed.stdout
        shop.status = 200
        replayed = lookalike(env, "webhooks", "replay", "--all")
        assert replayed.returncode == 0 and "1 deliveries to send again" in replayed.stdout
        assert "1 delivered" in replayed.stdout
        assert lookalike(env, "webhooks", "replay").returncode == 2  # neither ids nor --all
        assert lookalike(env, "webhooks", "list", "--status", "lost").returncode == 2

        quiet = {**env, "LOOKALIKE_WEBHOOK_URLS": ""}
        nowhere = lookalike(quiet, "webhooks", "deliver")
        assert nowhere.returncode == 2 and "not set" in nowhere.stderr
        unsigned = lookalike({**env, "LOOKALIKE_WEBHOOK_SECRET": ""}, "flags")
        assert unsigned.returncode == 2 and "LOOKALIKE_WEBHOOK_SECRET" in unsigned.stderr


def test_the_server_looks_for_waves_on_its_schedule(tmp_path: Path) -> None:
    from lookalike.config import load_settings
    from lookalike.usecases import Context
    from tests.helpers import FakeEmbedder

    wave_world(tmp_path).close()
    settings = load_settings(
        db=str(tmp_path / "lookalike.db"),
        waves_every_s=0.2,
        waves_window_s=20 * 365 * 86400,
        waves_min_sellers=3,
    )
    with serving(create_app(Context(settings, embedder=FakeEmbedder()))) as url:
        deadline = time.monotonic() + 60
        while (found := httpx.get(url + "/waves").json())["total"] < 1:
            assert time.monotonic() < deadline, "no wave found by the scheduled check"
            time.sleep(0.2)
        time.sleep(1.0)  # a few more turns of the schedule raise nothing again
        assert httpx.get(url + "/waves").json()["total"] == 1
        assert found["waves"][0]["sellers"] == 4
        assert httpx.get(url + "/flags", params={"policy": "waves"}).json()["total"] == 1
        job = httpx.post(url + "/waves", json={"since": "2023-11-13", "until": "2023-11-15"}).json()["job_id"]
        while (state := httpx.get(f"{url}/jobs/{job}").json())["status"] not in ("done", "failed"):
            time.sleep(0.1)
        assert state["status"] == "done" and state["result"]["new_waves"] == 0
        assert httpx.post(url + "/waves", json={"since": "soon"}).status_code == 400
