"""`lookalike index --executor ray --store milvus` as users run it: the command starts a local
Ray instance and keeps its vectors in Milvus Lite; a kill -9 mid-run leaves an index that opens,
is consistent and resumes (the writer is the same as in the local run; only extraction and the
vector store moved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from test_kill_resume import (  # noqa: F401 - many_photos is a fixture
    MARKER,
    N_FILES,
    TIMEOUT,
    _assert_consistent,
    _processes_of_run,
    _state,
    _wait_for,
    many_photos,
)

from conftest import MAX_SIDE

pytestmark = pytest.mark.slow

# Ray's own helpers that outlive a kill -9 of the process that started the instance: the
# dashboard and runtime-env agents notice their raylet is gone and exit within ~90 s.
LINGERING = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")


def _start(folder, index):
    env = {**os.environ, MARKER: uuid.uuid4().hex}
    args = [sys.executable, "-m", "lookalike", "index", str(folder), "--index", str(index)]
    args += ["--max-side", str(MAX_SIDE), "--batch-size", "4", "--executor", "ray"]
    args += ["--store", "milvus", "--json"]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    proc.marker = env[MARKER]
    return proc


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def test_ray_index_kill_9_then_resume(tmp_path, many_photos):  # noqa: F811
    index = tmp_path / "idx"
    proc = _start(many_photos, index)
    try:
        _wait_for(proc, index, 8)
        workers = [p for p in _processes_of_run(proc.marker) if b"ExtractionWorker" in _cmdline(p)]
        assert workers, "no Ray extraction workers seen while indexing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        # the raylet, GCS and the extraction workers end with the command
        deadline = time.monotonic() + 15
        left = [1]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [
                p
                for p in _processes_of_run(proc.marker)
                if not any(name in _cmdline(p) for name in LINGERING)
            ]
        assert not left, [(p, _cmdline(p)[:80]) for p in left]
    finally:
        for pid in _processes_of_run(proc.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    committed = _assert_consistent(index)
    assert 8 <= committed < N_FILES
    before = _state(index)

    again = _start(many_photos, index)
    out, err = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, err
    summary = json.loads(out)
    assert summary["added"] == N_FILES - committed
    assert summary["count"] == N_FILES and not summary["skipped"]
    final = _state(index)
    assert all(final[p] == v for p, v in before.items()), "committed images were redone"
    assert _assert_consistent(index) == N_FILES
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["settings"]["store"] == "milvus" and manifest["vector_collection"]
    assert not (index / "vectors.faiss").exists()
