"""The whitening self-check inside an index: it runs on the collection's own images (edited
copies of held-out ones), its verdict decides, and the manifest records it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lookalike.whitening_check as wc
from lookalike.edits import apply_edit
from lookalike.engine import Index
from lookalike.index.manifest import IndexSettings, read_manifest

SIDE = 128


def test_the_index_decides_whitening_by_the_self_check(tmp_path, photos, monkeypatch):
    # Thresholds scaled down so that a collection of 84 small real images is checked.
    monkeypatch.setattr(wc, "min_check_images", lambda out_dim: 60)
    monkeypatch.setattr(wc, "held_out_count", lambda n: 24)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (name, photo) in enumerate(sorted(photos.items())):
        image = photo.resize((SIDE, SIDE * 3 // 4))
        image.save(folder / f"{name}.jpg")
        for j, edit in enumerate(("crop", "colour", "flip")):
            apply_edit(edit, image, 10 * i + j).save(folder / f"{name}-{edit}.jpg")
    with Index.create(tmp_path / "idx", IndexSettings(max_side=SIDE, whiten_dim=16)) as idx:
        idx.sync([folder])
        verdict = idx.manifest.whitening_check
        assert verdict is not None and verdict["method"] == "self-check"
        assert verdict["held_out"] >= 12 and verdict["n"] == len(idx)
        expected = verdict["mrr_whitened"] >= verdict["mrr_raw"] and verdict["overlap"] >= 0.5
        assert verdict["use"] == expected
        assert (idx.manifest.whitening is not None) == verdict["use"]
        assert (tmp_path / "idx" / "whitening.npz").exists() == verdict["use"]
        assert 0 < verdict["mrr_raw"] <= 1 and 0 <= verdict["overlap"] <= 1
        hits = idx.search(folder / "chelsea-crop.jpg", k=1)
        assert Path(hits[0].path).name.startswith("chelsea")
    assert read_manifest(tmp_path / "idx").whitening_check == verdict


def test_precomputed_vectors_without_files_fall_back_to_the_size_rule(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 32)).astype(np.float32)
    with Index.create(tmp_path / "idx", IndexSettings(whiten_dim=16)) as idx:
        idx.add_vectors([f"/nowhere/{i}.jpg" for i in range(600)], x)
        verdict = idx.manifest.whitening_check
        assert verdict["method"] == "size rule" and verdict["use"] is False
