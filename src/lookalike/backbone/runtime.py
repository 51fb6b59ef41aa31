"""Backbone runners with one interface: ONNX Runtime (the default) and PyTorch eager.

The ONNX graph is exported once per model and cached (see `lookalike.backbone.export`); finding
it needs only `lookalike.backbone.facts`, so running a cached graph never imports torch.

This module imports neither torch nor onnxruntime at import time; the runners import what they
need when they are built.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.backbone.export import export_onnx
from lookalike.backbone.facts import (
    MODELS,
    ONNX_OPSET,
    PRECISIONS,
    ModelInfo,
    cache_dir,
    get_model_info,
    onnx_path,
)
from lookalike.errors import ConfigError

__all__ = [
    "MODELS",
    "ONNX_OPSET",
    "PRECISIONS",
    "RUNTIMES",
    "ModelInfo",
    "get_model_info",
    "Backbone",
    "TorchBackbone",
    "OnnxBackbone",
    "load_backbone",
    "cache_dir",
    "onnx_path",
    "export_onnx",
]

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("onnx", "torch")


class Backbone(ABC):
    """A CNN feature extractor. `run` takes a float32 (N, 3, H, W) batch normalized with
    `efficientnet.preprocess` and returns float32 (feature maps (N, C, h, w), logits (N, 1000))."""

    runtime: str = ""

    def __init__(self, name: str) -> None:
        self.info = get_model_info(name)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def channels(self) -> int:
        return self.info.channels

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def stride(self) -> int:
        return self.info.stride

    @abstractmethod
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _check_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[1] != 3 or min(batch.shape) == 0:
        raise ValueError(f"expected a float32 batch of shape (N, 3, H, W), got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


class TorchBackbone(Backbone):
    """PyTorch eager, eval mode, no_grad, channels_last memory format, BatchNorm folded into
    the convolutions (`fuse_bn`).

    `threads` sets torch's intra-op thread count, which is process-wide in PyTorch.
    """

    runtime = "torch"

    def __init__(
        self, name: str = "lite0", threads: int | None = None, fuse_bn: bool = True
    ) -> None:
        super().__init__(name)
        import torch

        from lookalike.backbone.efficientnet import load_model

        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        self._torch = torch
        model = load_model(name).fused() if fuse_bn else load_model(name)
        self.model = model.to(memory_format=torch.channels_last)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(_check_batch(batch)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fmap, logits = self.model(x)
        return (
            np.ascontiguousarray(fmap.float().numpy()),
            np.ascontiguousarray(logits.float().numpy()),
        )


class OnnxBackbone(Backbone):
    """ONNX Runtime on the CPU execution provider; `threads` sets intra-op threads
    (None: ONNX Runtime's default, one per physical core). `precision`: "fp32" (the exported
    graph) or "int8" (its static QDQ quantization, lookalike.backbone.quantize)."""

    runtime = "onnx"

    def __init__(
        self,
        name: str = "lite0",
        threads: int | None = None,
        path: Path | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__(name)
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {precision!r}; known precisions: {', '.join(PRECISIONS)}"
            )
        self.precision = precision
        if precision == "int8":
            from lookalike.backbone.quantize import quantize_int8

            self.path = quantize_int8(name, path)
        else:
            self.path = export_onnx(name, path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session: Any = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fmap, logits = self.session.run(None, {"input": _check_batch(batch)})
        return fmap, logits


def load_backbone(
    name: str = "lite0",
    runtime: str = "onnx",
    threads: int | None = None,
    precision: str = "fp32",
) -> Backbone:
    """Build a backbone by model name (`MODELS`), runtime ("onnx" or "torch") and, for ONNX,
    precision (`PRECISIONS`: "fp32" or "int8")."""
    get_model_info(name)
    if runtime == "onnx":
        return OnnxBackbone(name, threads=threads, precision=precision)
    if precision != "fp32":
        raise ConfigError(f"precision {precision!r} needs the onnx runtime")
    if runtime == "torch":
        return TorchBackbone(name, threads=threads)
    raise ConfigError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(RUNTIMES)}")
