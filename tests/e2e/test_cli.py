"""The real `lookalike` command as a subprocess (`python -m lookalike`): index, search, info,
their JSON output, the progress bar, LOOKALIKE_INDEX, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LAYOUT, MAX_SIDE, truncated_jpeg
from lookalike.edits import apply_edit

TIMEOUT = 180


def run_cli(*args, env: dict | None = None, check_rc: int | None = 0):
    full_env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_INDEX"}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=TIMEOUT,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def assert_one_line_error(proc, *words: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, photo_folder_master, photos):
    """An index built by the CLI from the photo folder plus two bad files; returns
    (index path, folder, the --json summary)."""
    root = tmp_path_factory.mktemp("cli")
    folder = root / "photos"
    shutil.copytree(photo_folder_master, folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.jpg").write_bytes(truncated_jpeg(photos["coffee"]))
    index = root / "idx"
    proc = run_cli("index", folder, "--index", index, "--max-side", MAX_SIDE, "--json")
    return index, folder, json.loads(proc.stdout)


def test_index_json_summary(cli_index):
    index, folder, summary = cli_index
    assert {"added", "updated", "removed", "skipped", "count", "seconds"} <= set(summary)
    assert summary["added"] == summary["count"] == len(LAYOUT)
    assert summary["updated"] == summary["removed"] == 0
    assert summary["seconds"] > 0
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {str(folder / "empty.jpg"), str(folder / "broken.jpg")}
    assert "empty" in skipped[str(folder / "empty.jpg")]
    assert "truncated" in skipped[str(folder / "broken.jpg")]


def test_reindex_text_summary_and_nothing_recomputed(cli_index, tmp_path):
    index, folder, _ = cli_index
    proc = run_cli("index", folder, "--index", index)
    out = proc.stdout
    for word in ("added 0", "updated 0", "removed 0", "skipped 2", f"{len(LAYOUT)} images"):
        assert word in out, out
    assert "images/s" in out and " s " in out
    assert f"skipped {folder / 'empty.jpg'}: empty file" in out
    assert "broken.jpg: truncated" in out
    assert "indexing" not in proc.stderr  # no progress bar when stderr is not a terminal


def test_progress_bar_on_a_terminal(tmp_path, photo_folder):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike",
            "index",
            str(photo_folder),
            "--index",
            str(tmp_path / "idx"),
            "--max-side",
            str(MAX_SIDE),
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=TIMEOUT)
    os.close(master)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, terminal
    assert "indexing" in terminal, terminal
    assert f"/{len(LAYOUT)}" in terminal  # "n/16" of the MofN column
    assert f"added {len(LAYOUT)}" in out


def test_search_json_by_file_and_id(cli_index, photos, tmp_path):
    index, folder, _ = cli_index
    chelsea = folder / "chelsea.jpg"
    proc = run_cli("search", chelsea, "--index", index, "-k", 5, "--json")
    result = json.loads(proc.stdout)
    assert result["query"] == str(chelsea)
    hits = result["hits"]
    assert len(hits) == 5
    assert all(set(h) >= {"id", "path", "score"} for h in hits)
    assert str(chelsea) not in {h["path"] for h in hits}  # the query itself is left out
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)

    by_id = json.loads(run_cli("search", f"id:{hits[0]['id']}", "--index", index, "--json").stdout)
    assert by_id["query"] == f"id:{hits[0]['id']}"
    assert hits[0]["id"] not in {h["id"] for h in by_id["hits"]}
    assert len(by_id["hits"]) == 10  # default k

    # an edited copy outside the index finds its original first
    query = tmp_path / "edited.jpg"
    apply_edit("crop", photos["astronaut"], seed=3).save(query)
    edited = json.loads(run_cli("search", query, "--index", index, "-k", 3, "--json").stdout)
    assert edited["hits"][0]["path"] == str(folder / "astronaut.gif")


def test_search_min_score_and_text_output(cli_index):
    index, folder, _ = cli_index
    full = json.loads(run_cli("search", "id:1", "--index", index, "-k", 20, "--json").stdout)
    cut = full["hits"][3]["score"]
    some = json.loads(
        run_cli("search", "id:1", "--index", index, "-k", 20, "--min-score", cut, "--json").stdout
    )
    assert [h["id"] for h in some["hits"]] == [h["id"] for h in full["hits"][:4]]
    text = run_cli("search", "id:1", "--index", index, "-k", 2).stdout.splitlines()
    assert len(text) == 2
    assert text[0].split()[0] == "1" and f"id:{full['hits'][0]['id']}" in text[0]
    assert full["hits"][0]["path"] in text[0]
    none = run_cli("search", "id:1", "--index", index, "--min-score", 1.5)
    assert none.stdout.strip() == "no results"


def test_info_json_text_and_env_var(cli_index):
    index, _, _ = cli_index
    info = json.loads(run_cli("info", "--json", env={"LOOKALIKE_INDEX": str(index)}).stdout)
    assert info["count"] == len(LAYOUT)
    assert info["skipped"] == 2
    assert (info["model"], info["descriptor"], info["max_side"]) == ("lite0", "gem:p=3", MAX_SIDE)
    assert info["dim"] == 1280 and info["index_key"] == "Flat"
    on_disk = sum(f.stat().st_size for f in Path(index).iterdir() if f.is_file())
    assert info["size_bytes"] == on_disk
    text = run_cli("info", "--index", index).stdout
    assert f"count              {len(LAYOUT)}" in text
    assert "index_key          Flat" in text
    # the environment variable works for search and index too
    env = {"LOOKALIKE_INDEX": str(index)}
    assert json.loads(run_cli("search", "id:2", "-k", 1, "--json", env=env).stdout)["hits"]


def test_help_documents_the_options():
    out = run_cli("index", "--help", env={"COLUMNS": "200"}).stdout
    for opt in (
        "--index",
        "--json",
        "--max-side",
        "--descriptor",
        "--index-key",
        "LOOKALIKE_INDEX",
    ):
        assert opt in out, opt
    out = run_cli("search", "--help", env={"COLUMNS": "200"}).stdout
    for opt in ("--min-score", "-k", "id:N", "--json"):
        assert opt in out, opt


# -- errors ----------------------------------------------------------------------------------


def test_missing_folder_is_a_one_line_error_and_creates_nothing(tmp_path):
    proc = run_cli("index", tmp_path / "nope", "--index", tmp_path / "idx", check_rc=None)
    assert_one_line_error(proc, "nope", "not found")
    assert not (tmp_path / "idx").exists()


def test_missing_index_is_a_one_line_error(tmp_path, photo_folder_master):
    for args in (
        ("search", photo_folder_master / "chelsea.jpg", "--index", tmp_path / "none"),
        ("info", "--index", tmp_path / "none"),
    ):
        assert_one_line_error(run_cli(*args, check_rc=None), "none", "no lookalike index")


def test_other_settings_are_refused_and_the_index_is_kept(cli_index):
    index, folder, _ = cli_index
    before = json.loads(run_cli("info", "--index", index, "--json").stdout)
    proc = run_cli("index", folder, "--index", index, "--descriptor", "mac", check_rc=None)
    assert_one_line_error(proc, "descriptor", "mac", "gem:p=3")
    proc = run_cli("index", folder, "--index", index, "--max-side", 480, check_rc=None)
    assert_one_line_error(proc, "max_side")
    after = json.loads(run_cli("info", "--index", index, "--json").stdout)
    assert after["count"] == before["count"]
    # the same settings given again are fine
    run_cli("index", folder, "--index", index, "--max-side", MAX_SIDE, "--descriptor", "gem:p=3")


def test_bad_queries_are_one_line_errors(cli_index, tmp_path):
    index, folder, _ = cli_index
    assert_one_line_error(
        run_cli("search", tmp_path / "missing.jpg", "--index", index, check_rc=None), "missing.jpg"
    )
    assert_one_line_error(run_cli("search", "id:abc", "--index", index, check_rc=None), "id:abc")
    assert_one_line_error(run_cli("search", "id:99999", "--index", index, check_rc=None), "99999")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    assert_one_line_error(
        run_cli("search", text, "--index", index, check_rc=None), "text.jpg", "not an image"
    )
    assert_one_line_error(
        run_cli("index", folder, "--index", tmp_path / "x", "--descriptor", "nope", check_rc=None),
        "nope",
    )
