"""Interrupting `lookalike index` (kill -9 or Ctrl-C) at any moment leaves an index that opens,
is consistent, and resumes without redoing committed images."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from conftest import MAX_SIDE
from lookalike.engine import Index

N_FILES = 90
TIMEOUT = 180


@pytest.fixture
def many_photos(tmp_path, photos):
    """N_FILES distinct small images (crops of the shipped photos) in a few folders."""
    names = sorted(photos)
    folder = tmp_path / "many"
    for i in range(N_FILES):
        im = photos[names[i % len(names)]]
        w, h = im.size
        j = i // len(names)
        box = (j * 7, j * 5, w - j * 3, h - j * 4)
        sub = folder / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        im.crop(box).resize((160, 120)).save(sub / f"img{i:03d}.jpg", quality=90)
    return folder


MARKER = "LOOKALIKE_TEST_RUN"  # set on each started command; its helper processes inherit it


def _start(folder, index, batch_size=4):
    env = {**os.environ, MARKER: uuid.uuid4().hex}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike",
            "index",
            str(folder),
            "--index",
            str(index),
            "--max-side",
            str(MAX_SIDE),
            "--batch-size",
            str(batch_size),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    proc.marker = env[MARKER]
    return proc


def _processes_of_run(marker: str) -> list[int]:
    """Live processes (not zombies) whose environment carries this run's marker: the command,
    its decoding workers, the forkserver and the resource tracker (Linux /proc)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def _kill_9(proc) -> list[int]:
    """kill -9 the command; every process it started must be gone within a few seconds."""
    helpers = [p for p in _processes_of_run(proc.marker) if p != proc.pid]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    left = _processes_of_run(proc.marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _processes_of_run(proc.marker)
    for pid in left:  # leave nothing behind, even when failing
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes of the killed run still alive after 5 s: {left} (of {helpers})"
    return helpers


def _committed(index) -> int:
    """Images committed so far, read from outside while the writer runs (-1: no catalog yet)."""
    path = index / "catalog.sqlite"
    if not path.exists():
        return -1
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return -1


def _wait_for(proc, index, at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        n = _committed(index)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            raise AssertionError(f"finished before {at_least} commits: {proc.communicate()}")
        time.sleep(0.005)
    raise AssertionError("timed out waiting for commits")


def _state(index) -> dict[str, tuple[int, bytes]]:
    db = sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, path, descriptor FROM images").fetchall()
    finally:
        db.close()
    paths = [p for _, p, _ in rows]
    assert len(paths) == len(set(paths)), "duplicate paths"
    return {p: (i, d) for i, p, d in rows}


def _assert_consistent(index) -> int:
    """Opens (read-only and writable), catalog count == searchable vectors, no duplicates."""
    state = _state(index)
    with Index.open(index) as idx:
        assert len(idx) == len(state)
        if state:
            some_id = next(iter(state.values()))[0]
            hits = idx.search_vector(idx.catalog.descriptor(some_id), k=N_FILES * 2, min_score=-2)
            assert sorted(h.id for h in hits) == sorted(i for i, _ in state.values())
    with Index.open(index, writable=True) as idx:  # the lock was released by the kill
        idx.refresh()
    return len(state)


def _finish(folder, index) -> dict:
    proc = _start(folder, index)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_kill_9_at_several_moments_then_resume(tmp_path, many_photos):
    index = tmp_path / "idx"
    committed_before = {}
    for threshold in (1, 30, 60):
        proc = _start(many_photos, index)
        _wait_for(proc, index, threshold)
        # `lookalike index` decodes in threads: no helper process may outlive the command
        # (with decode="processes" it has a forkserver, workers and a resource tracker; the
        # pipeline tests kill those separately)
        _kill_9(proc)
        n = _assert_consistent(index)
        assert threshold <= n < N_FILES, n
        state = _state(index)
        for p, value in committed_before.items():
            assert state[p] == value, f"{p} was redone after a kill"
        committed_before = state

    summary = _finish(many_photos, index)
    # the resumed run embeds only what was not committed, and keeps the rest as it was
    assert summary["added"] == N_FILES - len(committed_before)
    assert summary["updated"] == summary["removed"] == 0
    assert summary["count"] == N_FILES
    final = _state(index)
    for p, value in committed_before.items():
        assert final[p] == value
    assert _assert_consistent(index) == N_FILES


def test_kill_9_right_at_the_start_leaves_a_usable_folder(tmp_path, many_photos):
    """A kill before the first commit (even before the manifest exists) must not leave a
    folder that the next run refuses."""
    index = tmp_path / "idx"
    proc = _start(many_photos, index)
    deadline = time.monotonic() + TIMEOUT
    while not index.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    _kill_9(proc)
    assert _finish(many_photos, index)["count"] == N_FILES
    assert _assert_consistent(index) == N_FILES


def test_leftovers_of_a_killed_create_do_not_block_the_next_run(tmp_path, many_photos):
    """What a kill between creating the folder and writing the manifest leaves behind."""
    index = tmp_path / "idx"
    index.mkdir()
    (index / "lock").write_bytes(b"")
    sqlite3.connect(index / "catalog.sqlite").close()
    assert _finish(many_photos, index)["count"] == N_FILES


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(tmp_path, many_photos):
    index = tmp_path / "idx"
    proc = _start(many_photos, index)
    _wait_for(proc, index, 8)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "interrupted" in err and "run the same command again" in err, err
    assert "Traceback" not in err, err
    n = _assert_consistent(index)
    assert 8 <= n < N_FILES
    before = _state(index)
    summary = _finish(many_photos, index)
    assert summary["added"] == N_FILES - n
    final = _state(index)
    assert all(final[p] == v for p, v in before.items())
