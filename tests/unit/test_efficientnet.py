"""EfficientNet-Lite definition: SAME pads, architecture, weights, preprocessing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lookalike.backbone import MODELS, get_model_info
from lookalike.backbone.efficientnet import (
    Conv2dSame,
    build_model,
    load_model,
    pad_same,
    preprocess,
    preprocess_batch,
    same_pads,
    weights_path,
)
from lookalike.errors import ConfigError


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        # stride 2: output ceil(size / 2); the odd pixel of the total pad goes after
        (224, 3, 2, (0, 1)),  # out 112: 111 * 2 + 3 - 224 = 1
        (225, 3, 2, (1, 1)),  # out 113: 112 * 2 + 3 - 225 = 2
        (224, 5, 2, (1, 2)),  # 111 * 2 + 5 - 224 = 3
        (225, 5, 2, (2, 2)),  # 112 * 2 + 5 - 225 = 4
        (7, 3, 2, (1, 1)),  # out 4: 3 * 2 + 3 - 7 = 2
        (8, 5, 2, (1, 2)),  # out 4: 3 * 2 + 5 - 8 = 3
        (1, 3, 2, (1, 1)),  # out 1: 0 + 3 - 1 = 2
        (2, 3, 2, (0, 1)),  # out 1: 0 + 3 - 2 = 1
        # stride 1: always (k - 1) / 2 on both sides
        (224, 3, 1, (1, 1)),
        (225, 3, 1, (1, 1)),
        (224, 5, 1, (2, 2)),
        (301, 5, 1, (2, 2)),
        # 1x1 kernels never pad
        (301, 1, 1, (0, 0)),
    ],
)
def test_same_pads_hand_checked(size, kernel, stride, expected):
    assert same_pads(size, kernel, stride) == expected


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_pads_match_tensorflow_formula(kernel, stride):
    # TensorFlow's documented rule, written differently on purpose
    for size in range(1, 70):
        if size % stride == 0:
            total = max(kernel - stride, 0)
        else:
            total = max(kernel - size % stride, 0)
        assert same_pads(size, kernel, stride) == (total // 2, total - total // 2)


@pytest.mark.parametrize(("h", "w"), [(9, 10), (10, 9), (31, 32)])
def test_pad_same_pads_each_axis_from_the_input(h, w):
    x = torch.randn(1, 2, h, w)
    top, bottom = same_pads(h, 5, 2)
    left, right = same_pads(w, 5, 2)
    assert torch.equal(pad_same(x, 5, 2), F.pad(x, [left, right, top, bottom]))


@pytest.mark.parametrize(("h", "w"), [(7, 7), (8, 8), (15, 22), (225, 301)])
@pytest.mark.parametrize("kernel", [3, 5])
def test_conv2d_same_output_size_is_ceil_of_input_over_stride(h, w, kernel):
    conv = Conv2dSame(2, 4, kernel, stride=2)
    y = conv(torch.randn(1, 2, h, w))
    assert y.shape == (1, 4, -(-h // 2), -(-w // 2))
    conv1 = Conv2dSame(2, 4, kernel, stride=1)
    assert conv1(torch.randn(1, 2, h, w)).shape == (1, 4, h, w)


@pytest.mark.parametrize(
    ("name", "blocks", "head_in"), [("lite0", 16, 320), ("lite1", 21, 320), ("lite2", 21, 352)]
)
def test_architecture_matches_the_checkpoint(name, blocks, head_in):
    model = build_model(name)
    assert len(model._blocks) == blocks
    assert model._conv_stem.out_channels == 32  # stem not scaled in Lite models
    assert model._conv_head.in_channels == head_in
    assert model._conv_head.out_channels == 1280  # head not scaled in Lite models


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_loads_strictly(name):
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model = build_model(name)
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    for key, value in model.state_dict().items():
        assert value.shape == state[key].shape, key
    assert model._bn0.eps == pytest.approx(1e-3)


def test_load_model_is_in_eval_mode_and_outputs_feature_map_and_logits():
    model = load_model("lite0")
    assert not model.training
    with torch.no_grad():
        fmap, logits = model(torch.zeros(2, 3, 65, 97))
    assert fmap.shape == (2, 1280, 3, 4)
    assert logits.shape == (2, 1000)
    assert float(fmap.min()) >= 0.0 and float(fmap.max()) <= 6.0  # ReLU6


def test_unknown_model_raises_config_error_listing_known_models():
    with pytest.raises(ConfigError, match="lite0, lite1, lite2"):
        get_model_info("b0")
    with pytest.raises(ConfigError):
        build_model("lite9")


def test_model_info_input_sizes():
    assert [get_model_info(m).input_size for m in MODELS] == [224, 240, 260]


def test_preprocess_normalizes_to_tf_range():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (0, 127, 255)
    x = preprocess(rgb)
    assert x.dtype == np.float32 and x.shape == (3, 2, 3)
    assert x[:, 0, 0] == pytest.approx([-127 / 128, 0.0, 1.0])
    assert x[0, 1, 1] == pytest.approx(-127 / 128)


def test_preprocess_batch_from_array_and_list_agree():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    a = preprocess_batch(images)
    b = preprocess_batch(list(images))
    assert a.shape == (3, 3, 5, 7) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[1], preprocess(images[1]))


def test_preprocess_rejects_bad_shapes():
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        preprocess_batch([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


def test_importing_the_package_loads_neither_torch_nor_onnxruntime():
    code = (
        "import sys, lookalike.backbone as b; b.get_model_info('lite0');"
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_fused_model_matches_unfused():
    model = load_model("lite0")
    fused = model.fused()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        f1, l1 = model(x)
        f2, l2 = fused(x)
    torch.testing.assert_close(f2, f1, rtol=0, atol=1e-4)
    torch.testing.assert_close(l2, l1, rtol=0, atol=1e-4)
