"""The HTTP API through FastAPI's TestClient, on a real index of real photos (scikit-image's)
and edited copies of them. Every documented error case has a test here."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.edits import apply_edit
from lookalike.engine import Index
from lookalike.errors import ConfigError, IndexLockedError
from lookalike.samples import sample_photos
from lookalike.server import ServerSettings, create_app

NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle_left")
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Indexed: two edited copies of each photo. Not indexed: the originals (queries)."""
    root = tmp_path_factory.mktemp("server")
    indexed, queries = root / "photos", root / "queries"
    indexed.mkdir()
    queries.mkdir()
    photos = sample_photos(NAMES[:-1]) | {"motorcycle_left": sample_photos()["motorcycle_left"]}
    for n, name in enumerate(NAMES):
        image = photos[name]
        image.save(queries / f"{name}.jpg", quality=90)
        apply_edit("crop", image, seed=n).save(indexed / f"{name}-crop.jpg", quality=90)
        apply_edit("flip", image, seed=n).save(indexed / f"{name}-flip.jpg", quality=90)
    with Index.create(root / "index") as idx:
        idx.sync([indexed])
    return {"root": root, "index": root / "index", "queries": queries, "photos": photos}


@pytest.fixture(scope="module")
def client(collection: dict):
    with TestClient(create_app(collection["index"], ServerSettings())) as c:
        yield c


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def upload(client: TestClient, data: bytes, name: str = "q.jpg", **form) -> object:
    return client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data=form)


def stem(path: str) -> str:
    return Path(path).stem.rsplit("-", 1)[0]


def id_of(client: TestClient, collection: dict, filename: str) -> int:
    with Index.open(collection["index"]) as idx:
        record = idx.catalog.find_path(str(collection["root"] / "photos" / filename))
    assert record is not None
    return record.id


def assert_problem(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    assert fragment.lower() in body["message"].lower(), body["message"]


# -- reading ----------------------------------------------------------------------------------


def test_health_and_stats(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "images": 12, "writable": False}
    stats = client.get("/api/stats").json()
    assert stats["index"]["count"] == 12
    assert stats["server"]["max_upload_bytes"] == 32 * 1024 * 1024
    assert stats["server"]["max_pixels"] == 100_000_000
    assert stats["server"]["cnn"]["workers"] >= 1


def test_search_by_upload_finds_the_edited_copies_first(client, collection) -> None:
    for name in ("chelsea", "coffee", "rocket"):
        data = (collection["queries"] / f"{name}.jpg").read_bytes()
        r = upload(client, data, k="4")
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 4
        assert [stem(h["path"]) for h in hits[:2]] == [name, name]
        assert hits[0]["score"] >= hits[1]["score"] >= hits[3]["score"]
        assert {"id", "path", "score", "width", "height", "thumbnail", "file"} <= hits[0].keys()


def test_content_is_checked_not_the_file_name(client, collection) -> None:
    png = io.BytesIO()
    collection["photos"]["coffee"].save(png, "PNG")
    r = client.post("/api/search", files={"image": ("notes.txt", png.getvalue(), "text/plain")})
    assert r.status_code == 200
    assert stem(r.json()["hits"][0]["path"]) == "coffee"


def test_search_by_id_json_and_similar(client, collection) -> None:
    cid = id_of(client, collection, "chelsea-crop.jpg")
    for r in (
        client.post("/api/search", json={"id": cid, "k": 3}),
        client.get(f"/api/images/{cid}/similar", params={"k": 3}),
    ):
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 3
        assert cid not in [h["id"] for h in hits]
        assert Path(hits[0]["path"]).name == "chelsea-flip.jpg"


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    h = 300
    a = left.resize((round(left.width * h / left.height), h))
    b = right.resize((round(right.width * h / right.height), h))
    canvas = Image.new("RGB", (a.width + b.width, h))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    return canvas


def test_box_selects_the_region_searched(client, collection) -> None:
    photos = collection["photos"]
    both = side_by_side(photos["chelsea"], photos["coffee"])
    split = round(photos["chelsea"].width * 300 / photos["chelsea"].height)
    data = jpeg_bytes(both)
    left = upload(client, data, k="2", box=f"0,0,{split},300").json()
    right = upload(client, data, k="2", box=f"{split},0,{both.width},300").json()
    assert [stem(h["path"]) for h in left["hits"]] == ["chelsea", "chelsea"]
    assert [stem(h["path"]) for h in right["hits"]] == ["coffee", "coffee"]
    assert right["query"]["box"] == [split, 0, both.width, 300]


def test_box_on_an_indexed_image(client, collection) -> None:
    cid = id_of(client, collection, "coffee-crop.jpg")
    record = client.get(f"/api/images/{cid}").json()
    box = [0, 0, record["width"] // 2, record["height"] // 2]
    r = client.post("/api/search", json={"id": cid, "k": 2, "box": box})
    assert r.status_code == 200, r.text
    assert r.json()["query"]["box"] == box
    assert cid not in [h["id"] for h in r.json()["hits"]]


def test_image_metadata_thumbnail_and_file(client, collection) -> None:
    cid = id_of(client, collection, "rocket-flip.jpg")
    meta = client.get(f"/api/images/{cid}").json()
    original = collection["root"] / "photos" / "rocket-flip.jpg"
    assert meta["path"] == str(original)
    assert (meta["width"], meta["height"]) == Image.open(original).size
    r = client.get(f"/api/images/{cid}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.format == "JPEG" and max(thumb.size) == 256
    cached = list((collection["index"] / "thumbnails").glob(f"{cid}-*-256.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.content
    small = client.get(f"/api/images/{cid}/thumbnail", params={"size": 128})
    assert max(Image.open(io.BytesIO(small.content)).size) == 128
    r = client.get(f"/api/images/{cid}/file")
    assert r.status_code == 200 and r.content == original.read_bytes()
    assert r.headers["content-type"] == "image/jpeg"


def test_page_and_docs_are_served_without_external_resources(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Content-Security-Policy" in page.headers
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/docs").text):
        assert "http://" not in text and "https://" not in text
    assert client.get("/openapi.json").json()["paths"]["/api/search"]["post"]


# -- errors -----------------------------------------------------------------------------------


def test_unknown_ids_are_404(client) -> None:
    for r in (
        client.get("/api/images/9999"),
        client.get("/api/images/9999/thumbnail"),
        client.get("/api/images/9999/file"),
        client.get("/api/images/9999/similar"),
        client.post("/api/search", json={"id": 9999}),
    ):
        assert_problem(r, 404, "no image with id 9999")


def test_paths_are_never_taken_from_the_request(client, collection) -> None:
    for url in (
        "/api/images/..%2F..%2Fetc%2Fpasswd",
        "/api/images/%2Fetc%2Fpasswd/file",
        "/api/images/1/../../catalog.sqlite",
        "/static/../../index/catalog.sqlite",
        "/static/%2e%2e/app.py",
        "/static/..%2Fapp.py",
    ):
        r = client.get(url)
        assert r.status_code in (404, 422), url
        assert r.json()["status"] == r.status_code
        assert b"root:" not in r.content and b"SQLite" not in r.content
    assert_problem(client.get("/api/images/abc/file"), 422, "image_id")
    r = client.post("/api/search", json={"path": "/etc/passwd"})
    assert_problem(r, 422, "path")


def test_bad_parameters_are_422(client, collection) -> None:
    data = (collection["queries"] / "coffee.jpg").read_bytes()
    assert_problem(upload(client, data, k="0"), 422, "k")
    assert_problem(upload(client, data, k="1000"), 422, "between 1 and 200")
    assert_problem(upload(client, data, k="many"), 422, "expected an integer")
    assert_problem(upload(client, data, box="1,2,3"), 422, "box")
    assert_problem(upload(client, data, box="a,b,c,d"), 422, "box")
    assert_problem(client.get("/api/images/1/similar", params={"k": 0}), 422, "k")
    assert_problem(client.get("/api/images/1/thumbnail", params={"size": 4000}), 422, "size")
    assert_problem(client.post("/api/search", json={"id": "x"}), 422, "id")
    assert_problem(client.post("/api/search", json={"k": 3}), 422, "id")
    assert_problem(
        client.post(
            "/api/search", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
        "json",
    )
    # A box that selects (next to) nothing of the picture: the engine refuses it.
    assert_problem(upload(client, data, box="0,0,4,4"), 400, "box")


def test_missing_or_wrong_body_kind(client) -> None:
    assert_problem(
        client.post("/api/search", data={"k": "3"}, files={"other": ("a", b"x")}), 422, "image"
    )
    assert_problem(
        client.post("/api/search", content=b"abc", headers={"content-type": "text/plain"}),
        415,
        "multipart",
    )


def test_uploads_that_are_not_images(client, collection) -> None:
    assert_problem(upload(client, b"GIF89a but not really an image", "x.gif"), 415, "not an image")
    assert_problem(upload(client, b"#!/bin/sh\necho hi\n", "photo.jpg"), 415, "not an image")
    assert_problem(upload(client, b"", "empty.jpg"), 422, "empty")
    data = (collection["queries"] / "rocket.jpg").read_bytes()
    assert_problem(upload(client, data[: len(data) // 3], "cut.jpg"), 422, "corrupt")


def test_size_and_pixel_limits(collection) -> None:
    settings = ServerSettings(max_upload_bytes=60_000, max_pixels=200_000)
    data = (collection["queries"] / "astronaut.jpg").read_bytes()  # 512x512, ~90 KB
    assert len(data) > 60_000
    with TestClient(create_app(collection["index"], settings)) as c:
        # Content-Length over the limit: refused before the body is read.
        assert_problem(upload(c, data), 413, "too large")

        # No Content-Length (streamed): refused while reading.
        def chunks():
            yield b"x" * 50_000
            yield b"x" * 50_000
            yield b"x" * 50_000

        r = c.post(
            "/api/search",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=zzz"},
        )
        assert_problem(r, 413, "too large")
        # Small file, many pixels (a 600x600 flat PNG is a few KB).
        png = io.BytesIO()
        Image.new("RGB", (600, 600), (20, 120, 200)).save(png, "PNG")
        assert len(png.getvalue()) < 60_000
        assert_problem(upload(c, png.getvalue(), "flat.png"), 413, "pixels")
        ok = io.BytesIO()
        Image.new("RGB", (400, 400), (20, 120, 200)).save(ok, "PNG")
        assert upload(c, ok.getvalue(), "ok.png").status_code == 200


def test_busy_cnn_answers_503_with_retry_after(collection) -> None:
    settings = ServerSettings(cnn_workers=1, cnn_queue=0, retry_after_s=3)
    data = (collection["queries"] / "camera.jpg").read_bytes()
    with TestClient(create_app(collection["index"], settings)) as c:
        state = c.app.state.lookalike
        results: list = []
        # Hold the index's lock so the one CNN slot stays taken by the first request.
        with state.index.lock:
            first = threading.Thread(target=lambda: results.append(upload(c, data)))
            first.start()
            deadline = time.monotonic() + 30
            while state.gate.in_flight < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert state.gate.in_flight == 1
            busy = upload(c, data)
        first.join(30)
        assert_problem(busy, 503, "busy")
        assert busy.headers["Retry-After"] == "3"
        assert results[0].status_code == 200
        assert c.get("/api/stats").json()["server"]["cnn"]["rejected_busy"] == 1


# -- writing ----------------------------------------------------------------------------------


@pytest.fixture()
def writable_index(collection: dict, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(collection["index"], target, ignore=shutil.ignore_patterns("thumbnails"))
    return target


def test_writes_are_refused_on_a_read_only_server(client, collection) -> None:
    data = (collection["queries"] / "coffee.jpg").read_bytes()
    r = client.post("/api/images", files={"image": ("c.jpg", data, "image/jpeg")})
    assert_problem(r, 403, "writes are disabled")
    assert_problem(client.delete("/api/images/1"), 403, "writes are disabled")


def test_add_search_and_delete_with_token(writable_index: Path, collection) -> None:
    settings = ServerSettings(writable=True, token=TOKEN)
    data = (collection["queries"] / "coffee.jpg").read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    files = {"image": ("mine.jpg", data, "image/jpeg")}
    with TestClient(create_app(writable_index, settings)) as c:
        # The server holds the writer lock while it runs.
        with pytest.raises(IndexLockedError):
            Index.open(writable_index, writable=True)
        assert_problem(c.post("/api/images", files=files), 401, "bearer token")
        r = c.post("/api/images", files=files, headers={"Authorization": "Bearer wrong-token"})
        assert_problem(r, 401, "bearer token")
        assert r.headers["WWW-Authenticate"] == "Bearer"
        r = c.post("/api/images", files=files, headers=auth)
        assert r.status_code == 201, r.text
        added = r.json()
        stored = Path(added["path"])
        assert stored.parent == writable_index / "uploads"
        assert stored.read_bytes() == data and stored.name != "mine.jpg"
        assert c.get("/api/health").json()["images"] == 13
        # Uploading the same content again returns the same image.
        again = c.post("/api/images", files=files, headers=auth)
        assert again.status_code == 200 and again.json()["id"] == added["id"]
        hits = upload(c, data, k="1").json()["hits"]
        assert hits[0]["id"] == added["id"] and hits[0]["score"] > 0.99
        assert c.get(f"/api/images/{added['id']}/thumbnail").status_code == 200
        # A non-image is refused and leaves nothing behind.
        bad = c.post(
            "/api/images", files={"image": ("x.jpg", b"not an image", "image/jpeg")}, headers=auth
        )
        assert_problem(bad, 415, "not an image")
        assert [p.name for p in (writable_index / "uploads").iterdir()] == [stored.name]
        # Delete.
        assert_problem(c.delete(f"/api/images/{added['id']}"), 401, "bearer token")
        r = c.delete(f"/api/images/{added['id']}", headers=auth)
        assert r.status_code == 200 and r.json()["file_deleted"] is True
        assert not stored.exists()
        assert_problem(c.get(f"/api/images/{added['id']}"), 404, "no image")
        assert_problem(c.delete(f"/api/images/{added['id']}", headers=auth), 404, "no image")
        assert c.get("/api/health").json()["images"] == 12
    # Stopped: the lock is released.
    Index.open(writable_index, writable=True).close()


def test_delete_keeps_files_the_server_did_not_upload(writable_index: Path, collection) -> None:
    with TestClient(create_app(writable_index, ServerSettings(writable=True))) as c:
        cid = c.post("/api/search", json={"id": 1, "k": 1}).json()["hits"][0]["id"]
        path = Path(c.get(f"/api/images/{cid}").json()["path"])
        r = c.delete(f"/api/images/{cid}")
        assert r.status_code == 200 and r.json()["file_deleted"] is False
        assert path.exists()


def test_settings_refuse_a_public_address_without_token(collection) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        create_app(collection["index"], ServerSettings(host="0.0.0.0"))
    create_app(collection["index"], ServerSettings(host="0.0.0.0", token=TOKEN))
    create_app(collection["index"], ServerSettings(host="::1"))


def test_settings_from_environment(monkeypatch, collection) -> None:
    monkeypatch.setenv("LOOKALIKE_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("LOOKALIKE_TOKEN", TOKEN)
    s = ServerSettings()
    assert s.max_upload_bytes == 1234 and s.token == TOKEN


def test_localize_returns_boxes_inside_each_hit(client, collection) -> None:
    data = (collection["queries"] / "chelsea.jpg").read_bytes()
    cid = id_of(client, collection, "chelsea-crop.jpg")
    for r in (
        upload(client, data, k="3", localize="true"),
        client.post("/api/search", json={"id": cid, "k": 3, "localize": True}),
    ):
        assert r.status_code == 200, r.text
        for hit in r.json()["hits"]:
            x0, y0, x1, y1 = hit["box"]
            assert 0 <= x0 < x1 <= hit["width"] and 0 <= y0 < y1 <= hit["height"]
    assert "box" not in upload(client, data, k="3").json()["hits"][0]


# -- text search ------------------------------------------------------------------------------


def test_text_search_by_post_and_get(client) -> None:
    r = client.post("/api/search", json={"text": "a cup of coffee", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == {"text": "a cup of coffee"}
    hits = body["hits"]
    assert [stem(h["path"]) for h in hits[:2]] == ["coffee", "coffee"], hits
    assert hits[0]["tags"] and hits[0]["tags"][0]["name"] == "espresso"
    assert hits[0]["thumbnail"] == f"/api/images/{hits[0]['id']}/thumbnail"
    got = client.get("/api/search/text", params={"q": "cat", "k": 2}).json()["hits"]
    assert [stem(h["path"]) for h in got] == ["chelsea", "chelsea"]
    assert any("cat" in t["name"] for t in got[0]["tags"])
    # Words that match nothing in the index: no hits, not an error.
    assert client.get("/api/search/text", params={"q": "elephant"}).json()["hits"] == []


def test_text_search_errors(client) -> None:
    assert_problem(client.post("/api/search", json={"text": "   "}), 422, "text")
    assert_problem(client.post("/api/search", json={"text": ""}), 422, "text")
    assert_problem(client.post("/api/search", json={"text": "the photo"}), 422, "no words")
    assert_problem(client.post("/api/search", json={"text": 3}), 422, "text")
    assert_problem(client.post("/api/search", json={"text": "cat", "k": 0}), 422, "k")
    assert_problem(client.post("/api/search", json={"text": "cat", "id": 1}), 422, "id")
    assert_problem(client.get("/api/search/text"), 422, "q")
    assert_problem(client.get("/api/search/text", params={"q": "cat", "k": 999}), 422, "k")
