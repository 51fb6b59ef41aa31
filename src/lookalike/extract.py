"""From an image to its raw descriptor: backbone feature map -> pooling -> L2 normalization.

One Extractor per setting; the backbone loads lazily on first use. The same object produces the
ImageNet logits from the same forward pass (used for classification and tags).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.images import load_image
from lookalike.pooling import l2n, parse_descriptor, pool

if TYPE_CHECKING:
    from lookalike.training.model_dir import TrainedModel


@dataclass(frozen=True, slots=True)
class Features:
    """What one forward pass gives for one image."""

    descriptor: np.ndarray  # (D,) float32, L2-normalized
    logits: np.ndarray  # (1000,) float32, ImageNet-1k


class Extractor:
    """Turns images into descriptors with one fixed setting."""

    def __init__(
        self,
        model: str = "lite0",
        descriptor: str = "gem:p=3",
        max_side: int = 480,
        scales: Sequence[float] = (1.0,),
        *,
        runtime: str = "onnx",
        threads: int | None = None,
        trained: TrainedModel | None = None,
        precision: str = "fp32",
    ) -> None:
        # A trained model (lookalike train) fixes the base, the descriptor (GeM with its
        # learned p) and adds its supervised whitening after pooling.
        self.trained = trained
        if trained is not None:
            model, descriptor, runtime = trained.base, trained.descriptor, "onnx"
        self._post = trained.load_whitening() if trained is not None else None
        self.model = model
        self.spec = parse_descriptor(descriptor)
        self.descriptor = str(self.spec)
        self.max_side = int(max_side)
        self.scales = tuple(float(s) for s in scales)
        self.runtime = runtime
        self.threads = threads
        self.precision = precision
        self._backbone = None

    @classmethod
    def from_settings(cls, settings) -> Extractor:
        """The extractor of an index's settings (IndexSettings), loading its trained model
        when it has one; IndexMismatchError when that model's files changed since."""
        trained = None
        if settings.model_dir is not None:
            from lookalike.errors import IndexMismatchError
            from lookalike.training.model_dir import load_trained_model

            trained = load_trained_model(settings.model_dir)
            if trained.hash != settings.model_hash:
                raise IndexMismatchError(
                    f"{settings.model_dir}: this model (hash {trained.hash}) is not the one the "
                    f"index was built with (hash {settings.model_hash}); re-index with it or "
                    "restore the original model folder"
                )
        return cls(
            settings.model,
            settings.descriptor,
            settings.max_side,
            settings.scales,
            trained=trained,
            precision=settings.precision,
        )

    @property
    def backbone(self):
        if self._backbone is None:
            if self.trained is not None:
                from lookalike.backbone import OnnxBackbone

                self._backbone = OnnxBackbone(
                    self.model, threads=self.threads, path=self.trained.onnx_path
                )
            else:
                from lookalike.backbone import load_backbone

                self._backbone = load_backbone(
                    self.model,
                    runtime=self.runtime,
                    threads=self.threads,
                    precision=self.precision,
                )
        return self._backbone

    @property
    def dim(self) -> int:
        if self._post is not None:
            return int(self._post.dim)
        return int(self.backbone.channels)

    def _finish(self, pooled: np.ndarray) -> np.ndarray:
        """L2-normalize pooled descriptors (n, C) and apply the trained model's whitening."""
        out = l2n(pooled)
        if self._post is not None:
            out = self._post.apply(out)
        return out.astype(np.float32)

    def load(self, path: str | Path) -> Image.Image:
        """Load an image file as the extractor sees it (raises ImageError)."""
        return load_image(path, self.max_side)

    def describe_path(self, path: str | Path) -> Features:
        return self.describe_image(self.load(path))

    def describe_image(self, image: Image.Image) -> Features:
        """`image` is RGB; it is resized to max_side first if larger."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if max(image.size) > self.max_side:
            image = _resize_max_side(image, self.max_side)
        total = None
        logits = None
        for scale in self.scales:
            scaled = image if scale == 1.0 else _resize_scale(image, scale)
            fmap, scale_logits = self._forward(scaled)
            vec = pool(self.spec, fmap)
            total = vec if total is None else total + vec
            if logits is None or scale == 1.0:
                logits = scale_logits
        return Features(descriptor=self._finish(total[None])[0], logits=logits)

    def describe_images(self, images: Sequence[Image.Image]) -> list[Features]:
        return [self.describe_image(img) for img in images]

    def describe_batch(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Features]:
        """Describe same-sized RGB uint8 arrays (each (H, W, 3), long side <= max_side, as
        `load_image` gives them) with one forward pass per scale. The result equals
        `describe_image` on each image (up to float rounding in the batched convolution)."""
        from lookalike.backbone import preprocess_batch

        if len(images) == 0:
            return []
        shapes = {tuple(np.shape(im)) for im in images}
        if len(shapes) != 1:
            raise ValueError(f"describe_batch needs images of one size, got {sorted(shapes)}")
        (shape,) = shapes
        if len(shape) != 3 or shape[2] != 3 or max(shape[:2]) > self.max_side:
            raise ValueError(
                f"describe_batch expects RGB arrays (H, W, 3) with a long side of at most "
                f"{self.max_side}, got {shape}"
            )
        total = None
        logits = None
        for scale in self.scales:
            if scale == 1.0:
                arrays = images
            else:
                arrays = [
                    np.asarray(_resize_scale(Image.fromarray(np.asarray(im)), scale))
                    for im in images
                ]
            fmaps, scale_logits = self.backbone.run(preprocess_batch(list(arrays)))
            vecs = pool(self.spec, fmaps)
            total = vecs if total is None else total + vecs
            if logits is None or scale == 1.0:
                logits = scale_logits
        descriptors = self._finish(total)
        return [
            Features(descriptor=descriptors[i], logits=np.ascontiguousarray(logits[i]))
            for i in range(len(descriptors))
        ]

    def _forward(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        from lookalike.backbone import preprocess

        batch = preprocess(np.asarray(image))[None]
        fmaps, logits = self.backbone.run(batch)
        return fmaps[0], logits[0]


def _resize_max_side(image: Image.Image, max_side: int) -> Image.Image:
    w, h = image.size
    s = max_side / max(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)


def _resize_scale(image: Image.Image, scale: float) -> Image.Image:
    w, h = image.size
    size = (max(32, round(w * scale)), max(32, round(h * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)
