"""Region queries, query expansion, localization and re-ranking through the Python API and
the CLI, on the shared index of the shipped photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from lookalike.engine import Index
from lookalike.errors import ConfigError


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory, photos):
    """chelsea on the left, coffee on the right; returns (path, width of the left part)."""
    left, right = photos["chelsea"], photos["coffee"]
    h = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + right.width, h), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    path = tmp_path_factory.mktemp("query") / "both.jpg"
    canvas.save(path, quality=92)
    return path, left.width, canvas.size


def _name(hit) -> str:
    return os.path.basename(hit.path)


def test_region_query_searches_only_the_box(photo_index, side_by_side):
    path, split, (w, h) = side_by_side
    with Index.open(photo_index) as idx:
        left = idx.search(path, 1, box=(0, 0, split, h))
        right = idx.search(path, 1, box=(split, 0, w, h))
    assert _name(left[0]) == "chelsea.jpg"
    assert _name(right[0]) == "coffee.png"


def test_cli_search_box(photo_index, side_by_side):
    path, split, (w, h) = side_by_side
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    cmd = [sys.executable, "-m", "lookalike", "search", str(path), "-i", str(photo_index)]
    r = subprocess.run(
        [*cmd, "--box", f"{split},0,{w},{h}", "-k", "2", "--localize", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert os.path.basename(hits[0]["path"]) == "coffee.png"
    assert all(len(hit["box"]) == 4 for hit in hits)
    bad = subprocess.run([*cmd, "--box", "5,5,1,1"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "x1 must exceed x0" in bad.stderr


def test_localization_finds_the_cropped_part(photo_index, photos, tmp_path):
    # the right 45 % of chelsea: the box found in chelsea.jpg must lie on its right side
    cat = photos["chelsea"]
    w, h = cat.size
    crop = cat.crop((int(0.55 * w), 0, w, h)).resize((int(0.45 * w * 2), h * 2))
    query = tmp_path / "right-part.jpg"
    crop.save(query, quality=92)
    with Index.open(photo_index) as idx:
        hits = idx.search(query, 3, localize=True)
    (hit,) = [x for x in hits if _name(x) == "chelsea.jpg"]
    x0, y0, x1, y1 = hit.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x0 + x1) / 2 > 0.55 * w  # centre of the box in the right part


def test_expand_and_rerank_api(photo_index, photos, tmp_path):
    query = tmp_path / "cat.jpg"
    photos["chelsea"].crop((20, 20, 220, 180)).save(query, quality=60)
    with Index.open(photo_index) as idx:
        plain = idx.search(query, 5)
        expanded = idx.search(query, 5, expand="alpha-qe:n=2,alpha=3")
        reranked = idx.search(query, 5, rerank=True)
        by_id = idx.search_id(plain[0].id, 3, expand="aqe:n=1")
        with pytest.raises(ConfigError, match="query expansion"):
            idx.search(query, 5, expand="aqe:n=-1")
    assert _name(plain[0]) == _name(expanded[0]) == "chelsea.jpg"
    assert {h.id for h in reranked} == {h.id for h in plain}
    scores = [h.score for h in reranked]
    assert scores == sorted(scores, reverse=True) and all(h.box for h in reranked)
    assert plain[0].id not in {h.id for h in by_id}
