"""The review queue for a team: leases on flags, never one flag for two reviewers, decisions refused
while another reviewer holds a flag (workflow/claims.py, usecases/queue.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lookalike.errors import ClaimedError, ConfigError, ItemNotFoundError
from lookalike.usecases import ingest, policies, queue, review
from lookalike.workflow import FlagStatus, NewFlag, Workflow
from tests.unit.test_policies import make_context, plant, write_policy


def flagged(path: Path, count: int) -> Workflow:
    db = Workflow(str(path))
    db.add_flags([NewFlag(item, "p", "gun", 0.5) for item in range(1, count + 1)])
    return db


def test_concurrent_claimers_never_get_the_same_flag(tmp_path: Path) -> None:
    """Eight reviewers, each with a connection of their own (as separate processes have), claim
    until nothing is left: every open flag is handed out exactly once."""
    path = tmp_path / "w.sqlite"
    flagged(path, 60).close()
    got: dict[str, list[int]] = {}
    start = threading.Barrier(8)

    def reviewer(name: str) -> None:
        db = Workflow(str(path))
        mine: list[int] = []
        start.wait()
        while True:
            found = db.claims.next(name, lease_s=300)
            if found is None:
                break
            flag, claim = found
            assert claim.reviewer == name
            mine.append(flag.id)
            db.review([flag.id], FlagStatus.DISMISSED, reviewer=name)  # decided: the next one
        got[name] = mine
        db.close()

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    handed = [flag for flags in got.values() for flag in flags]
    assert sorted(handed) == list(range(1, 61))  # each once, none twice, none left
    assert len(got) == 8


def test_concurrent_claimers_holding_their_flags_each_get_a_different_one(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    flagged(path, 5).close()
    got: dict[str, int | None] = {}
    start = threading.Barrier(8)

    def reviewer(name: str) -> None:
        db = Workflow(str(path))
        start.wait()
        found = db.claims.next(name, lease_s=300)
        got[name] = found[0].id if found else None
        db.close()

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    held = [flag for flag in got.values() if flag is not None]
    assert sorted(held) == [1, 2, 3, 4, 5]  # five flags for eight reviewers: three get none
    assert list(got.values()).count(None) == 3


def test_a_lease_expires_is_renewed_and_resumes_after_a_reload(tmp_path: Path) -> None:
    db = flagged(tmp_path / "w.sqlite", 3)
    now = time.time()
    first = db.claims.next("ana", lease_s=60, now=now)
    assert first is not None and first[0].id == 1 and first[1].expires_at == pytest.approx(now + 60)
    again = db.claims.next("ana", lease_s=60, now=now + 10)  # the page reloaded: the same flag, renewed
    assert again is not None and again[0].id == 1 and again[1].expires_at == pytest.approx(now + 70)
    assert again[1].claimed_at == pytest.approx(now)
    other = db.claims.next("bo", lease_s=60, now=now + 20)
    assert other is not None and other[0].id == 2
    with pytest.raises(ClaimedError, match="ana"):
        db.claims.claim(1, "bo", lease_s=60, now=now + 30)
    renewed = db.claims.claim(1, "ana", lease_s=60, now=now + 50)
    assert renewed.expires_at == pytest.approx(now + 110)
    # Past the lease, anyone may take it.
    taken = db.claims.claim(1, "bo", lease_s=60, now=now + 111)
    assert taken.reviewer == "bo" and taken.claimed_at == pytest.approx(now + 111)
    # One claim a reviewer: bo's claim on flag 2 went when bo took flag 1.
    assert set(db.claims.holders([1, 2, 3], now=now + 112)) == {1}


def test_skipping_goes_on_to_a_later_flag_and_round_to_the_start(tmp_path: Path) -> None:
    db = flagged(tmp_path / "w.sqlite", 3)
    order = []
    after = None
    for _ in range(4):
        found = db.claims.next("ana", lease_s=60, after=after)
        assert found is not None
        order.append(found[0].id)
        after = found[0].id
    assert order == [1, 2, 3, 1]


def test_deciding_a_flag_another_reviewer_holds_is_refused_until_the_lease_expires(tmp_path: Path) -> None:
    db = flagged(tmp_path / "w.sqlite", 2)
    db.claims.claim(1, "ana", lease_s=300)
    with pytest.raises(ClaimedError, match="being reviewed by 'ana'"):
        db.review([1], FlagStatus.CONFIRMED, reviewer="bo")
    with pytest.raises(ClaimedError):
        db.take_down(1, FlagStatus.CONFIRMED, reviewer="bo")
    assert db.flag(1).status is FlagStatus.OPEN and list(db.decisions()) == []
    db.review([2], FlagStatus.DISMISSED, reviewer="bo")  # nobody holds flag 2: deciding it needs no claim
    # ana's lease runs out: bo may decide it now.
    db.claims.claim(1, "ana", lease_s=300, now=time.time() - 400)
    db.review([1], FlagStatus.CONFIRMED, reviewer="bo")
    assert db.flag(1).status is FlagStatus.CONFIRMED
    assert db.claims.holders([1, 2]) == {}


def test_a_decision_lets_the_claim_go_and_the_holder_decides_freely(tmp_path: Path) -> None:
    db = flagged(tmp_path / "w.sqlite", 2)
    db.claims.claim(1, "ana", lease_s=300)
    db.review([1], FlagStatus.DISMISSED, reviewer="ana")
    assert db.claims.holders([1]) == {}
    found = db.claims.next("bo", lease_s=300)
    assert found is not None and found[0].id == 2  # flag 1 is decided: not handed out


def test_items_gone_close_flags_whoever_holds_them(tmp_path: Path) -> None:
    db = flagged(tmp_path / "w.sqlite", 1)
    db.claims.claim(1, "ana", lease_s=300)
    assert [d.decision for d in db.items_gone([1], "item deleted")] == [FlagStatus.CLOSED]
    assert db.claims.holders([1]) == {}


def test_claims_refuse_what_cannot_be_claimed(tmp_path: Path) -> None:
    db = flagged(tmp_path / "w.sqlite", 1)
    with pytest.raises(ItemNotFoundError):
        db.claims.claim(99, "ana", lease_s=60)
    with pytest.raises(ConfigError, match="name"):
        db.claims.next("  ", lease_s=60)
    with pytest.raises(ConfigError, match="lease"):
        db.claims.claim(1, "ana", lease_s=0)
    db.review([1], FlagStatus.DISMISSED, reviewer="ana")
    with pytest.raises(ConfigError, match="dismissed, not open"):
        db.claims.claim(1, "ana", lease_s=60)
    assert db.claims.next("ana", lease_s=60) is None
    db.claims.claim(1, "bo", lease_s=60, open_only=False)  # a take-down holds a decided flag too
    with pytest.raises(ClaimedError):
        db.claims.release(1, "ana")  # nobody lets another's claim go: it expires
    assert db.claims.release(1, "bo") is True
    assert db.claims.release(1, "ana") is False


def test_a_decision_refuses_the_reviewer_names_a_claim_refuses(tmp_path: Path) -> None:
    # A flag nobody holds is decided without a claim: the name was once kept whatever it was.
    db = flagged(tmp_path / "w.sqlite", 1)
    for name, why in (("x" * 201, "at most 200"), ("ana\nbo", "control"), ("  ", "name")):
        with pytest.raises(ConfigError, match=why):
            db.claims.claim(1, name, lease_s=60)
        with pytest.raises(ConfigError, match=why):
            db.review([1], FlagStatus.DISMISSED, reviewer=name)
        with pytest.raises(ConfigError, match=why):
            db.take_down(1, FlagStatus.CONFIRMED, reviewer=name)
    assert db.flag(1).status is FlagStatus.OPEN and list(db.decisions()) == []


def test_the_queue_hands_out_items_and_shows_what_a_flag_matched(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    first = queue.next_flag(ctx, "ana")
    second = queue.next_flag(ctx, "bo")
    assert first is not None and second is not None and first.flag.id != second.flag.id
    assert first.item is not None and first.item.id == first.flag.item
    assert queue.next_flag(ctx, "ana", policy="other") is None
    shown = queue.detail(ctx, first.flag.id)
    assert shown.claim is not None and shown.claim.reviewer == "ana"
    assert shown.match["kind"] == "label" and shown.match["prompts"] == ["a prohibited thing"]
    assert shown.match["threshold"] == 0.95
    with pytest.raises(ClaimedError):
        review.review(ctx, first.flag.id, FlagStatus.CONFIRMED, reviewer="bo", take_down=True)
    assert ctx.store.existing_ids([first.flag.item]) == {first.flag.item}  # refused before the delete
    review.review(ctx, first.flag.id, FlagStatus.CONFIRMED, reviewer="ana", take_down=True)
    assert ctx.store.existing_ids([first.flag.item]) == set()
    assert queue.holders(ctx, [first.flag.id]) == {}
    assert queue.release(ctx, second.flag.id, "bo") is True
    with pytest.raises(ItemNotFoundError):
        queue.release(ctx, 10**9, "bo")


def test_an_event_with_a_broken_score_is_still_written_with_its_flag(tmp_path: Path) -> None:
    import json

    db = Workflow(str(tmp_path / "w.sqlite"), webhooks=("http://127.0.0.1:9/h",))
    assert db.add_flags([NewFlag(1, "p", "gun", float("inf"))]) == 1  # the flag is kept
    _, (delivery,) = db.outbox.deliveries()
    assert json.loads(delivery.body)["flag"]["score"] is None
