"""Evaluation end to end on benchmarks built from the shipped photos: make-benchmark, the
harness with QE / DBA / re-ranking, the report, and the eval CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.evaluation.datasets import load_benchmark
from lookalike.evaluation.harness import build_index, evaluate, score
from lookalike.evaluation.synthetic import make_benchmark
from lookalike.index.manifest import IndexSettings

NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera")
EDITS = ("crop", "jpeg", "flip", "in_canvas")
SIDE = 160


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("bench") / "groups"
    info = make_benchmark({n: photos[n] for n in NAMES}, root, edits=EDITS, max_side=SIDE)
    assert info["images"] == len(NAMES) * (len(EDITS) + 1)
    return root


@pytest.fixture(scope="module")
def settings() -> IndexSettings:
    return IndexSettings(max_side=SIDE)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_make_benchmark_is_reproducible_and_seeded(tmp_path, photos, bench_root):
    again = tmp_path / "again"
    make_benchmark({n: photos[n] for n in NAMES}, again, edits=EDITS, max_side=SIDE)
    assert _digest(again) == _digest(bench_root)
    other = tmp_path / "other"
    make_benchmark({n: photos[n] for n in NAMES}, other, edits=EDITS, max_side=SIDE, seed=1)
    assert _digest(other) != _digest(bench_root)
    assert sorted(p.name for p in (bench_root / "chelsea").iterdir()) == sorted(
        [f"{e}.jpg" for e in EDITS] + ["original.jpg"]
    )


def test_evaluate_groups_and_postprocessing(bench_root, settings, tmp_path):
    bench = load_benchmark("groups", bench_root)
    base = evaluate(bench, settings)
    s = base.summary()
    assert s["queries"] == s["database"] == 25
    assert s["seconds"] > 0
    # CNN descriptors find most edited copies of 5 distinct photos; chance mAP is about 0.2
    assert s["map"] > 0.7 and s["top1"] > 0.7
    # build once, score many ways
    idx, failed = build_index(bench, tmp_path / "idx", settings)
    with idx:
        assert not failed
        again = score(bench, idx)
        qe = score(bench, idx, expand="alpha-qe:n=2,alpha=3")
        dba = score(bench, idx, dba="aqe:n=1")
    assert again.map == pytest.approx(base.map)
    for r in (qe, dba):
        assert 0.0 < r.map <= 1.0
    assert qe.summary()["expand"] == "alpha-qe:alpha=3,n=2"
    assert dba.summary()["dba"] == "aqe:n=1"


def test_rerank_by_localization_keeps_the_same_candidates(bench_root, settings, tmp_path):
    # a subset keeps this quick: two groups
    sub = tmp_path / "sub"
    for g in ("chelsea", "coffee"):
        shutil.copytree(bench_root / g, sub / g)
    bench = load_benchmark("groups", sub)
    plain = evaluate(bench, settings)
    rer = evaluate(bench, settings, rerank=3)
    assert rer.rerank == 3
    for a, b in zip(plain.queries, rer.queries, strict=True):
        assert set(a.top[:3]) == set(b.top[:3])  # re-ranking only re-orders the top 3
        assert a.top[3:] == b.top[3:]


def test_ukbench_layout_ns_score(tmp_path, bench_root, settings):
    # four images per object, named as UKBench names them
    root = tmp_path / "ukbench"
    root.mkdir()
    n = 0
    for g in NAMES:
        for name in ("original", "crop", "jpeg", "flip"):
            shutil.copy(bench_root / g / f"{name}.jpg", root / f"ukbench{n:05d}.jpg")
            n += 1
    r = evaluate(load_benchmark("ukbench", root), settings)
    assert r.ns is not None and 3.0 <= r.ns <= 4.0  # the query itself counts: at least 1
    assert r.summary()["ns_score"] == round(r.ns, 4)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=600,
    )


def test_cli_make_benchmark_eval_json_and_report(tmp_path, photos):
    src = tmp_path / "src"
    src.mkdir()
    for n in ("chelsea", "coffee", "rocket"):
        photos[n].save(src / f"{n}.png")
    out = tmp_path / "copies"
    r = _cli(
        "make-benchmark",
        str(src),
        str(out),
        "--layout",
        "copydays",
        "--edits",
        "crop,jpeg",
        "--max-side",
        "200",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["images"] == 9
    distract = tmp_path / "distract"
    distract.mkdir()
    photos["brick"].save(distract / "brick.jpg")
    report = tmp_path / "report"
    r = _cli(
        "eval",
        "copydays",
        str(out),
        "--max-side",
        str(SIDE),
        "--distractors",
        str(distract),
        "--expand",
        "aqe:n=1",
        "--report",
        str(report),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["queries"] == 6 and s["database"] == 4 and s["distractors"] == 1
    assert 0 < s["map"] <= 1 and s["expand"] == "aqe:n=1"
    for name in ("README.md", "index.html", "precision_recall.png", "first_correct_rank.png"):
        assert (report / name).stat().st_size > 0
    page = (report / "index.html").read_text()
    assert page.count("class='cell q'") == 6 and "(right)" in page
    assert (report / "precision_recall.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_eval_bad_input_is_a_clear_error(tmp_path):
    r = _cli("eval", "ukbench", str(tmp_path))
    assert r.returncode == 2 and "no ukbench images" in r.stderr
    r = _cli("eval", "groups", str(tmp_path), "--expand", "magic")
    assert r.returncode == 2 and "unknown kind 'magic'" in r.stderr
