"""An item that goes away (deleted, swept, taken down) closes its open flags with the reason, in the audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest, items, policies, review
from lookalike.workflow import SYSTEM, FlagStatus
from tests.helpers import FakeEmbedder, make_image, write_images
from tests.unit.test_policies import PLANTED, make_context, plant, write_policy


def flagged(tmp_path: Path, *, sync: bool = False) -> Context:
    """5 photos and 3 copies of the prohibited picture, indexed under a policy: 3 open flags."""
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 5)
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"), sync=sync)
    return ctx


def open_items(ctx: Context) -> set[int]:
    return {row.flag.item for row in review.flags(ctx, status=FlagStatus.OPEN)[1]}


def audit(ctx: Context) -> list[tuple[int, str, str, str, bool]]:
    return [(d.item, d.decision.value, d.reviewer, d.note, d.took_down) for d in ctx.workflow.decisions()]


def test_deleting_an_item_closes_its_open_flags_with_the_reason(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    first, second, third = (row.flag for row in review.flags(ctx)[1])
    review.review(ctx, third.id, FlagStatus.DISMISSED, reviewer="ana")
    first, second, third = first.item, second.item, third.item
    assert items.delete(ctx, [first, third]) == 2
    assert open_items(ctx) == {second}
    closed = review.flags(ctx, status=FlagStatus.CLOSED)[1]
    assert [(row.flag.item, row.item) for row in closed] == [(first, None)]
    # The dismissed flag keeps its decision: only open flags are closed, once each.
    assert audit(ctx)[1:] == [(first, "closed", SYSTEM, "item deleted", False)]
    assert items.delete(ctx, [first]) == 0 and len(audit(ctx)) == 2


def test_a_crash_between_the_store_delete_and_the_flag_close_shows_no_open_flag(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    doomed = min(open_items(ctx))

    def killed(*_: Any) -> None:
        raise SystemExit("killed between the two writes")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(items, "gone", killed)
        with pytest.raises(SystemExit):
            items.delete(ctx, [doomed])
    assert ctx.store.get([doomed]) == []
    assert ctx.workflow.count_flags(status=FlagStatus.OPEN) == 3  # the close never happened
    ctx.close()

    again = make_context(tmp_path)
    total, page = review.flags(again, status=FlagStatus.OPEN)
    assert total == 2 and doomed not in {row.flag.item for row in page}
    assert review.flags(again)[0] == 3  # closed, not hidden: the flag and its audit stay
    assert audit(again) == [(doomed, "closed", SYSTEM, "item no longer stored", False)]


def test_a_foreign_delete_leaves_no_open_flag_in_any_listing(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    doomed = min(open_items(ctx))
    ctx.store.delete([doomed])  # as a month dropped, or another tool, would
    assert review.flags(ctx, status=FlagStatus.OPEN, limit=1, offset=0)[0] == 2
    assert doomed not in open_items(ctx)


def test_an_index_sync_sweep_closes_the_flags_of_what_it_deleted(tmp_path: Path) -> None:
    ctx = flagged(tmp_path, sync=True)
    gone = tmp_path / "photos" / "planted_a.png"
    doomed = {i.id for batch in ctx.store.iter_items(with_vector=False) for i in batch if i.uri == str(gone)}
    gone.unlink()
    report = ingest.index(ctx, str(tmp_path / "photos"), sync=True)
    assert report.deleted == 1
    assert not doomed & open_items(ctx) and len(open_items(ctx)) == 2
    assert audit(ctx) == [(doomed.pop(), "closed", SYSTEM, "deleted by index --sync", False)]


def test_a_picture_indexed_again_after_its_delete_is_flagged_open_again(tmp_path: Path) -> None:
    ctx = flagged(tmp_path)
    doomed = min(open_items(ctx))
    items.delete(ctx, [doomed])
    ingest.index(ctx, str(tmp_path / "photos"))  # the same file, the same id
    assert doomed in open_items(ctx) and review.flags(ctx)[0] == 3


def test_a_takedown_closes_the_items_other_flags_in_the_same_step(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    policy = tmp_path / "two.toml"
    policy.write_text(
        '[labels.contraband]\nprompts = ["a prohibited thing"]\nthreshold = 0.95\n'
        '[labels.again]\nprompts = ["a prohibited thing"]\nthreshold = 0.95\n',
        encoding="utf-8",
    )
    policies.add(ctx, str(policy))
    (tmp_path / "photos").mkdir()
    make_image(PLANTED).save(tmp_path / "photos" / "planted.png")
    ingest.index(ctx, str(tmp_path / "photos"))
    one, other = (row.flag for row in review.flags(ctx)[1])
    records = review.review(ctx, one.id, FlagStatus.CONFIRMED, reviewer="ana", note="seen", take_down=True)
    assert [(r.flag, r.decision, r.reviewer, r.note, r.took_down) for r in records] == [
        (one.id, FlagStatus.CONFIRMED, "ana", "seen", True),
        (other.id, FlagStatus.CLOSED, "ana", f"taken down with flag {one.id}", True),
    ]
    assert ctx.store.get([one.item]) == [] and one.item not in ctx.workflow.hashes()
    assert review.flags(ctx, status=FlagStatus.OPEN)[0] == 0


def test_a_takedown_takes_the_picture_and_every_object_cut_from_it(tmp_path: Path) -> None:
    from lookalike.workflow import NewFlag
    from tests.integration.test_detect_api import build_with_crops

    ctx, _ = build_with_crops(tmp_path)
    stored = [item for batch in ctx.store.iter_items(with_vector=False) for item in batch]
    assert len(stored) == 6 * 3  # six photos, each whole and as two detected objects
    crop = next(i for i in stored if i.box)
    family = sorted(i.id for i in stored if i.uri == crop.uri)
    assert len(family) == 3 and items.picture_and_crops(ctx, crop.id) == family
    picture = next(i.id for i in stored if i.uri == crop.uri and not i.box)
    assert items.picture_and_crops(ctx, picture) == family
    ctx.workflow.add_flags(
        [NewFlag(crop.id, "prohibited", "weapon", 0.9), NewFlag(picture, "prohibited", "weapon", 0.4)]
    )
    on_crop, on_picture = (row.flag for row in review.flags(ctx)[1])
    assert on_crop.item == crop.id

    review.review(ctx, on_crop.id, FlagStatus.CONFIRMED, reviewer="ana", take_down=True)
    left = [item for batch in ctx.store.iter_items(with_vector=False) for item in batch]
    assert len(left) == 15 and not {i.id for i in left} & set(family)  # nothing of that photo stays
    assert all(i.uri != crop.uri for i in left)
    assert ctx.workflow.flag(on_picture.id).status is FlagStatus.CLOSED
    assert any(
        d.flag == on_picture.id and d.note == f"taken down with flag {on_crop.id}"
        for d in ctx.workflow.decisions()
    )


# -- the command line and its audit ----------------------------------------------------------------


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI in-process on a database in tmp_path, with the fake embedder that knows the planted concept."""
    db = str(tmp_path / "cli.db")

    def context_for(
        db_: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any
    ) -> Any:
        embedder = FakeEmbedder()
        embedder.concepts["a prohibited thing"] = embedder.embed_images([make_image(PLANTED)])[0]
        settings = load_settings(db=db_ or db, collection=collection, workers=2, **extra)
        return Context(settings, embedder=embedder)

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    return CliRunner()


def test_delete_from_the_command_line_closes_flags_and_the_audit_says_why(
    cli: CliRunner, tmp_path: Path
) -> None:
    assert cli.invoke(app, ["policy", "add", str(write_policy(tmp_path))]).exit_code == 0
    write_images(tmp_path / "photos", 3)
    plant(tmp_path / "photos")
    assert cli.invoke(app, ["index", str(tmp_path / "photos")]).exit_code == 0
    listed = json.loads(cli.invoke(app, ["flags", "--json"]).stdout)
    assert listed["total"] == 3
    doomed = listed["flags"][0]["item"]  # a string, as GET /flags answers (ids exceed a JavaScript number)
    deleted = cli.invoke(app, ["delete", "--id", str(doomed), "--yes"])
    assert deleted.exit_code == 0, deleted.output
    still = json.loads(cli.invoke(app, ["flags", "--status", "open", "--json"]).stdout)
    assert still["total"] == 2 and doomed not in {f["item"] for f in still["flags"]}
    closed = json.loads(cli.invoke(app, ["flags", "--status", "closed", "--json"]).stdout)["flags"]
    assert [(f["item"], f["uri"]) for f in closed] == [(doomed, None)]
    out = tmp_path / "audit.json"
    assert cli.invoke(app, ["audit", "--out", str(out)]).exit_code == 0
    decisions = json.loads(out.read_text(encoding="utf-8"))["decisions"]
    assert [(d["item"], d["decision"], d["reviewer"], d["note"]) for d in decisions] == [
        (int(doomed), "closed", "system", "item deleted")  # the audit file writes ids as numbers
    ]
