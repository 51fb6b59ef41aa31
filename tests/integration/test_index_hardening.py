"""Regression tests for the hostile test's index findings (issue 11): non-UTF-8 file names (3),
a vectors.faiss from another index (4), a damaged catalog and `lookalike check` (7), a full
disk (8), a lock that is a directory (9), files truncated in place, FIFOs and broken links (13).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.engine import VECTORS_NAME, Index
from lookalike.errors import DiskFullError, IndexCorruptError
from lookalike.index.manifest import IndexSettings
from lookalike.samples import sample_photos

SETTINGS = IndexSettings(max_side=224)


def write_photos(folder: Path, names: tuple[str, ...]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, image in sample_photos(list(names)).items():
        image.thumbnail((224, 224))
        out[name] = folder / f"{name}.jpg"
        image.save(out[name], quality=90)
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args], capture_output=True, text=True, timeout=300
    )


# -- 3: a file name that is not UTF-8 ---------------------------------------------------------


def test_a_non_utf8_file_name_is_indexed_and_never_blocks_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photos = write_photos(folder, ("chelsea", "coffee"))
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9-\xff.jpg")  # Latin-1 bytes
    shutil.copy(photos["chelsea"], odd)
    with Index.create(tmp_path / "index", SETTINGS) as idx:
        first = idx.sync([folder])
        assert (first.added, first.skipped) == (3, []), first.to_dict()
        record = idx.catalog.find_path(odd)
        assert record is not None and record.path == odd  # lossless round trip
        again = idx.sync([folder])
        assert (again.added, again.unchanged, again.removed) == (0, 3, 0)
        hits = idx.search_id(record.id, 1)
        assert Path(hits[0].path) == photos["chelsea"]
        os.unlink(odd)
        gone = idx.sync([folder])
        assert gone.removed == 1 and idx.catalog.find_path(odd) is None
    shutil.copy(photos["chelsea"], odd)
    proc = run_cli("index", str(folder), "--index", str(tmp_path / "index"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["added"] == 1
    with Index.open(tmp_path / "index") as idx:
        odd_id = idx.catalog.find_path(odd).id
    with TestClient(create_app_for(tmp_path / "index")) as c:
        meta = c.get(f"/api/images/{odd_id}")
        assert meta.status_code == 200 and meta.json()["path"].endswith("caf\ufffd-\ufffd.jpg")
        assert c.get(f"/api/images/{odd_id}/file").content == photos["chelsea"].read_bytes()
        assert c.get(f"/api/images/{odd_id}/similar").status_code == 200
        listed = c.get("/api/images")  # browsing lists it too
        assert listed.status_code == 200, listed.text
        assert any(i["path"].endswith("caf\ufffd-\ufffd.jpg") for i in listed.json()["images"])
        assert c.get("/api/folders").status_code == 200


def create_app_for(index: Path):  # noqa: ANN201
    from lookalike.server import create_app

    return create_app(index)


# -- 4: derived files carry the index's identity ------------------------------------------------


def test_a_vectors_file_from_another_index_is_never_used(tmp_path: Path) -> None:
    a_photos = write_photos(tmp_path / "a", ("chelsea", "coffee", "rocket"))
    write_photos(tmp_path / "b", ("astronaut", "camera", "coins"))
    for name in ("a", "b"):
        with Index.create(tmp_path / f"{name}.idx", SETTINGS) as idx:
            idx.sync([tmp_path / name])
    with Index.open(tmp_path / "a.idx") as a, Index.open(tmp_path / "b.idx") as b:
        assert a.catalog.generation == b.catalog.generation  # what made the swap go unseen
        assert a.manifest.index_id and a.manifest.index_id != b.manifest.index_id
        query = a.catalog.find_path(str(a_photos["chelsea"])).id
        expected = [(h.id, round(h.score, 4)) for h in a.search_id(query, 2)]
    shutil.copy(tmp_path / "b.idx" / VECTORS_NAME, tmp_path / "a.idx" / VECTORS_NAME)
    with Index.open(tmp_path / "a.idx") as a:  # read-only: rebuilt in memory
        assert [(h.id, round(h.score, 4)) for h in a.search_id(query, 2)] == expected
    with Index.open(tmp_path / "a.idx", writable=True) as a:  # writable: rebuilt and saved
        assert [(h.id, round(h.score, 4)) for h in a.search_id(query, 2)] == expected
    from lookalike.index.vectors import read_stamp

    with Index.open(tmp_path / "a.idx") as a:
        assert read_stamp(tmp_path / "a.idx" / VECTORS_NAME) == (
            f"{a.manifest.index_id}:{a.catalog.generation}"
        )


# -- 7: a damaged catalog -------------------------------------------------------------------------


def test_random_bytes_in_the_catalog_give_a_clear_error_and_check_finds_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    write_photos(folder, ("chelsea", "coffee", "rocket", "astronaut"))
    index = tmp_path / "index"
    with Index.create(index, SETTINGS) as idx:
        idx.sync([folder])
    sound = run_cli("check", "--index", str(index), "--json")
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert json.loads(sound.stdout)["ok"] is True
    catalog = index / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[page : len(data)] = os.urandom(len(data) - page)  # every page after the first
    catalog.write_bytes(bytes(data))
    for wal in index.glob("catalog.sqlite-*"):
        wal.unlink()
    proc = run_cli("index", str(folder), "--index", str(index))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(catalog) in proc.stderr and "lookalike check" in proc.stderr
    checked = run_cli("check", "--index", str(index))
    assert checked.returncode == 1 and "DAMAGED" in checked.stdout, checked.stdout
    assert "integrity" in checked.stdout or "cannot be read" in checked.stdout


# -- 9: the lock is a directory ---------------------------------------------------------------


def test_a_lock_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with Index.create(tmp_path / "index", SETTINGS):
        pass
    lock = tmp_path / "index" / "lock"
    lock.unlink()
    lock.mkdir()
    with pytest.raises(IndexCorruptError, match="lock file is a directory"):
        Index.open(tmp_path / "index", writable=True)
    assert "lock" in run_cli("check", "--index", str(tmp_path / "index")).stdout
    lock.rmdir()
    Index.open(tmp_path / "index", writable=True).close()


# -- 13: truncated in place, FIFOs, broken links ----------------------------------------------


def test_a_file_truncated_in_place_loses_its_stale_record(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photos = write_photos(folder, ("chelsea", "coffee", "rocket"))
    with Index.create(tmp_path / "index", SETTINGS) as idx:
        idx.sync([folder])
        old = idx.catalog.find_path(str(photos["coffee"]))
        data = photos["coffee"].read_bytes()
        with open(photos["coffee"], "r+b") as fh:  # in place: same inode
            fh.truncate(len(data) // 3)
        report = idx.sync([folder])
        assert [s.path for s in report.skipped] == [str(photos["coffee"])]
        assert report.removed == 1
        assert idx.get(old.id) is None and idx.catalog.find_path(str(photos["coffee"])) is None
        assert len(idx) == 2
        chelsea = idx.catalog.find_path(str(photos["chelsea"])).id
        assert old.id not in [h.id for h in idx.search_id(chelsea, 5)]


def test_fifos_and_broken_links_are_listed_as_skipped_and_never_opened(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_photos(folder, ("chelsea",))
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    result: dict = {}

    def sync() -> None:
        with Index.create(tmp_path / "index", SETTINGS) as idx:
            result["report"] = idx.sync([folder])

    worker = threading.Thread(target=sync, daemon=True)
    worker.start()
    worker.join(240)
    assert not worker.is_alive(), "sync blocked (opened the FIFO?)"
    report = result["report"]
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert report.added == 1
    assert "FIFO" in reasons["pipe.jpg"]
    assert "broken symbolic link" in reasons["dangling.png"]


# -- 8: a full disk -------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs when this machine lets the tests mount one (root on Linux); otherwise
    None, and the test injects ENOSPC into the write calls instead."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        )
        mounted = done.returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system holding `folder` until `leave` bytes are free."""
    filler = folder / "filler"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as fh:
        remaining = max(0, free - leave)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            n = fh.write(chunk[: min(len(chunk), remaining)])
            remaining -= n
    return filler


def test_a_full_disk_while_saving_the_faiss_index_is_a_clear_error_and_the_next_run_completes(
    tmp_path: Path, small_disk: Path | None, monkeypatch
) -> None:
    import numpy as np

    base = small_disk or tmp_path
    index = base / "index"
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((600, 1280)).astype(np.float32)  # 3 MB of vectors in FAISS
    paths = [f"/nowhere/{i}.jpg" for i in range(len(raw))]
    with Index.create(index, IndexSettings(whiten_dim=0)) as idx:
        idx.add_vectors(paths[:2], raw[:2])  # fixes the dimension
        idx.add_vectors(paths[2:], raw[2:], refresh=False)  # catalog now, FAISS on refresh
        if small_disk is not None:
            filler = _fill(base, leave=512 * 1024)
        else:  # no mount allowed here: FAISS's write fails the way a full disk makes it fail
            import faiss

            def failing_write(index, name):  # noqa: ANN001, ANN202
                Path(name).write_bytes(b"\0" * 1000)  # half-written
                raise RuntimeError("write error: 1000 != 3072000 (No space left on device)")

            monkeypatch.setattr(faiss, "write_index", failing_write)
        with pytest.raises(DiskFullError, match="disk full") as caught:
            idx.refresh()
        assert str(index / VECTORS_NAME) in str(caught.value)
        leftovers = [p.name for p in index.iterdir() if p.name.startswith(VECTORS_NAME)]
        assert leftovers in ([], [VECTORS_NAME]), leftovers  # no temporary file left
        if small_disk is not None:
            filler.unlink()
        else:
            monkeypatch.undo()
    with Index.open(index, writable=True) as idx:  # the next run completes
        hits = idx.search_vector(raw[7], 1)
        assert hits[0].id == 8 and hits[0].score > 0.99
    from lookalike.index.vectors import read_stamp

    with Index.open(index) as idx:
        stamp = f"{idx.manifest.index_id}:{idx.catalog.generation}"
    assert read_stamp(index / VECTORS_NAME) == stamp


def test_a_full_disk_while_writing_the_catalog_is_a_clear_error(
    tmp_path: Path, small_disk: Path | None, monkeypatch
) -> None:
    import sqlite3

    import numpy as np

    from lookalike.index import catalog as catalog_module

    index = (small_disk or tmp_path) / "index"
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((2000, 1280)).astype(np.float32)
    with Index.create(index, IndexSettings(whiten_dim=0)) as idx:
        idx.add_vectors(["/nowhere/0.jpg"], raw[:1])
        if small_disk is not None:
            filler = _fill(small_disk, leave=256 * 1024)
        else:  # no mount allowed here: SQLite reports what it reports on a full disk

            def full(*_: object, **__: object) -> None:
                raise sqlite3.OperationalError("database or disk is full")

            monkeypatch.setattr(catalog_module, "_encode", full)
        with pytest.raises(DiskFullError, match="catalog"):
            idx.add_vectors([f"/nowhere/{i}.jpg" for i in range(1, 2000)], raw[1:])
        assert len(idx) == 1  # the failed batch left nothing
        if small_disk is not None:
            filler.unlink()
        else:
            monkeypatch.undo()
        idx.add_vectors([f"/nowhere/{i}.jpg" for i in range(1, 200)], raw[1:200])
        assert len(idx) == 200


def test_a_whitening_file_from_another_index_is_refused_or_learned_again(tmp_path: Path) -> None:
    from conftest import clustered_vectors
    from lookalike.whitening import MIN_IMAGES, MIN_IMAGES_PER_DIM

    dim, out = 64, 8
    n = max(MIN_IMAGES, MIN_IMAGES_PER_DIM * out) + 50
    made = {}
    for seed, name in enumerate(("a", "b")):
        vectors = clustered_vectors(n, dim, 10, seed=seed)
        with Index.create(tmp_path / name, IndexSettings(whiten_dim=out)) as idx:
            idx.add_vectors([f"/{name}/{i}.jpg" for i in range(n)], vectors)
            assert idx.manifest.whitening is not None
            made[name] = (vectors, [(h.id, round(h.score, 4)) for h in idx.search_id(1, 3)])
    whitening = tmp_path / "a" / "whitening.npz"
    shutil.copy(tmp_path / "b" / "whitening.npz", whitening)
    with Index.open(tmp_path / "a") as idx, pytest.raises(IndexCorruptError, match="whitening"):
        idx.search_id(1, 3)
    with Index.open(tmp_path / "a", writable=True) as idx:  # learned again from a's own vectors
        assert [(h.id, round(h.score, 4)) for h in idx.search_id(1, 3)] == made["a"][1]
    with Index.open(tmp_path / "a") as idx:
        assert [(h.id, round(h.score, 4)) for h in idx.search_id(1, 3)] == made["a"][1]
