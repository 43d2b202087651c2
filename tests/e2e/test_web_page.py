"""The search page as a tool, in headless Chromium at 1280 and 390 px: every search in the address
(a link, reload, Back/Forward), the detail view by keyboard, pickers fed by /facets, focus rings, no
horizontal overflow. Each test writes screenshots under ``out/screenshots`` (``LOOKALIKE_TEST_SHOTS``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.e2e.test_web import CHROMIUM, FLAGS, SHOTS, serve
from tests.helpers import FakeEmbedder, make_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]

CATALOG = [  # item_id, name, category, tags, source, date
    ("DR-100", "Red floral summer dress", "dresses", "red|floral|summer", "acme shop", "2026-03-04"),
    ("DR-101", "Blue linen dress", "dresses", "blue|linen", "acme shop", "2026-03-05"),
    ("DR-102", "Green wrap dress", "dresses", "green", "north", "2026-03-06"),
    ("SH-200", "Red leather shoe", "shoes", "red|leather", "acme shop", "2026-04-01"),
    ("SH-201", "White running shoe", "shoes", "white|sport", "north", "2026-04-02"),
    (
        "BG-300",
        "Brown leather handbag with a very long name that goes on",
        "bags",
        "leather",
        "north",
        "2026-05-09",
    ),
    ("BG-301", "Canvas tote", "bags", "summer", "acme shop", "2026-05-10"),
    ("HT-400", "Straw hat", "hats", "summer", "north", "2026-06-11"),
]
WIDTHS = [
    pytest.param({"width": 1280, "height": 900}, id="1280"),
    pytest.param({"width": 390, "height": 844}, id="390"),
]


FILLER = [(f"TE-{i:03d}", f"Plain tee {i}", "tees", "", "outlet", f"2026-07-{i + 1:02d}") for i in range(20)]
"""More than a page of hits: 28 items in all, 24 on the first page."""


def write_catalog(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,item_id,name,category,tags,source,created_at"]
    for i, (item_id, name, category, tags, source, day) in enumerate(CATALOG + FILLER):
        make_image(i + 1).save(folder / f"{item_id}.jpg")
        lines.append(f'{item_id}.jpg,{item_id},"{name}",{category},"{tags}",{source},{day}')
    (folder / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "catalog.csv"


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[str]:
    embedder = FakeEmbedder()
    service = Context(load_settings(db=str(tmp_path / "page.db"), workers=2), embedder=embedder)
    folder = tmp_path / "shop"
    ingest.index(service, str(write_catalog(folder)))
    # To the fake embedder, "red floral dress" is exactly the first item's picture.
    embedder.concepts["red floral dress"] = embedder.embed_images([make_image(1)])[0]
    for url, _ in serve(service, sorted(folder.glob("*.jpg"))):
        yield url


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def shot(page: Any, name: str, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # Every picture in view has loaded (lazy ones below the fold load when scrolled to).
    page.wait_for_function(
        "Array.from(document.images).every(i => !i.getAttribute('src') || i.complete"
        " || i.getBoundingClientRect().top > innerHeight)"
    )
    page.screenshot(path=str(SHOTS / f"page-{name}-{width}.png"))


def params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def names(page: Any) -> list[str]:
    return list(page.locator(".card .name").all_inner_texts())


def settled(page: Any) -> None:
    """The search on screen has answered (its status counts results, or says what went wrong)."""
    page.wait_for_function(
        "!document.querySelector('#status').textContent.startsWith('Searching')"
        " && document.querySelector('#status').textContent !== ''"
    )


def no_overflow(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    # The Search button inside its form's box, the whole of it.
    inside = page.evaluate(
        """() => {
            const form = document.querySelector('#search').getBoundingClientRect();
            const go = document.querySelector('#go').getBoundingClientRect();
            return go.right <= form.right && go.left >= form.left;
        }"""
    )
    assert inside


def open_page(
    browser: Any, url: str, viewport: dict[str, int], path: str = "/", features: list[str] | None = None
) -> Any:
    """The page, ready; ``features``: what its /facets says the server's search takes (None: as it is)."""
    page = browser.new_page(viewport=viewport)
    if features is not None:

        def given(route: Any) -> None:
            body = route.fetch().json()
            body["features"] = features
            route.fulfill(json=body)

        page.route("**/facets*", given)
    # Playwright takes file choosers from the browser once something listens (expect_file_chooser's own
    # listener may come a moment after the key press that opens one).
    page.on("filechooser", lambda chooser: None)
    page.goto(url + path)
    page.wait_for_selector("body[data-ready='true']")
    return page


@pytest.mark.parametrize("viewport", WIDTHS)
def test_a_search_lives_in_the_address_and_back_forward_and_reload_restore_it(
    live: str, browser: Any, viewport: dict[str, int]
) -> None:
    width = viewport["width"]
    page = open_page(browser, live, viewport)
    no_overflow(page)
    page.fill("#text", "red floral dress")
    page.press("#text", "Enter")
    settled(page)
    assert params(page)["q"] == ["red floral dress"]
    assert names(page)[0] == "Red floral summer dress" and len(names(page)) == 24
    no_overflow(page)
    # Every date shown whole (it was cut to "2026-…" at 1280 px).
    dates = page.evaluate(
        "Array.from(document.querySelectorAll('.card .date')).map(d => [d.textContent, d.scrollWidth <= d.clientWidth])"
    )
    assert dates and all(len(text) == 10 and whole for text, whole in dates), dates
    shot(page, "text-search", width)

    # A category from the picker narrows the search: a new entry in the history.
    page.click("#picker-categories summary")
    assert page.locator("#picker-categories .values input").evaluate_all("bs => bs.map(b => b.value)") == [
        "tees",
        "dresses",
        "bags",
        "shoes",
        "hats",
    ]  # by count, then by name
    page.check("#picker-categories input[value='shoes']")
    page.wait_for_function("new URLSearchParams(location.search).get('categories') === 'shoes'")
    settled(page)
    assert sorted(names(page)) == ["Red leather shoe", "White running shoe"]
    assert page.inner_text("#picker-categories .chosen") == "shoes"
    no_overflow(page)
    shot(page, "category-picked", width)

    page.go_back()
    page.wait_for_function("!new URLSearchParams(location.search).has('categories')")
    settled(page)
    assert len(names(page)) == 24 and page.input_value("#text") == "red floral dress"
    assert not page.is_checked("#picker-categories input[value='shoes']")
    page.go_forward()
    page.wait_for_function("new URLSearchParams(location.search).get('categories') === 'shoes'")
    settled(page)
    assert sorted(names(page)) == ["Red leather shoe", "White running shoe"]

    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    settled(page)
    assert sorted(names(page)) == ["Red leather shoe", "White running shoe"]
    assert page.input_value("#text") == "red floral dress"
    assert page.is_checked("#picker-categories input[value='shoes']")

    # A link opened in a fresh tab reproduces it, and Back from the first search stays in the app.
    link = page.url
    other = open_page(browser, live, viewport, "/")
    other.goto(link)
    other.wait_for_selector("body[data-ready='true']")
    settled(other)
    assert sorted(names(other)) == ["Red leather shoe", "White running shoe"]
    other.close()
    page.go_back()
    page.go_back()
    page.wait_for_function("location.search === ''")
    assert urlsplit(page.url).netloc == urlsplit(live).netloc and page.locator(".card").count() == 0
    page.close()


@pytest.mark.parametrize("viewport", WIDTHS)
def test_the_detail_view_opens_by_keyboard_shows_every_field_and_gives_the_focus_back(
    live: str, browser: Any, viewport: dict[str, int]
) -> None:
    width = viewport["width"]
    page = open_page(browser, live, viewport, "/?q=red+floral+dress&sources=acme+shop")
    settled(page)
    assert page.is_checked("#picker-sources input[value='acme shop']")
    assert names(page)[0] == "Red floral summer dress" and len(names(page)) == 4

    # Tab from the results' heading onto the first card: a visible focus ring, then Enter.
    page.evaluate("document.querySelector('#grid').focus()")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.className")
    assert focused == "card"
    ring = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert ring[0] != "none" and ring[1] >= 2, ring
    shot(page, "card-focused", width)
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[open]")
    facts = dict(
        zip(
            page.locator("#detail-facts dt").all_inner_texts(),
            page.locator("#detail-facts dd").all_inner_texts(),
            strict=True,
        )
    )
    assert facts["Item id"] == "DR-100" and facts["Source"] == "acme shop" and facts["Category"] == "dresses"
    assert facts["Tags"] == "red, floral, summer" and facts["Date"] == "2026-03-04 00:00:00 UTC"
    assert facts["URI"].endswith("DR-100.jpg") and facts["Size"] == "160 × 120 px"
    page.wait_for_function("document.querySelector('#detail-img').naturalWidth > 0")
    assert page.evaluate("document.querySelector('#detail').contains(document.activeElement)")
    link = page.input_value("#detail-link")
    assert parse_qs(urlsplit(link).query)["show"] == [facts["Stored id"]]
    assert page.is_visible("#detail-unlike")  # the server's search takes "unlike"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#detail-copy")
    page.wait_for_function("document.querySelector('#detail-copy').textContent === 'Link copied'")
    assert page.evaluate("navigator.clipboard.readText()") == link
    page.focus("#detail-more")
    no_overflow(page)
    shot(page, "detail", width)

    back_on_card = f"document.activeElement.dataset.id === '{facts['Stored id']}'"
    page.keyboard.press("Escape")
    page.wait_for_function("!document.querySelector('#detail').open")
    page.wait_for_function(back_on_card)  # the focus goes back to the card that opened it

    # The ✕ button closes it too; "More like this" is a new search by the stored id.
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[open]")
    page.click("#detail-close")
    page.wait_for_function("!document.querySelector('#detail').open")
    page.wait_for_function(back_on_card)
    page.keyboard.press("Enter")
    page.click("#detail-more")
    page.wait_for_function(f"new URLSearchParams(location.search).get('id') === '{facts['Stored id']}'")
    settled(page)
    assert "more like “Red floral summer dress”" in page.inner_text("#status")
    assert "Red floral summer dress" not in names(page)  # the item itself is left out
    page.reload()  # a reload (or a link) names the item too
    page.wait_for_selector("body[data-ready='true']")
    settled(page)
    assert "more like “Red floral summer dress”" in page.inner_text("#status")
    page.go_back()
    page.wait_for_function("new URLSearchParams(location.search).get('q') === 'red floral dress'")
    settled(page)
    assert names(page)[0] == "Red floral summer dress"

    # The copied link opens the same search with the details of that hit.
    other = open_page(browser, live, viewport, urlsplit(link).path + "?" + urlsplit(link).query)
    other.wait_for_selector("#detail[open]")
    assert other.inner_text("#detail-title") == "Red floral summer dress"
    other.close()
    page.close()


@pytest.mark.parametrize("viewport", WIDTHS)
def test_every_control_is_reached_by_tab_and_the_drop_zone_and_item_field_work_by_keyboard(
    live: str, browser: Any, viewport: dict[str, int]
) -> None:
    width = viewport["width"]
    page = open_page(browser, live, viewport, features=[])  # a server whose search has no modes
    reached = []
    for _ in range(20):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("(e => e.id || (e.closest('[id]') || e).id || e.tagName)(document.activeElement)")
        )
    for control in ["text", "go", "drop", "item", "picker-sources", "picker-categories", "picker-tags", "since",
                    "until", "detect", "k"]:  # fmt: skip
        assert control in reached, (control, reached)
    assert "hybrid" not in reached and "per-item" not in reached  # features lacks them: hidden

    page.focus("#drop")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring != "none"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert not chooser.value.is_multiple()

    page.focus("#item")
    page.keyboard.type("SH-200")
    page.keyboard.press("Enter")
    page.wait_for_function("new URLSearchParams(location.search).get('item') === 'SH-200'")
    settled(page)
    assert "item “SH-200”" in page.inner_text("#status")
    assert "Red leather shoe" not in names(page) and names(page)
    no_overflow(page)
    shot(page, "item-search", width)

    # Words typed after it: a search by the words (one query at a time), the item id field emptied.
    page.fill("#text", "shoe")
    page.press("#text", "Enter")
    page.wait_for_function("new URLSearchParams(location.search).get('q') === 'shoe'")
    assert "item" not in params(page) and page.input_value("#item") == ""
    page.close()


def test_an_uploaded_image_search_keeps_its_filters_in_the_address_and_says_the_image_cannot_be(
    live: str, browser: Any, tmp_path: Path
) -> None:
    page = open_page(browser, live, {"width": 1280, "height": 900})
    picture = tmp_path / "mine.jpg"
    make_image(5).save(picture)  # the white running shoe's picture, from "north"
    page.click("#picker-sources summary")
    page.check("#picker-sources input[value='north']")
    page.set_input_files("#file", str(picture))
    page.wait_for_function("new URLSearchParams(location.search).get('upload') === '1'")
    settled(page)
    assert "your image “mine.jpg”" in page.inner_text("#status")
    assert params(page)["sources"] == ["north"]
    assert names(page)[0] == "White running shoe"
    assert set(page.locator(".card .rank").all_inner_texts()) <= {
        "dresses · north",
        "shoes · north",
        "bags · north",
        "hats · north",
    }
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    settled(page)
    assert "cannot be kept in the address" in page.inner_text("#status")
    assert page.is_checked("#picker-sources input[value='north']")
    page.close()


@pytest.mark.parametrize("viewport", WIDTHS)
def test_the_modes_of_the_other_fields_show_only_when_the_server_lists_them_and_are_sent(
    live: str, browser: Any, viewport: dict[str, int]
) -> None:
    width = viewport["width"]
    page = browser.new_page(viewport=viewport)

    def more_features(route: Any) -> None:
        body = route.fetch().json()
        body["features"] = ["hybrid", "per_item", "like", "unlike"]
        route.fulfill(json=body)

    page.route("**/facets", more_features)
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/search") and r.post_data else None,
    )
    page.goto(live + "/")
    page.wait_for_selector("body[data-ready='true']")
    assert page.is_visible("#hybrid-control") and page.is_visible("#per-item-control")
    assert page.is_checked("#hybrid") and page.is_checked("#per-item")  # names are stored: keywords too
    no_overflow(page)
    shot(page, "modes", width)
    page.fill("#text", "red floral dress")
    page.press("#text", "Enter")
    page.wait_for_function("new URLSearchParams(location.search).get('hybrid') === '1'")
    settled(page)
    assert sent[-1]["hybrid"] is True and sent[-1]["per_item"] == 1 and sent[-1]["text"] == "red floral dress"
    # This branch's server does not take them yet: its refusal is shown, not hidden.
    assert page.get_attribute("#status", "class") == "error" or page.locator(".card").count() > 0

    page.uncheck("#per-item")
    page.wait_for_function("new URLSearchParams(location.search).get('per_item') === '0'")
    settled(page)
    assert "per_item" not in sent[-1]

    # "Not like this" on a hit: the current query again, with that hit's id among the unlikes.
    page.fill("#text", "")
    page.fill("#item", "SH-200")
    page.press("#item", "Enter")
    page.wait_for_function("new URLSearchParams(location.search).get('item') === 'SH-200'")
    settled(page)
    page.focus(".card >> nth=0")
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[open]")
    unliked = page.inner_text("#detail-facts dd[data-field='stored-id']")
    page.click("#detail-unlike")
    page.wait_for_function("new URLSearchParams(location.search).has('unlike')")
    assert params(page)["unlike"] == [f"id:{unliked}"] and params(page)["item"] == ["SH-200"]
    settled(page)
    assert sent[-1]["unlike"] == [f"id:{unliked}"] and sent[-1]["item_id"] == "SH-200"
    assert page.is_visible("#unlikes") and f"id:{unliked}" in page.inner_text("#unlikes")
    page.close()


def test_more_results_are_a_page_in_the_address_that_reload_shows_again(live: str, browser: Any) -> None:
    page = open_page(browser, live, {"width": 1280, "height": 900})
    page.select_option("#k", "12")
    page.fill("#text", "red floral dress")
    page.press("#text", "Enter")
    settled(page)
    assert len(names(page)) == 12 and params(page)["k"] == ["12"] and "page" not in params(page)
    first = names(page)
    page.click("#more")
    page.wait_for_function("new URLSearchParams(location.search).get('page') === '2'")
    page.wait_for_function("document.querySelectorAll('.card').length === 24")
    assert names(page)[:12] == first
    shown = names(page)
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    settled(page)
    assert names(page) == shown and page.input_value("#k") == "12"
    assert page.inner_text("#status").startswith("24 results")
    page.click("#more")
    page.wait_for_function("document.querySelectorAll('.card').length === 28")
    settled(page)
    assert params(page)["page"] == ["3"] and page.is_hidden("#more")  # 4 more, less than a page: the end
    page.go_back()  # "more" is the same search: Back leaves it for the empty page before it
    page.wait_for_function("location.search === ''")
    page.close()


def test_the_details_of_a_detected_crop_show_its_object_and_box(tmp_path: Path, browser: Any) -> None:
    from tests.integration.test_detect_api import build_with_crops

    for url, _ in serve(*build_with_crops(tmp_path)):
        page = open_page(browser, url, {"width": 1280, "height": 900}, "/?q=red+handbag")
        settled(page)
        page.focus(".card.crop >> nth=0")
        page.keyboard.press("Enter")
        page.wait_for_selector("#detail[open]")
        facts = dict(
            zip(
                page.locator("#detail-facts dt").all_inner_texts(),
                page.locator("#detail-facts dd").all_inner_texts(),
                strict=True,
            )
        )
        assert facts["Object"] == "handbag (0.90)" and facts["Box"] == "60, 10, 160, 110"
        page.wait_for_selector("#detail-box:not([hidden])")
        # The box over the picture as drawn: 100 of its 160 pixels wide.
        ratio = page.evaluate(
            """() => document.querySelector('#detail-box').getBoundingClientRect().width
                / document.querySelector('#detail-img').getBoundingClientRect().width"""
        )
        assert abs(ratio - 100 / 160) < 0.02, ratio
        shot(page, "detail-crop", 1280)
        page.close()
