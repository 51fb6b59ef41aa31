"""The duplicate finder on real photos with the real CNN, FAISS and SQLite: exact, near (verified)
and similar groups, no chaining, the suggested keeper, and the same JSON from Python and the
CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from lookalike.engine import Index


def _shot(image: Image.Image, offset: float, light: float) -> Image.Image:
    """A 70 % window of `image` starting `offset` of the width from the left, with its own
    brightness: one frame of a panning burst."""
    w, h = image.size
    cw, ch = int(0.7 * w), int(0.8 * h)
    x0 = int(offset * w)
    frame = image.crop((x0, (h - ch) // 2, x0 + cw, (h - ch) // 2 + ch))
    return ImageEnhance.Brightness(frame).enhance(light)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    from skimage import data

    from lookalike.samples import _to_rgb, sample_photos

    out = tmp_path_factory.mktemp("dupes_photos")
    photos = sample_photos(("coffee", "chelsea", "astronaut", "rocket"))
    coffee, chelsea = photos["coffee"], photos["chelsea"]
    coffee.save(out / "coffee.jpg", quality=95)
    # the case: half size, JPEG quality 40
    coffee.resize((300, 200), Image.Resampling.BILINEAR).save(out / "coffee_half.jpg", quality=40)
    chelsea.save(out / "chelsea.jpg", quality=92)
    shutil.copy(out / "chelsea.jpg", out / "chelsea_copy.jpg")
    old = 1_600_000_000
    os.utime(out / "chelsea_copy.jpg", (old, old))  # the older of two identical files
    ImageOps.expand(chelsea, border=30, fill=(200, 30, 30)).save(out / "chelsea_border.jpg")
    ImageOps.mirror(chelsea).save(out / "chelsea_flip.jpg", quality=92)
    left, right, _ = data.stereo_motorcycle()
    _to_rgb(left).save(out / "motorcycle_left.jpg", quality=92)
    _to_rgb(right).save(out / "motorcycle_right.jpg", quality=92)
    # a chain of three shots: 1 and 3 share less than half their view
    astronaut = photos["astronaut"]
    for i, (offset, light) in enumerate([(0.0, 1.0), (0.15, 1.15), (0.3, 0.9)], 1):
        _shot(astronaut, offset, light).save(out / f"astronaut_shot{i}.jpg", quality=92)
    photos["rocket"].save(out / "rocket.jpg", quality=92)
    return out


@pytest.fixture(scope="module")
def index(photo_dir, tmp_path_factory):
    idx = Index.create(tmp_path_factory.mktemp("dupes_idx") / "idx")
    idx.sync([photo_dir])
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def groups(index):
    return index.duplicates(similar=True)


def _names(group) -> set[str]:
    return {Path(p).stem for p in group.paths}


def _of(groups, kind):
    return [g for g in groups if g.kind == kind]


def test_exact_copies_keep_the_oldest(groups):
    exact = _of(groups, "exact")
    assert [_names(g) for g in exact] == [{"chelsea", "chelsea_copy"}]
    assert Path(exact[0].keep).stem == "chelsea_copy"
    assert "oldest" in exact[0].keep_reason


def test_downscaled_recompressed_copy_is_near_and_the_larger_is_kept(groups):
    coffee = [g for g in _of(groups, "near") if "coffee" in _names(g)]
    assert len(coffee) == 1 and _names(coffee[0]) == {"coffee", "coffee_half"}
    assert Path(coffee[0].keep).stem == "coffee"
    assert coffee[0].keep_reason == "largest resolution (600x400)"


def test_border_and_flip_are_near_through_geometry(groups):
    chelsea = [g for g in _of(groups, "near") if _names(g) & {"chelsea_border", "chelsea_flip"}]
    assert len(chelsea) == 1
    names = _names(chelsea[0])
    assert {"chelsea_border", "chelsea_flip"} <= names
    assert len(names & {"chelsea", "chelsea_copy"}) == 1  # exact copies appear once
    # the bordered copy has the most pixels: it is the suggested keeper
    assert Path(chelsea[0].keep).stem == "chelsea_border"
    evidence = {Path(m.path).stem: m.evidence for m in chelsea[0].members}
    assert "mirrored" in evidence["chelsea_flip"]


def test_another_view_is_not_near(groups):
    for g in _of(groups, "near") + _of(groups, "exact"):
        assert not {"motorcycle_left", "motorcycle_right"} <= _names(g), g.paths


def test_another_view_is_similar(groups):
    assert any({"motorcycle_left", "motorcycle_right"} <= _names(g) for g in _of(groups, "similar"))


def test_a_chain_of_shots_is_not_one_near_group(groups, index):
    shots = {f"astronaut_shot{i}" for i in (1, 2, 3)}
    for g in _of(groups, "near"):
        assert len(_names(g) & shots) <= 1, g.paths
    # similar groups do not chain either: every member is within the threshold of the
    # group's representative
    from lookalike.dupes import CANDIDATE_MIN, DEFAULT_SIMILAR

    for g in _of(groups, "similar") + _of(groups, "near"):
        got, raw = index.catalog.descriptors(list(g.ids))
        vecs = index.transform(raw[[list(got).index(i) for i in g.ids]])
        rep = vecs[list(g.paths).index(g.representative)]
        floor = DEFAULT_SIMILAR if g.kind == "similar" else CANDIDATE_MIN
        assert np.all(vecs @ rep >= floor - 1e-4), g.paths


def test_nothing_else_is_grouped(groups):
    for g in groups:
        assert "rocket" not in _names(g)
    kinds = {g.kind for g in groups}
    assert kinds == {"exact", "near", "similar"}


def test_without_similar_only_exact_and_near(index, groups):
    plain = index.duplicates()
    assert {g.kind for g in plain} == {"exact", "near"}
    assert [g.to_dict() for g in plain] == [
        g.to_dict() for g in groups if g.kind in ("exact", "near")
    ]


def test_json_shape_and_cli_agree(index, groups):
    exe = [sys.executable, "-m", "lookalike"]
    out = subprocess.run(
        [*exe, "dupes", "--index", str(index.path), "--similar", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data == {"groups": [g.to_dict() for g in groups]}
    for g in data["groups"]:
        assert g["kind"] in ("exact", "near", "similar")
        assert g["keep"] == g["paths"][0] and len(g["paths"]) == len(g["scores"]) >= 2
        assert all(0.0 <= s <= 1.0 for s in g["scores"])
        assert {"width", "height", "bytes", "evidence"} <= set(g["members"][0])
    text = subprocess.run(
        [*exe, "dupes", "--index", str(index.path)], capture_output=True, text=True, check=True
    ).stdout
    assert "near" in text and "keep" in text and "similar" not in text
