"""Input normalization of the EfficientNet-Lite checkpoints (NumPy only, no torch).

The Lite checkpoints were trained by the TF builder with (pixel - 127) / 128 on RGB.
"""

from __future__ import annotations

import numpy as np

from lookalike.backbone.facts import INPUT_MEAN, INPUT_SCALE


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) normalized as (pixel - 127) / 128."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
    chw = rgb.transpose(2, 0, 1).astype(np.float32)
    chw -= INPUT_MEAN
    chw *= INPUT_SCALE
    return np.ascontiguousarray(chw)


def preprocess_batch(images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Same-sized RGB uint8 images (N, H, W, 3) or a list of (H, W, 3) -> float32 (N, 3, H, W)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[3] != 3:
            raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
        out = images.transpose(0, 3, 1, 2).astype(np.float32)
        out -= INPUT_MEAN
        out *= INPUT_SCALE
        return np.ascontiguousarray(out)
    arrays = [preprocess(im) for im in images]
    if not arrays:
        raise ValueError("preprocess_batch needs at least one image")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images in a batch must share one size, got {sorted(shapes)}")
    return np.stack(arrays)
