"""Static int8 quantization of an exported backbone (ONNX QDQ), calibrated on shipped photos.

The recipe (see BENCHMARKS.md, "int8"): weights int8 per channel, activations uint8,
`reduce_range=True` (7-bit weights: without it, CPUs without VNNI saturate in the int8 kernels
and descriptor cosines against fp32 fell to 0.83), MinMax calibration on views of the photos
scikit-image ships (crops, flips and brightness changes at the index's 480 px). The result is
cached next to the fp32 graph under `onnx_path(name, precision="int8")`; the export format
version in that key covers this recipe too. Needs onnxruntime's quantization tools (part of
the onnxruntime wheel), not torch (beyond the fp32 export, if that is not cached yet).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lookalike.backbone.export import export_onnx, write_atomic
from lookalike.backbone.facts import onnx_path

__all__ = ["quantize_int8", "calibration_batches"]

log = logging.getLogger(__name__)

CALIBRATION_SIDE = 480
CALIBRATION_VIEWS = 3  # views per shipped photo


def calibration_batches(
    side: int = CALIBRATION_SIDE, views: int = CALIBRATION_VIEWS, seed: int = 0
) -> Iterator[np.ndarray]:
    """Normalized (1, 3, H, W) float32 inputs: `views` random views of each shipped photo."""
    from PIL import Image

    from lookalike.backbone.preprocess import preprocess
    from lookalike.samples import sample_photos

    rng = np.random.default_rng(seed)
    for image in sample_photos().values():
        w, h = image.size
        for v in range(views):
            s = 1.0 if v == 0 else rng.uniform(0.5, 0.95)
            cw, ch = max(32, int(w * s)), max(32, int(h * s))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            view = image.crop((x0, y0, x0 + cw, y0 + ch))
            if v % 2:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            view.thumbnail((side, side), Image.Resampling.BICUBIC)
            arr = np.asarray(view, dtype=np.float32) * (rng.uniform(0.8, 1.2) if v else 1.0)
            yield preprocess(np.clip(arr, 0, 255).astype(np.uint8))[None]


def quantize_int8(name: str = "lite0", path: Path | None = None, force: bool = False) -> Path:
    """The int8 QDQ graph of `name`, made from the fp32 export unless cached; returns its path."""
    path = Path(path) if path is not None else onnx_path(name, precision="int8")
    if path.exists() and not force:
        return path
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32 = export_onnx(name)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = calibration_batches()

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {"input": batch}

    log.info("quantizing %s to int8 at %s (once; later runs reuse it)", name, path)

    def write(tmp: str) -> None:
        quantize_static(
            str(fp32),
            tmp,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )

    return write_atomic(path, write)
