"""The review page beside a flag a hash bank raised, in headless Chromium at 1280 and 390 px: the upload
beside the bank entry it matched (the bank's name and kind, the entry's labels, note and hash, the PDQ
distance), and a refused re-upload of a taken-down picture beside the take-down (day, reviewer, flag)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.usecases import Context, banks, ingest, review
from lookalike.workflow import FlagStatus
from lookalike.workflow.banks import TAKEDOWNS
from tests.e2e.test_web import CHROMIUM, FLAGS, SHOTS, serve
from tests.e2e.test_web_review_team import _claimed, _whole
from tests.helpers import write_images
from tests.unit.test_flags_of_gone_items import flagged
from tests.unit.test_takedowns import near_copy, take_down_planted

pytestmark = pytest.mark.slow
SHOP = "a-third-shop-with-a-rather-long-name-0042"
SELLER = "counterfeit-seller-with-a-long-name-0077"
NOTE = "case 7: the fake handbag sold under a famous brand's name"


def build_bank_world(tmp_path: Path) -> Context:
    """A taken-down picture, its near copy refused from another shop, and a picture matching a flag bank."""
    ctx = flagged(tmp_path)
    take_down_planted(ctx)
    near_copy(tmp_path / "near" / "copy.jpg")
    assert ingest.index(ctx, str(tmp_path / "near"), source=SHOP).blocked == 1
    [known] = write_images(tmp_path / "more", 1, start=10)
    banks.create(ctx, "counterfeits", labels=["counterfeit"], by="cy")
    banks.add(ctx, "counterfeits", [str(known)], labels=["handbag"], note=NOTE, by="cy")
    assert ingest.index(ctx, str(tmp_path / "more"), source=SELLER).indexed == 1
    return ctx


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[str, Context]]:
    ctx = build_bank_world(tmp_path)
    for url, _ in serve(ctx, []):
        yield url, ctx


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_bank_match_and_a_refused_reupload_are_shown_beside_what_they_matched(
    live: tuple[str, Context],
) -> None:
    from playwright.sync_api import sync_playwright

    url, ctx = live
    [matched] = review.flags(ctx, policy="bank:counterfeits")[1]
    [refused] = review.flags(ctx, policy=f"bank:{TAKEDOWNS}", status=FlagStatus.OPEN)[1]
    [entry] = banks.entries(ctx, "counterfeits")[1]
    [block] = banks.entries(ctx, TAKEDOWNS)[1]
    day = review.timestamp(block.added_at)[:10]
    taken_down = f"Taken down on {day} by bo, flag {block.flag}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for width, height in ((1280, 900), (390, 844)):
            phone = width < 500
            context = browser.new_context(
                viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone
            )
            context.add_init_script("localStorage.setItem('lookalike-reviewer', 'ana')")
            page = context.new_page()
            page.goto(url + "/review")
            _claimed(page)

            # The stored upload beside the bank entry it matched.
            card = f".card.flag[data-flag='{matched.flag.id}']"
            page.tap(card) if phone else page.click(card)
            page.wait_for_function(
                f"document.querySelector('#current-title').textContent.startsWith('#{matched.flag.id} ')"
            )
            shown = page.inner_text("#match")
            assert "Entry of bank counterfeits" in shown and "counterfeits (block · flag)" in shown
            assert "handbag" in shown and NOTE in shown and entry.pdq in shown and "by cy" in shown
            distance = int(matched.flag.score)
            assert page.inner_text("#score") == f"{distance} bits"
            assert f"{distance} bits" in shown and "bank's max 31" in shown
            assert "PDQ distance" in page.inner_text("#score-kind")
            assert SELLER in page.inner_text("#upload-meta")
            assert SELLER in page.inner_text(f"{card} .who") and "handbag" in page.inner_text(f"{card} .name")
            _whole(page, ".card.flag .name, .card.flag .who, #current-title, .facts dd, .match-title")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(SHOTS / f"review-bank-{width}.png"), full_page=True)

            # The refused re-upload beside the take-down it matched: never stored, described whole.
            card = f".card.flag[data-flag='{refused.flag.id}']"
            assert "refused, never stored" in page.inner_text(f"{card} .thumb")
            assert SHOP in page.inner_text(f"{card} .who")
            page.tap(card) if phone else page.click(card)
            page.wait_for_function(
                f"document.querySelector('#current-title').textContent.startsWith('#{refused.flag.id} ')"
            )
            shown = page.inner_text("#match")
            assert taken_down in shown and block.pdq in shown and "planted_a.png" in shown
            assert f"{TAKEDOWNS} (block · refuse)" in shown
            assert page.is_visible("#upload-gone") and "never stored" in page.inner_text("#upload-gone")
            upload = page.inner_text("#upload-meta")
            assert SHOP in upload and "copy.jpg" in upload and "blocked: taken down on" in upload
            assert page.inner_text("#score") == f"{int(refused.flag.score)} bits"
            _whole(page, ".card.flag .name, .card.flag .who, #current-title, .facts dd, .match-title")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(SHOTS / f"review-takedown-{width}.png"), full_page=True)
            page.eval_on_selector("#match", "n => n.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(SHOTS / f"review-takedown-{width}-matched.png"))

            # The policy filter offers each bank: its flags alone.
            page.select_option("#policy", "bank:counterfeits")
            page.wait_for_function("document.querySelectorAll('#flags .card.flag').length === 1")
            assert page.get_attribute("#flags .card.flag", "data-flag") == str(matched.flag.id)
            context.close()

        # The block lifted since: the refused re-upload shows what it was and who lifted it, and why.
        banks.remove(ctx, TAKEDOWNS, [str(block.id)], by="cy", note="appeal granted")
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.add_init_script("localStorage.setItem('lookalike-reviewer', 'ana')")
        page = phone.new_page()
        page.goto(url + "/review")
        _claimed(page)
        page.tap(f".card.flag[data-flag='{refused.flag.id}']")
        page.wait_for_function(
            f"document.querySelector('#current-title').textContent.startsWith('#{refused.flag.id} ')"
        )
        shown = page.inner_text("#match")
        assert f"Taken down with flag {block.flag} · block lifted" in shown and "planted_a" in shown
        assert (
            "by cy: appeal granted" in shown and taken_down.lower() in shown.lower()
        )  # the refusal's reason
        _whole(page, ".facts dd, .match-title")
        page.eval_on_selector("#match", "n => n.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(SHOTS / "review-lifted-390-matched.png"))
        browser.close()
