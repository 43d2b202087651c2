"""The review screen in headless Chromium: a paged grid of open flags, decided with the keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_web import CHROMIUM, FLAGS, SHOTS, serve
from tests.integration.test_api_review import build_flagged

pytestmark = pytest.mark.slow


@pytest.fixture()
def live_flags(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    yield from serve(build_flagged(tmp_path), [])


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_the_review_screen_confirms_and_dismisses_with_the_keyboard(
    live_flags: tuple[str, list[Path]],
) -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    url, _ = live_flags
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/review")
        page.wait_for_selector(".card.flag")
        assert page.locator(".card.flag").count() == 3
        assert "3 open flags" in page.inner_text("#status")
        assert "prohibited · contraband" in page.inner_text(".card.flag.selected .name")
        assert page.locator("#policy option").all_inner_texts() == ["all", "prohibited", "waves"]
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.card img')).every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=str(SHOTS / "review-grid.png"))

        page.keyboard.press("ArrowRight")
        second = page.get_attribute(".card.flag.selected", "data-flag")
        page.keyboard.press("Enter")
        page.wait_for_selector("#viewer:not([hidden])")
        page.wait_for_function(
            "document.querySelector('#large').complete && document.querySelector('#large').naturalWidth > 0"
        )
        page.screenshot(path=str(SHOTS / "review-large.png"))
        page.keyboard.press("Escape")

        page.keyboard.press("c")  # no reviewer name yet: refused, nothing decided
        page.wait_for_function("document.querySelector('#status').textContent.includes('reviewer')")
        page.fill("#by", "ana")
        page.fill("#note", "seen it")
        page.keyboard.press("Escape")  # leave the field; keys act on the grid again
        page.keyboard.press("d")
        page.wait_for_function(
            f"document.querySelector('#status').textContent.includes('#{second} dismissed')"
        )
        assert page.locator(".card.flag").count() == 2
        page.keyboard.press("c")
        page.wait_for_function("document.querySelector('#status').textContent.includes('confirmed')")
        assert page.locator(".card.flag").count() == 1
        page.select_option("#status-filter", "dismissed")
        # The open grid also shows one card: wait for the dismissed one, not for a count.
        page.wait_for_function("document.querySelector('#status').textContent.includes('1 dismissed flags')")
        assert page.locator(".card.flag").count() == 1
        assert page.get_attribute(".card.flag", "data-flag") == second
        page.fill("#since", "2001-01-01")
        page.fill("#until", "2001-01-02")
        page.dispatch_event("#until", "change")
        page.wait_for_function("document.querySelectorAll('.card.flag').length === 0")
        browser.close()
    audit = httpx.get(url + "/audit").json()["decisions"]
    assert [(d["flag"], d["decision"], d["reviewer"], d["note"]) for d in audit][0] == (
        int(second or 0),
        "dismissed",
        "ana",
        "seen it",
    )
    assert [d["decision"] for d in audit] == ["dismissed", "confirmed"]


@pytest.fixture()
def live_flags_with_key(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    ctx = build_flagged(tmp_path)
    ctx.settings.api_key = KEY
    yield from serve(ctx, [])


KEY = "s3cret-key"
OPEN = ("/", "/review", "/favicon.ico")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_with_an_api_key_both_pages_open_ask_for_it_once_and_send_it_on_every_data_call(
    live_flags_with_key: tuple[str, list[Path]],
) -> None:
    import httpx
    from playwright.sync_api import Request, Response, sync_playwright

    url, _ = live_flags_with_key
    assert httpx.get(url + "/flags").status_code == 401  # the data is guarded
    asked: list[str] = []
    unsigned: list[str] = []
    refused: list[str] = []

    def sent(request: Request) -> None:
        if not request.url.startswith(url + "/"):
            return  # a blob: URL of a picture fetched with the key
        path = request.url.removeprefix(url).split("?")[0]
        if path not in OPEN and not path.startswith("/static/") and request.headers.get("x-api-key") != KEY:
            unsigned.append(path)

    def answered(response: Response) -> None:
        if response.status == 401:
            refused.append(response.url.removeprefix(url))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept(KEY)))
        page.on("request", sent)
        page.on("response", answered)

        page.goto(url + "/review")  # a navigation sends no header: the page itself must open
        page.wait_for_selector(".card.flag")
        assert "3 open flags" in page.inner_text("#status")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.card img')).every(i => i.complete && i.naturalWidth > 0)"
        )
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#large').complete && document.querySelector('#large').naturalWidth > 0"
        )
        page.keyboard.press("Escape")
        page.fill("#by", "ana")
        page.keyboard.press("Escape")
        page.keyboard.press("d")
        page.wait_for_function("document.querySelector('#status').textContent.includes('dismissed')")
        assert page.locator(".card.flag").count() == 2
        page.screenshot(path=str(SHOTS / "review-with-key.png"))
        assert len(asked) == 1 and "API key" in asked[0]  # asked once; the key is kept for the session

        page.goto(url + "/")  # the search page finds the key already saved
        page.fill("#text", "a photo")
        page.press("#text", "Enter")
        page.wait_for_selector(".card")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.card img')).every(i => i.complete && i.naturalWidth > 0)"
        )
        browser.close()
    assert len(asked) == 1
    # every data call, pictures included, carried the key, but the very first: refused, it asked for it
    assert len(refused) == 1 and unsigned == [refused[0].split("?")[0]], (unsigned, refused)
    decisions = httpx.get(url + "/audit", headers={"X-API-Key": KEY}).json()["decisions"]
    assert [(d["decision"], d["reviewer"]) for d in decisions] == [("dismissed", "ana")]
