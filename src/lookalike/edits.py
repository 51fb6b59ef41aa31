"""Edits people make to photos (crop, rotate, rescale, recompress, recolour, blur, caption,
border, flip, paste into a larger canvas). Used to build benchmarks and the demo: an edited copy
must still find its original.

Every edit is a function `(image, rng) -> image` in the EDITS registry; `rng` is a seeded
`numpy.random.Generator` so a benchmark is reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def crop(image: Image.Image, rng: np.random.Generator, low: float = 0.5, high: float = 0.9):
    """Keep a random window of `low`..`high` of each side."""
    w, h = image.size
    f = rng.uniform(low, high)
    cw, ch = max(8, int(w * f)), max(8, int(h * f))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return image.crop((x0, y0, x0 + cw, y0 + ch))


def rotate(image: Image.Image, rng: np.random.Generator, max_degrees: float = 15.0):
    angle = float(rng.uniform(-max_degrees, max_degrees))
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0))


def rotate90(image: Image.Image, rng: np.random.Generator):
    return image.transpose(
        Image.Transpose.ROTATE_90 if rng.random() < 0.5 else Image.Transpose.ROTATE_270
    )


def rescale(image: Image.Image, rng: np.random.Generator):
    f = float(rng.uniform(0.3, 0.7))
    w, h = image.size
    return image.resize((max(16, int(w * f)), max(16, int(h * f))), Image.Resampling.BILINEAR)


def jpeg(image: Image.Image, rng: np.random.Generator, low: int = 5, high: int = 20):
    """Strong JPEG recompression."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=int(rng.integers(low, high + 1)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def colour(image: Image.Image, rng: np.random.Generator):
    """Saturation, contrast and a hue-ish channel shift."""
    out = ImageEnhance.Color(image).enhance(float(rng.uniform(0.2, 1.8)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.6, 1.4)))
    arr = np.asarray(out).astype(np.float32)
    arr = arr * rng.uniform(0.8, 1.2, size=3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def brightness(image: Image.Image, rng: np.random.Generator):
    return ImageEnhance.Brightness(image).enhance(
        float(rng.choice([rng.uniform(0.4, 0.7), rng.uniform(1.3, 1.7)]))
    )


def grayscale(image: Image.Image, rng: np.random.Generator):
    return ImageOps.grayscale(image).convert("RGB")


def blur(image: Image.Image, rng: np.random.Generator):
    radius = float(rng.uniform(1.0, 3.0)) * max(image.size) / 500
    return image.filter(ImageFilter.GaussianBlur(radius))


def caption(image: Image.Image, rng: np.random.Generator):
    """Text written over the picture, as memes and watermarks do."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = max(12, h // 8)
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # very old Pillow
        font = None
    words = ["HOLIDAY 2024", "© lookalike", "best day ever", "SALE -50%", "sample"]
    text = words[int(rng.integers(0, len(words)))]
    y = int(rng.uniform(0.05, 0.8) * h)
    fill = tuple(int(c) for c in rng.integers(0, 256, size=3))
    draw.text(
        (int(0.05 * w), y),
        text,
        fill=fill,
        font=font,
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0),
    )
    return out


def border(image: Image.Image, rng: np.random.Generator):
    w, h = image.size
    pad = int(max(w, h) * rng.uniform(0.03, 0.12))
    fill = tuple(int(c) for c in rng.integers(0, 256, size=3))
    return ImageOps.expand(image, border=pad, fill=fill)


def flip(image: Image.Image, rng: np.random.Generator):
    return ImageOps.mirror(image)


def in_canvas(image: Image.Image, rng: np.random.Generator):
    """The photo pasted, smaller, inside a larger noisy canvas (a photo of a screen or page)."""
    w, h = image.size
    scale = float(rng.uniform(0.5, 0.8))
    small = image.resize(
        (max(8, int(w * scale)), max(8, int(h * scale))), Image.Resampling.BILINEAR
    )
    base = rng.integers(0, 256, size=3)
    noise = rng.normal(0, 12, size=(h, w, 3))
    canvas = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    x0 = int(rng.integers(0, w - small.size[0] + 1))
    y0 = int(rng.integers(0, h - small.size[1] + 1))
    canvas.paste(small, (x0, y0))
    return canvas


EDITS: dict[str, Edit] = {
    "crop": crop,
    "rotate": rotate,
    "rotate90": rotate90,
    "rescale": rescale,
    "jpeg": jpeg,
    "colour": colour,
    "brightness": brightness,
    "grayscale": grayscale,
    "blur": blur,
    "caption": caption,
    "border": border,
    "flip": flip,
    "in_canvas": in_canvas,
}


def apply_edit(name: str, image: Image.Image, seed: int) -> Image.Image:
    """Apply the edit `name` to an RGB image with a reproducible random draw."""
    from lookalike.errors import ConfigError

    try:
        edit = EDITS[name]
    except KeyError:
        raise ConfigError(f"unknown edit {name!r}; choose from {', '.join(EDITS)}") from None
    return edit(image.convert("RGB"), np.random.default_rng(seed)).convert("RGB")
