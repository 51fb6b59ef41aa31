"""The int8 backbone (static QDQ quantization calibrated on shipped photos): it classifies and
describes like fp32, and an index built with precision="int8" uses it for indexing and queries.
"""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.backbone import OnnxBackbone, onnx_path, preprocess
from lookalike.samples import sample_photos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backbones(lookalike_cache):
    return OnnxBackbone("lite0", threads=2), OnnxBackbone("lite0", threads=2, precision="int8")


def test_int8_graph_is_cached_under_its_own_key(backbones):
    _, int8 = backbones
    assert int8.path == onnx_path("lite0", precision="int8") != backbones[0].path
    assert int8.path.exists()
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format


def test_int8_classifies_and_describes_like_fp32(backbones):
    from lookalike.pooling import pool

    fp32, int8 = backbones
    photos = sample_photos(("coffee", "chelsea", "astronaut", "rocket"))
    cosines = []
    for name, image in photos.items():
        image.thumbnail((224, 224))
        x = preprocess(np.asarray(image))[None]
        (f32, l32), (f8, l8) = fp32.run(x), int8.run(x)
        if name == "coffee":
            assert int(np.argmax(l8)) == int(np.argmax(l32)) == 967  # espresso
        a, b = pool("gem:p=3", f32)[0], pool("gem:p=3", f8)[0]
        cosines.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert min(cosines) > 0.8 and np.mean(cosines) > 0.9, cosines


def test_an_int8_index_indexes_and_searches_with_int8(tmp_path, photo_folder_master):
    from lookalike.engine import Index
    from lookalike.errors import IndexMismatchError
    from lookalike.index.manifest import IndexSettings

    path = tmp_path / "idx"
    with Index.create(path, IndexSettings(max_side=224, precision="int8")) as idx:
        idx.sync([photo_folder_master])
        assert idx.extractor.backbone.precision == "int8"
        from PIL import Image

        query = tmp_path / "cat-crop.jpg"  # not in the index: an edited copy of one photo
        with Image.open(photo_folder_master / "chelsea.jpg") as im:
            w, h = im.size
            im.crop((0, 0, int(w * 0.85), h)).save(query, quality=80)
        hits = idx.search(query, k=1)
        assert hits[0].path.endswith("chelsea.jpg") and hits[0].score > 0.8, hits
    with Index.open(path, writable=True) as idx, pytest.raises(IndexMismatchError):
        idx.check_settings(precision="fp32")
