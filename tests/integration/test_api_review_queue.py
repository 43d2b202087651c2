"""The review queue over HTTP: GET /flags/next, claims held, renewed and let go, 409 for a flag
another reviewer holds, one flag shown whole (GET /flags/{id})."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from tests.integration.test_api_review import build_flagged


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(build_flagged(tmp_path))) as client:
        yield client


def test_two_reviewers_get_different_flags_and_cannot_decide_each_others(api: TestClient) -> None:
    ana = api.get("/flags/next", params={"by": "ana"})
    assert ana.status_code == 200 and ana.headers["cache-control"] == "no-store"
    mine = ana.json()["flag"]
    assert mine["claim"]["by"] == "ana" and 0 < mine["claim"]["expires_in_s"] <= 300
    assert mine["stored"] and mine["source"] and mine["item_id"] and isinstance(mine["item"], str)
    assert mine["match"] == {
        "kind": "label",
        "policy": "prohibited",
        "label": "contraband",
        "prompts": ["a prohibited thing"],
        "negative_prompts": [],
        "threshold": 0.95,
    }
    bo = api.get("/flags/next", params={"by": "bo"}).json()["flag"]
    assert bo["id"] != mine["id"]
    assert api.get("/flags/next", params={"by": "ana"}).json()["flag"]["id"] == mine["id"]  # a reload

    listed = {f["id"]: f["claim"] for f in api.get("/flags").json()["flags"]}
    assert listed[mine["id"]]["by"] == "ana" and listed[bo["id"]]["by"] == "bo"

    refused = api.post(f"/flags/{mine['id']}/review", json={"decision": "confirm", "by": "bo"})
    assert refused.status_code == 409 and "ana" in refused.json()["detail"]
    down = api.post(
        f"/flags/{mine['id']}/review", json={"decision": "confirm", "by": "bo", "take_down": True}
    )
    assert down.status_code == 409
    assert api.get(f"/items/{mine['item']}").status_code == 200  # refused before anything was deleted
    assert api.post(f"/flags/{mine['id']}/claim", json={"by": "bo"}).status_code == 409
    assert api.delete(f"/flags/{mine['id']}/claim", params={"by": "bo"}).status_code == 409

    done = api.post(f"/flags/{mine['id']}/review", json={"decision": "dismiss", "by": "ana"})
    assert done.status_code == 200
    assert api.get(f"/flags/{mine['id']}").json()["claim"] is None
    third = api.get("/flags/next", params={"by": "ana"}).json()["flag"]
    assert third["id"] not in (mine["id"], bo["id"])
    assert api.get("/flags/next", params={"by": "cy"}).json() == {"flag": None}  # all held or decided

    assert api.delete(f"/flags/{bo['id']}/claim", params={"by": "bo"}).json() == {"released": True}
    assert api.delete(f"/flags/{bo['id']}/claim", params={"by": "bo"}).json() == {"released": False}
    assert api.get("/flags/next", params={"by": "cy"}).json()["flag"]["id"] == bo["id"]


def test_claims_renew_skip_and_refuse_bad_requests(api: TestClient) -> None:
    first = api.get("/flags/next", params={"by": "ana", "lease_s": 30}).json()["flag"]
    assert first["claim"]["expires_in_s"] <= 30
    renewed = api.post(f"/flags/{first['id']}/claim", json={"by": "ana", "lease_s": 600}).json()
    assert renewed["claim"]["expires_in_s"] > 500
    skipped = api.get("/flags/next", params={"by": "ana", "after": first["id"]}).json()["flag"]
    assert skipped["id"] > first["id"]
    assert api.get(f"/flags/{first['id']}").json()["claim"] is None  # one claim a reviewer
    assert api.get("/flags/next").status_code == 422  # no reviewer
    assert api.get("/flags/next", params={"by": ""}).status_code == 422
    assert api.get("/flags/next", params={"by": "a", "lease_s": 0}).status_code == 422
    assert api.get("/flags/next", params={"by": "a", "after": 2**70}).status_code == 422
    assert api.get("/flags/99999").status_code == 404
    assert api.post("/flags/99999/claim", json={"by": "a"}).status_code == 404
    assert api.post(f"/flags/{first['id']}/claim", json={"by": "a", "extra": 1}).status_code == 422
    assert api.get("/review/config").json() == {"blur": True, "lease_s": 300.0}
    api.post(f"/flags/{first['id']}/review", json={"decision": "dismiss", "by": "ana"})
    decided = api.post(f"/flags/{first['id']}/claim", json={"by": "ana"})
    assert decided.status_code == 400 and "not open" in decided.json()["detail"]


def test_concurrent_next_requests_hand_out_each_flag_once(api: TestClient) -> None:
    got: list[int | None] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def reviewer(name: str) -> None:
        start.wait()
        flag = api.get("/flags/next", params={"by": name}).json()["flag"]
        with lock:
            got.append(flag["id"] if flag else None)

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    held = [flag for flag in got if flag is not None]
    assert len(held) == 3 and len(set(held)) == 3 and got.count(None) == 3
