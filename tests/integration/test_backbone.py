"""The backbones with the real ImageNet weights: classification, ONNX vs PyTorch, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from lookalike.backbone import (
    MODELS,
    Backbone,
    OnnxBackbone,
    TorchBackbone,
    export_onnx,
    get_model_info,
    load_backbone,
    onnx_path,
)
from lookalike.backbone.efficientnet import Conv2dSame, load_model, preprocess, preprocess_batch
from lookalike.errors import ConfigError

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="session")
def cache(lookalike_cache):
    """The session's private LOOKALIKE_CACHE_DIR (tests/conftest.py): the export is shared."""
    return lookalike_cache


@pytest.fixture(scope="session")
def onnx_lite0(cache) -> OnnxBackbone:
    backbone = load_backbone("lite0", runtime="onnx", threads=2)
    assert isinstance(backbone, OnnxBackbone)
    return backbone


@pytest.fixture(scope="session")
def torch_lite0() -> TorchBackbone:
    backbone = load_backbone("lite0", runtime="torch")
    assert isinstance(backbone, TorchBackbone)
    return backbone


def _resized(rgb: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_lite0_classifies_cat_and_espresso(runtime, onnx_lite0, torch_lite0):
    backbone: Backbone = onnx_lite0 if runtime == "onnx" else torch_lite0
    batch = preprocess_batch([_resized(data.chelsea(), 224), _resized(data.coffee(), 224)])
    fmap, logits = backbone.run(batch)
    assert fmap.shape == (2, 1280, 7, 7) and fmap.dtype == np.float32
    assert logits.shape == (2, 1000)
    top1 = logits.argmax(axis=1)
    assert top1[0] in CATS
    assert top1[1] == ESPRESSO


def test_lite0_classifies_at_native_odd_size(onnx_lite0):
    # chelsea is 300 x 451: no resize, not a multiple of 32
    fmap, logits = onnx_lite0.run(preprocess(data.chelsea())[None])
    assert fmap.shape == (1, 1280, 10, 15)
    assert logits.argmax() in CATS


@pytest.mark.parametrize("name", ["lite1", "lite2"])
def test_larger_models_classify_at_their_input_size(name):
    backbone = load_backbone(name, runtime="torch")
    size = get_model_info(name).input_size
    batch = preprocess_batch([_resized(data.chelsea(), size), _resized(data.coffee(), size)])
    _, logits = backbone.run(batch)
    assert logits.argmax(axis=1)[0] in CATS
    assert logits.argmax(axis=1)[1] == ESPRESSO


@pytest.mark.parametrize(("h", "w"), [(225, 301), (480, 353)])
def test_onnx_matches_torch_at_odd_sizes(h, w, onnx_lite0, torch_lite0):
    # The graph was exported at 224 x 224: matching here shows the pads are dynamic in ONNX.
    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BILINEAR))
    batch = preprocess_batch([rgb, rgb[::-1, ::-1].copy()])
    f_onnx, l_onnx = onnx_lite0.run(batch)
    f_torch, l_torch = torch_lite0.run(batch)
    assert f_onnx.shape == f_torch.shape == (2, 1280, -(-h // 32), -(-w // 32))
    assert np.abs(f_onnx - f_torch).max() < 1e-3
    assert np.abs(l_onnx - l_torch).max() < 1e-3


def _reference_forward(conv: Conv2dSame, x: torch.Tensor) -> torch.Tensor:
    """SAME conv written out from TensorFlow's documented rule, independently of same_pads."""
    k, s = conv.kernel_size[0], conv.stride[0]
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), conv.weight, None, s, 0, 1, conv.groups)


def _symmetric_forward(conv: Conv2dSame, x: torch.Tensor) -> torch.Tensor:
    """The common PyTorch port mistake: symmetric (k - 1) / 2 padding at every stride."""
    k, s = conv.kernel_size[0], conv.stride[0]
    return F.conv2d(x, conv.weight, None, s, (k - 1) // 2, 1, conv.groups)


def _with_forward(model, forward):
    for module in model.modules():
        if isinstance(module, Conv2dSame):
            module.forward = forward.__get__(module)
    return model


def test_torch_padding_matches_tensorflow_same_at_odd_size():
    x = torch.from_numpy(preprocess(data.chelsea()[:227, :301]))[None]  # 227 x 301
    with torch.no_grad():
        ours, _ = load_model("lite0")(x)
        reference, _ = _with_forward(load_model("lite0"), _reference_forward)(x)
    assert ours.shape == (1, 1280, 8, 10)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    # and the test can tell: at even sizes symmetric padding shifts the stride-2 grid
    x_even = x[..., :224, :288]
    with torch.no_grad():
        ours_even, _ = load_model("lite0")(x_even)
        symmetric_even, _ = _with_forward(load_model("lite0"), _symmetric_forward)(x_even)
    assert (ours_even - symmetric_even).abs().max() > 0.1


def test_onnx_export_is_cached_and_atomic(onnx_lite0, cache):
    path = onnx_path("lite0")
    assert path == onnx_lite0.path
    assert path.parent == cache / "onnx"
    assert path.name.startswith("lite0-") and path.suffix == ".onnx"
    mtime = path.stat().st_mtime_ns
    assert export_onnx("lite0") == path
    assert path.stat().st_mtime_ns == mtime  # not exported again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_backbone_metadata(onnx_lite0, torch_lite0):
    for backbone in (onnx_lite0, torch_lite0):
        assert backbone.name == "lite0"
        assert backbone.channels == 1280
        assert backbone.input_size == 224
        assert backbone.stride == 32
    assert MODELS == ("lite0", "lite1", "lite2")


def test_load_backbone_rejects_unknown_names():
    with pytest.raises(ConfigError, match="lite0, lite1, lite2"):
        load_backbone("resnet50")
    with pytest.raises(ConfigError, match="onnx, torch"):
        load_backbone("lite0", runtime="tensorflow")


def test_run_rejects_bad_batches(torch_lite0):
    with pytest.raises(ValueError):
        torch_lite0.run(np.zeros((3, 224, 224), np.float32))
    with pytest.raises(ValueError):
        torch_lite0.run(np.zeros((1, 224, 224, 3), np.float32))


def test_export_uses_same_upper_convolutions_without_pad_nodes(onnx_lite0):
    import onnx

    graph = onnx.load(str(onnx_lite0.path)).graph
    ops = [n.op_type for n in graph.node]
    assert "Pad" not in ops and "Shape" not in ops
    strided = [
        n
        for n in graph.node
        if n.op_type == "Conv" and any(a.name == "strides" and 2 in a.ints for a in n.attribute)
    ]
    assert len(strided) == 5  # the stem and the first block of four stages
    for n in strided:
        assert {a.name: a.s for a in n.attribute}.get("auto_pad") == b"SAME_UPPER"


def test_onnx_cache_key_names_the_export_version_and_the_weights(cache):
    from lookalike.backbone.facts import EXPORT_VERSION, weights_digest

    path = onnx_path("lite0")
    assert f"-x{EXPORT_VERSION}-" in path.name
    assert weights_digest("lite0") in path.name
    assert onnx_path("lite0", precision="int8") != path
    assert onnx_path("lite1") != path
