"""Take docs/screenshot.png and docs/screenshot-phone.png: the web page after a search, at
desktop and phone width, in headless Chromium.

    .venv/bin/python docs/make_screenshot.py   (needs /usr/bin/chromium)

Builds the demo collection in a temporary folder, starts `lookalike serve` on 127.0.0.1,
uploads an edited copy of a photo, and saves the screenshots.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

OUT = Path(__file__).parent / "screenshot.png"
PHONE_OUT = Path(__file__).parent / "screenshot-phone.png"


def main() -> None:
    from playwright.sync_api import sync_playwright

    from lookalike.demo import build_demo_collection
    from lookalike.engine import Index

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        queries = build_demo_collection(root)
        with Index.create(root / "index") as idx:
            idx.sync([root / "photos"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        exe = str(Path(sys.executable).with_name("lookalike"))
        proc = subprocess.Popen([exe, "serve", "--index", str(root / "index"), "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    if httpx.get(f"{base}/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            query = next(q for q in sorted(queries) if "chelsea" in q)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                for out, viewport, mobile in (
                    (OUT, {"width": 1100, "height": 720}, False),
                    (PHONE_OUT, {"width": 390, "height": 844}, True),
                ):
                    context = browser.new_context(viewport=viewport, is_mobile=mobile)
                    page = context.new_page()
                    page.goto(base)
                    page.wait_for_selector("body[data-ready]")
                    if not mobile:
                        page.select_option("#k", "10")
                    page.set_input_files("#file", query)
                    page.wait_for_selector("#results .card .match:not(:empty)")
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(out))
                    context.close()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(20)
    for out in (OUT, PHONE_OUT):
        image = Image.open(out)
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=128)
        image.save(out, optimize=True)
        print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
