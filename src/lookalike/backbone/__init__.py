"""CNN feature extractors (EfficientNet-Lite0/1/2) behind one `Backbone` interface.

Importing this package loads neither torch nor onnxruntime; `load_backbone` loads ONNX Runtime
when called (and torch only to export a graph that is not cached yet, or for runtime="torch").
- `facts`: model names, weight files, input normalization, ONNX cache keys (standard library
  only);
- `preprocess`: pixels -> the normalized input (NumPy);
- `efficientnet`: the PyTorch model definition (imports torch);
- `export`: PyTorch -> a cached ONNX graph (imports torch when it exports);
- `runtime`: the runners behind one `Backbone` interface.
"""

from __future__ import annotations

from lookalike.backbone.export import export_onnx
from lookalike.backbone.facts import (
    MODELS,
    PRECISIONS,
    ModelInfo,
    cache_dir,
    get_model_info,
    onnx_path,
    weights_path,
)
from lookalike.backbone.preprocess import preprocess, preprocess_batch
from lookalike.backbone.runtime import (
    RUNTIMES,
    Backbone,
    OnnxBackbone,
    TorchBackbone,
    load_backbone,
)

__all__ = [
    "preprocess",
    "preprocess_batch",
    "MODELS",
    "PRECISIONS",
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
    "weights_path",
]
