"""Memory-mapped search: an index opened with mmap=True answers exactly as one read into RAM."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered_vectors
from lookalike.engine import Index
from lookalike.errors import ConfigError
from lookalike.index.manifest import IndexSettings


@pytest.mark.parametrize(
    ("key", "params"), [("Flat", ""), ("IVF64,PQ16x4fs,RFlat", "nprobe=16,k_factor_rf=8")]
)
def test_mmap_search_equals_in_memory_search(tmp_path, key, params):
    x = clustered_vectors(5_000, 32, 50, seed=3)
    settings = IndexSettings(whiten_dim=0, index_key=key, index_params=params)
    path = tmp_path / "idx"
    with Index.create(path, settings) as idx:
        idx.add_vectors([f"/v/{i}.jpg" for i in range(len(x))], x)
    queries = x[:20] + 0.01
    with Index.open(path) as idx:
        expected = [[(h.id, h.path) for h in idx.search_vector(q, k=5)] for q in queries]
    with Index.open(path, mmap=True) as idx:
        got = [[(h.id, h.path) for h in idx.search_vector(q, k=5)] for q in queries]
        assert idx.mmap
    assert got == expected
    assert len(expected[0]) == 5
    if key == "Flat":
        assert expected[0][0][1] == "/v/0.jpg"


def test_mmap_cannot_write(tmp_path):
    with Index.create(tmp_path / "idx", IndexSettings(whiten_dim=0)) as idx:
        idx.add_vectors(["/v/a.jpg"], np.ones((1, 8), np.float32))
    with pytest.raises(ConfigError, match="read-only"):
        Index.open(tmp_path / "idx", writable=True, mmap=True)
