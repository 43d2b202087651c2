"""Flags raised by hash banks reach the shop like a policy's: a ``flag.created`` event that names the
item (or the refused upload, and why it was refused), and a ``flag.decided`` event that names it too;
`index` says how many flags a run raised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lookalike.usecases import Context, banks, ingest, review
from lookalike.workflow import FlagStatus
from lookalike.workflow.banks import TAKEDOWNS
from tests.helpers import write_images
from tests.integration.test_webhooks import hooked
from tests.unit.test_takedowns import near_copy, take_down_planted


def events(ctx: Context) -> list[dict[str, Any]]:
    """Every event written to the outbox, oldest first (nothing listens on the URL: they stay pending)."""
    return [json.loads(d.body) for d in ctx.workflow.outbox.deliveries(limit=1000)[1]]


def test_bank_flags_and_refusals_reach_the_shop_naming_the_item(tmp_path: Path) -> None:
    ctx = hooked(tmp_path, "http://127.0.0.1:9/hooks")
    [known] = write_images(tmp_path / "more", 1, start=10)
    banks.create(ctx, "counterfeits", labels=["counterfeit"], by="cy")
    banks.add(ctx, "counterfeits", [str(known)], by="cy")
    report = ingest.index(ctx, str(tmp_path / "more"), source="seller-9")
    assert report.indexed == 1 and report.flagged == 1
    created = events(ctx)[-1]
    assert created["type"] == "flag.created" and created["flag"]["policy"] == "bank:counterfeits"
    assert created["item"] == {**created["item"], "item_id": "img_0010", "source": "seller-9"}

    take_down_planted(ctx)
    near_copy(tmp_path / "near" / "copy.jpg")
    again = ingest.index(ctx, str(tmp_path / "near"), source="seller-7")
    assert again.blocked == 1 and again.flagged == 0  # the refusal's flag is counted as blocked
    refused = events(ctx)[-1]
    assert refused["type"] == "flag.created" and refused["flag"]["policy"] == f"bank:{TAKEDOWNS}"
    assert refused["item"]["item_id"] == "copy" and refused["item"]["source"] == "seller-7"
    assert refused["refused"] == again.skipped[0].reason and refused["refused"].startswith(
        "blocked: taken down"
    )
    assert ingest.index(ctx, str(tmp_path / "near"), source="seller-7").blocked == 1
    assert events(ctx)[-1]["id"] == refused["id"]  # the same attempt again: its flag is open, no new event

    flag = int(refused["flag"]["id"])
    review.review(ctx, flag, FlagStatus.DISMISSED, reviewer="ana", note="a look-alike, not the same")
    decided = events(ctx)[-1]
    assert decided["type"] == "flag.decided" and decided["flag"]["id"] == flag
    assert decided["item"]["item_id"] == "copy" and decided["item"]["uri"].endswith("copy.jpg")
