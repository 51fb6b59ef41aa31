"""Regression tests for the hostile test's server findings (issue 11): file serving policy (1),
uploads racing deletes and each other (2), huge ids (5), deeply nested JSON (6), NaN boxes (10),
whitespace tokens (11), strict ids and media types (12), the documented error codes (14)."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.engine import Index
from lookalike.errors import ConfigError
from lookalike.index.manifest import IndexSettings
from lookalike.samples import sample_photos
from lookalike.server import ServerSettings, create_app

TOKEN = "a-test-token-of-24-chars"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAMES = ("chelsea", "coffee", "rocket", "astronaut")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An index of four photos, plus a photo outside the indexed folder."""
    root = tmp_path_factory.mktemp("hardening")
    photos = root / "photos"
    photos.mkdir()
    images = sample_photos(NAMES + ("camera",))
    for name in NAMES:
        images[name].thumbnail((256, 256))
        images[name].save(photos / f"{name}.jpg", quality=90)
    outside = root / "elsewhere"
    outside.mkdir()
    images["camera"].thumbnail((256, 256))
    images["camera"].save(outside / "camera.jpg", quality=90)
    with Index.create(root / "index", IndexSettings(max_side=224)) as idx:
        idx.sync([photos])
    return {"root": root, "index": root / "index", "photos": photos, "outside": outside}


@pytest.fixture()
def fresh(built: dict, tmp_path: Path) -> dict:
    """A private copy of the photos and the index (tests here change files)."""
    photos = tmp_path / "photos"
    shutil.copytree(built["photos"], photos, copy_function=shutil.copy2)
    index = tmp_path / "index"
    with Index.create(index, IndexSettings(max_side=224)) as idx:
        idx.sync([photos])
    return {"photos": photos, "index": index, "outside": built["outside"]}


def id_of(index: Path, path: Path) -> int:
    with Index.open(index) as idx:
        record = idx.catalog.find_path(str(path))
    assert record is not None, path
    return record.id


def assert_problem(response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status
    assert fragment.lower() in body["message"].lower(), body["message"]


# -- 1: serve a file only while it is the indexed one, inside the indexed folders ---------------


def test_a_file_replaced_by_a_symlink_to_a_system_file_is_not_served(fresh: dict) -> None:
    target = fresh["photos"] / "chelsea.jpg"
    cid = id_of(fresh["index"], target)
    with TestClient(create_app(fresh["index"])) as c:
        ok = c.get(f"/api/images/{cid}/file")
        assert ok.status_code == 200 and ok.content == target.read_bytes()
        assert ok.headers["content-type"] == "image/jpeg"
        target.unlink()
        target.symlink_to("/etc/passwd")
        r = c.get(f"/api/images/{cid}/file")
        assert r.status_code in (403, 409), r.text
        assert b"root:" not in r.content
        assert r.json()["status"] == r.status_code
        assert c.get(f"/api/images/{cid}/thumbnail").status_code in (403, 409)
        box = c.post("/api/search", json={"id": cid, "k": 2, "box": [0, 0, 100, 100]})
        assert box.status_code in (403, 409), box.text


def test_a_file_changed_since_indexing_is_409_and_a_missing_one_404(fresh: dict) -> None:
    changed, gone = fresh["photos"] / "coffee.jpg", fresh["photos"] / "rocket.jpg"
    cid, gid = id_of(fresh["index"], changed), id_of(fresh["index"], gone)
    Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed, quality=50)
    gone.unlink()
    with TestClient(create_app(fresh["index"])) as c:
        assert_problem(c.get(f"/api/images/{cid}/file"), 409, "changed since it was indexed")
        assert_problem(c.get(f"/api/images/{cid}/thumbnail"), 409, "changed")
        assert_problem(c.get(f"/api/images/{gid}/file"), 404, "not found")
        assert_problem(c.get(f"/api/images/{gid}/thumbnail"), 404, "not found")


def test_a_symlink_leading_outside_the_indexed_folders_is_indexed_but_not_served(
    tmp_path: Path, built: dict
) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(built["photos"], photos)
    link = photos / "camera-link.jpg"
    link.symlink_to(built["outside"] / "camera.jpg")
    inner = photos / "chelsea-again.jpg"
    inner.symlink_to(photos / "chelsea.jpg")  # a link that stays inside: served
    with Index.create(tmp_path / "index", IndexSettings(max_side=224)) as idx:
        report = idx.sync([photos])
    assert not report.skipped
    # the link comes first in name order, so it is the path recorded for chelsea's file
    lid, iid = id_of(tmp_path / "index", link), id_of(tmp_path / "index", inner)
    with TestClient(create_app(tmp_path / "index")) as c:
        assert_problem(c.get(f"/api/images/{lid}/file"), 403, "outside the indexed folders")
        assert_problem(c.get(f"/api/images/{lid}/thumbnail"), 403, "outside")
        hits = c.get(f"/api/images/{lid}/similar", params={"k": 2})
        assert hits.status_code == 200  # still searchable
        assert c.get(f"/api/images/{iid}/file").status_code == 200


# -- 2: uploads are one atomic unit per content --------------------------------------------------


def _uploads_agree(index: Path) -> tuple[set[str], set[str]]:
    folder = index / "uploads"
    files = {str(p) for p in folder.iterdir()} if folder.is_dir() else set()
    with Index.open(index) as idx:
        records = {r.path for r in idx.catalog.records() if r.path.startswith(str(folder))}
    return files, records


def test_identical_concurrent_uploads_get_one_id_and_every_answer_is_servable(
    fresh: dict,
) -> None:
    data = jpeg(sample_photos(["camera"])["camera"].resize((200, 200)))
    settings = ServerSettings(writable=True, token=TOKEN, cnn_queue=16)
    with TestClient(create_app(fresh["index"], settings)) as c:
        answers: list = []

        def post() -> None:
            answers.append(
                c.post("/api/images", files={"image": ("a.jpg", data, "image/jpeg")}, headers=AUTH)
            )

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 5 + [201], [r.text for r in answers]
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == 1
        (image_id,) = ids
        assert c.get(f"/api/images/{image_id}/file").content == data
        hits = c.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")}).json()
        assert hits["hits"][0]["id"] == image_id
    files, records = _uploads_agree(fresh["index"])
    assert files == records and len(files) == 1


def test_an_upload_racing_a_delete_of_the_same_content_never_answers_201_for_a_lost_file(
    fresh: dict,
) -> None:
    data = jpeg(sample_photos(["camera"])["camera"].resize((180, 180)))
    files = {"image": ("a.jpg", data, "image/jpeg")}
    settings = ServerSettings(writable=True, token=TOKEN, cnn_queue=16)
    with TestClient(create_app(fresh["index"], settings)) as c:
        for _ in range(6):
            first = c.post("/api/images", files=files, headers=AUTH)
            assert first.status_code in (200, 201), first.text
            results: dict = {}

            def delete(image_id: int = first.json()["id"], out: dict = results) -> None:
                out["delete"] = c.delete(f"/api/images/{image_id}", headers=AUTH)

            def upload(out: dict = results) -> None:
                out["upload"] = c.post("/api/images", files=files, headers=AUTH)

            threads = [threading.Thread(target=delete), threading.Thread(target=upload)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            up = results["upload"]
            assert up.status_code in (200, 201), up.text
            if up.status_code == 201:  # the delete went first: the new image must be whole
                new_id = up.json()["id"]
                assert c.get(f"/api/images/{new_id}").status_code == 200
                assert c.get(f"/api/images/{new_id}/file").content == data
            on_disk, recorded = _uploads_agree_live(c, fresh["index"])
            assert on_disk == recorded
    files_left, records_left = _uploads_agree(fresh["index"])
    assert files_left == records_left


def _uploads_agree_live(c: TestClient, index: Path) -> tuple[set[str], set[str]]:
    folder = index / "uploads"
    on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    with Index.open(index) as idx:
        recorded = {
            Path(r.path).name for r in idx.catalog.records() if r.path.startswith(str(folder))
        }
    return on_disk, recorded


# -- 5, 6, 10, 12: strict request parsing --------------------------------------------------------


@pytest.fixture(scope="module")
def client(built: dict):
    with TestClient(create_app(built["index"])) as c:
        yield c


@pytest.mark.parametrize("image_id", [2**63, 2**64 + 5, 10**30, 0, -1])
def test_ids_outside_the_positive_64_bit_range_are_422_never_500(client, image_id: int) -> None:
    for url in (
        f"/api/images/{image_id}",
        f"/api/images/{image_id}/similar",
        f"/api/images/{image_id}/thumbnail",
        f"/api/images/{image_id}/file",
    ):
        assert_problem(client.get(url), 422, "image_id")
    assert_problem(client.post("/api/search", json={"id": image_id}), 422, "id")


def test_the_largest_id_is_a_plain_404(client) -> None:
    assert_problem(client.get(f"/api/images/{2**63 - 1}"), 404, "no image")


def test_deeply_nested_json_is_refused_without_parsing_it(client) -> None:
    ctype = {"content-type": "application/json"}
    huge = b"[" * 100_000 + b"]" * 100_000  # the hostile test's body: over the JSON size limit
    assert_problem(client.post("/api/search", content=huge, headers=ctype), 413, "too large")
    for body in (b"[" * 20_000 + b"]" * 20_000, b'{"id": ' + b"[" * 50 + b"]" * 50 + b"}"):
        r = client.post("/api/search", content=body, headers=ctype)
        assert_problem(r, 422, "nested deeper")
    # brackets inside a string are text, not depth
    deep_text = json.dumps({"text": "[" * 150}).encode()
    r = client.post("/api/search", content=deep_text, headers={"content-type": "application/json"})
    assert r.status_code != 500 and "nested" not in r.text


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_boxes_with_nan_or_infinity_are_422(client, built: dict, value: str) -> None:
    cid = id_of(built["index"], built["photos"] / "chelsea.jpg")
    body = f'{{"id": {cid}, "box": [0, 0, {value}, 100]}}'.encode()
    r = client.post("/api/search", content=body, headers={"content-type": "application/json"})
    assert_problem(r, 422)
    data = jpeg(sample_photos(["coffee"])["coffee"].resize((120, 90)))
    r = client.post(
        "/api/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"box": f"0,0,{value.lower()},50"},
    )
    assert_problem(r, 422, "box")


def test_a_nan_box_is_refused_by_the_library_and_the_cli(built: dict) -> None:
    import subprocess
    import sys

    from lookalike.images import crop_box

    with pytest.raises(ConfigError, match="finite"):
        crop_box(Image.new("RGB", (100, 100)), (0, 0, float("nan"), 50))
    query = built["photos"] / "coffee.jpg"
    args = ["search", str(query), "--index", str(built["index"]), "--box", "0,0,nan,50"]
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "finite" in proc.stderr, proc.stderr


@pytest.mark.parametrize("body", [{"id": True}, {"id": 1.0}, {"id": "1"}, {"id": 1, "k": True}])
def test_ids_and_k_must_be_json_integers(client, body: dict) -> None:
    assert_problem(client.post("/api/search", json=body), 422)


def test_media_types_are_case_insensitive_and_exact(client, built: dict) -> None:
    cid = id_of(built["index"], built["photos"] / "chelsea.jpg")
    body = json.dumps({"id": cid, "k": 2}).encode()
    for ctype in ("APPLICATION/JSON", "Application/Json; charset=utf-8", "application/json"):
        r = client.post("/api/search", content=body, headers={"content-type": ctype})
        assert r.status_code == 200, (ctype, r.text)
    for ctype in ("application/jsonx", "application/json-patch+json", "text/json", ""):
        r = client.post("/api/search", content=body, headers={"content-type": ctype})
        assert_problem(r, 415)


# -- 11: tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [" " * 20, "\t" * 16, "short", "has a space inside it!"])
def test_weak_or_whitespace_tokens_are_refused(token: str) -> None:
    with pytest.raises(ConfigError, match="token"):
        ServerSettings(host="0.0.0.0", token=token).check()
    with pytest.raises(ConfigError, match="token"):
        ServerSettings(token=token).check()


def test_a_strong_token_allows_a_public_bind() -> None:
    ServerSettings(host="0.0.0.0", token=TOKEN).check()


# -- 14: the OpenAPI schema documents the errors ------------------------------------------------


def test_openapi_documents_every_error_status_with_the_problem_shape(client) -> None:
    schema = client.get("/openapi.json").json()
    seen: set[str] = set()
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")):
                    seen.add(code)
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Problem"), (path, method, code)
    assert {"400", "401", "403", "404", "409", "413", "415", "422", "503"} <= seen
    assert "HTTPValidationError" not in schema.get("components", {}).get("schemas", {})
    ops = schema["paths"]
    assert "409" in ops["/api/images/{image_id}/file"]["get"]["responses"]
    assert "401" in ops["/api/images"]["post"]["responses"]
    assert "503" in ops["/api/search"]["post"]["responses"]
    hit = schema["components"]["schemas"]["SearchHit"]["properties"]
    assert {"id", "path", "score", "thumbnail", "file"} <= hit.keys()


@pytest.mark.parametrize(
    ("error", "status"),
    [(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), 507), (RuntimeError("bug"), 500)],
)
def test_unexpected_errors_are_json_and_a_full_disk_is_507(
    built: dict, monkeypatch, error: Exception, status: int
) -> None:
    from lookalike.server import routes

    def boom(*_: object) -> None:
        raise error

    with TestClient(create_app(built["index"]), raise_server_exceptions=False) as c:
        monkeypatch.setattr(routes, "_record_json", boom)
        r = c.get("/api/images/1")
        assert r.status_code == status and r.json()["status"] == status, r.text
