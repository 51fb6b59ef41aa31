"""The real `lookalike` command as a subprocess (`python -m lookalike`): index, search, info,
their JSON output, the progress bar, LOOKALIKE_INDEX, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
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
    assert "images/s" not in out  # nothing was embedded: no speed to report
    assert f"skipped {folder / 'empty.jpg'}: empty file" in out
    assert "broken.jpg: truncated" in out
    # Not a terminal: plain lines naming the phases, no bar (no terminal control codes).
    assert "lookalike index: listing files" in proc.stderr
    assert "lookalike index: building index" in proc.stderr
    assert "\x1b[" not in proc.stderr


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
    assert "embedding" in terminal, terminal  # the phase, as the bar's description
    assert f"/{len(LAYOUT)}" in terminal  # "n/16" of the MofN column
    assert "images/s" in terminal
    assert "lookalike index:" not in terminal  # the plain lines are for pipes only
    assert f"added {len(LAYOUT)}" in out
    assert "images/s" in out


def test_progress_lines_when_piped(tmp_path, photo_folder):
    """A log or a pipe gets one line per phase and periodic embedding lines (every second here;
    LOOKALIKE_PROGRESS_SECONDS sets the period, 10 s by default)."""
    proc = run_cli(
        "index",
        photo_folder,
        "--index",
        tmp_path / "idx",
        "--max-side",
        MAX_SIDE,
        env={"LOOKALIKE_PROGRESS_SECONDS": "0"},
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lookalike index: ")]
    phases = [line.removeprefix("lookalike index: ") for line in lines]
    assert phases[0] == "listing files", lines
    assert phases[1] == "loading model", lines
    assert phases[2] == f"embedding {len(LAYOUT)} new or changed files", lines
    progress = [p for p in phases if p.startswith("embedding ") and "/" in p]
    assert len(progress) == len(LAYOUT)  # period 0: a line per image
    assert progress[-1].startswith(f"embedding {len(LAYOUT)}/{len(LAYOUT)} (100 %), ")
    assert "about" in progress[0] and "left" in progress[0]
    assert phases[-1] == "building index", lines
    assert "\x1b[" not in proc.stderr


def test_images_per_second_counts_the_embedding_only(cli_index, tmp_path, photos):
    """A one-file update reported 0.11 images/s when the speed was taken over the whole run
    (listing, hashing, model loading, index building); now it is the embedding's own speed."""
    index, folder, _ = cli_index
    copy = tmp_path / "idx"
    shutil.copytree(index, copy)
    photos["gravel"].rotate(90).save(folder / "nested" / "gravel.jpg", quality=90)
    try:
        proc = run_cli("index", folder, "--index", copy, "--json")
    finally:
        photos["gravel"].save(folder / "nested" / "gravel.jpg", quality=92)
    summary = json.loads(proc.stdout)
    assert summary["updated"] == 1 and summary["added"] == 0
    assert 0 < summary["embed_seconds"] < summary["seconds"]
    assert summary["images_per_second"] == pytest.approx(1 / summary["embed_seconds"], rel=0.02)
    # the whole run (loading the model above all) takes several times the one image's embedding
    assert summary["images_per_second"] > 3 / summary["seconds"], summary


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
        "[default: lite0]",  # once swallowed as rich markup
        "[default: 480]",
        "[default: gem:p=3]",
        "[default: 32]",
        "Usage: lookalike index [OPTIONS] FOLDER...",
    ):
        assert opt in out, opt
    # A paragraph of the docstring stays one paragraph (no line broken mid-sentence).
    assert "an existing index keeps its settings and refuses different ones" in out
    out = run_cli("search", "--help", env={"COLUMNS": "200"}).stdout
    for opt in ("--min-score", "-k", "id:N", "--json", "[default: 10]", "QUERY"):
        assert opt in out, opt


def _commands() -> list[str]:
    from lookalike.cli import command

    return sorted(command().commands)  # every registered command, new ones included


COMMANDS = _commands()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_typing_noise_and_no_repository_paths(command):
    out = run_cli(command, "--help", env={"COLUMNS": "120"}).stdout
    assert "Usage: lookalike" in out
    for noise in ("<bool>", "<str>", "<int>", "<path>", "<list", "--k "):
        assert noise not in out, (noise, out)
    usage = next(line for line in out.splitlines() if "Usage: lookalike" in line)
    assert "{" not in usage, usage  # typer's "{dirs}..." for a required argument
    # a pip user has the package, not the repository's files
    for repo_file in (".md", "benchmarks/", "docs/", "tests/", "scripts/"):
        assert repo_file not in out, (repo_file, out)


def test_serve_port_0_prints_the_real_port(cli_index):
    import httpx

    index, _, _ = cli_index
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike", "serve", "--index", str(index), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("lookalike: serving "), line
        url = line.split(" on ", 1)[1].split()[0]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert port != 0
        response = None
        for _ in range(600):
            try:
                response = httpx.get(f"{url}api/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert response is not None and response.status_code == 200
        assert response.json()["images"] == len(LAYOUT)
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_script_without_a_main_guard_works(tmp_path, photo_folder):
    """The Python API in a plain script, no `if __name__ == "__main__":` (worker processes
    used to re-run such a script, which then failed on the index's lock)."""
    script = tmp_path / "index_my_photos.py"
    script.write_text(
        "from lookalike.engine import Index\n"
        f"idx = Index.open_or_create({str(tmp_path / 'idx')!r})\n"
        f"report = idx.sync([{str(photo_folder)!r}])\n"
        "print('indexed', report.added, len(idx))\n"
        "print('first hit', idx.search_id(1, 1)[0].id)\n"
        "idx.close()\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Locked" not in proc.stderr, proc.stderr
    assert proc.stdout.count("indexed") == 1, proc.stdout  # the script ran once
    assert f"indexed {len(LAYOUT)} {len(LAYOUT)}" in proc.stdout


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
