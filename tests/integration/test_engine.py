"""The Python API (lookalike.engine.Index) with the real lite0 weights, real SQLite and FAISS."""

from __future__ import annotations

import os
import shutil
import sqlite3

import faiss
import numpy as np
import pytest

from conftest import (
    LAYOUT,
    MAX_SIDE,
    bomb_png,
    clustered_vectors,
    truncated_jpeg,
)
from lookalike.backbone import OnnxBackbone
from lookalike.edits import apply_edit
from lookalike.engine import VECTORS_NAME, Hit, Index, SyncReport
from lookalike.errors import (
    ConfigError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
)
from lookalike.index.manifest import IndexSettings, read_manifest

SETTINGS = IndexSettings(max_side=MAX_SIDE)


@pytest.fixture
def count_extractions(monkeypatch):
    """Counts images that go through the real CNN (summed batch sizes of OnnxBackbone.run,
    the runtime indexes use); the computation itself is unchanged."""
    calls: list[int] = []
    original = OnnxBackbone.run

    def counting(self, batch):
        calls.extend([1] * len(batch))
        return original(self, batch)

    monkeypatch.setattr(OnnxBackbone, "run", counting)
    return calls


def _descriptors(index_path) -> dict[str, tuple[int, bytes]]:
    """path -> (id, descriptor bytes), read straight from the catalog file."""
    db = sqlite3.connect(f"file:{index_path / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return {p: (i, d) for i, p, d in db.execute("SELECT id, path, descriptor FROM images")}
    finally:
        db.close()


def _assert_consistent(index_path) -> int:
    """The invariant after anything (a kill, bad input): catalog rows == searchable vectors,
    no duplicate paths, and every hit id is a catalog row. Returns the count."""
    db = sqlite3.connect(f"file:{index_path / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = db.execute("SELECT id, path FROM images").fetchall()
    db.close()
    paths = [p for _, p in rows]
    assert len(paths) == len(set(paths)), "duplicate paths in the catalog"
    with Index.open(index_path) as idx:
        assert len(idx) == len(rows)
        if rows:
            hits = idx.search_vector(
                idx.catalog.descriptor(rows[0][0]), k=len(rows) + 5, min_score=-2.0
            )
            assert sorted(h.id for h in hits) == sorted(i for i, _ in rows)
    return len(rows)


# -- the shipped photos, every format --------------------------------------------------------


def test_every_format_is_indexed(photo_index, photo_folder_master):
    with Index.open(photo_index) as idx:
        info = idx.info()
        paths = {r.path for r in idx.catalog.records()}
    assert info["count"] == len(LAYOUT)
    assert info["skipped"] == 0
    assert paths == {str(photo_folder_master / rel) for rel, _, _ in LAYOUT}
    assert str(photo_folder_master / "café" / "東京.jpg") in paths
    assert (info["model"], info["descriptor"], info["max_side"]) == ("lite0", "gem:p=3", 224)
    assert info["dim"] == 1280 and info["index_key"] == "Flat"
    assert info["size_bytes"] > 16 * 1280 * 2  # at least the float16 descriptors


@pytest.mark.parametrize(
    "name, edit",
    [
        ("chelsea", "crop"),
        ("coffee", "jpeg"),
        ("astronaut", "caption"),
        ("rocket", "rotate"),  # stored with EXIF orientation 6: must be read upright
        ("camera", "border"),
        ("motorcycle_left", "colour"),  # stored as CMYK JPEG
    ],
)
def test_edited_copy_finds_its_original_first(
    photo_index, photo_folder_master, photos, tmp_path, name, edit
):
    rel = next(r for r, n, _ in LAYOUT if n == name)
    query = tmp_path / f"query-{name}-{edit}.jpg"
    apply_edit(edit, photos[name], seed=11).save(query, quality=90)
    with Index.open(photo_index) as idx:
        hits = idx.search(query, k=5)
    assert all(isinstance(h, Hit) for h in hits)
    assert hits[0].path == str(photo_folder_master / rel), [h.to_dict() for h in hits]
    assert hits[0].score > hits[1].score + 0.2
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_by_indexed_file_and_id_leave_the_query_out(photo_index, photo_folder_master):
    chelsea = photo_folder_master / "chelsea.jpg"
    with Index.open(photo_index) as idx:
        record = idx.catalog.find_path(str(chelsea))
        by_file = idx.search(chelsea, k=len(LAYOUT))
        by_id = idx.search_id(record.id, k=len(LAYOUT))
        by_pil = idx.search(photos_open(chelsea), k=1)
        with pytest.raises(ConfigError, match="no image with id"):
            idx.search_id(10**6)
        with pytest.raises(ConfigError, match="k must be"):
            idx.search(chelsea, k=0)
    assert len(by_file) == len(LAYOUT) - 1
    assert record.id not in {h.id for h in by_file}
    assert [h.id for h in by_id] == [h.id for h in by_file]
    # the same image given as pixels is not "the indexed file": it finds itself
    assert by_pil[0].id == record.id and by_pil[0].score > 0.99


def photos_open(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def test_k_and_min_score(photo_index, photo_folder_master):
    with Index.open(photo_index) as idx:
        three = idx.search_id(1, k=3)
        everything = idx.search_id(1, k=100)
        cut = everything[len(everything) // 2].score
        above = idx.search_id(1, k=100, min_score=cut)
    assert len(three) == 3
    assert len(everything) == len(LAYOUT) - 1
    assert above and all(h.score >= cut for h in above)
    assert len(above) < len(everything)
    assert [h.id for h in above] == [h.id for h in everything[: len(above)]]


# -- incremental sync ------------------------------------------------------------------------


def test_incremental_sync_only_recomputes_what_changed(
    tmp_path, photo_folder, photos, count_extractions
):
    path = tmp_path / "idx"
    n = len(LAYOUT)
    with Index.create(path, SETTINGS) as idx:
        first = idx.sync([photo_folder])
    assert (first.added, first.count, len(count_extractions)) == (n, n, n)
    before = _descriptors(path)

    # nothing changed: no extraction at all
    count_extractions.clear()
    with Index.open(path, writable=True) as idx:
        again = idx.sync([photo_folder])
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, n)
    assert count_extractions == []
    assert _descriptors(path) == before

    # one new, one changed, one touched (same bytes, new mtime), one deleted
    new = photo_folder / "nested" / "new-chelsea.png"
    photos["chelsea"].save(new)
    changed = photo_folder / "grass.jpg"
    photos["coffee"].save(changed, quality=92)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    touched = photo_folder / "page.png"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    deleted = photo_folder / "nested" / "gravel.jpg"
    deleted.unlink()

    count_extractions.clear()
    with Index.open(path, writable=True) as idx:
        report = idx.sync([photo_folder])
        assert (report.added, report.updated, report.removed) == (1, 1, 1)
        assert report.count == n
        assert len(count_extractions) == 2  # the new file and the changed one, nothing else
        hits = idx.search(photo_folder / "chelsea.jpg", k=1)
        assert hits[0].path == str(new)  # the new copy is searchable
        coffee_hits = idx.search(photo_folder / "coffee.png", k=1)
        assert coffee_hits[0].path == str(changed)  # the changed file has its new content

    after = _descriptors(path)
    assert str(deleted) not in after
    assert str(new) in after
    assert after[str(changed)] != before[str(changed)]
    for p in set(before) - {str(deleted), str(changed)}:
        assert after[p] == before[p], f"{p} was recomputed or renumbered"
    with Index.open(path) as idx:
        assert idx.catalog.find_path(str(touched)).mtime_ns == touched.stat().st_mtime_ns
    _assert_consistent(path)


def test_sync_of_one_folder_leaves_other_folders_alone(tmp_path, photo_folder):
    path = tmp_path / "idx"
    with Index.create(path, SETTINGS) as idx:
        idx.sync([photo_folder])
        report = idx.sync([photo_folder / "nested"])  # a subfolder only
    assert report.removed == 0 and report.count == len(LAYOUT)


# -- bad input -------------------------------------------------------------------------------


def _make_bad_files(folder, photos) -> dict[str, str]:
    """Bad files next to good ones; returns path -> a word the skip reason must contain."""
    bad = folder / "bad"
    bad.mkdir()
    expected = {}
    (bad / "zero.jpg").write_bytes(b"")
    expected[str(bad / "zero.jpg")] = "empty"
    (bad / "truncated.jpg").write_bytes(truncated_jpeg(photos["coffee"]))
    expected[str(bad / "truncated.jpg")] = "truncated"
    (bad / "text.jpg").write_text("this is not a picture\n")
    expected[str(bad / "text.jpg")] = "not an image"
    (bad / "bomb.png").write_bytes(bomb_png(40_000, 40_000))
    expected[str(bad / "bomb.png")] = "too large"
    # Really unreadable even for root: reading /proc/self/mem at offset 0 fails with EIO.
    os.symlink("/proc/self/mem", bad / "io-error.jpg")
    expected[str(bad / "io-error.jpg")] = "error"
    # A FIFO named like an image is not a file: never opened (that would block), not indexed,
    # but listed as skipped with its reason.
    os.mkfifo(bad / "fifo.jpg")
    expected[str(bad / "fifo.jpg")] = "fifo"
    if os.geteuid() != 0:  # as root (CI containers), mode 000 is still readable
        locked = bad / "locked.jpg"
        photos["chelsea"].save(locked)
        locked.chmod(0)
        expected[str(locked)] = "permission denied"
    return expected


@pytest.mark.timeout(300)  # a sync that opened the FIFO would hang
def test_bad_files_are_skipped_with_reasons_and_nothing_is_lost(tmp_path, photo_folder, photos):
    path = tmp_path / "idx"
    with Index.create(path, SETTINGS) as idx:
        idx.sync([photo_folder])
    good = _descriptors(path)

    expected = _make_bad_files(photo_folder, photos)
    # a file that vanishes while the sync runs: deleted from the first progress callback.
    # Many small new files come before it (in walk order), so it is still far behind the
    # files being decoded ahead when the first progress callback comes.
    extras = 120  # more than the pipeline decodes ahead (prefetch + images waiting for a batch)
    for i in range(extras):
        photos["coins"].rotate(i * 3).resize((48, 40)).save(photo_folder / f"zy-{i:03d}.jpg")
    victim = photo_folder / "zz-vanishes.jpg"
    photos["chelsea"].save(victim)
    expected[str(victim)] = "not found"
    # a folder named like an image is a folder: its images are indexed
    (photo_folder / "zzz-album.jpg").mkdir()  # after the victim in walk order
    photos["clock"].rotate(90, expand=True).save(photo_folder / "zzz-album.jpg" / "inside.png")
    seen = []

    def progress(p):
        seen.append(p)
        if p.done and victim.exists():  # the first embedded file (phase starts have done=0)
            victim.unlink()

    try:
        with Index.open(path, writable=True) as idx:
            report = idx.sync([photo_folder], progress=progress, batch_size=4)
            skipped = {s.path: s.reason for s in idx.catalog.skipped()}
            info = idx.info()
    finally:
        for p in photo_folder.rglob("locked.jpg"):
            p.chmod(0o644)
    assert isinstance(report, SyncReport)
    reported = {s.path: s.reason for s in report.skipped}
    assert set(reported) == set(expected), reported
    for p, word in expected.items():
        assert word in reported[p].lower(), (p, reported[p])
    assert skipped == reported  # recorded in the catalog too
    assert info["skipped"] == len(expected)
    assert report.added == extras + 1 and report.count == len(LAYOUT) + extras + 1
    embedded = [p for p in seen if p.phase == "embedding"]
    not_embedded = 1  # the FIFO is skipped when the files are listed, before embedding
    assert embedded[-1].done == embedded[-1].total == extras + 1 + len(expected) - not_embedded
    phases = [p.phase for p in seen if not p.done]  # each phase's start, in order
    assert phases[:3] == ["listing", "loading model", "embedding"], phases
    assert phases[-1] == "building index", phases
    after = _descriptors(path)
    for p, value in good.items():
        assert after[p] == value  # nothing already indexed was lost or changed
    assert _assert_consistent(path) == len(LAYOUT) + extras + 1


def test_a_skipped_file_that_gets_fixed_is_indexed(tmp_path, photo_folder, photos):
    path = tmp_path / "idx"
    broken = photo_folder / "later.jpg"
    broken.write_bytes(b"")
    with Index.create(path, SETTINGS) as idx:
        first = idx.sync([photo_folder])
        assert [s.path for s in first.skipped] == [str(broken)]
        photos["chelsea"].save(broken)
        second = idx.sync([photo_folder])
        assert second.added == 1 and not second.skipped
        assert idx.catalog.skipped() == []
        assert idx.info()["skipped"] == 0


def test_a_deleted_skipped_file_is_forgotten(tmp_path, photo_folder):
    path = tmp_path / "idx"
    broken = photo_folder / "broken.jpg"
    broken.write_text("not an image")
    with Index.create(path, SETTINGS) as idx:
        assert len(idx.sync([photo_folder]).skipped) == 1
        broken.unlink()
        report = idx.sync([photo_folder])
        assert report.skipped == []
        assert idx.info()["skipped"] == 0


def test_missing_folder_is_an_error_and_changes_nothing(tmp_path, photo_folder):
    path = tmp_path / "idx"
    with Index.create(path, SETTINGS) as idx:
        idx.sync([photo_folder])
        with pytest.raises(ConfigError, match="no-such-folder"):
            idx.sync([photo_folder, tmp_path / "no-such-folder"])
        assert len(idx) == len(LAYOUT)


# -- opening, settings, locking --------------------------------------------------------------


def test_open_errors(tmp_path, photo_index):
    with pytest.raises(IndexNotFoundError, match="no lookalike index"):
        Index.open(tmp_path / "nothing")
    with pytest.raises(IndexMismatchError, match="descriptor='mac'"):
        Index.open(photo_index, settings=IndexSettings(max_side=MAX_SIDE, descriptor="mac"))
    with Index.open(photo_index) as idx:
        with pytest.raises(IndexMismatchError, match="max_side"):
            idx.check_settings(max_side=480)
        idx.check_settings(max_side=MAX_SIDE, descriptor="gem:p=3")  # same: fine
        with pytest.raises(ConfigError, match="read-only"):
            idx.sync([tmp_path])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not an empty directory"):
        Index.create(tmp_path / "full")
    with pytest.raises(ConfigError, match="unknown model"):
        Index.create(tmp_path / "m", IndexSettings(model="resnet9000"))


def test_one_writer_at_a_time(tmp_path):
    with Index.create(tmp_path / "idx", IndexSettings(whiten_dim=0)):
        with pytest.raises(IndexLockedError, match="another process"):
            Index.open(tmp_path / "idx", writable=True)
        with Index.open(tmp_path / "idx") as reader:  # readers are fine
            assert len(reader) == 0
    Index.open(tmp_path / "idx", writable=True).close()  # released on close


def test_open_or_create(tmp_path):
    with Index.open_or_create(tmp_path / "idx", SETTINGS) as idx:
        assert idx.settings.max_side == MAX_SIDE
    with Index.open_or_create(tmp_path / "idx") as idx:  # no settings given: keeps its own
        assert idx.settings.max_side == MAX_SIDE
    with pytest.raises(IndexMismatchError):
        Index.open_or_create(tmp_path / "idx", IndexSettings(max_side=300))


# -- precomputed vectors, whitening, approximate search --------------------------------------


def test_add_vectors_search_and_replace(tmp_path):
    x = clustered_vectors(300, 32, 10, seed=5)
    with Index.create(tmp_path / "idx", IndexSettings(whiten_dim=0)) as idx:
        ids = idx.add_vectors([f"/elsewhere/{i}.jpg" for i in range(300)], x)
        assert len(set(ids)) == 300 and len(idx) == 300
        hits = idx.search_vector(x[7], k=3)
        assert hits[0] == Hit(ids[7], "/elsewhere/7.jpg", pytest.approx(1.0, abs=1e-2))
        # the same path again replaces it
        (new_id,) = idx.add_vectors(["/elsewhere/7.jpg"], x[8:9])
        assert len(idx) == 300
        assert idx.search_vector(x[8], k=2)[0].path in {"/elsewhere/7.jpg", "/elsewhere/8.jpg"}
        assert ids[7] not in {h.id for h in idx.search_vector(x[7], k=300)}
        assert idx.remove([new_id, 10**6]) == 1
        assert len(idx) == 299
        with pytest.raises(IndexMismatchError, match="dimension 16"):
            idx.add_vectors(["/a.jpg"], np.ones((1, 16), np.float32))
        with pytest.raises(ConfigError, match="NaN"):
            idx.add_vectors(["/a.jpg"], np.full((1, 32), np.nan, np.float32))
        with pytest.raises(ConfigError, match="2-d"):
            idx.add_vectors(["/a.jpg", "/b.jpg"], np.ones((1, 32), np.float32))
    _assert_consistent(tmp_path / "idx")


def test_whitening_starts_only_when_allowed_and_search_works_on_both_sides(tmp_path):
    from lookalike.whitening import whitening_allowed

    dim, out = 64, 16
    x = clustered_vectors(2400, dim, 40, seed=9)
    path = tmp_path / "idx"
    below = next(n for n in range(1, 5000) if whitening_allowed(n, out)) - 1
    assert below >= 100
    with Index.create(path, IndexSettings(whiten_dim=out)) as idx:
        ids = idx.add_vectors([f"/v/{i}" for i in range(below)], x[:below])
        assert idx.manifest.whitening is None
        assert not (path / "whitening.npz").exists()
        assert idx.info()["dim"] == dim
        assert faiss.read_index(str(path / VECTORS_NAME)).d == dim
        assert idx.search_vector(x[3], k=1)[0].id == ids[3]

        more = idx.add_vectors([f"/v/{i}" for i in range(below, below + 100)], x[below:][:100])
        ids += more
        state = idx.manifest.whitening
        assert state is not None and state.dim == out and state.trained_on == below + 100
        assert (path / "whitening.npz").is_file()
        assert read_manifest(path).whitening == state
        assert idx.info()["dim"] == out and idx.info()["raw_dim"] == dim
        assert faiss.read_index(str(path / VECTORS_NAME)).d == out
        # whitened search still finds each vector itself, and neighbours from its cluster
        for q in (3, below + 5):
            hits = idx.search_vector(x[q], k=5)
            assert hits[0].id == ids[q]
        n_ids = len(ids)

    with Index.open(path) as idx:  # a fresh reader loads whitening and the index file
        assert idx.whitening is not None and idx.whitening.dim == out
        assert idx.search_vector(x[below + 5], k=1)[0].id == ids[below + 5]
        assert len(idx) == n_ids
    _assert_consistent(path)


def test_forced_approximate_index_keeps_recall(tmp_path):
    n, dim = 20_000, 64
    x = clustered_vectors(n + 200, dim, 400, seed=2)
    base, queries = x[:n], x[n:]
    key, params = "IVF256,PQ32x4fs,RFlat", "nprobe=16,k_factor_rf=8"
    path = tmp_path / "idx"
    settings = IndexSettings(whiten_dim=0, index_key=key, index_params=params)
    with Index.create(path, settings) as idx:
        ids = np.asarray(idx.add_vectors([f"/v/{i}" for i in range(n)], base))
        assert idx.info()["index_key"] == key
        got = [[h.id for h in idx.search_vector(q, k=10)] for q in queries]
    exact = ids[np.argsort(-(queries @ base.T), axis=1)[:, :10]]
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact, strict=True)])
    assert recall >= 0.95, recall
    index = faiss.read_index(str(path / VECTORS_NAME))
    assert index.ntotal == n
    assert (
        "IVF" in type(faiss.downcast_index(index.index)).__name__
        or "Refine" in type(faiss.downcast_index(index.index)).__name__
    )
    with Index.open(path) as idx:  # read back from disk: same answers
        again = [[h.id for h in idx.search_vector(q, k=10)] for q in queries[:20]]
    assert again == got[:20]


def test_forced_approximate_key_on_a_small_collection_still_works(tmp_path, photo_folder):
    """Too few vectors to train the forced key: the index stays exact until there are enough,
    instead of failing."""
    settings = IndexSettings(max_side=MAX_SIDE, index_key="IVF256,PQ32x4fs,RFlat")
    with Index.create(tmp_path / "idx", settings) as idx:
        report = idx.sync([photo_folder])
        assert report.count == len(LAYOUT)
        hits = idx.search(photo_folder / "chelsea.jpg", k=3)
        assert len(hits) == 3
    _assert_consistent(tmp_path / "idx")


def test_deleted_vector_file_is_rebuilt_from_the_catalog(tmp_path, photo_folder):
    path = tmp_path / "idx"
    with Index.create(path, SETTINGS) as idx:
        idx.sync([photo_folder])
        expected = [h.id for h in idx.search(photo_folder / "coffee.png", k=5)]
    (path / VECTORS_NAME).unlink()
    with Index.open(path) as idx:
        assert [h.id for h in idx.search(photo_folder / "coffee.png", k=5)] == expected
    shutil.copy(path / "manifest.json", tmp_path / "m.json")
    _assert_consistent(path)
