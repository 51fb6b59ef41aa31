"""The SQLite catalog: batches are atomic, generation counts changes, descriptors round-trip."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lookalike.errors import ConfigError, IndexCorruptError
from lookalike.index.catalog import SCHEMA_VERSION, Catalog, NewImage, Skipped


def _item(path: str, seed: int, dim: int = 8) -> NewImage:
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return NewImage(path, 100 + seed, 10**18 + seed, f"h{seed}", 30 + seed, 20 + seed, vec)


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        yield cat


def test_new_catalog_is_empty_and_versioned(catalog):
    assert catalog.count() == 0
    assert catalog.generation == 0
    assert list(catalog.records()) == []
    assert catalog.skipped() == []
    assert catalog.sample_descriptors(10).shape == (0, 0)
    raw = sqlite3.connect(catalog.path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert int(raw.fetchone()[0]) == SCHEMA_VERSION


def test_write_and_read_back(catalog):
    items = [_item("/a/x.jpg", 1), _item("/a/é/東京.jpg", 2)]
    ids = catalog.write_batch(add=items)
    assert len(ids) == 2 and ids[0] != ids[1]
    assert catalog.count() == 2
    assert catalog.generation == 1
    rec = catalog.find_path("/a/é/東京.jpg")
    assert rec is not None and rec.id == ids[1]
    assert (rec.size, rec.mtime_ns, rec.hash, rec.width, rec.height) == (
        102,
        10**18 + 2,
        "h2",
        32,
        22,
    )
    # float16 storage: close to the input, not bit-identical
    np.testing.assert_allclose(catalog.descriptor(ids[0]), items[0].descriptor, rtol=1e-3)
    assert catalog.descriptor(9999) is None
    assert catalog.get(9999) is None
    assert set(catalog.get_many([ids[0], ids[1], 9999])) == set(ids)
    assert catalog.file_states()["/a/x.jpg"] == (ids[0], 101, 10**18 + 1, "h1")
    assert [r.hash for r in catalog.find_hash("h1")] == ["h1"]


def test_replacing_a_path_gives_a_new_id_and_keeps_one_row(catalog):
    (first,) = catalog.write_batch(add=[_item("/a/x.jpg", 1)])
    (second,) = catalog.write_batch(add=[_item("/a/x.jpg", 5)])
    assert second != first
    assert catalog.count() == 1
    assert catalog.get(first) is None
    assert catalog.find_path("/a/x.jpg").hash == "h5"


def test_remove_and_generation(catalog):
    ids = catalog.write_batch(add=[_item(f"/p/{i}.jpg", i) for i in range(5)])
    g = catalog.generation
    catalog.write_batch(remove_ids=ids[:2])
    assert catalog.count() == 3
    assert catalog.generation == g + 1
    # recording a skipped file alone is not a change of images: generation stays
    catalog.write_batch(skipped=[(Skipped("/p/bad.jpg", "empty file"), 0, 1)])
    assert catalog.generation == g + 1
    assert catalog.skipped() == [Skipped("/p/bad.jpg", "empty file")]


def test_skipped_is_replaced_then_cleared_when_file_gets_indexed(catalog):
    catalog.write_batch(skipped=[(Skipped("/p/a.jpg", "empty file"), 0, 1)])
    catalog.write_batch(skipped=[(Skipped("/p/a.jpg", "truncated"), 10, 2)])
    assert catalog.skipped() == [Skipped("/p/a.jpg", "truncated")]
    assert catalog.skipped_states()["/p/a.jpg"] == (10, 2, "truncated")
    catalog.write_batch(add=[_item("/p/a.jpg", 3)])
    assert catalog.skipped() == []


def test_a_failed_batch_changes_nothing(catalog):
    catalog.write_batch(add=[_item("/p/ok.jpg", 1)])
    g = catalog.generation
    bad = NewImage(None, 1, 1, "h", 1, 1, np.zeros(8, np.float32))  # violates NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        catalog.write_batch(add=[_item("/p/new.jpg", 2), bad], remove_ids=[1])
    assert catalog.count() == 1
    assert catalog.find_path("/p/new.jpg") is None
    assert catalog.find_path("/p/ok.jpg") is not None
    assert catalog.generation == g


def test_update_file_states_keeps_id_and_descriptor(catalog):
    (i,) = catalog.write_batch(add=[_item("/p/a.jpg", 1)])
    before = catalog.descriptor(i)
    g = catalog.generation
    catalog.update_file_states([(i, 555, 777)])
    rec = catalog.get(i)
    assert (rec.size, rec.mtime_ns) == (555, 777)
    np.testing.assert_array_equal(catalog.descriptor(i), before)
    assert catalog.generation == g


def test_iter_and_sample_descriptors(catalog):
    items = [_item(f"/p/{i:03d}.jpg", i) for i in range(25)]
    ids = catalog.write_batch(add=items)
    got_ids, got = zip(*catalog.iter_descriptors(batch=7), strict=True)
    assert [len(x) for x in got_ids] == [7, 7, 7, 4]
    assert np.concatenate(got_ids).tolist() == ids
    np.testing.assert_allclose(
        np.concatenate(got), np.stack([i.descriptor for i in items]), rtol=1e-3, atol=1e-3
    )
    sample = catalog.sample_descriptors(10)
    assert sample.shape == (10, 8)
    all_rows = {tuple(np.round(v, 3)) for v in np.concatenate(got)}
    assert all(tuple(np.round(v, 3)) in all_rows for v in sample)
    assert len({tuple(v) for v in sample}) == 10  # without replacement
    everything = catalog.sample_descriptors(100)  # fewer rows than the limit: all, in id order
    assert everything.dtype == np.float32
    np.testing.assert_array_equal(everything, np.concatenate(got))


def test_reopen_keeps_data_and_readonly_cannot_write(tmp_path):
    path = tmp_path / "c.sqlite"
    with Catalog(path) as cat:
        cat.write_batch(add=[_item("/p/a.jpg", 1)])
    with Catalog(path, readonly=True) as ro:
        assert ro.count() == 1
        with pytest.raises(ConfigError, match="cannot be written"):
            ro.write_batch(add=[_item("/p/b.jpg", 2)])
    with Catalog(path) as cat:
        assert cat.count() == 1


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexCorruptError, match="c.sqlite"):
        Catalog(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    Catalog(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(IndexCorruptError, match="schema version"):
        Catalog(path)


def test_readonly_open_upgrades_an_older_catalog(tmp_path):
    from lookalike.index.catalog import _SCHEMA_V1

    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '3')")
    db.commit()
    db.close()
    with Catalog(path, readonly=True) as catalog:  # a reader (search, serve) opens it first
        assert int(catalog._get_meta("schema_version")) == SCHEMA_VERSION
        assert catalog.generation == 3
        assert catalog.count() == 0
        assert catalog.skipped() == []
        tables = {r[0] for r in catalog._db.execute("SELECT name FROM sqlite_master")}
        assert "labels" in tables


def test_paths_and_labels_in_one_query(catalog):
    from dataclasses import replace

    labelled = replace(_item("/a/cat.jpg", 1), labels=[(281, 0.7), (285, 0.2)])
    ids = catalog.write_batch(add=[labelled, _item("/a/bare.jpg", 2)])
    rows = catalog.paths_and_labels([ids[1], 9999, ids[0]])
    assert rows == {ids[0]: ("/a/cat.jpg", [(281, 0.7), (285, 0.2)]), ids[1]: ("/a/bare.jpg", [])}
    assert catalog.paths_and_labels([]) == {}
