"""`lookalike demo` as `make demo` runs it: a relative output folder, real photos, known answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

TIMEOUT = 600


def test_demo_in_a_relative_folder_finds_every_query_and_reruns(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_INDEX"}
    cmd = [sys.executable, "-m", "lookalike", "demo", "--out", "demo-output", "-k", "5"]
    first = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    assert first.returncode == 0, first.stdout + first.stderr
    queries = sorted((tmp_path / "demo-output" / "queries").glob("*.jpg"))
    assert len(queries) >= 15
    summary = first.stdout.strip().splitlines()
    line = next(s for s in summary if s.startswith("First result right for"))
    assert f"for {len(queries)}/{len(queries)} queries" in line, first.stdout
    marked = [s for s in summary if re.match(r"\s+\d+\. \d\.\d{3}\s+(right|wrong)\s", s)]
    assert len(marked) == 5 * len(queries), first.stdout
    # A second run reuses the index: nothing is re-embedded.
    second = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(0 new)" in second.stdout, second.stdout
