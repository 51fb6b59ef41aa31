"""Real photos that installed packages ship (scikit-image), for the demo and the tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

# scikit-image's bundled real photographs (no download needed). The stereo pair gives two
# views of one scene from slightly different angles.
PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "clock",
    "brick",
    "gravel",
    "grass",
    "cell",
    "page",
    "text",
)


def sample_photos(names: tuple[str, ...] = PHOTOS) -> dict[str, Image.Image]:
    """name -> RGB PIL image, for each of `names` (plus 'motorcycle_left'/'motorcycle_right'
    when `names` is the default)."""
    from skimage import data

    out: dict[str, Image.Image] = {}
    for name in names:
        out[name] = _to_rgb(getattr(data, name)())
    if names == PHOTOS:
        left, right, _ = data.stereo_motorcycle()
        out["motorcycle_left"] = _to_rgb(left)
        out["motorcycle_right"] = _to_rgb(right)
    return out


def _to_rgb(array: np.ndarray) -> Image.Image:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    return image.convert("RGB")
