"""kill -9 of a writable `lookalike serve` in the middle of uploads and deletes: after a restart,
the catalog and the uploads folder agree (every uploaded file has its record and every record
of an upload has its file), every image the server lists is servable, and `lookalike check`
finds the catalog sound."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lookalike.engine import Index
from lookalike.index.manifest import IndexSettings

TOKEN = "crash-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUNDS = 3
START_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(index: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike",
            "serve",
            "--index",
            str(index),
            "--port",
            str(port),
            "--writable",
            "--token",
            TOKEN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def _jpeg(image: Image.Image, seed: int) -> bytes:
    w, h = image.size
    crop = image.crop((seed % 17, seed % 13, w - seed % 11, h - seed % 7)).resize((96, 72))
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=70 + seed % 25)
    return buf.getvalue()


def _agree(index: Path) -> tuple[set[str], set[str]]:
    folder = index / "uploads"
    files = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    with Index.open(index) as idx:
        records = {
            Path(r.path).name for r in idx.catalog.records() if Path(r.path).parent == folder
        }
    return files, records


@pytest.mark.slow
def test_kill_9_during_uploads_and_deletes_leaves_catalog_and_uploads_in_agreement(
    tmp_path: Path, photos: dict
) -> None:
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        photos[name].save(photo_dir / f"{name}.jpg", quality=90)
    index = tmp_path / "index"
    with Index.create(index, IndexSettings(max_side=224)) as idx:
        idx.sync([photo_dir])
    bodies = [_jpeg(photos[n], s) for s in range(8) for n in ("astronaut", "camera", "coins")]
    killed_with_work_in_flight = 0
    for round_ in range(ROUNDS):
        proc, url = _serve(index)
        stop = threading.Event()
        sent = {"n": 0}

        def worker(
            offset: int, url: str = url, stop: threading.Event = stop, sent: dict = sent
        ) -> None:
            with httpx.Client(base_url=url, timeout=30, headers=AUTH) as client:
                i = offset
                while not stop.is_set():
                    body = bodies[i % len(bodies)]
                    i += 3
                    try:
                        r = client.post("/api/images", files={"image": ("x.jpg", body)})
                        sent["n"] += 1
                        if r.status_code in (200, 201) and i % 2:
                            client.delete(f"/api/images/{r.json()['id']}")
                    except httpx.HTTPError:
                        return  # the server is gone

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.5 + round_)  # let uploads and deletes overlap, then kill mid-flight
        if sent["n"]:
            killed_with_work_in_flight += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        stop.set()
        for t in threads:
            t.join(60)
        # Restart: the writable server reconciles the uploads folder with the catalog.
        proc, url = _serve(index)
        try:
            files, records = _agree(index)
            assert files == records, (files - records, records - files)
            with httpx.Client(base_url=url, timeout=60) as client:
                for name in sorted(records)[:10]:
                    with Index.open(index) as idx:
                        record = idx.catalog.find_path(str(index / "uploads" / name))
                    assert client.get(f"/api/images/{record.id}/file").status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        check = subprocess.run(
            [sys.executable, "-m", "lookalike", "check", "--index", str(index)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    assert killed_with_work_in_flight >= 1  # the kills really hit a server at work
    assert not (index / ".uploads-incoming").exists() or not any(
        (index / ".uploads-incoming").iterdir()
    )
