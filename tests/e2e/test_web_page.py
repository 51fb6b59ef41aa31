"""The web page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real `lookalike serve` process. `make test` installs chromium; a missing browser is a
failure here, never a skip."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lookalike.edits import apply_edit
from lookalike.engine import Index
from lookalike.samples import sample_photos

CHROMIUM = os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium")
NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera")


def stem(path: str) -> str:
    return Path(path).stem.rsplit("-", 1)[0]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("web")
    indexed, queries = root / "photos", root / "queries"
    indexed.mkdir()
    queries.mkdir()
    photos = sample_photos(NAMES)
    for n, name in enumerate(NAMES):
        photos[name].save(queries / f"{name}.jpg", quality=90)
        apply_edit("crop", photos[name], seed=n).save(indexed / f"{name}-crop.jpg", quality=90)
        apply_edit("flip", photos[name], seed=n).save(indexed / f"{name}-flip.jpg", quality=90)
    # Two photos side by side: a box on either half should find that photo.
    a, b = photos["chelsea"], photos["coffee"]
    h = 300
    a = a.resize((round(a.width * h / a.height), h))
    b = b.resize((round(b.width * h / b.height), h))
    both = Image.new("RGB", (a.width + b.width, h))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    both.save(queries / "cat-and-coffee.jpg", quality=90)
    with Index.create(root / "index") as idx:
        idx.sync([indexed])
    return {
        "root": root,
        "index": root / "index",
        "queries": queries,
        "split": a.width / both.width,
        "split_px": a.width,
        "both_size": both.size,
    }


@pytest.fixture(scope="module")
def server(collection: dict):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lookalike = Path(sys.executable).with_name("lookalike")
    proc = subprocess.Popen(
        [str(lookalike), "serve", "--index", str(collection["index"]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{proc.stdout.read().decode()}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} not found: install Debian's chromium (make browser) to run the web tests"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP
    # (script-src 'self', checked in the API tests) forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(90_000)  # a shared 2-core machine can be slow
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.requests = requests
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.wait_for_function("document.querySelector('#index-info').textContent.includes('10')")
    yield page
    assert not errors, errors
    outside = [u for u in requests if not u.startswith((server, "blob:", "data:"))]
    assert not outside, f"the page fetched from elsewhere: {outside}"
    context.close()


def result_paths(page) -> list[str]:
    return page.locator("#results .card .path").all_text_contents()


def wait_for_results(page, previous_status: str = "") -> None:
    page.wait_for_function(
        "prev => { const s = document.querySelector('#status').textContent;"
        " return s !== prev && / results/.test(s); }",
        arg=previous_status,
        timeout=90_000,
    )


def status(page) -> str:
    return page.locator("#status").text_content()


def test_upload_then_more_like_this(page, collection) -> None:
    page.set_input_files("#file", str(collection["queries"] / "chelsea.jpg"))
    wait_for_results(page)
    paths = result_paths(page)
    assert len(paths) == 10
    assert [stem(p) for p in paths[:2]] == ["chelsea", "chelsea"], paths
    page.wait_for_function(
        "() => { const i = document.querySelector('#results .card img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    scores = [float(s) for s in page.locator("#results .score").all_text_contents()]
    assert scores == sorted(scores, reverse=True)
    first = paths[0]
    # "More like this": click the first result; it becomes the query.
    before = status(page)
    page.locator("#results .card .more").first.click()
    wait_for_results(page, before)
    assert page.locator("#query-caption").text_content() == first
    again = result_paths(page)
    assert first not in again
    assert stem(again[0]) == "chelsea" and again[0] != first
    # Full size opens the indexed original, by id.
    href = page.locator("#results .card .open").first.get_attribute("href")
    assert href.startswith("/api/images/") and href.endswith("/file")


def test_box_on_the_query_picture(page, collection) -> None:
    page.set_input_files("#file", str(collection["queries"] / "cat-and-coffee.jpg"))
    wait_for_results(page)
    assert page.locator("#clear-box").is_hidden()
    img = page.locator("#query-img")
    page.wait_for_function("document.querySelector('#query-img').naturalWidth > 0")
    box = img.bounding_box()
    split = collection["split"]
    for (x0, x1), expected in (((split + 0.02, 0.98), "coffee"), ((0.02, split - 0.02), "chelsea")):
        before = status(page)
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + 0.03 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + 0.97 * box["height"], steps=6)
        page.mouse.up()
        wait_for_results(page, before)
        assert "selected region" in status(page)
        assert page.locator("#selection").is_visible()
        assert page.locator("#clear-box").is_visible()
        paths = result_paths(page)
        assert [stem(p) for p in paths[:2]] == [expected, expected], paths
        # The drawn box fills the Region fields, in the picture's own pixels.
        width = collection["both_size"][0]
        x0_field = float(page.input_value("#region-x0"))
        assert abs(x0_field - x0 * width) < 0.03 * width, (x0_field, x0 * width)
    # Back to the whole picture.
    before = status(page)
    page.locator("#clear-box").click()
    wait_for_results(page, before)
    assert "selected region" not in status(page)
    assert page.locator("#selection").is_hidden()


def test_region_from_the_keyboard(page, collection) -> None:
    width, height = collection["both_size"]
    split = collection["split_px"]
    page.set_input_files("#file", str(collection["queries"] / "cat-and-coffee.jpg"))
    wait_for_results(page)
    page.wait_for_function(
        "s => document.querySelector('#region-size').textContent.includes(s)",
        arg=f"{width} × {height}",
    )
    # Keyboard only from here: Tab from the drop zone to the Region fields, type the box of
    # the right half (x1 past the picture's edge: kept inside it), press Enter.
    page.locator("#drop").focus()
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id === 'region-x0'"):
            break
    else:
        pytest.fail("the Region fields cannot be reached with Tab")
    for value in (split + 10, 5, width + 500, height - 5):
        page.keyboard.type(str(value))
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "region-search"
    page.keyboard.press("Shift+Tab")  # back in y1: Enter there searches too
    before = status(page)
    page.keyboard.press("Enter")
    wait_for_results(page, before)
    assert "selected region" in status(page)
    assert [stem(p) for p in result_paths(page)[:2]] == ["coffee", "coffee"], result_paths(page)
    assert page.input_value("#region-x1") == str(width)
    assert "Kept inside" in page.locator("#region-msg").text_content()
    assert page.locator("#selection").is_visible()
    sel = page.locator("#selection").bounding_box()
    img = page.locator("#query-img").bounding_box()
    assert abs((sel["x"] - img["x"]) - img["width"] * (split + 10) / width) < 4

    # An inverted box: an inline message, the fields marked, and no request sent.
    searches = sum("/api/search" in u for u in page.requests)
    shown = status(page)
    page.locator("#region-x0").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(width - 20))
    page.locator("#region-x1").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("30")
    page.keyboard.press("Enter")
    message = page.locator("#region-msg")
    assert "x1 must be at least 8 pixels right of x0" in message.text_content()
    assert "error" in message.get_attribute("class")
    assert message.get_attribute("aria-live") == "polite"
    assert page.get_attribute("#region-x1", "aria-invalid") == "true"
    page.wait_for_timeout(500)
    assert sum("/api/search" in u for u in page.requests) == searches
    assert status(page) == shown

    # Clear (by keyboard): the fields empty, the whole picture is searched again.
    page.locator("#region-search").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "region-clear"
    before = status(page)
    page.keyboard.press("Enter")
    wait_for_results(page, before)
    assert "selected region" not in status(page)
    assert page.input_value("#region-x0") == ""
    assert page.locator("#selection").is_hidden()
    assert page.locator("#region-msg").text_content() == ""


def _file_js(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"const bytes = Uint8Array.from(atob('{data}'), c => c.charCodeAt(0));"
        f"const file = new File([bytes], '{path.name}', {{type: 'image/jpeg'}});"
        "const dt = new DataTransfer(); dt.items.add(file);"
    )


def test_drop_and_paste(page, collection) -> None:
    page.evaluate(
        "() => {" + _file_js(collection["queries"] / "rocket.jpg") + "document.querySelector"
        "('#drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));}"
    )
    wait_for_results(page)
    assert [stem(p) for p in result_paths(page)[:2]] == ["rocket", "rocket"]
    before = status(page)
    page.evaluate(
        "() => {" + _file_js(collection["queries"] / "coffee.jpg") + "document.dispatchEvent("
        "new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));}"
    )
    wait_for_results(page, before)
    assert [stem(p) for p in result_paths(page)[:2]] == ["coffee", "coffee"]


def test_keyboard_only(page, collection) -> None:
    page.set_input_files("#file", str(collection["queries"] / "astronaut.jpg"))
    wait_for_results(page)
    # Tab to the first result and press Enter: "more like this" without a mouse.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('more')"):
            break
    else:
        pytest.fail("the results cannot be reached with Tab")
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label.startswith("More like this")
    before = status(page)
    page.keyboard.press("Enter")
    wait_for_results(page, before)
    assert stem(page.locator("#query-caption").text_content()) == "astronaut"


def test_text_search_from_the_keyboard(page, collection) -> None:
    # Tab from the drop zone to the text box, type words, press Enter.
    page.locator("#drop").focus()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id === 'text-query'"):
            break
    else:
        pytest.fail("the text box cannot be reached with Tab")
    page.keyboard.type("a cup of coffee")
    page.keyboard.press("Enter")
    # The first text query loads the sentence model (and may embed the class texts): slow.
    page.wait_for_function(
        "/ results for/.test(document.querySelector('#status').textContent)", timeout=240_000
    )
    paths = result_paths(page)
    assert [stem(p) for p in paths[:2]] == ["coffee", "coffee"], paths
    assert "espresso" in page.locator("#results .card .tags").first.text_content()
    assert page.locator("#query-figure").is_hidden()  # no picture to show for words
    # Another word, with the button this time; then an empty box is refused on the page.
    before = status(page)
    page.fill("#text-query", "cat")
    page.locator("#text-search").click()
    wait_for_results(page, before)
    assert stem(result_paths(page)[0]) == "chelsea"
    page.fill("#text-query", "  ")
    page.keyboard.press("Enter")
    assert "Type some words" in status(page)


def test_hit_box_is_drawn_when_the_engine_returns_one(page, collection, server) -> None:
    # Checks the page's placement of a known box: the real server answers and the test adds a
    # box of known geometry to the first hit (real engine boxes: the next test).
    def add_box(route):
        response = route.fetch()
        data = response.json()
        assert "hits" in data, data
        hit = data["hits"][0]
        hit["box"] = [hit["width"] // 4, hit["height"] // 4, hit["width"] // 2, hit["height"] // 2]
        route.fulfill(response=response, json=data)

    page.set_input_files("#file", str(collection["queries"] / "camera.jpg"))
    wait_for_results(page)
    # (route.fetch() drops multipart file bodies, so the routed search is a JSON one.)
    page.route("**/api/search", add_box)
    before = status(page)
    page.locator("#results .card .more").first.click()
    wait_for_results(page, before)
    # The box is placed in % of the thumbnail, whose size is known once the image has loaded.
    page.wait_for_function(
        "(() => { const i = document.querySelector('#results .card .thumb img');"
        " return i && i.complete && i.naturalWidth > 0; })()"
    )
    box = page.locator("#results .card .hit-box").first
    assert box.is_visible()
    thumb = page.locator("#results .card .thumb img").first.bounding_box()
    b = box.bounding_box()
    assert abs((b["x"] - thumb["x"]) - thumb["width"] / 4) < 4
    assert abs(b["width"] - thumb["width"] / 4) < 4
    assert page.locator("#results .card .hit-box").nth(1).is_hidden()


def test_localization_boxes_from_the_engine(page, collection) -> None:
    page.check("#localize")
    page.set_input_files("#file", str(collection["queries"] / "rocket.jpg"))
    wait_for_results(page)
    boxes = page.locator("#results .card .hit-box")
    assert boxes.count() == 10
    assert all(boxes.nth(i).is_visible() for i in range(boxes.count()))


def test_phone_width_has_no_horizontal_scrolling(browser, server, collection) -> None:
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, bypass_csp=True
    )
    page = context.new_page()
    page.goto(server)
    page.set_input_files("#file", str(collection["queries"] / "coffee.jpg"))
    wait_for_results(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    cards = page.locator("#results .card")
    assert cards.first.bounding_box()["width"] < 200
    context.close()


def test_error_from_the_server_is_shown(page, collection) -> None:
    bad = collection["root"] / "not-an-image.jpg"
    bad.write_bytes(b"this is text, not a photo")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "not an image" in status(page)
