"""Multi-scale R-MAC end to end: `--scales` with `rmac:levels=L` indexes through the batched
pipeline, stores the sum over scales of the per-scale R-MAC vectors (L2-normalized), searches
with the same extraction, and is what `lookalike info` reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lookalike.edits import apply_edit
from lookalike.engine import Index
from lookalike.extract import Extractor
from lookalike.images import load_image
from lookalike.index.manifest import IndexSettings
from lookalike.pooling import l2n, pool

SETTINGS = IndexSettings(max_side=224, descriptor="rmac:levels=2", scales=(1.0, 0.707))
NAMES = ("chelsea", "coffee", "rocket", "astronaut")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("multiscale")
    for name in NAMES:
        photos[name].convert("RGB").save(root / f"{name}.jpg", quality=92)
    return root


def _by_hand(path) -> np.ndarray:
    """One forward pass per scale of the single-scale extractor, R-MAC pooled, summed."""
    single = Extractor(SETTINGS.model, SETTINGS.descriptor, SETTINGS.max_side, (1.0,))
    image = load_image(path, SETTINGS.max_side)
    total = 0
    for scale in SETTINGS.scales:
        w, h = image.size
        scaled = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        fmap, _ = single._forward(scaled)
        total = total + pool(single.spec, fmap)
    return l2n(np.asarray(total, dtype=np.float32))


def test_multiscale_rmac_index_and_search(folder, tmp_path, photos):
    with Index.create(tmp_path / "idx", SETTINGS) as idx:
        report = idx.sync([folder])
        assert report.added == len(NAMES) and not report.skipped
        info = idx.info()
        assert info["descriptor"] == "rmac:levels=2" and info["scales"] == [1.0, 0.707]
        # stored descriptors (float16 in the catalog) are the multi-scale sum
        for record in idx.catalog.records():
            stored = idx.catalog.descriptor(record.id)
            np.testing.assert_allclose(stored, _by_hand(record.path), atol=3e-3)
        # a cropped, recompressed copy of one photo finds it first
        query = tmp_path / "query.jpg"
        apply_edit("crop", photos["coffee"].convert("RGB"), seed=0).save(query, quality=60)
        hits = idx.search(query, k=2)
        assert os.path.basename(hits[0].path) == "coffee.jpg"
        assert hits[0].score > hits[1].score


def test_cli_scales_with_rmac(folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_INDEX"}
    idx = tmp_path / "cli-idx"
    args = ["--max-side", "224", "--descriptor", "rmac:levels=2", "--scales", "1,0.707"]
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", "index", str(folder), "--index", str(idx), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run(
        [sys.executable, "-m", "lookalike", "info", "--index", str(idx), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    info = json.loads(out.stdout)
    assert info["count"] == len(NAMES)
    assert info["scales"] == [1.0, 0.707] and info["descriptor"] == "rmac:levels=2"
