"""The duplicates view of the web page in a real headless Chromium against a real
`lookalike serve --writable --token` process, and GET /api/duplicates against the Python API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lookalike.engine import Index
from lookalike.samples import sample_photos

# the view draws itself after the page's script has run: wait for its status line to exist
STATUS = "(document.querySelector('#dupes-status') || {}).textContent"
CHROMIUM = os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium")
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from skimage import data

    from lookalike.samples import _to_rgb

    root = tmp_path_factory.mktemp("dupes_web")
    photos_dir = root / "photos"
    photos_dir.mkdir()
    photos = sample_photos(("coffee", "chelsea", "rocket"))
    photos["coffee"].save(photos_dir / "coffee.jpg", quality=95)
    photos["coffee"].resize((300, 200), Image.Resampling.BILINEAR).save(
        photos_dir / "coffee_half.jpg", quality=40
    )
    photos["chelsea"].save(photos_dir / "chelsea.jpg", quality=92)
    shutil.copy(photos_dir / "chelsea.jpg", photos_dir / "chelsea_copy.jpg")
    photos["rocket"].save(photos_dir / "rocket.jpg", quality=92)
    left, right, _ = data.stereo_motorcycle()
    _to_rgb(left).save(photos_dir / "motorcycle_left.jpg", quality=92)
    _to_rgb(right).save(photos_dir / "motorcycle_right.jpg", quality=92)
    with Index.create(root / "index") as idx:
        idx.sync([photos_dir])
    return {"root": root, "index": root / "index", "photos": photos_dir}


@pytest.fixture(scope="module")
def server(collection: dict):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lookalike = Path(sys.executable).with_name("lookalike")
    cmd = [str(lookalike), "serve", "--index", str(collection["index"]), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--writable", "--token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
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
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    assert not errors, errors
    context.close()


def _stems(locator) -> list[str]:
    return [Path(p).stem for p in locator.all_text_contents()]


def test_api_returns_what_python_returns(server, collection):
    got = httpx.get(f"{server}/api/duplicates", params={"similar": "true"}, timeout=120)
    assert got.status_code == 200
    with Index.open(collection["index"]) as idx:  # read-only, next to the writing server
        expected = {"groups": [g.to_dict() for g in idx.duplicates(similar=True)]}
    assert got.json() == expected
    kinds = {g["kind"] for g in expected["groups"]}
    assert kinds == {"exact", "near", "similar"}
    bad = httpx.get(f"{server}/api/duplicates", params={"threshold": "0.9"}, timeout=30)
    assert bad.status_code == 422 and "similar" in bad.json()["message"]


def test_groups_side_by_side_with_sizes_and_keeper(page, server):
    page.goto(f"{server}/duplicates")  # redirects to /?view=duplicates
    page.wait_for_function(f"/groups/.test({STATUS})")
    near = page.locator(".dupe-group[data-kind='near']")
    assert near.count() == 1
    assert _stems(near.locator(".member .path")) == ["coffee", "coffee_half"]
    keeper = near.locator(".member").first
    assert keeper.locator(".badge").is_visible()
    assert keeper.locator(".dims").text_content() == "600×400"
    assert near.locator(".member").nth(1).locator(".dims").text_content() == "300×200"
    assert "largest resolution" in near.locator(".reason").text_content()
    # side by side: the two thumbnails share a row
    boxes = [near.locator(".member img").nth(i).bounding_box() for i in range(2)]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and boxes[1]["x"] > boxes[0]["x"]
    page.wait_for_function(
        "() => [...document.querySelectorAll('.member img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    exact = page.locator(".dupe-group[data-kind='exact']")
    assert sorted(_stems(exact.locator(".member .path"))) == ["chelsea", "chelsea_copy"]
    # other shots only with the box ticked
    assert page.locator(".dupe-group[data-kind='similar']").count() == 0
    page.check("#dupes-similar")
    page.click("#dupes-find")
    page.wait_for_selector(".dupe-group[data-kind='similar']")
    similar = page.locator(".dupe-group[data-kind='similar']")
    assert sorted(_stems(similar.locator(".member .path"))) == [
        "motorcycle_left",
        "motorcycle_right",
    ]


def test_duplicates_of_one_picture(page, server):
    coffee = httpx.get(f"{server}/api/duplicates", timeout=120).json()["groups"]
    near = next(g for g in coffee if g["kind"] == "near")
    page.goto(f"{server}/?view=duplicates&id={near['ids'][1]}")
    page.wait_for_function(f"/groups/.test({STATUS})")
    assert page.locator(".dupe-group").count() == 1
    assert page.locator("#nav-duplicates").get_attribute("aria-current") == "page"


def test_remove_from_index_needs_the_token_and_keeps_the_file(page, server, collection):
    page.goto(f"{server}/duplicates")  # redirects to /?view=duplicates
    page.wait_for_selector(".dupe-group[data-kind='near'] .member")
    near = page.locator(".dupe-group[data-kind='near']")
    keeper, other = near.locator(".member").nth(0), near.locator(".member").nth(1)
    assert keeper.locator(".remove").is_hidden()  # the keeper cannot be removed from here
    assert page.locator("#dupes-token").is_visible()
    other.locator(".remove").click()
    page.wait_for_function(
        "() => /token/.test(document.querySelectorAll"
        "('.dupe-group[data-kind=near] .member-msg')[1].textContent)"
    )
    image_id = other.get_attribute("data-id")
    assert httpx.get(f"{server}/api/images/{image_id}").status_code == 200  # still indexed
    page.fill("#dupes-token", TOKEN)
    other.locator(".remove").click()
    page.wait_for_function(
        "() => /Removed/.test(document.querySelectorAll"
        "('.dupe-group[data-kind=near] .member-msg')[1].textContent)"
    )
    assert httpx.get(f"{server}/api/images/{image_id}").status_code == 404
    assert (collection["photos"] / "coffee_half.jpg").is_file()  # never deleted from disk
    # the index changed: the near group is gone on the next look
    page.click("#dupes-find")
    page.wait_for_function(
        "() => !document.querySelector('.dupe-group[data-kind=near]')"
        f" && /groups|No duplicates/.test({STATUS})"
    )
