"""The FAISS wrapper: index choice by collection size, ids kept, atomic save/load, errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered_vectors
from lookalike.errors import ConfigError, IndexCorruptError
from lookalike.index.vectors import (
    EXACT_SEARCH_MAX,
    VectorIndex,
    choose_index_key,
    min_training_vectors,
    needs_training,
)


def test_small_collections_get_exact_search():
    assert choose_index_key(0, 256) == ("Flat", "")
    assert choose_index_key(EXACT_SEARCH_MAX, 256) == ("Flat", "")


def test_large_collections_get_ivf_pq_with_full_vector_reranking():
    key, params = choose_index_key(1_000_000, 256)
    assert key == "IVF2048,PQ64x4fs,RFlat"
    # even at 10M the inverted lists train on the engine's 100k-vector training sample
    from lookalike.engine import TRAIN_SAMPLE

    assert min_training_vectors(choose_index_key(10_000_000, 256)[0]) <= TRAIN_SAMPLE
    assert "nprobe=" in params and "k_factor_rf=" in params
    key, _ = choose_index_key(EXACT_SEARCH_MAX + 1, 1280)
    ivf, pq, refine = key.split(",")
    assert refine == "RFlat"
    m = int(pq[2:].split("x")[0])
    assert 1280 % m == 0 and m % 2 == 0
    # every automatic choice can be built and trained with what its size provides
    assert min_training_vectors(key) <= EXACT_SEARCH_MAX + 1
    VectorIndex(key, 1280, "nprobe=32,k_factor_rf=8")


def test_training_needs():
    assert not needs_training("Flat")
    assert not needs_training("HNSW32,Flat")
    assert needs_training("IVF256,PQ32x4fs,RFlat")
    assert min_training_vectors("IVF256,PQ32x4fs,RFlat") == 256 * 39
    assert min_training_vectors("Flat") == 1


def test_flat_add_search_remove_keeps_ids():
    x = clustered_vectors(200, 32, 10, seed=1)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index = VectorIndex("Flat", 32)
    index.add(ids, x)
    assert index.ntotal == 200
    scores, got = index.search(x[:5], 3)
    assert got[:, 0].tolist() == ids[:5].tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.all(scores[:, 0] >= scores[:, 1])
    assert index.remove(ids[:1])
    assert index.ntotal == 199
    _, got = index.search(x[:1], 1)
    assert got[0, 0] != 1000


def test_k_larger_than_the_collection():
    index = VectorIndex("Flat", 4)
    index.add(np.array([7, 9]), np.eye(4, dtype=np.float32)[:2])
    scores, ids = index.search(np.eye(4, dtype=np.float32)[0], 10)
    assert ids.shape == (1, 2)
    assert ids[0].tolist() == [7, 9]


def test_save_load_round_trip(tmp_path):
    x = clustered_vectors(50, 16, 5)
    index = VectorIndex("Flat", 16)
    index.add(np.arange(50), x)
    path = tmp_path / "vectors.faiss"
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss"]
    back = VectorIndex.load(path, "Flat", 16, "")
    assert back.ntotal == 50
    np.testing.assert_array_equal(back.search(x[:3], 2)[1], index.search(x[:3], 2)[1])
    with pytest.raises(IndexCorruptError, match="dimension"):
        VectorIndex.load(path, "Flat", 32, "")
    path.write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError, match="vectors.faiss"):
        VectorIndex.load(path, "Flat", 16, "")


def test_bad_keys_and_params_are_config_errors():
    with pytest.raises(ConfigError, match="factory string"):
        VectorIndex("NoSuchIndex42", 16)
    with pytest.raises(ConfigError, match="search parameters"):
        VectorIndex("Flat", 16, "nprobe=4")  # Flat has no nprobe
    with pytest.raises(ConfigError, match="dimension 16"):
        VectorIndex("Flat", 16).add(np.arange(2), np.zeros((2, 8), np.float32))


def test_training_with_too_few_vectors_says_how_many_are_needed():
    index = VectorIndex("IVF64,Flat", 16)
    assert not index.is_trained
    with pytest.raises(ConfigError, match=str(64 * 39)):
        index.train(clustered_vectors(100, 16, 4))


def test_ivf_pq_refine_recall_on_clustered_data():
    """The automatic large-collection recipe (scaled down) keeps recall@10 >= 0.95."""
    n, dim = 12_000, 64
    x = clustered_vectors(n + 100, dim, 300, seed=3)
    base, queries = x[:n], x[n:]
    key = "IVF64,PQ16x4fs,RFlat"
    index = VectorIndex(key, dim, "nprobe=16,k_factor_rf=8")
    index.train(base)
    index.add(np.arange(n), base)
    _, got = index.search(queries, 10)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact, strict=True)])
    assert recall >= 0.95, recall
    # and the approximate index without re-ranking is clearly worse: the refine step matters
    plain = VectorIndex("IVF64,PQ16x4fs", dim, "nprobe=16")
    plain.train(base)
    plain.add(np.arange(n), base)
    _, got_plain = plain.search(queries, 10)
    recall_plain = np.mean(
        [len(set(g) & set(e)) / 10 for g, e in zip(got_plain, exact, strict=True)]
    )
    assert recall_plain < recall


def test_single_query_search_leaves_the_thread_count_as_it_was():
    import faiss

    x = clustered_vectors(500, 32, 10, seed=3)
    vi = VectorIndex("Flat", 32)
    vi.add(np.arange(500), x)
    before = faiss.omp_get_max_threads()
    _, ids = vi.search(x[7], 3)  # one query: searched on one thread
    assert ids[0][0] == 7
    assert faiss.omp_get_max_threads() == before
    _, many = vi.search(x[:4], 3)
    assert list(many[:, 0]) == [0, 1, 2, 3]


def test_nprobe_grows_past_a_million_and_an_index_retunes_in_place():
    def nprobe(n: int) -> int:
        params = dict(p.split("=") for p in choose_index_key(n, 256)[1].split(","))
        return int(params["nprobe"])

    assert nprobe(500_000) == nprobe(1_000_000) == 192
    assert 192 < nprobe(4_000_000) < nprobe(10_000_000) <= 2048
    assert choose_index_key(4_000_000, 256)[0] == choose_index_key(10_000_000, 256)[0]
    index = VectorIndex("IVF16,Flat", 8, "nprobe=2")
    index.set_params("nprobe=5")
    import faiss

    assert faiss.extract_index_ivf(index.faiss_index).nprobe == 5
