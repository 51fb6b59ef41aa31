"""CNN feature extractors (EfficientNet-Lite0/1/2) behind one `Backbone` interface.

Importing this package loads neither torch nor onnxruntime; `load_backbone` does, when called.
The model definition itself is in `lookalike.backbone.efficientnet` (imports torch).
"""

from __future__ import annotations

from lookalike.backbone.preprocess import preprocess, preprocess_batch
from lookalike.backbone.runtime import (
    MODELS,
    RUNTIMES,
    Backbone,
    ModelInfo,
    OnnxBackbone,
    TorchBackbone,
    cache_dir,
    export_onnx,
    get_model_info,
    load_backbone,
    onnx_path,
)

__all__ = [
    "preprocess",
    "preprocess_batch",
    "MODELS",
    "RUNTIMES",
    "Backbone",
    "ModelInfo",
    "OnnxBackbone",
    "TorchBackbone",
    "cache_dir",
    "export_onnx",
    "get_model_info",
    "load_backbone",
    "onnx_path",
]
