"""Take-downs stick: a taken-down picture cannot come back under another path or source or as a near copy."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import ConfigError, ItemNotFoundError
from lookalike.usecases import Context, banks, ingest, items, review
from lookalike.workflow import FlagStatus
from lookalike.workflow.banks import TAKEDOWNS
from tests.helpers import make_image
from tests.unit.test_flags_of_gone_items import flagged
from tests.unit.test_policies import PLANTED


def take_down_planted(ctx: Context) -> tuple[int, int]:
    """Confirm the flag of planted_a.png with a take-down; returns (flag id, item id)."""
    for row in review.flags(ctx, status=FlagStatus.OPEN)[1]:
        if row.item is not None and row.item.uri.endswith("planted_a.png"):
            review.review(ctx, row.flag.id, FlagStatus.CONFIRMED, reviewer="bo", take_down=True)
            return row.flag.id, row.flag.item
    raise AssertionError("planted_a.png was not flagged")


def near_copy(path: Path) -> None:
    """The planted picture resized and recompressed: other bytes, the same picture (PDQ distance 22)."""
    buffer = io.BytesIO()
    make_image(PLANTED).resize((200, 150)).save(buffer, format="JPEG", quality=50)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).save(path, quality=50)


def uris(ctx: Context) -> set[str]:
    return {Path(i.uri).name for batch in ctx.store.iter_items() for i in batch}


def test_a_taken_down_picture_cannot_return_by_any_path_source_or_near_copy(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    flag, item = take_down_planted(ctx)
    listed = banks.listed(ctx)
    assert [(b.bank.name, b.bank.action.value, b.entries) for b in listed] == [(TAKEDOWNS, "refuse", 1)]

    # The same folder again (its catalog still lists the picture): refused, reported, not stored.
    again = ingest.index(ctx, str(tmp_path / "photos"))
    assert again.indexed == 0 and again.blocked == 1 and "planted_a.png" not in uris(ctx)
    [skipped] = [s for s in again.skipped if s.uri.endswith("planted_a.png")]
    day = review._iso(ctx.workflow.decisions().__next__().at)[:10]
    assert skipped.reason == f"blocked: taken down on {day} by bo, flag {flag}"

    # Another path and another source: the same bytes are refused by their SHA-256.
    other = tmp_path / "elsewhere" / "renamed.png"
    other.parent.mkdir()
    shutil.copy(tmp_path / "photos" / "planted_a.png", other)
    moved = ingest.index(ctx, str(other.parent), source="another-shop")
    assert moved.indexed == 0 and moved.blocked == 1 and "renamed.png" not in uris(ctx)

    # A near copy (resized, recompressed): refused by its PDQ hash, within the bank's distance.
    near_copy(tmp_path / "near" / "copy.jpg")
    near = ingest.index(ctx, str(tmp_path / "near"), source="a-third-shop")
    assert near.blocked == 1 and "near copy: PDQ distance" in near.skipped[0].reason
    assert "copy.jpg" not in uris(ctx)

    # Each re-upload raised a flag that stays open though its item was never stored.
    attempts = review.flags(ctx, policy=f"bank:{TAKEDOWNS}", status=FlagStatus.OPEN)
    assert attempts[0] == 3 and all(row.item is None for row in attempts[1])
    assert {row.flag.label for row in attempts[1]} == {"taken down"}
    assert item in {row.flag.item for row in attempts[1]}  # the same path and source: the same id
    # What each attempt matched (the review page's side-by-side): the take-down's entry and the distance.
    for row in attempts[1]:
        [(entry, distance)] = ctx.workflow.banks.matches.matched(row.flag.item)
        assert entry.flag == flag and entry.bank == TAKEDOWNS and 0 <= distance <= 31
    # Indexing the same folders again raises no second flag for the same attempts.
    ingest.index(ctx, str(other.parent), source="another-shop")
    assert review.flags(ctx, policy=f"bank:{TAKEDOWNS}")[0] == 3


def test_lifting_a_block_is_an_audited_command_and_the_picture_can_return(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    flag, _ = take_down_planted(ctx)
    total, [entry] = banks.entries(ctx, TAKEDOWNS)
    assert total == 1 and entry.flag == flag and entry.sha256 and len(entry.pdq) == 64
    assert entry.subject is not None and entry.subject.uri.endswith("planted_a.png")
    with pytest.raises(ConfigError, match="--by"):
        banks.remove(ctx, TAKEDOWNS, [str(entry.id)], by=" ")
    with pytest.raises(ItemNotFoundError):
        banks.remove(ctx, TAKEDOWNS, ["12345"], by="cy")
    assert banks.entries(ctx, TAKEDOWNS)[0] == 1  # a failed removal removed nothing

    lifted = banks.remove(ctx, TAKEDOWNS, [entry.sha256], by="cy", note="appeal granted")
    assert [e.id for e in lifted] == [entry.id]
    [change] = [c for c in ctx.workflow.banks.changes() if c.action == "unblock"]
    assert (change.who, change.bank, change.entry, change.flag, change.note) == (
        "cy",
        TAKEDOWNS,
        entry.id,
        flag,
        "appeal granted",
    )
    assert change.subject is not None and change.subject.uri.endswith("planted_a.png")
    back = ingest.index(ctx, str(tmp_path / "photos"))
    assert back.indexed == 1 and back.blocked == 0 and "planted_a.png" in uris(ctx)


def test_an_allow_bank_suppresses_a_near_match_but_never_the_same_bytes(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    take_down_planted(ctx)
    near_copy(tmp_path / "near" / "copy.jpg")
    [hashed] = banks.hash_files(ctx, [str(tmp_path / "near" / "copy.jpg")])
    banks.create(ctx, "known-good", kind="allow", max_distance=10, by="cy")
    banks.add(ctx, "known-good", [hashed.pdq], by="cy")
    assert ingest.index(ctx, str(tmp_path / "near")).indexed == 1  # suppressed: stored
    banks.add(ctx, "known-good", [str(tmp_path / "photos" / "planted_a.png")], by="cy")
    assert ingest.index(ctx, str(tmp_path / "photos")).blocked == 1  # the same bytes stay blocked


def test_a_flood_of_matches_pauses_refusals_and_raises_one_alert(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    ctx.settings.bank_flood_matches = 2
    take_down_planted(ctx)
    for n in range(4):  # four near copies, each its own upload
        near_copy(tmp_path / "wave" / f"copy_{n}.jpg")
        Image.open(tmp_path / "wave" / f"copy_{n}.jpg").rotate(0).save(
            tmp_path / "wave" / f"copy_{n}.png"
        )  # other bytes, the same pixels
    report = ingest.index(ctx, str(tmp_path / "wave"), source="wave")
    # Two refused; the third match is the flood: paused, stored and flagged from then on.
    assert report.blocked == 2 and report.indexed == 6
    [alert] = banks.alerts(ctx)
    assert alert.bank == TAKEDOWNS and alert.matches == 3 and "paused" in alert.message
    assert report.alerts == [alert.message]
    stored = review.flags(ctx, policy=f"bank:{TAKEDOWNS}", status=FlagStatus.OPEN)[1]
    assert sum(1 for row in stored if row.item is not None) == 6
    # Resuming the entry refuses near copies again (and resolves the alert).
    banks.resume(ctx, TAKEDOWNS, alert.entry, by="cy")
    assert banks.alerts(ctx, open_only=True) == []
    near_copy(tmp_path / "later" / "copy.jpg")
    assert ingest.index(ctx, str(tmp_path / "later"), source="later").blocked == 1


def test_deleting_without_a_take_down_blocks_nothing(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    doomed = [i.id for batch in ctx.store.iter_items() for i in batch if i.uri.endswith("planted_a.png")]
    items.delete(ctx, doomed)
    assert banks.listed(ctx) == []
    assert ingest.index(ctx, str(tmp_path / "photos")).indexed == 1


def test_a_synced_folder_that_still_lists_a_taken_down_picture_reports_it_and_loses_nothing(
    tmp_path: Path,
) -> None:
    ctx = flagged(tmp_path, sync=True)
    before = uris(ctx)
    take_down_planted(ctx)
    synced = ingest.index(ctx, str(tmp_path / "photos"), sync=True)
    assert (synced.indexed, synced.blocked, synced.deleted, synced.kept) == (0, 1, 0, 0)
    assert uris(ctx) == before - {"planted_a.png"}
    assert synced.skipped[0].reason.startswith("blocked: taken down on ")


def test_a_take_down_that_fails_half_way_has_blocked_the_picture_and_can_be_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.errors import StoreError

    ctx = flagged(tmp_path)
    doomed = next(r for r in review.flags(ctx)[1] if r.item and r.item.uri.endswith("planted_a.png"))

    def broken(*args: object, **kwargs: object) -> int:
        raise StoreError("the store went away")

    monkeypatch.setattr(items, "delete", broken)
    with pytest.raises(StoreError):
        review.review(ctx, doomed.flag.id, FlagStatus.CONFIRMED, reviewer="bo", take_down=True)
    # Blocked already: a copy elsewhere cannot come in while the take-down is unfinished.
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(tmp_path / "photos" / "planted_a.png", other / "again.png")
    assert ingest.index(ctx, str(other)).blocked == 1
    assert ctx.workflow.flag(doomed.flag.id).status is FlagStatus.OPEN  # the review can be repeated
    monkeypatch.undo()
    review.review(ctx, doomed.flag.id, FlagStatus.CONFIRMED, reviewer="bo", take_down=True)
    assert "planted_a.png" not in uris(ctx) and banks.entries(ctx, TAKEDOWNS)[0] == 1


def test_the_block_list_can_be_made_ahead_but_always_refuses(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    with pytest.raises(ConfigError, match="block list"):
        banks.create(ctx, TAKEDOWNS, action="flag", by="cy")
    made = banks.create(
        ctx, TAKEDOWNS, max_distance=12, by="cy"
    )  # a stricter distance before the first take-down
    assert (made.action.value, made.max_distance) == ("refuse", 12)
    with pytest.raises(ConfigError, match="refuses"):
        banks.configure(ctx, TAKEDOWNS, action="flag", by="cy")
    take_down_planted(ctx)
    assert [(b.bank.max_distance, b.entries) for b in banks.listed(ctx)] == [(12, 1)]
