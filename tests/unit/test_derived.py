"""lookalike.index.derived: one load path for the FAISS index, whatever state its file is in.

Built from precomputed vectors (no model) with an exact index (no FAISS training)."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.engine import VECTORS_NAME, Index
from lookalike.index.manifest import IndexSettings, read_manifest

SETTINGS = IndexSettings(whiten_dim=0, index_key="Flat")


def _vectors(n: int = 50, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture
def built(tmp_path):
    path = tmp_path / "idx"
    x = _vectors()
    with Index.create(path, SETTINGS) as idx:
        ids = idx.add_vectors([f"/v/{i}" for i in range(len(x))], x)
        expected = [h.id for h in idx.search_vector(x[3], k=5)]
    assert expected[0] == ids[3]
    return path, x, expected


@pytest.mark.parametrize("writable", [False, True])
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_vector_file_is_rebuilt_on_first_use(built, writable, damage):
    path, x, expected = built
    if damage == "corrupt":
        (path / VECTORS_NAME).write_bytes(b"not a faiss index")
    else:
        (path / VECTORS_NAME).unlink()
    with Index.open(path, writable=writable) as idx:
        assert [h.id for h in idx.search_vector(x[3], k=5)] == expected
    # a writable open saves the rebuilt file; a read-only one leaves the directory alone
    rebuilt_on_disk = (path / VECTORS_NAME).exists() and (
        path / VECTORS_NAME
    ).read_bytes() != b"not a faiss index"
    assert rebuilt_on_disk == writable


def test_a_stale_vector_file_is_not_used(built):
    path, x, _ = built
    with Index.open(path, writable=True) as idx:
        generation = idx.catalog.generation
        idx.add_vectors(["/v/new"], x[3:4] * 2.0, refresh=False)  # catalog moves on, file not
        assert read_manifest(path).index_generation == generation
    with Index.open(path) as idx:
        hits = idx.search_vector(x[3], k=2)
    assert "/v/new" in {h.path for h in hits}


def test_refresh_saves_the_current_generation(built):
    path, x, _ = built
    with Index.open(path, writable=True) as idx:
        idx.remove([1, 2])
        generation = idx.catalog.generation
        vectors = idx.vector_index()
        assert vectors is not None and vectors.ntotal == len(x) - 2
    assert read_manifest(path).index_generation == generation
