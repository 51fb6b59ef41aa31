"""The page's browsing and status routes (/api/images, /api/folders, /api/status, /api/rescan)
through FastAPI's TestClient on a real index of the shipped photos in nested folders."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import LAYOUT, MAX_SIDE
from lookalike.engine import Index
from lookalike.index.manifest import IndexSettings
from lookalike.server import ServerSettings, create_app
from lookalike.server.browse import relative_path

TOKEN = "browse-token-123"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, photo_folder_master) -> dict:
    root = tmp_path_factory.mktemp("browse")
    photos = root / "photos"
    shutil.copytree(photo_folder_master, photos)
    before = time.time()
    with Index.create(root / "index", IndexSettings(max_side=MAX_SIDE)) as idx:
        idx.sync([photos])
    return {"root": root, "photos": photos, "index": root / "index", "before": before}


@pytest.fixture(scope="module")
def client(indexed):
    with TestClient(create_app(indexed["index"], ServerSettings())) as c:
        yield c


def test_the_whole_collection_pages_in_path_order(client, indexed) -> None:
    first = client.get("/api/images", params={"limit": 5}).json()
    assert first["total"] == len(LAYOUT)
    assert len(first["images"]) == 5
    seen = [im["path"] for im in first["images"]]
    offset = 5
    while offset < first["total"]:
        page = client.get("/api/images", params={"limit": 5, "offset": offset}).json()
        assert page["total"] == len(LAYOUT)
        seen += [im["path"] for im in page["images"]]
        offset += 5
    assert seen == sorted(seen)
    assert sorted(Path(p).relative_to(indexed["photos"]).as_posix() for p in seen) == sorted(
        rel for rel, _, _ in LAYOUT
    )
    # Paths relative to the indexed folder, unicode names intact; tags come with each image.
    past = client.get("/api/images", params={"limit": 200}).json()["images"]
    by_rel = {im["rel"]: im for im in past}
    assert "café/東京.jpg" in by_rel and "nested/deeper/brick.png" in by_rel
    coffee = by_rel["coffee.png"]
    assert coffee["tags"] and coffee["tags"][0]["prob"] > 0
    assert client.get(coffee["thumbnail"]).status_code == 200


def test_folder_filter_and_counts(client, indexed) -> None:
    folders = {f["rel"]: f for f in client.get("/api/folders").json()["folders"]}
    assert folders["."]["count"] == len(LAYOUT)
    assert folders["nested"]["count"] == 2  # nested/gravel.jpg and nested/deeper/brick.png
    assert folders["nested/deeper"]["count"] == 1
    assert folders["café"]["count"] == 1
    nested = client.get("/api/images", params={"folder": folders["nested"]["path"]}).json()
    assert nested["total"] == 2
    assert sorted(im["rel"] for im in nested["images"]) == [
        "nested/deeper/brick.png",
        "nested/gravel.jpg",
    ]
    # A folder whose name starts like another's is not mixed in ("nested" vs "nested2").
    none = client.get("/api/images", params={"folder": str(indexed["photos"] / "neste")}).json()
    assert none["total"] == 0 and none["images"] == []


def test_paging_limits_are_checked(client) -> None:
    assert client.get("/api/images", params={"limit": 0}).status_code == 422
    assert client.get("/api/images", params={"limit": 10_000}).status_code == 422
    assert client.get("/api/images", params={"offset": -1}).status_code == 422
    past_end = client.get("/api/images", params={"offset": 1000}).json()
    assert past_end["images"] == [] and past_end["total"] == len(LAYOUT)


def test_status_reports_count_folders_and_last_sync(client, indexed) -> None:
    status = client.get("/api/status").json()
    assert status["count"] == len(LAYOUT)
    assert status["roots"] == [str(indexed["photos"])]
    assert indexed["before"] <= status["last_sync"] <= time.time()
    assert status["writable"] is False
    assert status["rescan"] is None
    # Unrelated images score well below an identical one: the match percentage's zero.
    assert 0.0 <= status["score_baseline"] < 0.9


def test_rescan_is_refused_on_a_read_only_server(client) -> None:
    response = client.post("/api/rescan")
    assert response.status_code == 403
    assert "--writable" in response.json()["message"]


def test_rescan_needs_the_token_then_picks_up_changes(tmp_path, photo_folder) -> None:
    with Index.create(tmp_path / "index", IndexSettings(max_side=MAX_SIDE)) as idx:
        idx.sync([photo_folder])
    (photo_folder / "grass.jpg").unlink()
    shutil.copy(photo_folder / "chelsea.jpg", photo_folder / "nested" / "chelsea-copy.jpg")
    settings = ServerSettings(writable=True, token=TOKEN)
    with TestClient(create_app(tmp_path / "index", settings)) as client:
        assert client.post("/api/rescan").status_code == 401
        started = client.post("/api/rescan", headers={"Authorization": f"Bearer {TOKEN}"})
        assert started.status_code == 202, started.text
        assert started.json()["running"] is True
        deadline = time.monotonic() + 120
        while True:
            rescan = client.get("/api/status").json()["rescan"]
            if not rescan["running"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rescan["error"] is None, rescan
        assert rescan["phase"] == "done"
        assert rescan["report"]["added"] == 1 and rescan["report"]["removed"] == 1
        rels = [
            im["rel"] for im in client.get("/api/images", params={"limit": 200}).json()["images"]
        ]
        assert "nested/chelsea-copy.jpg" in rels and "grass.jpg" not in rels


def test_rescan_without_recorded_folders_says_what_to_do(tmp_path) -> None:
    Index.create(tmp_path / "index").close()
    settings = ServerSettings(writable=True, token=TOKEN)
    with TestClient(create_app(tmp_path / "index", settings)) as client:
        response = client.post("/api/rescan", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 409
        assert "lookalike index" in response.json()["message"]


def test_relative_path() -> None:
    roots = ["/p/photos"]
    assert relative_path("/p/photos/a/b.jpg", roots) == "a/b.jpg"
    assert relative_path("/p/photos2/b.jpg", roots) == "/p/photos2/b.jpg"
    assert relative_path("/p/photos/x.jpg", ["/p", "/p/photos"]) == "photos/x.jpg"
    assert relative_path("/i/uploads/ab.jpg", roots, "/i/uploads") == "uploads/ab.jpg"


def test_text_search_says_what_it_matched_and_why_nothing(client) -> None:
    found = client.get("/api/search/text", params={"q": "espresso"}).json()
    assert found["hits"] and found["reason"] is None
    assert [m["name"] for m in found["matched"]] == ["espresso"]
    # a class no photo here shows: no silent empty answer
    none = client.get("/api/search/text", params={"q": "zebra"}).json()
    assert none["hits"] == []
    assert none["matched"][0]["name"] == "zebra"
    assert none["reason"] == "no picture here was tagged with zebra"
