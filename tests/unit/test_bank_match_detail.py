"""What a reviewer sees beside a flag a hash bank raised: the bank, the entry it matched (labels, note,
hashes; a take-down's flag, reviewer and day), and the PDQ distance; a refused upload described."""

from __future__ import annotations

from pathlib import Path

from lookalike.usecases import banks, ingest, queue, review
from lookalike.workflow import FlagStatus
from lookalike.workflow.banks import TAKEDOWNS
from tests.helpers import write_images
from tests.unit.test_flags_of_gone_items import flagged
from tests.unit.test_policies import make_context
from tests.unit.test_takedowns import near_copy, take_down_planted


def test_a_flag_bank_match_shows_the_bank_its_entry_and_the_distance(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    write_images(tmp_path / "photos", 4)
    banks.create(ctx, "counterfeits", labels=["counterfeit"], max_distance=40, by="ana")
    banks.add(ctx, "counterfeits", [str(tmp_path / "photos" / "img_0002.jpg")], note="case 7 fake", by="ana")
    ingest.index(ctx, str(tmp_path / "photos"))
    [row] = review.flags(ctx)[1]
    assert row.item is not None and row.item.uri.endswith("img_0002.jpg")

    shown = queue.detail_row(queue.detail(ctx, row.flag.id))
    [(entry, _)] = ctx.workflow.banks.matches.matched(row.flag.item)
    match = shown["match"]
    assert match["kind"] == "bank" and match["bank"] == "counterfeits"
    assert (match["bank_kind"], match["action"], match["max_distance"]) == ("block", "flag", 40)
    assert match["distance"] == int(row.flag.score) and match["reason"] is None
    assert match["entry"]["id"] == entry.id and match["entry"]["labels"] == []
    assert match["entry"]["note"] == "case 7 fake" and match["entry"]["pdq"] == entry.pdq
    assert match["entry"]["added_by"] == "ana" and match["entry"]["taken_down"] is None
    assert match["label"] == "counterfeit" and match["bank_labels"] == ["counterfeit"]
    # The upload's own hash beside the entry's, to compare.
    assert shown["pdq"] == ctx.workflow.hashes_of([row.flag.item])[row.flag.item][0]
    assert shown["sha256"] == row.item.sha256 and shown["item"] == str(row.flag.item)


def test_a_refused_reupload_shows_the_take_down_it_matched_and_then_the_lifted_block(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    taken, _ = take_down_planted(ctx)
    near_copy(tmp_path / "near" / "copy.jpg")
    report = ingest.index(ctx, str(tmp_path / "near"), source="a-third-shop")
    assert report.blocked == 1
    [attempt] = review.flags(ctx, policy=f"bank:{TAKEDOWNS}", status=FlagStatus.OPEN)[1]

    shown = queue.detail_row(queue.detail(ctx, attempt.flag.id))
    day = review.timestamp(next(ctx.workflow.decisions()).at)[:10]
    assert not shown["stored"] and shown["source"] == "a-third-shop" and shown["item_id"] == "copy"
    assert shown["uri"].endswith("copy.jpg") and len(shown["pdq"]) == 64 and len(shown["sha256"]) == 64
    assert shown["refused"] == report.skipped[0].reason
    match = shown["match"]
    assert match["kind"] == "bank" and match["bank"] == TAKEDOWNS and match["action"] == "refuse"
    assert match["reason"] == report.skipped[0].reason
    assert f"taken down on {day} by bo, flag {taken}" in match["reason"]
    assert 0 < match["distance"] <= 31 and f"PDQ distance {match['distance']})" in match["reason"]
    down = match["entry"]["taken_down"]
    assert (down["flag"], down["by"], down["at"][:10]) == (taken, "bo", day)
    assert down["uri"].endswith("planted_a.png") and down["item_id"] == "planted_a"
    assert match["entry"]["describe"] == f"taken down on {day} by bo, flag {taken}"

    # The block lifted: the entry is gone from the bank, and the flag says how it left.
    [entry] = banks.entries(ctx, TAKEDOWNS)[1]
    banks.remove(ctx, TAKEDOWNS, [str(entry.id)], by="cy", note="appeal granted")
    lifted = queue.detail_row(queue.detail(ctx, attempt.flag.id))["match"]["entry"]
    assert lifted["id"] == entry.id and lifted["pdq"] == entry.pdq
    assert (lifted["taken_down"]["flag"], lifted["taken_down"]["item_id"]) == (taken, "planted_a")
    assert (lifted["removed"]["by"], lifted["removed"]["action"], lifted["removed"]["note"]) == (
        "cy",
        "unblock",
        "appeal granted",
    )
