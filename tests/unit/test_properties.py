"""Property-based tests (Hypothesis): the image loader on random bytes, truncations and headers
that lie about their size; every request model and request parser of the HTTP API on arbitrary
JSON and text; catalog paths on arbitrary (non-UTF-8) file names. Each property holds for every
input: a typed error or a valid value, never another exception. Examples are bounded (seeded,
derandomized) so the file runs in seconds."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from lookalike.errors import ConfigError, ImageError
from lookalike.images import load_image
from lookalike.index.catalog import Catalog, NewImage
from lookalike.server.models import MAX_ID, SearchById, SearchByText
from lookalike.server.problems import ApiError
from lookalike.server.routes import (
    MAX_JSON_DEPTH,
    _parse_box,
    _parse_int,
    json_depth_ok,
    parse_json_body,
)
from lookalike.server.settings import MIN_TOKEN_LENGTH, ServerSettings

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MAX_PIXELS = 2_000_000


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


SAMPLES = {fmt: _encoded(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")}


def _load(data: bytes, suffix: str = ".img") -> Image.Image | ImageError:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(data)
    try:
        return load_image(fh.name, 224, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        return exc
    finally:
        os.unlink(fh.name)


def _assert_image_or_error(result: Image.Image | ImageError) -> None:
    if isinstance(result, ImageError):
        assert result.reason and isinstance(result.reason, str)
    else:
        assert result.mode == "RGB" and max(result.size) <= 224 and min(result.size) >= 1


# -- the image loader -------------------------------------------------------------------------


@BOUNDED
@given(st.binary(max_size=4096))
def test_random_bytes_give_an_image_or_an_image_error(data: bytes) -> None:
    _assert_image_or_error(_load(data))


@BOUNDED
@given(st.sampled_from(sorted(SAMPLES)), st.floats(0.0, 1.0))
def test_truncated_images_give_an_image_or_an_image_error(fmt: str, keep: float) -> None:
    data = SAMPLES[fmt]
    _assert_image_or_error(_load(data[: int(len(data) * keep)]))


@BOUNDED
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.integers(0, 4000),
    st.binary(min_size=1, max_size=16),
)
def test_corrupted_bytes_give_an_image_or_an_image_error(fmt: str, at: int, junk: bytes) -> None:
    data = bytearray(SAMPLES[fmt])
    at %= len(data)
    data[at : at + len(junk)] = junk
    _assert_image_or_error(_load(bytes(data)))


def _png(width: int, height: int, depth: int, color: int, payload: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(payload))
        + chunk(b"IEND", b"")
    )


@BOUNDED
@given(
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1),
    st.sampled_from([(8, 0), (8, 2), (16, 0), (8, 6), (1, 0)]),
    st.binary(max_size=2048),
)
def test_headers_that_lie_about_the_size_never_decode_past_the_pixel_limit(
    width: int, height: int, mode: tuple[int, int], payload: bytes
) -> None:
    result = _load(_png(width, height, mode[0], mode[1], payload), ".png")
    _assert_image_or_error(result)
    if width * height > MAX_PIXELS:
        assert isinstance(result, ImageError) and "too large" in result.reason


# -- request models and parsers ---------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
SEARCH_KEYS = st.sampled_from(["id", "k", "box", "localize", "text", "extra"])
OBJECTS = st.dictionaries(SEARCH_KEYS, JSON | st.integers(-5, 2**64), max_size=5)


@BOUNDED
@given(OBJECTS)
def test_search_by_id_accepts_only_strict_valid_bodies(data: dict) -> None:
    try:
        body = SearchById.model_validate(data)
    except ValidationError:
        return
    assert type(data["id"]) is int and 1 <= body.id <= MAX_ID
    assert set(data) <= {"id", "k", "box", "localize"}
    if body.k is not None:
        assert type(data["k"]) is int and body.k >= 1
    if body.box is not None:
        assert len(body.box) == 4 and all(math.isfinite(v) for v in body.box)
    assert type(data.get("localize", False)) is bool


@BOUNDED
@given(OBJECTS)
def test_search_by_text_accepts_only_strict_valid_bodies(data: dict) -> None:
    try:
        body = SearchByText.model_validate(data)
    except ValidationError:
        return
    assert isinstance(data["text"], str) and len(body.text) <= 200
    assert set(data) <= {"text", "k"}
    if body.k is not None:
        assert type(data["k"]) is int and body.k >= 1


@BOUNDED
@given(st.binary(max_size=2048) | JSON.map(lambda v: json.dumps(v).encode()))
def test_json_bodies_parse_or_give_a_client_error(raw: bytes) -> None:
    try:
        parse_json_body(raw)
    except ApiError as exc:
        assert exc.status in (413, 422)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@BOUNDED
@given(JSON, st.integers(1, 40))
def test_the_depth_scan_agrees_with_the_parsed_depth(value: object, wrap: int) -> None:
    for _ in range(wrap % 25):
        value = [value]
    raw = json.dumps(value).encode()
    assert json_depth_ok(raw, MAX_JSON_DEPTH) == (_depth(value) <= MAX_JSON_DEPTH)


@BOUNDED
@given(
    st.text(max_size=60)
    | st.lists(st.floats() | st.integers(), max_size=6).map(lambda v: ",".join(map(str, v)))
)
def test_form_boxes_are_four_finite_numbers_or_422(text: str) -> None:
    try:
        box = _parse_box(text)
    except ApiError as exc:
        assert exc.status == 422 and exc.message.startswith("box")
        return
    assert box is None or (len(box) == 4 and all(math.isfinite(v) for v in box))


@BOUNDED
@given(st.text(max_size=30) | st.integers().map(str))
def test_form_integers_are_integers_or_422(text: str) -> None:
    try:
        value = _parse_int("k", text)
    except ApiError as exc:
        assert exc.status == 422
        return
    assert value is None or (type(value) is int and value == int(text.strip()))


@BOUNDED
@given(st.text(max_size=40))
def test_only_strong_tokens_are_accepted(token: str) -> None:
    try:
        ServerSettings(host="0.0.0.0", token=token).check()
    except ConfigError:
        return
    assert len(token) >= MIN_TOKEN_LENGTH
    assert token.strip() == token and not any(c.isspace() for c in token)


# -- catalog paths ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    with Catalog(tmp_path_factory.mktemp("props") / "c.sqlite") as cat:
        yield cat


@BOUNDED
@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b and b"/" not in b))
def test_any_file_name_round_trips_through_the_catalog(catalog, name: bytes) -> None:
    path = os.fsdecode(b"/photos/" + name + b".jpg")
    (image_id,) = catalog.write_batch(
        add=[NewImage(path, 1, 1, "h", 1, 1, np.zeros(4, np.float32))]
    )
    assert catalog.get(image_id).path == path
    assert catalog.find_path(path).id == image_id
    assert path in catalog.file_states()
    assert Path(path).name.encode("utf-8", "surrogateescape") == name + b".jpg"
    catalog.write_batch(remove_ids=[image_id])
