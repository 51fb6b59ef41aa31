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
EXTRA = 56
LONG_NAME = "launch-pad-evening-long-exposure-from-the-north-gate-2024"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


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
    # More photos than one browse page (PAGE = 60 in app.js), in a folder of their own, and a
    # long file name in a nested folder.
    extra = indexed / "textures" / "rotated"
    extra.mkdir(parents=True)
    texture = sample_photos(("coins",))["coins"].convert("RGB").resize((96, 72))
    for i in range(EXTRA):
        texture.rotate(i * 7).save(extra / f"coins-{i:02d}.jpg", quality=85)
    long_name = indexed / "textures" / f"{LONG_NAME}.jpg"
    apply_edit("flip", photos["rocket"], seed=9).resize((160, 120)).save(long_name, quality=85)
    with Index.create(root / "index") as idx:
        idx.sync([indexed])
    return {
        "root": root,
        "index": root / "index",
        "queries": queries,
        "split": a.width / both.width,
        "split_px": a.width,
        "both_size": both.size,
        "count": 2 * len(NAMES) + EXTRA + 1,
    }


@pytest.fixture(scope="module")
def server(collection: dict):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lookalike = Path(sys.executable).with_name("lookalike")
    # The server's log goes to a file: a pipe nobody reads fills up (64 KB of access log) and
    # then blocks the server.
    log = (collection["root"] / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(lookalike), "serve", "--index", str(collection["index"]), "--port", str(port)],
        stdout=log,
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
            log.close()
            text = (collection["root"] / "serve.log").read_text()
            raise RuntimeError(f"server did not start:\n{text}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(20)
    log.close()


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


def open_page(browser, server, viewport: dict, path: str = "/"):
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP
    # (script-src 'self', checked in the API tests) forbids.
    phone = viewport["width"] < 500
    context = browser.new_context(viewport=viewport, is_mobile=phone, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(90_000)  # a shared 2-core machine can be slow
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.requests = requests
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(server + path)
    page.wait_for_selector("body[data-ready]")
    return context, page


@pytest.fixture(params=["desktop"])
def page(request, browser, server, collection, tmp_path):
    """The page at desktop width; `@pytest.mark.parametrize("page", ["desktop", "phone"],
    indirect=True)` runs a test at both widths."""
    viewport = PHONE if request.param == "phone" else DESKTOP
    context, page = open_page(browser, server, viewport)
    page.wait_for_function(
        "n => document.querySelector('#index-info').textContent.startsWith(n + ' images')",
        arg=collection["count"],
    )
    page.phone = request.param == "phone"
    page.shot = lambda name: page.screenshot(path=str(tmp_path / f"{name}-{request.param}.png"))
    yield page
    assert not page.errors, page.errors
    outside = [u for u in page.requests if not u.startswith((server, "blob:", "data:"))]
    assert not outside, f"the page fetched from elsewhere: {outside}"
    context.close()


def result_paths(page) -> list[str]:
    """Each card's path relative to the indexed folder (the name's title)."""
    names = page.locator("#results .card .name")
    return [names.nth(i).get_attribute("title") for i in range(names.count())]


def wait_for_results(page, previous_status: str = "") -> None:
    page.wait_for_function(
        "prev => { const s = document.querySelector('#status').textContent;"
        " return s !== prev && / results/.test(s); }",
        arg=previous_status,
        timeout=90_000,
    )


def status(page) -> str:
    return page.locator("#status").text_content()


def search_upload(page, path: Path) -> None:
    before = status(page)
    if page.phone and page.locator("#query-summary").is_visible():
        page.locator("#summary-edit").click()
    page.set_input_files("#file", str(path))
    wait_for_results(page, before)


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    height = page.evaluate("window.innerHeight")
    return box is not None and 0 <= box["y"] and box["y"] + min(box["height"], 100) <= height


# -- searching by a picture ---------------------------------------------------------------------


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_upload_then_more_like_this(page, collection) -> None:
    search_upload(page, collection["queries"] / "chelsea.jpg")
    paths = result_paths(page)
    assert len(paths) == 20  # the default k
    assert [stem(p) for p in paths[:2]] == ["chelsea", "chelsea"], paths
    page.wait_for_function(
        "() => { const i = document.querySelector('#results .card img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    # The match percentage: best first, 100 % at most, the copies far above unrelated photos.
    matches = [
        int(m.rstrip("% match")) for m in page.locator("#results .match").all_text_contents()
    ]
    assert matches == sorted(matches, reverse=True)
    assert 50 <= matches[1] <= 100 and matches[-1] < 30, matches
    page.shot("search")
    if page.phone:
        # The query panel is one line with a thumbnail; the first results are on screen.
        assert page.locator("#query-summary").is_visible()
        assert page.locator("#drop").is_hidden()
        assert page.locator("#query-summary").bounding_box()["height"] < 80
        assert in_view(page, "#results .card:nth-child(2)")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    first = paths[0]
    # "Similar" on the first card: it becomes the query.
    before = status(page)
    page.locator("#results .card .similar").first.click()
    wait_for_results(page, before)
    caption = "#summary-label" if page.phone else "#query-caption"
    assert page.locator(caption).text_content() == first
    again = result_paths(page)
    assert first not in again
    assert stem(again[0]) == "chelsea" and again[0] != first


def test_box_on_the_query_picture(page, collection) -> None:
    search_upload(page, collection["queries"] / "cat-and-coffee.jpg")
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
        assert "box=" in page.evaluate("location.search")
    # Back to the whole picture.
    before = status(page)
    page.locator("#clear-box").click()
    wait_for_results(page, before)
    assert "selected region" not in status(page)
    assert page.locator("#selection").is_hidden()


def test_region_from_the_keyboard(page, collection) -> None:
    width, height = collection["both_size"]
    split = collection["split_px"]
    search_upload(page, collection["queries"] / "cat-and-coffee.jpg")
    page.wait_for_function(
        "s => document.querySelector('#region-size').textContent.includes(s)",
        arg=f"{width} × {height}",
    )
    # The Region fields sit behind "Refine": Tab to it, open it with Enter, Tab into them.
    assert page.locator("#region-x0").is_hidden()
    page.locator("#drop").focus()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName === 'SUMMARY'"):
            break
    else:
        pytest.fail("Refine cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "region-x0"
    # Type the box of the right half (x1 past the picture's edge: kept inside it), press Enter.
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


def test_phone_refine_opens_the_region_fields(browser, server, collection, tmp_path) -> None:
    context, page = open_page(browser, server, PHONE)
    page.phone = True
    search_upload(page, collection["queries"] / "cat-and-coffee.jpg")
    assert page.locator("#region-x0").is_hidden() and page.locator("#stage").is_hidden()
    page.locator("#summary-refine").click()
    assert page.locator("#region-x0").is_visible() and page.locator("#stage").is_visible()
    assert page.evaluate("document.activeElement.id") == "region-x0"
    page.screenshot(path=str(tmp_path / "refine-phone.png"))
    width, height = collection["both_size"]
    values = (collection["split_px"] + 10, 5, width, height)
    for name, value in zip(("x0", "y0", "x1", "y1"), values, strict=True):
        page.fill(f"#region-{name}", str(value))
    before = status(page)
    page.locator("#region-search").click()
    wait_for_results(page, before)
    assert [stem(p) for p in result_paths(page)[:2]] == ["coffee", "coffee"]
    assert "(region)" in page.locator("#summary-label").text_content()
    assert not page.errors, page.errors
    context.close()


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


# -- browsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_browse_the_collection_by_folder_with_load_more(page, collection) -> None:
    total = collection["count"]
    page.wait_for_function("document.querySelectorAll('#results .card').length > 0")
    cards = page.locator("#results .card")
    assert cards.count() == 60  # one page
    assert status(page) == f"Showing 60 of {total} photos"
    page.shot("browse")
    page.locator("#load-more").click()
    page.wait_for_function(f"document.querySelectorAll('#results .card').length === {total}")
    assert status(page) == f"Showing {total} of {total} photos"
    assert page.locator("#load-more").is_hidden()
    names = result_paths(page)
    assert len(set(names)) == total and names == sorted(names)  # no page twice, path order
    # The folder filter: counts per folder, nested folders under their parent.
    options = page.locator("#folder option").all_text_contents()
    assert any(o.strip() == f"textures ({EXTRA + 1})" for o in options), options
    assert any(o.strip() == f"rotated ({EXTRA})" for o in options), options
    page.select_option("#folder", label=next(o for o in options if o.strip().startswith("rotated")))
    page.wait_for_function(
        "n => document.querySelector('#status').textContent === `Showing ${n} of ${n} photos"
        " in textures/rotated`",
        arg=EXTRA,
    )
    assert all(p.startswith("textures/rotated/") for p in result_paths(page))
    assert "folder=" in page.evaluate("location.search")
    # The cards show the folder relative to the indexed one, and the name on one line.
    assert page.locator("#results .card .folder").first.text_content() == "textures/rotated/"
    page.go_back()
    page.wait_for_function(
        "n => document.querySelector('#status').textContent === `Showing 60 of ${n} photos`",
        arg=total,
    )


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_file_names_are_never_broken_across_lines(page, collection) -> None:
    page.select_option("#folder", label=f"textures ({EXTRA + 1})")
    page.wait_for_function(
        "n => /Showing/.test(document.querySelector('#status').textContent) &&"
        " document.querySelectorAll('#results .card').length === n",
        arg=EXTRA + 1,
    )
    name = page.locator("#results .card .name", has_text="launch-pad")
    assert name.get_attribute("title") == f"textures/{LONG_NAME}.jpg"
    line = page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('.card .name')).lineHeight)"
    )
    assert name.bounding_box()["height"] <= line + 1  # one line, cut with an ellipsis
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.shot("long-name")


# -- the address --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_searches_are_addresses_back_and_bookmarks(page, browser, server, collection) -> None:
    if page.phone:
        page.locator("#text-query").fill("cup of coffee")
    else:
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "text-query"
        page.keyboard.type("cup of coffee")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "/ results for/.test(document.querySelector('#status').textContent)", timeout=240_000
    )
    assert "q=cup+of+coffee" in page.evaluate("location.search")
    text_results = result_paths(page)
    # More like the first result: a new address with its id.
    before = status(page)
    page.locator("#results .card .similar").first.click()
    wait_for_results(page, before)
    address = page.evaluate("location.search")
    assert address.startswith("?id=")
    similar_results = result_paths(page)
    # Back: the words search again, with its results.
    before = status(page)
    page.go_back()
    wait_for_results(page, before)
    assert page.evaluate("location.search") == "?q=cup+of+coffee"
    assert page.input_value("#text-query") == "cup of coffee"
    assert result_paths(page) == text_results
    # Forward, then a bookmark of the same address in a fresh tab: the same results.
    before = status(page)
    page.go_forward()
    wait_for_results(page, before)
    assert result_paths(page) == similar_results
    viewport = PHONE if page.phone else DESKTOP
    context, other = open_page(browser, server, viewport, "/" + address + "&k=10")
    wait_for_results(other)
    assert result_paths(other) == similar_results[:10]
    assert other.input_value("#k") == "10"
    context.close()


def test_a_region_address_is_searched_and_drawn(browser, server, collection) -> None:
    with Index.open(collection["index"]) as idx:
        record = next(r for r in idx.catalog.records() if Path(r.path).name == "coffee-crop.jpg")
    box = f"0,0,{record.width // 2},{record.height // 2}"
    context, page = open_page(browser, server, DESKTOP, f"/?id={record.id}&box={box}")
    wait_for_results(page)
    assert "selected region" in status(page)
    assert page.input_value("#region-x1") == str(record.width // 2)
    assert page.locator("#selection").is_visible()
    assert not page.errors, page.errors
    context.close()


# -- the viewer and the keyboard ----------------------------------------------------------------


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_viewer_full_size_with_previous_next_and_actions(page, collection) -> None:
    search_upload(page, collection["queries"] / "coffee.jpg")
    paths = result_paths(page)
    page.locator("#results .card .open").first.click()
    viewer = page.locator("#viewer")
    assert viewer.is_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#viewer-img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    # Full size: the original file, not the thumbnail.
    src = page.get_attribute("#viewer-img", "src")
    assert src.endswith("/file")
    original = Image.open(collection["root"] / "photos" / paths[0])
    assert page.evaluate("document.querySelector('#viewer-img').naturalWidth") == original.width
    assert page.locator("#viewer-name").text_content() == Path(paths[0]).name
    meta = page.locator("#viewer-meta").text_content()
    assert f"{original.width} × {original.height}" in meta
    assert "KB" in meta and "match" in meta and "espresso" in meta
    page.shot("viewer")
    # Next / previous by keys and buttons.
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "n => document.querySelector('#viewer-name').textContent === n", arg=Path(paths[1]).name
    )
    page.locator("#viewer-prev").click()
    page.wait_for_function(
        "n => document.querySelector('#viewer-name').textContent === n", arg=Path(paths[0]).name
    )
    assert page.locator("#viewer-prev").is_disabled()
    # Escape closes and gives the focus back to the card.
    page.keyboard.press("Escape")
    assert viewer.is_hidden()
    assert page.evaluate("document.activeElement.closest('.card').dataset.index") == "0"
    # "More like this" from the viewer.
    page.keyboard.press("Enter")
    assert viewer.is_visible()
    before = status(page)
    page.locator("#viewer-similar").click()
    wait_for_results(page, before)
    assert viewer.is_hidden()
    assert page.evaluate("location.search").startswith("?id=")
    assert paths[0] not in result_paths(page)
    # "Find duplicates of this": the duplicates view, for that image.
    page.locator("#results .card .open").first.click()
    page.locator("#viewer-dupes").click()
    assert page.locator("#duplicates-view").is_visible()
    assert page.evaluate("location.search").startswith("?view=duplicates&id=")
    assert page.locator("#nav-duplicates").get_attribute("aria-current") == "page"


def test_keyboard_only(page, collection) -> None:
    # The first result is two key presses from the top of the page: Tab (the skip link), Enter.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.closest('.card').dataset.index") == "0"
    # "/" focuses the search box; a search by words, by keys only.
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "text-query"
    page.keyboard.type("espresso")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "/ results for/.test(document.querySelector('#status').textContent)", timeout=240_000
    )
    # Tab reaches the results after the few controls of the query panel.
    presses = 0
    while not page.evaluate("document.activeElement.classList.contains('open')"):
        page.keyboard.press("Tab")
        presses += 1
        assert presses <= 8, "the results are more than 8 Tab presses from the search box"
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label.startswith("Open ") and "% sure" in label
    # Arrow keys move through the grid (one Tab stop); Down moves by a row.
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.closest('.card').dataset.index") == "1"
    page.keyboard.press("ArrowLeft")
    columns = page.evaluate(
        "(() => { const c = [...document.querySelectorAll('#results .card')];"
        " return c.filter(x => x.offsetTop === c[0].offsetTop).length; })()"
    )
    page.keyboard.press("ArrowDown")
    index = page.evaluate("Number(document.activeElement.closest('.card').dataset.index)")
    assert index == min(columns, len(result_paths(page)) - 1)
    assert (
        page.evaluate(
            "[...document.querySelectorAll('#results .open')].filter(b => b.tabIndex === 0).length"
        )
        == 1
    )
    # Enter opens the viewer; Escape returns to the same card.
    page.keyboard.press("Enter")
    assert page.locator("#viewer").is_visible()
    assert page.evaluate("document.activeElement.id") == "viewer-close"
    page.keyboard.press("Escape")
    assert page.evaluate("Number(document.activeElement.closest('.card').dataset.index)") == index


# -- words ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_text_search_explains_itself(page, collection) -> None:
    page.fill("#text-query", "a cup of coffee")
    page.keyboard.press("Enter")
    # The first text query loads the sentence model (and may embed the class texts): slow.
    page.wait_for_function(
        "/ results for/.test(document.querySelector('#status').textContent)", timeout=240_000
    )
    paths = result_paths(page)
    assert [stem(p) for p in paths[:2]] == ["coffee", "coffee"], paths
    assert "espresso" in page.locator("#results .card .tags").first.text_content()
    explain = page.locator("#explain")
    assert explain.is_visible() and "Matched classes:" in explain.text_content()
    assert "espresso" in explain.text_content() or "cup" in explain.text_content()
    assert page.locator("#query-figure").is_hidden()  # no picture to show for words
    page.shot("text")
    # A word no class is close to: no silent "0 results", a reason.
    if page.phone:
        page.locator("#summary-edit").click()
    before = status(page)
    page.fill("#text-query", "qwzxv")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "prev => document.querySelector('#status').textContent !== prev"
        " && !/Searching/.test(document.querySelector('#status').textContent)",
        arg=before,
    )
    assert status(page) == "No results for “qwzxv”"
    assert explain.is_visible() and "no ImageNet class is close" in explain.text_content()
    # Words naming a class no photo here shows: the reason names the classes.
    if page.phone:
        page.locator("#summary-edit").click()
    before = status(page)
    page.fill("#text-query", "zebra")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "prev => document.querySelector('#status').textContent !== prev"
        " && !/Searching/.test(document.querySelector('#status').textContent)",
        arg=before,
    )
    assert status(page) == "No results for “zebra”"
    assert "no picture here was tagged with zebra" in explain.text_content()


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

    search_upload(page, collection["queries"] / "camera.jpg")
    # (route.fetch() drops multipart file bodies, so the routed search is a JSON one.)
    page.route("**/api/search", add_box)
    before = status(page)
    page.locator("#results .card .similar").first.click()
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
    page.select_option("#k", "10")
    page.check("#localize")
    search_upload(page, collection["queries"] / "rocket.jpg")
    boxes = page.locator("#results .card .hit-box")
    assert boxes.count() == 10
    assert all(boxes.nth(i).is_visible() for i in range(boxes.count()))
    assert "localize=1" in page.evaluate("location.search")


def test_error_from_the_server_is_shown(page, collection) -> None:
    bad = collection["root"] / "not-an-image.jpg"
    bad.write_bytes(b"this is text, not a photo")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "not an image" in status(page)


# -- the index status panel -------------------------------------------------------------------


@pytest.mark.parametrize("page", ["desktop", "phone"], indirect=True)
def test_status_panel_on_a_read_only_server(page, collection) -> None:
    page.locator("#status-button").click()
    panel = page.locator("#status-panel")
    assert panel.is_visible()
    assert page.locator("#st-count").text_content() == str(collection["count"])
    assert page.locator("#st-roots").text_content() == str(collection["root"] / "photos")
    assert (
        "ago" in page.locator("#st-last").text_content()
        or "just now" in page.locator("#st-last").text_content()
    )
    assert page.locator("#rescan").is_hidden()
    assert "read-only" in page.locator("#rescan-readonly").text_content()
    page.shot("status")


def start_server(index: Path, *args: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lookalike = Path(sys.executable).with_name("lookalike")
    log = index.parent / "serve.log"
    proc = subprocess.Popen(
        [str(lookalike), "serve", "--index", str(index), "--port", str(port), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_rescan_from_the_page_with_a_token(browser, tmp_path, viewport) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    originals = sample_photos(("chelsea", "coffee", "rocket"))
    for name in ("chelsea", "coffee"):
        originals[name].resize((160, 120)).save(photos / f"{name}.jpg")
    with Index.create(tmp_path / "index") as idx:
        idx.sync([photos])
    token = "page-token-1234"
    proc, base = start_server(tmp_path / "index", "--writable", "--token", token)
    try:
        context, page = open_page(browser, base, viewport)
        page.wait_for_function("document.querySelector('#index-info').textContent.startsWith('2 ')")
        originals["rocket"].resize((160, 120)).save(photos / "new-rocket.jpg")
        page.locator("#status-button").click()
        assert page.locator("#token").is_visible()
        # A wrong token is refused with the server's reason.
        page.fill("#token", "wrong-token-000")
        page.locator("#rescan").click()
        page.wait_for_function("/refused/.test(document.querySelector('#rescan-text').textContent)")
        assert "token" in page.locator("#rescan-text").text_content()
        page.fill("#token", token)
        page.locator("#rescan").click()
        page.wait_for_function(
            "/Rescan done/.test(document.querySelector('#rescan-text').textContent)",
            timeout=120_000,
        )
        text = page.locator("#rescan-text").text_content()
        assert "1 added" in text and "3 photos" in text, text
        assert page.locator("#st-count").text_content() == "3"
        # The grid shows the new photo without a reload.
        page.wait_for_function(
            "document.querySelector('#status').textContent === 'Showing 3 of 3 photos'"
        )
        assert "new-rocket.jpg" in result_paths(page)
        page.screenshot(path=str(tmp_path / f"rescan-{viewport['width']}.png"))
        assert not page.errors, page.errors
        context.close()
    finally:
        proc.terminate()
        proc.wait(20)
