"""Image loading: formats, modes, orientation, draft decoding, resizing, and every failure path.

All test images are made on the fly in tmp_path.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lookalike.errors import ConfigError, ImageError
from lookalike.images import (
    IMAGE_EXTENSIONS,
    decode_image,
    image_size,
    iter_image_files,
    load_image,
    to_array,
)

RED = (255, 0, 0)


def _rgb(path: Path, **kw) -> np.ndarray:
    return np.asarray(load_image(path, **kw), dtype=np.int32)


def _png_with_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR claims width x height (the pixel data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- formats


FORMATS = [
    ("jpg", {}),
    ("jpeg", {}),
    ("jfif", {"format": "JPEG"}),
    ("png", {}),
    ("gif", {}),
    ("bmp", {}),
    ("tif", {}),
    ("tiff", {"compression": "tiff_deflate"}),
    ("ppm", {}),
    ("webp", {"lossless": True}),
]


@pytest.mark.parametrize(("ext", "save_kw"), FORMATS)
def test_formats_load_as_rgb(tmp_path, ext, save_kw):
    path = tmp_path / f"x.{ext}"
    Image.new("RGB", (64, 48), (200, 40, 30)).save(path, **save_kw)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (64, 48)
    np.testing.assert_allclose(to_array(img).reshape(-1, 3).mean(axis=0), (200, 40, 30), atol=6)


def test_pgm_and_pbm(tmp_path):
    Image.new("L", (10, 6), 77).save(tmp_path / "g.pgm")
    Image.new("1", (10, 6), 1).save(tmp_path / "b.pbm")
    assert np.all(_rgb(tmp_path / "g.pgm") == 77)
    assert np.all(_rgb(tmp_path / "b.pbm") == 255)


def test_gif_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (20, 20), c) for c in (RED, (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    arr = _rgb(path)
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50


# ----------------------------------------------------------------------------- modes


def test_mode_l(tmp_path):
    Image.new("L", (8, 8), 90).save(tmp_path / "l.png")
    assert np.all(_rgb(tmp_path / "l.png") == 90)


def test_palette_with_transparency_goes_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    arr = _rgb(path)
    assert tuple(arr[0, 0]) == (0, 200, 0)
    assert tuple(arr[3, 3]) == (255, 255, 255)  # transparent black -> white, not black


def test_gif_transparency_goes_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((1, 1), 1)
    path = tmp_path / "t.gif"
    img.save(path, transparency=0)
    arr = _rgb(path)
    assert tuple(arr[1, 1]) == (0, 0, 255) and tuple(arr[0, 0]) == (255, 255, 255)


def test_la_and_rgba_composited_on_white(tmp_path):
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((0, 0), (0, 255))
    la.save(tmp_path / "la.png")
    arr = _rgb(tmp_path / "la.png")
    assert tuple(arr[0, 0]) == (0, 0, 0) and tuple(arr[2, 2]) == (255, 255, 255)

    Image.new("RGBA", (4, 4), (255, 0, 0, 128)).save(tmp_path / "rgba.png")
    r, g, b = _rgb(tmp_path / "rgba.png")[1, 1]
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk(tmp_path, ext):
    path = tmp_path / f"cmyk.{ext}"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)
    assert Image.open(path).mode == "CMYK"
    np.testing.assert_allclose(_rgb(path).reshape(-1, 3).mean(axis=0), RED, atol=8)


def test_16bit_png_scaled_correctly(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    arr = _rgb(path)
    assert arr.shape == (1, 4, 3)
    np.testing.assert_array_equal(arr[0, :, 0], [0, 128, 255, 4])  # 1000/257 = 3.9 -> 4
    assert np.all(arr[..., 0] == arr[..., 2])


def test_16bit_tiff_and_mode_i(tmp_path):
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.tif")
    np.testing.assert_array_equal(_rgb(tmp_path / "g16.tif")[0, :, 1], [0, 128, 255])
    img_i = Image.fromarray(values.astype(np.int32))
    assert img_i.mode == "I"
    img_i.save(tmp_path / "i32.tif")
    np.testing.assert_array_equal(_rgb(tmp_path / "i32.tif")[0, :, 1], [0, 128, 255])


def test_float_mode(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(_rgb(tmp_path / "f.tif")[0, :, 0], [0, 128, 255])
    wide = np.array([[-10.0, 0.0, 990.0]], dtype=np.float32)  # stretched min..max
    Image.fromarray(wide).save(tmp_path / "f2.tif")
    np.testing.assert_array_equal(_rgb(tmp_path / "f2.tif")[0, :, 0], [0, 3, 255])


# ----------------------------------------------------------------------------- orientation


def _rotated_jpeg(path: Path, orientation: int) -> Path:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), quality=95)
    return path


def test_exif_orientation_applied(tmp_path):
    path = _rotated_jpeg(tmp_path / "rot.jpg", 6)  # 6: rotate 90 degrees clockwise to display
    assert Image.open(path).size == (40, 20)
    assert image_size(path) == (20, 40)
    img = load_image(path)
    assert img.size == (20, 40)
    arr = to_array(img).astype(int)
    assert arr[5, 10, 0] > 200 and arr[5, 10, 2] < 60  # top is the old left: red
    assert arr[35, 10, 2] > 200 and arr[35, 10, 0] < 60  # bottom is blue


def test_exif_orientation_without_swap(tmp_path):
    path = _rotated_jpeg(tmp_path / "rot3.jpg", 3)  # 180 degrees
    assert image_size(path) == (40, 20)
    arr = _rgb(path)
    assert arr[10, 35, 0] > 200  # red moved to the right


# ----------------------------------------------------------------------------- size handling


def test_big_jpeg_uses_draft(tmp_path):
    path = tmp_path / "big.jpg"
    img = Image.new("RGB", (4000, 3000), (120, 130, 140))
    img.paste((10, 20, 30), (0, 0, 2000, 3000))
    img.save(path, quality=85)
    decoded = decode_image(path, max_side=480)
    assert decoded.size == (500, 375)  # DCT-scaled by 1/8 before any resize
    loaded = load_image(path, max_side=480)
    assert loaded.size == (480, 360)
    arr = to_array(loaded).astype(int)
    assert abs(arr[180, 100, 0] - 10) < 8 and abs(arr[180, 400, 0] - 120) < 8
    # A larger target gets a milder DCT scale (1/4: 1000x750 >= 800).
    assert decode_image(path, max_side=800).size == (1000, 750)
    # Without max_side nothing is reduced.
    assert decode_image(path, max_side=None).size == (4000, 3000)


def test_png_not_drafted_and_resized_keeping_aspect(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (1000, 400), (1, 2, 3)).save(path)
    assert decode_image(path, max_side=480).size == (1000, 400)
    assert load_image(path, max_side=480).size == (480, 192)
    assert load_image(path, max_side=None).size == (1000, 400)
    tall = tmp_path / "tall.png"
    Image.new("RGB", (300, 900), (1, 2, 3)).save(tall)
    assert load_image(tall, max_side=300).size == (100, 300)


def test_never_upscales(tmp_path):
    path = tmp_path / "small.jpg"
    Image.new("RGB", (100, 50), (9, 9, 9)).save(path)
    assert load_image(path, max_side=480).size == (100, 50)


def test_bad_max_side(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ConfigError):
        load_image(path, max_side=0)


# ----------------------------------------------------------------------------- failures


def _reason(path: Path, **kw) -> str:
    with pytest.raises(ImageError) as info:
        load_image(path, **kw)
    assert info.value.path == str(path)
    return info.value.reason


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.jpg") == "file not found"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert _reason(path) == "empty file"


def test_directory(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    assert "not a file" in _reason(tmp_path / "d.jpg")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("this is not an image\n" * 20)
    assert _reason(path) == "not an image (cannot identify format)"
    with pytest.raises(ImageError, match="not an image"):
        image_size(path)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_file(tmp_path, ext):
    rng = np.random.default_rng(0)
    full = tmp_path / f"full.{ext}"
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    assert _reason(cut) == "truncated or corrupt image data"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # detected without the global switch
    assert load_image(full).size == (128, 128)


def _reason_as_unprivileged_user(path) -> str:
    """_reason(path) computed in a forked child that dropped root (root reads chmod-000 files)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become 'nobody', report the reason, exit without running pytest code
        code = 0
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_image(path)
                reason = "ok"
            except ImageError as exc:
                reason = exc.reason
            os.write(write_fd, reason.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        reason = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return reason


def test_permission_denied(tmp_path):
    # A folder every user can enter (pytest's own tmp root is private to root).
    folder = Path(tempfile.mkdtemp(prefix="lookalike-perm-"))
    folder.chmod(0o755)
    path = folder / "locked.png"
    control = folder / "open.png"
    Image.new("RGB", (4, 4)).save(path)
    Image.new("RGB", (4, 4)).save(control)
    control.chmod(0o644)
    path.chmod(0)
    try:
        if os.geteuid() == 0:
            assert _reason_as_unprivileged_user(path) == "permission denied"
            assert _reason_as_unprivileged_user(control) == "ok"  # so the denial is the file's
        else:
            assert _reason(path) == "permission denied"
    finally:
        shutil.rmtree(folder)


def test_permission_denied_mapping(tmp_path, monkeypatch):
    # Runs even as root: simulate the open() failure that a chmod-000 file gives.
    import lookalike.images as images_module

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    monkeypatch.setattr(images_module, "open", deny, raising=False)
    assert _reason(path) == "permission denied"


def test_huge_header_rejected_before_decoding(tmp_path):
    path = _png_with_header(tmp_path / "bomb.png", 40000, 40000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reason = _reason(path)
        with pytest.raises(ImageError, match="too large"):
            image_size(path)
    assert reason == "image too large: 1,600,000,000 pixels exceeds limit of 178,956,970 pixels"
    assert not caught, [str(w.message) for w in caught]


def test_max_pixels_limit_without_pillow_warning(tmp_path):
    # 10000x10000 is above Pillow's warning threshold but below its hard limit.
    path = _png_with_header(tmp_path / "big.png", 10000, 10000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reason = _reason(path, max_pixels=50_000_000)
        assert image_size(path) == (10000, 10000)
    assert reason == "image too large: 10000x10000 pixels exceeds limit of 50,000,000 pixels"
    assert not caught, [str(w.message) for w in caught]


def test_max_pixels_small_image(tmp_path):
    path = tmp_path / "hundred.png"
    Image.new("RGB", (100, 100)).save(path)
    assert "10000" not in _reason(path, max_pixels=5000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)


# ----------------------------------------------------------------------------- helpers


def test_to_array(tmp_path):
    arr = to_array(Image.new("RGB", (5, 3), (1, 2, 3)))
    assert arr.shape == (3, 5, 3) and arr.dtype == np.uint8 and arr.flags.c_contiguous
    assert tuple(arr[2, 4]) == (1, 2, 3)
    rgba = to_array(Image.new("RGBA", (2, 2), (0, 0, 0, 0)))
    assert rgba.shape == (2, 2, 3) and np.all(rgba == 255)


def test_image_size_plain(tmp_path):
    path = tmp_path / "s.png"
    Image.new("RGB", (31, 17)).save(path)
    assert image_size(path) == (31, 17)
    with pytest.raises(ImageError, match="file not found"):
        image_size(tmp_path / "missing.png")


def test_extensions():
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tiff", ".pbm"} <= IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)
    assert ".txt" not in IMAGE_EXTENSIONS


def test_iter_image_files(tmp_path):
    root = tmp_path / "photos"
    for rel in [
        "b.jpg",
        "a.PNG",
        "notes.txt",
        "sub/z.webp",
        "sub/deeper/c.JPEG",
        "sub/.hidden.jpg",
        ".cache/x.jpg",
        "aa/y.tif",
    ]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a symlink loop
    found = [p.relative_to(root).as_posix() for p in iter_image_files(root)]
    assert found == ["a.PNG", "aa/y.tif", "b.jpg", "sub/deeper/c.JPEG", "sub/z.webp"]
    # several roots, overlapping: nothing twice
    again = list(iter_image_files([root / "sub", root]))
    assert len(again) == len(set(again)) == 5
    assert again[0].name == "c.JPEG"  # the first root is walked first
    assert {p.resolve() for p in again} == {p.resolve() for p in iter_image_files(root)}
    with pytest.raises(ConfigError, match="not found"):
        list(iter_image_files(tmp_path / "missing"))


def test_no_global_side_effects():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
