"""The bulk extraction pipeline: decoding in threads (or worker processes), shape buckets,
batched CNN runs.

Results must come out one per path, in input order, equal to describing each file on its own,
whatever the number of workers, the batch size or the waiting-room bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ImageError
from lookalike.images import iter_image_files, load_image, to_array
from lookalike.pipeline import Extracted, decode_file, extract_files, extract_one


@pytest.fixture(scope="module")
def mixed_paths(photo_folder_master, tmp_path_factory) -> list[str]:
    """The shipped photos (several shapes) plus a text file posing as a JPEG and a missing file,
    at known positions."""
    paths = [str(p) for p in iter_image_files(photo_folder_master)]
    extra = tmp_path_factory.mktemp("pipeline-extra")
    fake = extra / "not-really.jpg"
    fake.write_text("this is not an image")
    paths.insert(3, str(fake))
    paths.insert(9, str(extra / "missing.jpg"))
    # Two more photos of one odd shape, so that one bucket fills and the others are flushed.
    for i in range(2):
        p = extra / f"wide-{i}.jpg"
        Image.fromarray(np.full((40, 200, 3), 60 * i, np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def reference(mixed_paths, extractor) -> list[np.ndarray | str]:
    """Each file described on its own (the old one-at-a-time path)."""
    out: list[np.ndarray | str] = []
    for p in mixed_paths:
        try:
            out.append(extract_one(p, extractor).features.descriptor)
        except ImageError as exc:
            out.append(exc.reason)
    return out


def _check(results, paths, reference) -> None:
    assert len(results) == len(paths)
    for res, path, ref in zip(results, paths, reference, strict=True):
        assert res.path == path
        if isinstance(ref, str):
            assert isinstance(res, ImageError), path
            assert res.reason == ref
        else:
            assert isinstance(res, Extracted), (path, getattr(res, "reason", None))
            assert float(res.features.descriptor @ ref) > 0.9999, path
            assert res.features.logits.shape == (1000,)


@pytest.mark.parametrize(
    ("decode", "workers", "batch_size", "max_pending"),
    [
        ("threads", 1, 8, None),
        ("threads", 2, 3, 3),
        ("processes", 1, 8, None),
        ("processes", 2, 3, 3),
        ("threads", 0, 4, 5),
        ("threads", 0, 1, 1),
    ],
)
def test_results_in_order_and_equal_to_one_at_a_time(
    mixed_paths, reference, extractor, decode, workers, batch_size, max_pending
):
    results = list(
        extract_files(
            mixed_paths,
            extractor,
            workers=workers,
            batch_size=batch_size,
            max_pending=max_pending,
            decode=decode,
        )
    )
    _check(results, mixed_paths, reference)
    reasons = [r.reason for r in results if isinstance(r, ImageError)]
    assert reasons == [
        "not an image (cannot identify format)",
        "file not found (removed during indexing?)",
    ]


def test_file_facts_match_the_file(mixed_paths, extractor):
    path = mixed_paths[0]
    (res,) = list(extract_files([path], extractor, workers=1))
    with Image.open(path) as im:
        assert (res.width, res.height) == im.size
    assert res.size == Path(path).stat().st_size
    assert len(res.hash) == 32


def test_empty_input(extractor):
    assert list(extract_files([], extractor, workers=1)) == []


@pytest.mark.parametrize("decode", ["threads", "processes"])
def test_stopping_early_shuts_the_workers_down(mixed_paths, extractor, decode):
    import threading

    gen = extract_files(mixed_paths * 2, extractor, workers=1, batch_size=2, decode=decode)
    first = next(gen)
    assert first.path == mixed_paths[0]
    gen.close()  # must not hang or leave the pool running
    assert not [t for t in threading.enumerate() if t.name.startswith("lookalike-decode")]


def test_unknown_decoder_is_refused(mixed_paths, extractor):
    with pytest.raises(ValueError, match="decode must be one of"):
        list(extract_files(mixed_paths, extractor, decode="fibres"))


def test_a_script_without_main_guard_indexes_with_the_default_decoder(tmp_path, mixed_paths):
    """Decoding threads need no `if __name__ == "__main__"` guard: a plain script (and one fed
    on stdin) runs the pipeline with workers and gets every result."""
    photos = [p for p in mixed_paths if Path(p).exists()][:20]
    script = tmp_path / "plain.py"
    script.write_text(
        "import json, sys\n"
        "from lookalike.extract import Extractor\n"
        "from lookalike.pipeline import Extracted, extract_files\n"
        f"paths = {photos!r}\n"
        "out = list(extract_files(paths, Extractor(max_side=224), workers=1))\n"
        "print(json.dumps([isinstance(r, Extracted) for r in out]))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    flags = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(flags) == len(photos) and sum(flags) >= len(photos) - 1  # the fake JPEG fails


def test_describe_batch_matches_describe_image(photos, extractor):
    images = [to_array(load_image_from(photos["chelsea"], extractor.max_side))]
    images.append(np.ascontiguousarray(images[0][:, ::-1]))  # same shape, other content
    batch = extractor.describe_batch(images)
    for arr, feats in zip(images, batch, strict=True):
        single = extractor.describe_image(Image.fromarray(arr))
        assert float(single.descriptor @ feats.descriptor) > 0.9999
        np.testing.assert_allclose(single.logits, feats.logits, atol=1e-3)
    assert float(batch[0].descriptor @ batch[1].descriptor) < 0.9999  # not one result copied


def test_describe_batch_rejects_mixed_shapes(extractor):
    a = np.zeros((32, 64, 3), np.uint8)
    b = np.zeros((64, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="one size"):
        extractor.describe_batch([a, b])


def load_image_from(image: Image.Image, max_side: int) -> Image.Image:
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


def test_decoding_side_never_imports_torch(mixed_paths):
    """What a decoding worker runs (import lookalike.pipeline, decode_file) loads neither torch
    nor onnxruntime: workers stay small and start fast."""
    code = (
        "import sys\n"
        "from lookalike.pipeline import decode_file\n"
        f"d = decode_file({mixed_paths[0]!r}, 224)\n"
        "assert d.pixels.dtype.name == 'uint8' and max(d.pixels.shape[:2]) <= 224\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'faiss') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_decode_file_equals_load_image(mixed_paths):
    d = decode_file(mixed_paths[0], 224)
    np.testing.assert_array_equal(d.pixels, to_array(load_image(mixed_paths[0], 224)))
