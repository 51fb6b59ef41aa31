"""Vectors in Milvus (Milvus Lite, a real embedded Milvus) answer as FAISS does: the same
top-10 on the same vectors, and through an index, the same searches, removals and syncs as the
default FAISS store; the manifest records the store and the collection."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import MAX_SIDE, clustered_vectors
from lookalike.engine import Index
from lookalike.errors import ConfigError
from lookalike.index.backends import parse_store
from lookalike.index.manifest import IndexSettings, read_manifest, validate_settings
from lookalike.index.milvus import (
    MilvusIndex,
    choose_milvus_key,
    connect,
    parse_milvus_key,
)
from lookalike.index.vectors import VectorIndex

pytestmark = pytest.mark.slow


def test_store_specs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_store("faiss") == parse_store("") == "faiss"
    assert parse_store("milvus") == parse_store("milvus:") == "milvus"
    assert parse_store("milvus:v.db") == f"milvus:{tmp_path / 'v.db'}"  # absolute
    assert parse_store("milvus:http://host:19530") == "milvus:http://host:19530"
    for bad, words in [("qdrant", "unknown store"), ("milvus:vectors", "must end with '.db'")]:
        with pytest.raises(ConfigError, match=words):
            parse_store(bad)
    with pytest.raises(ConfigError, match="store"):
        validate_settings(store="pinecone")
    with pytest.raises(ConfigError, match="dba needs the faiss store"):
        validate_settings(store="milvus", dba="aqe:n=1")


def test_milvus_key_choice_and_parsing():
    assert choose_milvus_key(50_000, 256) == ("FLAT", "")
    key, params = choose_milvus_key(1_000_000, 256)
    assert key == "IVF_SQ8,nlist=2048" and params.startswith("nprobe=")
    assert parse_milvus_key("hnsw,M=16,efConstruction=200") == (
        "HNSW",
        {"M": 16, "efConstruction": 200},
    )
    with pytest.raises(ConfigError, match="invalid Milvus index type"):
        parse_milvus_key("IVF1024,PQ32")  # a FAISS string given to the Milvus store
    with pytest.raises(ConfigError, match="invalid Milvus index type"):
        Index.create("/tmp/never-created-lookalike", IndexSettings(store="milvus", index_key="x"))


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    client = connect(str(tmp_path_factory.mktemp("milvus") / "vectors.db"))
    yield client
    client.close()


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize(
    ("key", "params", "floor"),
    [("FLAT", "", 0.99), ("IVF_SQ8,nlist=64", "nprobe=16", 0.95), ("HNSW,M=16", "ef=64", 0.95)],
)
def test_top10_matches_faiss_flat(lite, key, params, floor):
    x = clustered_vectors(6000, 64, 60, seed=1)
    q = clustered_vectors(6100, 64, 60, seed=1)[6000:]  # held-out points of the same clusters
    ids = np.arange(100, 6100, dtype=np.int64)  # catalog-like ids, not row numbers
    exact = VectorIndex("Flat", 64)
    exact.add(ids, x)
    want_s, want = exact.search(q, 10)
    name = "t_" + key.split(",")[0].lower()
    index = MilvusIndex.create(lite, name, key, 64, params)
    index.add(ids, x)
    index.flush()
    got_s, got = index.search(q, 10)
    assert _overlap(got, want) >= floor
    if key == "FLAT":
        np.testing.assert_allclose(got_s, want_s, atol=1e-4)
    # the same collection opened again, and removal by catalog id
    again = MilvusIndex.open(lite, name, key, 64, params)
    assert again.ntotal == 6000
    gone = want[:, 0][:20]
    again.remove(gone)
    again.flush()
    _, after = again.search(q, 10)
    assert not set(gone.tolist()) & set(after.ravel().tolist())


def test_asking_for_more_than_there_is_gives_minus_one(lite):
    index = MilvusIndex.create(lite, "t_small", "FLAT", 8)
    index.add(np.array([7, 9]), np.eye(8, dtype=np.float32)[:2])
    index.flush()
    scores, ids = index.search(np.eye(8, dtype=np.float32)[:1], 5)
    assert ids[0].tolist() == [7, 9, -1, -1, -1]
    assert scores[0, 0] == pytest.approx(1.0)


# -- through an index: the same answers as the embedded FAISS store ---------------------------


def _hits(idx: Index, query, k=8):
    """Hits as (score, path), ties (an exact copy) in path order: engines break ties apart."""
    return sorted((-round(h.score, 4), h.path) for h in idx.search(query, k=k))


@pytest.fixture
def twin_indexes(tmp_path, photo_folder):
    """The same photos indexed with the FAISS store and with Milvus Lite."""
    faiss_dir, milvus_dir = tmp_path / "faiss", tmp_path / "milvus"
    with Index.create(faiss_dir, IndexSettings(max_side=MAX_SIDE)) as a:
        a.sync([photo_folder])
    with Index.create(milvus_dir, IndexSettings(max_side=MAX_SIDE, store="milvus")) as b:
        b.sync([photo_folder])
    return faiss_dir, milvus_dir, photo_folder


def test_index_with_milvus_answers_as_faiss(twin_indexes):
    faiss_dir, milvus_dir, photos = twin_indexes
    manifest = read_manifest(milvus_dir)
    assert manifest.settings.store == "milvus" and manifest.vector_collection
    assert (milvus_dir / "vectors.milvus.db").exists()
    assert not (milvus_dir / "vectors.faiss").exists()
    with Index.open(faiss_dir) as a, Index.open(milvus_dir) as b:
        info = b.info()
        assert info["store"] == "milvus" and info["collection"] == manifest.vector_collection
        assert len(a) == len(b) == 16
        for query in sorted(photos.rglob("*.jpg"))[:6]:
            assert _hits(b, query) == _hits(a, query)
        assert [h.id for h in b.search_id(3, k=5)] == [h.id for h in a.search_id(3, k=5)]
        assert [h.path for h in b.search_text("cat", k=3)] == [
            h.path for h in a.search_text("cat", k=3)
        ]


def test_sync_and_remove_keep_milvus_in_line(twin_indexes):
    faiss_dir, milvus_dir, photos = twin_indexes
    changed = photos / "chelsea.jpg"
    Image.open(changed).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(changed)
    (photos / "grass.jpg").unlink()
    shutil.copy(photos / "nested" / "gravel.jpg", photos / "gravel-copy.jpg")
    before = read_manifest(milvus_dir).vector_collection
    with Index.open(faiss_dir, writable=True) as a, Index.open(milvus_dir, writable=True) as b:
        ra, rb = a.sync([photos]), b.sync([photos])
        assert (rb.added, rb.updated, rb.removed) == (ra.added, ra.updated, ra.removed) == (1, 1, 1)
        # incremental: the same collection was updated, not rebuilt
        assert read_manifest(milvus_dir).vector_collection == before
        victim = b.search(photos / "coffee.png", k=1)[0].id
        assert b.remove([victim]) == 1
        assert a.remove([a.search(photos / "coffee.png", k=1)[0].id]) == 1
        for query in sorted(photos.rglob("*.jpg"))[:6]:
            assert _hits(b, query, k=20) == _hits(a, query, k=20)
        assert victim not in [h.id for h in b.search(photos / "coffee.png", k=20)]
    with Index.open(milvus_dir) as b:  # re-opened read-only: the same answers
        assert len(b) == 15
        with Index.open(faiss_dir) as a:
            assert _hits(b, photos / "chelsea.jpg") == _hits(a, photos / "chelsea.jpg")


def test_a_stale_collection_is_rebuilt_and_the_old_one_dropped(twin_indexes):
    """What a crash between a catalog commit and the end of a sync leaves: the manifest's
    generation behind the catalog's. A writable open builds a new collection and switches."""
    _, milvus_dir, photos = twin_indexes
    manifest_file = milvus_dir / "manifest.json"
    data = json.loads(manifest_file.read_text())
    old = data["vector_collection"]
    data["index_generation"] -= 1
    manifest_file.write_text(json.dumps(data))
    with Index.open(milvus_dir) as b:  # read-only: searches an in-memory copy, writes nothing
        hits = _hits(b, photos / "chelsea.jpg")
        assert json.loads(manifest_file.read_text())["vector_collection"] == old
    with Index.open(milvus_dir, writable=True) as b:
        b.refresh()
        assert _hits(b, photos / "chelsea.jpg") == hits
        new = read_manifest(milvus_dir).vector_collection
        assert new != old
        assert old not in b.derived.backend.client.list_collections()


def test_milvus_lite_file_open_elsewhere_is_a_clear_error(twin_indexes):
    """Milvus Lite serves one process per file: a second one gets a clear error (a Milvus
    server has no such limit); once the first closes the index, the file is free again."""
    _, milvus_dir, photos = twin_indexes
    command = [sys.executable, "-m", "lookalike", "search", str(photos / "chelsea.jpg")]
    command += ["--index", str(milvus_dir), "--json"]
    with Index.open(milvus_dir) as b:
        b.search_id(1, k=1)  # holds the Milvus Lite file
        busy = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert busy.returncode != 0
        assert "Milvus Lite allows one process at a time" in busy.stderr, busy.stderr
        assert "Traceback" not in busy.stderr
    free = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert free.returncode == 0, free.stderr
    assert json.loads(free.stdout)["hits"]


def test_server_searches_a_milvus_index(twin_indexes):
    from lookalike.server import ServerSettings, create_app

    faiss_dir, milvus_dir, photos = twin_indexes
    data = (photos / "chelsea.jpg").read_bytes()
    answers = []
    for index in (faiss_dir, milvus_dir):
        with TestClient(create_app(index, ServerSettings())) as client:
            r = client.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")})
            assert r.status_code == 200, r.text
            answers.append([(h["path"], round(h["score"], 4)) for h in r.json()["hits"]])
    assert answers[0] == answers[1] and answers[0]
