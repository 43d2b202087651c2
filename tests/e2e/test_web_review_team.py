"""The review queue for a team in headless Chromium: a reviewer at a desktop (1280 px, keyboard and
mouse) and one on a phone (390 px, touch) at once, never handed the same flag; buttons decide; a
take-down asks every time and does not stay ticked; pictures blurred until revealed; the upload
beside what it matched; cards show label, source and item id whole; the name is remembered."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.usecases import Context, ingest, policies
from tests.e2e.test_web import CHROMIUM, FLAGS, SHOTS, serve
from tests.helpers import write_images
from tests.unit.test_policies import make_context, plant

pytestmark = pytest.mark.slow
LABEL = "weapons_and_ammunition_offered_without_a_licence"
SELLER = "seller-with-a-rather-long-shop-name-0042"


def build_team_world(tmp_path: Path) -> Context:
    """Three copies of the prohibited picture listed by a long-named seller under long item ids,
    flagged with a long label, among six ordinary photos."""
    ctx = make_context(tmp_path)
    labels = tmp_path / "weapons.toml"
    labels.write_text(
        f'[labels.{LABEL}]\nprompts = ["a prohibited thing"]\nthreshold = 0.95\n'
        'negative_prompts = ["a toy"]\n',
        encoding="utf-8",
    )
    policies.add(ctx, str(labels), "weapons")
    pictures = plant(tmp_path / "photos") + write_images(tmp_path / "photos", 6)
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "item_id", "source"])
        for n, picture in enumerate(pictures):
            writer.writerow([str(picture), f"listing-{n:02d}-{'x' * 30}-{picture.stem}", SELLER])
    ingest.index(ctx, str(catalog))
    return ctx


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    yield from serve(build_team_world(tmp_path), [])


def _claimed(page: object) -> int:
    page.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelector('#current-claim').textContent.startsWith('Yours')"
    )
    return int(page.get_attribute("#flags .card.flag.selected", "data-flag"))  # type: ignore[attr-defined]


def _whole(page: object, selector: str) -> None:
    """Every element matching is shown whole: nothing cut, nothing overflowing its box."""
    cut = page.eval_on_selector_all(  # type: ignore[attr-defined]
        selector,
        "nodes => nodes.filter(n => n.scrollWidth > n.clientWidth + 1 || getComputedStyle(n).textOverflow === 'ellipsis'"
        " && getComputedStyle(n).whiteSpace === 'nowrap').map(n => n.textContent)",
    )
    assert cut == [], cut


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_two_reviewers_on_a_desktop_and_a_phone_share_the_queue(live: tuple[str, list[Path]]) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = live
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        desk = browser.new_context(viewport={"width": 1280, "height": 900})
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.add_init_script("localStorage.setItem('lookalike-reviewer', 'bo')")  # bo was here before
        ana, bo = desk.new_page(), phone.new_page()
        dialogs: list[str] = []

        # ana types her name: the flag on screen is claimed for her.
        ana.goto(url + "/review")
        ana.wait_for_selector("#current:not([hidden])")
        assert "Enter your name" in ana.inner_text("#current-claim")
        ana.fill("#by", "ana")
        ana.press("#by", "Tab")
        first = _claimed(ana)
        # bo opens the page on his phone, his name remembered: he is handed another flag.
        bo.goto(url + "/review")
        assert bo.input_value("#by") == "bo"
        second = _claimed(bo)
        assert second != first
        assert "ana is reviewing" in bo.inner_text(f".card.flag[data-flag='{first}'] .held-by")
        # Cards show the label, the seller and the item id whole, at 390 px too.
        assert LABEL in bo.inner_text(f".card.flag[data-flag='{second}'] .name")
        assert SELLER in bo.inner_text(f".card.flag[data-flag='{second}'] .who")
        _whole(bo, ".card.flag .name, .card.flag .who, #current-title, .facts dd")
        assert bo.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone

        # Blurred until revealed (the default), side by side with the label it matched.
        bo.wait_for_function(
            "document.querySelector('#upload-img').complete && document.querySelector('#upload-img').naturalWidth > 0"
        )
        assert "blur" in bo.eval_on_selector("#upload-img", "n => getComputedStyle(n).filter")
        assert "a prohibited thing" in bo.inner_text("#match") and "a toy" in bo.inner_text("#match")
        assert bo.inner_text("#score") == "1.000"
        bo.screenshot(path=str(SHOTS / "review-phone-390.png"), full_page=True)
        bo.tap("#reveal")
        bo.wait_for_function("getComputedStyle(document.querySelector('#upload-img')).filter === 'none'")
        bo.screenshot(path=str(SHOTS / "review-phone-390-revealed.png"))

        # A tap on ana's card selects it (it does not enlarge): shown as hers, not decidable.
        bo.tap(f".card.flag[data-flag='{first}']")
        bo.wait_for_function(
            "document.querySelector('#current-claim').textContent.includes('ana is reviewing')"
        )
        assert bo.is_disabled("#confirm") and bo.is_disabled("#dismiss") and bo.is_hidden("#viewer")
        bo.screenshot(path=str(SHOTS / "review-phone-390-held.png"))
        refused = httpx.post(f"{url}/flags/{first}/review", json={"decision": "dismiss", "by": "bo"})
        assert refused.status_code == 409
        bo.tap("#skip")  # on to a flag nobody else holds: his own again
        assert _claimed(bo) == second
        bo.tap("#dismiss")
        bo.wait_for_function(f"document.querySelector('#status').textContent.includes('#{second} dismissed')")
        third = _claimed(bo)
        assert third not in (first, second)

        # ana takes hers down: asked every time, and the box does not stay ticked.
        ana.wait_for_function("document.querySelector('#upload-img').naturalWidth > 0")
        ana.screenshot(path=str(SHOTS / "review-desktop-1280.png"), full_page=True)
        ana.on(
            "dialog",
            lambda dialog: (
                dialogs.append(dialog.message),
                dialog.dismiss() if len(dialogs) == 1 else dialog.accept(),
            ),
        )
        ana.check("#takedown")
        ana.click("#confirm")
        ana.wait_for_function("document.querySelector('#status').textContent.includes('cancelled')")
        assert len(dialogs) == 1 and "Take down" in dialogs[0] and "cannot be undone" in dialogs[0]
        assert httpx.get(f"{url}/flags/{first}").json()["status"] == "open"  # cancelled: nothing decided
        ana.click("#confirm")
        ana.wait_for_function(
            f"document.querySelector('#status').textContent.includes('#{first} confirmed, item taken down')"
        )
        assert len(dialogs) == 2
        assert not ana.is_checked("#takedown")
        # Every other open flag is bo's now: nothing left for ana.
        ana.wait_for_function("document.querySelector('#status').textContent.includes('taken down')")
        assert ana.is_hidden("#current")
        ana.keyboard.press("c")  # nothing on screen: nothing decided
        ana.reload()  # her name is remembered
        assert ana.input_value("#by") == "ana"
        ana.select_option("#status-filter", "confirmed")
        ana.wait_for_function("document.querySelector('#heading').textContent === 'Confirmed flags'")
        assert ana.inner_text("#count") == "1"
        ana.select_option("#status-filter", "dismissed")
        ana.wait_for_function("document.querySelector('#heading').textContent === 'Dismissed flags'")
        ana.uncheck("#blur")  # the setting is the reviewer's own and is remembered
        ana.reload()
        assert not ana.is_checked("#blur")
        browser.close()
    audit = httpx.get(url + "/audit").json()["decisions"]
    assert [(d["flag"], d["decision"], d["reviewer"], d["took_down"]) for d in audit] == [
        (second, "dismissed", "bo", False),
        (first, "confirmed", "ana", True),
    ]


@pytest.fixture()
def live_wave(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    from lookalike.usecases import waves
    from tests.unit.test_waves import DAY, T0, wave_world

    ctx = wave_world(tmp_path)
    assert [f.new for f in waves.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3)] == [True]
    yield from serve(ctx, [])


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_wave_is_shown_beside_its_members_from_every_seller(live_wave: tuple[str, list[Path]]) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = live_wave
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for width, height in ((1280, 900), (390, 844)):
            context = browser.new_context(viewport={"width": width, "height": height}, has_touch=width < 500)
            context.add_init_script("localStorage.setItem('lookalike-reviewer', 'ana')")
            page = context.new_page()
            page.goto(url + "/review")
            _claimed(page)
            assert "Near-duplicate wave: 4 sellers, 4 items" in page.inner_text("#match")
            assert page.locator("#match .member-card").count() == 4
            assert {
                page.inner_text(f"#match .member-card:nth-child({n}) .who").split(" · ")[0]
                for n in range(1, 5)
            } == {"s1", "s2", "s3", "s4"}
            assert page.is_disabled("#takedown")  # a wave's items are taken down one by one
            page.wait_for_function(
                "Array.from(document.querySelectorAll('#match img')).every(i => i.complete && i.naturalWidth > 0)"
            )
            page.click("#upload-frame")  # a click (or a tap) reveals the upload and its matches
            page.wait_for_function("getComputedStyle(document.querySelector('#match img')).filter === 'none'")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(SHOTS / f"review-wave-{width}.png"), full_page=True)
            page.eval_on_selector("#match", "n => n.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(SHOTS / f"review-wave-{width}-matched.png"))  # as a screen shows it
            context.close()
        browser.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_reviewer_who_gives_their_name_on_another_reviewers_flag_is_handed_one_of_their_own(
    live: tuple[str, list[Path]],
) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = live
    first = httpx.get(f"{url}/flags/next", params={"by": "ana"}).json()["flag"]["id"]  # ana, from the CLI
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        ana = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        ana.goto(url + "/review")  # no name yet: her flag is someone else's
        ana.wait_for_selector(f".card.flag.held[data-flag='{first}']")
        ana.fill("#by", "ana")
        ana.press("#by", "Tab")
        assert _claimed(ana) == first
        # At once, not at the page's next refresh (every 20 s).
        ana.wait_for_selector(f".card.flag[data-flag='{first}']:not(.held)", timeout=5000)
        assert ana.locator(f".card.flag[data-flag='{first}'] .held-by").count() == 0
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        bo = phone.new_page()
        bo.goto(url + "/review")  # no name yet: the oldest flag is shown, ana's
        bo.wait_for_function(f"document.querySelector('#current-title').textContent.startsWith('#{first} ')")
        bo.fill("#by", "bo")
        bo.press("#by", "Tab")
        assert _claimed(bo) != first
        assert not bo.is_disabled("#confirm") and not bo.is_disabled("#dismiss")
        browser.close()
