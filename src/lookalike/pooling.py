"""Global pooling of CNN feature maps into image descriptors: pure NumPy functions.

Every pooling function takes a feature map ``x`` of shape (C, H, W), or a batch (N, C, H, W),
and pools over the last two (spatial) axes, returning (C,) or (N, C). Values are assumed
non-negative (post-ReLU activations), as in the papers.

- :func:`mac`  -- max over positions (Tolias et al. 2016; Razavian et al. 2016).
- :func:`spoc` -- sum/average pooling, optionally with a Gaussian centre prior (Babenko &
  Lempitsky 2015).
- :func:`gem`  -- generalized mean ``(mean x^p)^(1/p)`` (Radenovic et al. 2018); p=1 is the mean,
  p -> inf tends to MAC.
- :func:`rmac` -- regional MAC (Tolias et al. 2016), regions from :func:`rmac_regions`, as in
  cnnimageretrieval-pytorch ``rmac``.

Descriptors are named by a spec string (``"gem:p=3"``): :func:`parse_descriptor` turns it into a
:class:`DescriptorSpec` whose ``str()`` is canonical (every parameter spelt out), and
:func:`pool` applies it and L2-normalizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from lookalike.errors import ConfigError

__all__ = [
    "DESCRIPTORS",
    "DescriptorSpec",
    "center_prior",
    "gem",
    "l2n",
    "mac",
    "parse_descriptor",
    "pool",
    "rmac",
    "rmac_regions",
    "spoc",
]

_SPATIAL = (-2, -1)


def _as_map(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"feature map must have shape (C,H,W) or (N,C,H,W), got {x.shape}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"feature map has an empty spatial extent: {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x


def l2n(v: np.ndarray, axis: int = -1, eps: float = 1e-6) -> np.ndarray:
    """``v / (||v||_2 + eps)`` along ``axis`` (eps keeps an all-zero vector finite)."""
    v = np.asarray(v)
    return v / (np.linalg.norm(v, axis=axis, keepdims=True) + eps)


def mac(x: np.ndarray) -> np.ndarray:
    """Maximum activation of convolutions: max over the spatial positions of each channel."""
    return _as_map(x).max(axis=_SPATIAL)


def center_prior(height: int, width: int, sigma: float | None = None) -> np.ndarray:
    """Gaussian centre-prior weights of shape (H, W), as in Babenko & Lempitsky (SPoC, 2015).

    ``w(y, x) = exp(-((y - yc)^2 + (x - xc)^2) / (2 sigma^2))`` with the centre at
    ``((H-1)/2, (W-1)/2)`` in cell coordinates. By default sigma is one third of the distance
    from the centre to the closest border, ``min(H, W) / 2 / 3`` (the border of the map lies
    half a cell beyond the outer cell centres). The peak weight is 1.
    """
    if height < 1 or width < 1:
        raise ValueError(f"map size must be positive, got {height}x{width}")
    if sigma is None:
        sigma = min(height, width) / 6.0
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    ys = np.arange(height, dtype=np.float64) - (height - 1) / 2.0
    xs = np.arange(width, dtype=np.float64) - (width - 1) / 2.0
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return np.exp(-d2 / (2.0 * sigma**2))


# spoc()'s boolean argument shadows the function's name; this alias keeps it reachable there.
_center_prior_weights = center_prior


def spoc(x: np.ndarray, center_prior: bool = False, sigma: float | None = None) -> np.ndarray:
    """Sum-pooled convolutional features, returned as the (weighted) mean over positions.

    With ``center_prior`` the positions are weighted by :func:`center_prior` (``sigma`` as
    there). The mean rather than the sum keeps values independent of the map size; after
    L2-normalization the two are the same descriptor.
    """
    x = _as_map(x)
    if not center_prior:
        return x.mean(axis=_SPATIAL)
    weights = _center_prior_weights(x.shape[-2], x.shape[-1], sigma).astype(x.dtype)
    weights = weights / weights.sum()
    return np.tensordot(x, weights, axes=([-2, -1], [0, 1]))


def gem(x: np.ndarray, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    """Generalized-mean pooling ``(mean(max(x, eps)^p))^(1/p)`` per channel.

    Computed as ``m * (mean((x/m)^p))^(1/p)`` with ``m`` the channel maximum, which is the
    same value but cannot overflow for large ``p``.
    """
    if not p > 0:
        raise ValueError(f"GeM power p must be positive, got {p}")
    x = np.maximum(_as_map(x), eps)
    m = x.max(axis=_SPATIAL, keepdims=True)
    scaled = np.power(x / m, p).mean(axis=_SPATIAL)
    return m[..., 0, 0] * np.power(scaled, 1.0 / p)


def rmac_regions(
    height: int, width: int, levels: int = 3, overlap: float = 0.4
) -> list[tuple[int, int, int]]:
    """R-MAC regions of an H x W map as ``(top, left, side)`` squares, level by level.

    As in Tolias et al. 2016 and cnnimageretrieval-pytorch ``rmac``: at level ``l`` (1..L)
    squares of side ``floor(2 * min(H, W) / (l + 1))`` are placed uniformly, ``l`` along the
    short dimension and ``l + extra`` along the long one, where ``extra`` (0..5) is chosen
    once for the aspect ratio so that neighbouring level-1 regions overlap by the closest to
    ``overlap`` (40 %). Start offsets are ``floor(i * (dim - side) / (count - 1))`` computed
    in exact integer arithmetic, so the last region of a row always touches the border (the
    reference's float32 arithmetic misses by one cell on rare shapes, e.g. 2x32). The
    full-map region is not in this list (:func:`rmac` adds it, as the reference code does).
    Levels whose side would be 0 give no regions.
    """
    if height < 1 or width < 1:
        raise ValueError(f"map size must be positive, got {height}x{width}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    short, long_ = min(height, width), max(height, width)
    extra = 0
    if long_ != short:
        # Possible numbers of regions along the long dimension: 2..7. Computed in float32 like
        # the reference code: some shapes (e.g. 5x9) tie exactly between two choices and the
        # reference's float32 rounding decides; matching it gives identical descriptors.
        steps = np.arange(2, 8, dtype=np.float32)
        b = np.float32(long_ - short) / (steps - np.float32(1))
        sq = np.float32(short * short)
        gap = np.abs((sq - np.float32(short) * b) / sq - np.float32(overlap))
        extra = int(np.argmin(gap)) + 1
    extra_w = extra if height < width else 0
    extra_h = extra if height > width else 0

    def starts(dim: int, side: int, count: int) -> list[int]:
        if count == 1:
            return [0]
        return [(i * (dim - side)) // (count - 1) for i in range(count)]

    regions: list[tuple[int, int, int]] = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side == 0:
            continue
        for top in starts(height, side, level + extra_h):
            for left in starts(width, side, level + extra_w):
                regions.append((top, left, side))
    return regions


def rmac(x: np.ndarray, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6) -> np.ndarray:
    """Regional MAC: sum of the L2-normalized MAC of the full map and of every R-MAC region.

    This is the plain R-MAC of cnnimageretrieval-pytorch (no per-region PCA-whitening); the
    result is not normalized (``pool`` does that).
    """
    x = _as_map(x)
    total = l2n(x.max(axis=_SPATIAL), eps=eps)
    for top, left, side in rmac_regions(x.shape[-2], x.shape[-1], levels, overlap):
        region = x[..., top : top + side, left : left + side].max(axis=_SPATIAL)
        total = total + l2n(region, eps=eps)
    return total


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Param:
    kind: type  # bool, int or float
    default: bool | int | float
    minimum: float | None = None

    def parse(self, descriptor: str, key: str, text: str) -> bool | int | float:
        value: bool | int | float
        try:
            if self.kind is bool:
                lowered = text.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    value = True
                elif lowered in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError(text)
            elif self.kind is int:
                value = int(text)
            else:
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
        except ValueError:
            expected = {bool: "0 or 1", int: "an integer", float: "a number"}[self.kind]
            raise ConfigError(
                f"descriptor {descriptor!r}: bad value {text!r} for {key!r} (expected {expected})"
            ) from None
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(
                f"descriptor {descriptor!r}: {key}={text} is below the minimum {self.minimum:g}"
            )
        return value


def _format_value(value: bool | int | float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class _Descriptor:
    name: str
    params: Mapping[str, _Param]
    fn: Callable[..., np.ndarray]
    doc: str


def _neural(x: np.ndarray) -> np.ndarray:
    return spoc(x)


def _spoc(x: np.ndarray, center: bool) -> np.ndarray:
    return spoc(x, center_prior=center)


DESCRIPTORS: Mapping[str, _Descriptor] = MappingProxyType(
    {
        "mac": _Descriptor("mac", {}, mac, "max pooling"),
        "spoc": _Descriptor(
            "spoc",
            {"center": _Param(bool, False)},
            _spoc,
            "average pooling; center=1 adds the Gaussian centre prior",
        ),
        "gem": _Descriptor(
            "gem", {"p": _Param(float, 3.0, minimum=1e-3)}, gem, "generalized mean, power p"
        ),
        "rmac": _Descriptor(
            "rmac", {"levels": _Param(int, 3, minimum=1)}, rmac, "regional MAC over L levels"
        ),
        # EfficientNet-Lite (and most ImageNet CNNs) feed the classifier with the global average
        # of the last feature map (head conv -> BN -> ReLU6 -> average pool -> dropout -> FC):
        # "neural" is that penultimate vector, i.e. plain average pooling.
        "neural": _Descriptor(
            "neural", {}, _neural, "the network's penultimate vector (global average pooling)"
        ),
    }
)


@dataclass(frozen=True)
class DescriptorSpec:
    """A parsed descriptor spec: a registry name and every parameter's value.

    ``str(spec)`` is the canonical form (parameters sorted, defaults filled in, numbers in
    shortest form), e.g. ``"gem:p=3"``, ``"spoc:center=0"``, ``"mac"``; parsing it again gives
    an equal spec, so it can be stored in a manifest and compared.
    """

    name: str
    params: tuple[tuple[str, bool | int | float], ...] = ()

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in self.params)

    def get(self, key: str) -> bool | int | float:
        """The value of parameter ``key``; KeyError if this descriptor has no such parameter."""
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(key)

    @property
    def kwargs(self) -> dict[str, bool | int | float]:
        return dict(self.params)


def parse_descriptor(spec: str | DescriptorSpec) -> DescriptorSpec:
    """Parse ``"name"`` or ``"name:key=value,..."`` into a :class:`DescriptorSpec`.

    Names: ``mac``, ``spoc`` (``center=0|1``), ``gem`` (``p=<number>``), ``rmac``
    (``levels=<int>``), ``neural``. Names and keys are case-insensitive; spaces are ignored.
    Unknown names or parameters, repeated parameters and bad values raise ConfigError naming
    the bad part and what is allowed.
    """
    if isinstance(spec, DescriptorSpec):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"descriptor spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    name, sep, rest = text.partition(":")
    name = name.strip().lower()
    if name not in DESCRIPTORS:
        allowed = ", ".join(sorted(DESCRIPTORS))
        raise ConfigError(f"unknown descriptor {name!r} in {spec!r}; allowed: {allowed}")
    desc = DESCRIPTORS[name]
    values: dict[str, bool | int | float] = {}
    if sep:
        if not rest.strip():
            raise ConfigError(f"descriptor {spec!r}: no parameters after ':'")
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            key = key.strip().lower()
            allowed = ", ".join(sorted(desc.params)) or "none"
            if not eq or not key or not raw.strip():
                raise ConfigError(
                    f"descriptor {spec!r}: expected key=value, got {item.strip()!r} "
                    f"(parameters of {name}: {allowed})"
                )
            if key not in desc.params:
                raise ConfigError(
                    f"descriptor {spec!r}: unknown parameter {key!r} for {name} "
                    f"(parameters of {name}: {allowed})"
                )
            if key in values:
                raise ConfigError(f"descriptor {spec!r}: parameter {key!r} given twice")
            values[key] = desc.params[key].parse(spec, key, raw.strip())
    params = tuple(
        (key, values.get(key, param.default)) for key, param in sorted(desc.params.items())
    )
    return DescriptorSpec(name, params)


def pool(spec: str | DescriptorSpec, feature_map: np.ndarray) -> np.ndarray:
    """Pool a feature map (C,H,W) -> (C,) or (N,C,H,W) -> (N,C) with ``spec``.

    The result is float32 and L2-normalized along the channel axis.
    """
    parsed = parse_descriptor(spec)
    desc = DESCRIPTORS[parsed.name]
    x = _as_map(feature_map)
    pooled = desc.fn(x, **parsed.kwargs)
    return l2n(np.asarray(pooled, dtype=np.float64)).astype(np.float32)
