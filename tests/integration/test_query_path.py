"""The query path never imports PyTorch or sentence-transformers.

Each command runs in a fresh Python process (the CLI's own entry point, or the server app with
a real request), then the process reports which heavy modules ended up in `sys.modules`. The
ONNX graphs are exported once beforehand (the session fixtures), as they are on a user's machine
after the first run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("torch", "sentence_transformers", "transformers")

# Runs the real CLI in-process, once per argv list given, and after each command prints the
# heavy modules imported so far as a JSON line (sys.modules only grows, so the first command
# that imports one is the one named).
_CLI = """
import json, sys
from lookalike.cli import main
for argv in json.loads(sys.argv[1]):
    sys.argv = ["lookalike", *argv]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    print("HEAVY=" + json.dumps([argv[0], [m for m in {heavy} if m in sys.modules]]), flush=True)
"""


def _run_cli(*commands: list[str], env_prefix: str = "") -> list[tuple[str, list[str]]]:
    code = env_prefix + _CLI.format(heavy=repr(HEAVY))
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    reports = [json.loads(x[6:]) for x in out.stdout.splitlines() if x.startswith("HEAVY=")]
    assert len(reports) == len(commands), out.stdout[-3000:]
    return [(name, heavy) for name, heavy in reports]


@pytest.fixture(scope="module")
def warm(photo_index, extractor):
    """The CNN export is cached (photo_index built it) and the sentence model exported, as on
    a user's machine after the first run."""
    from lookalike.text import default_matcher

    default_matcher().embedding_classes("a cup of coffee")
    return photo_index


def test_query_commands_do_not_import_torch(warm, photo_folder_master):
    photo = str(photo_folder_master / "chelsea.jpg")
    index = str(warm)
    commands = [
        ["info", "--index", index],
        ["search", photo, "--index", index, "-k", "3"],
        ["search", "id:1", "--index", index, "-k", "3"],
        ["search", "--text", "cat", "--index", index, "-k", "3"],
        ["search", "--text", "sunset at the beach", "--index", index, "-k", "3"],
        ["classify", photo],
        ["dupes", "--index", index],
    ]
    reports = _run_cli(*commands)
    assert [name for name, _ in reports] == [c[0] for c in commands]
    for command, (_, heavy) in zip(commands, reports, strict=True):
        assert heavy == [], f"lookalike {' '.join(command[:2])} imported {heavy}"


def test_index_with_a_cached_export_does_not_import_torch(warm, photo_folder, tmp_path):
    from lookalike.engine import Index

    idx_path = tmp_path / "idx"
    ((_, heavy),) = _run_cli(["index", str(photo_folder), "--index", str(idx_path)])
    assert heavy == []
    with Index.open(idx_path) as idx:
        assert len(idx) > 0


def test_server_search_does_not_import_torch(warm, photo_folder_master):
    code = textwrap.dedent(
        f"""
        import json, sys
        from fastapi.testclient import TestClient
        from lookalike.server import create_app
        app = create_app({str(warm)!r})
        with TestClient(app) as client:
            with open({str(photo_folder_master / "chelsea.jpg")!r}, "rb") as f:
                r1 = client.post("/api/search", files={{"image": ("c.jpg", f, "image/jpeg")}})
            r2 = client.get("/api/search/text", params={{"q": "a cup of coffee"}})
        assert r1.status_code == 200, r1.text
        assert r2.status_code == 200, r2.text
        print("HEAVY=" + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line[len("HEAVY=") :]) == []


def test_the_check_can_fail(tmp_path):
    """The probe does see torch when a command imports it (here: classify with an empty cache
    exports the graph first)."""
    env = f"import os; os.environ['LOOKALIKE_CACHE_DIR'] = {str(tmp_path / 'cache')!r}\n"
    ((_, heavy),) = _run_cli(["classify", str(_any_photo(tmp_path))], env_prefix=env)
    assert "torch" in heavy


def _any_photo(folder: Path) -> Path:
    from lookalike.samples import sample_photos

    path = folder / "coffee.jpg"
    sample_photos(("coffee",))["coffee"].save(path)
    return path
