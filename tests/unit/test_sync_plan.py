"""lookalike.sync.plan_sync: what a sync will do, decided without writing anything."""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.pipeline import file_hash
from lookalike.sync import Todo, plan_sync


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _state(image_id: int, path: Path) -> tuple[int, int, int, str]:
    st = path.stat()
    return image_id, st.st_size, st.st_mtime_ns, file_hash(path)


def test_new_unchanged_touched_changed_and_gone(tmp_path):
    root = tmp_path / "photos"
    new = _write(root / "new.jpg")
    same = _write(root / "same.jpg")
    touched = _write(root / "touched.jpg", b"abc")
    changed = _write(root / "changed.jpg", b"abc")
    known = {
        str(same): _state(1, same),
        str(touched): _state(2, touched),
        str(changed): _state(3, changed),
        str(root / "gone.jpg"): (4, 1, 1, "h"),
        str(tmp_path / "elsewhere" / "kept.jpg"): (5, 1, 1, "h"),  # outside the synced root
    }
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime
    changed.write_bytes(b"abd")  # same size, new bytes
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    plan = plan_sync([root], known, [str(root / "was-skipped.jpg")])

    st_new, st_changed = new.stat(), changed.stat()
    assert sorted(plan.todo, key=lambda t: t.path) == [
        Todo(str(changed), st_changed.st_size, st_changed.st_mtime_ns, 3),
        Todo(str(new), st_new.st_size, st_new.st_mtime_ns, None),
    ]
    assert plan.touched == [(2, touched.stat().st_size, touched.stat().st_mtime_ns)]
    assert plan.unchanged == 2  # same.jpg, and touched.jpg (content unchanged)
    assert plan.remove == [4]
    assert plan.forget_skipped == [str(root / "was-skipped.jpg")]
    assert plan.unreadable == []


def test_files_under_the_excluded_directory_are_left_out(tmp_path):
    root = tmp_path / "photos"
    photo = _write(root / "a.jpg")
    _write(root / "idx" / "uploads" / "b.jpg")
    plan = plan_sync([root], {}, [], exclude=root / "idx")
    assert [t.path for t in plan.todo] == [str(photo)]


def test_a_sibling_folder_with_a_common_prefix_is_not_under_the_root(tmp_path):
    root = tmp_path / "photos"
    _write(root / "a.jpg")
    other = str(tmp_path / "photos2" / "b.jpg")
    plan = plan_sync([root], {other: (9, 1, 1, "h")}, [other])
    assert plan.remove == []
    assert plan.forget_skipped == []
