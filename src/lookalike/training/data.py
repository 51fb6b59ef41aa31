"""Training data: groups of matching images, labelled classes, and augmentations (PIL + NumPy).

- :func:`load_groups` reads GROUPS_DIR, one subfolder per group of matching images (the layout
  of `lookalike eval groups`); :func:`load_classes` reads LABELED_DIR, one subfolder per class.
- :func:`self_supervised_groups` makes groups without labels: each photo with edited copies of
  itself (lookalike.edits), so matching means "the same photo after an edit".
- :func:`augment` is the training-time augmentation: random crop, flip, colour and small
  rotations, seeded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from lookalike.errors import ConfigError, ImageError
from lookalike.images import iter_image_files, load_image

log = logging.getLogger(__name__)

__all__ = [
    "LabelledImages",
    "load_groups",
    "load_classes",
    "self_supervised_groups",
    "augment",
    "SELF_SUPERVISED_EDITS",
]

# Edits used to make matching copies of a photo for --self-supervised training.
SELF_SUPERVISED_EDITS = (
    "crop",
    "rotate",
    "rescale",
    "jpeg",
    "colour",
    "brightness",
    "blur",
    "caption",
    "border",
    "flip",
)


@dataclass
class LabelledImages:
    """Images with an integer label each (a group or a class), and the label names."""

    images: list[Image.Image]
    labels: list[int]
    names: list[str]
    paths: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: reason"

    def __len__(self) -> int:
        return len(self.images)


def _subfolders(root: Path, what: str) -> list[Path]:
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(f"{root}: folder not found")
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise ConfigError(f"{root}: no subfolders; expected one subfolder per {what}")
    return subs


def _load_labelled(root: Path, max_side: int, what: str, min_per_label: int) -> LabelledImages:
    out = LabelledImages([], [], [], [])
    for folder in _subfolders(root, what):
        images, paths = [], []
        for file in iter_image_files(folder):
            try:
                images.append(load_image(file, max_side))
                paths.append(str(file))
            except ImageError as exc:
                out.skipped.append(f"{exc.path}: {exc.reason}")
        if len(images) < min_per_label:
            log.warning(
                "%s %s has %d readable images (needs %d): left out",
                what,
                folder.name,
                len(images),
                min_per_label,
            )
            continue
        label = len(out.names)
        out.names.append(folder.name)
        out.images += images
        out.paths += paths
        out.labels += [label] * len(images)
    if len(out.names) < 2:
        raise ConfigError(
            f"{root}: needs at least 2 {what}s with {min_per_label} or more readable images "
            f"each, found {len(out.names)}"
        )
    return out


def load_groups(root: str | Path, max_side: int = 480) -> LabelledImages:
    """GROUPS_DIR: one subfolder per group of matching images; groups with fewer than 2
    readable images are left out (logged); at least 2 groups are needed."""
    return _load_labelled(Path(root), max_side, "group", 2)


def load_classes(root: str | Path, max_side: int = 480) -> LabelledImages:
    """LABELED_DIR: one subfolder per class (its name is the class name); at least 2 classes
    with at least one readable image each."""
    return _load_labelled(Path(root), max_side, "class", 1)


def self_supervised_groups(
    root: str | Path, copies: int = 3, seed: int = 0, max_side: int = 480
) -> LabelledImages:
    """Groups made from the photos under `root` (recursively): each photo and `copies` edited
    copies of it (edits drawn from SELF_SUPERVISED_EDITS, seeded)."""
    from lookalike.edits import apply_edit

    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: folder not found")
    if copies < 1:
        raise ConfigError(f"copies must be at least 1, got {copies}")
    rng = np.random.default_rng(seed)
    out = LabelledImages([], [], [], [])
    for file in iter_image_files(root):
        try:
            image = load_image(file, max_side)
        except ImageError as exc:
            out.skipped.append(f"{exc.path}: {exc.reason}")
            continue
        label = len(out.names)
        out.names.append(str(file))
        out.images.append(image)
        out.paths.append(str(file))
        out.labels.append(label)
        edits = rng.choice(len(SELF_SUPERVISED_EDITS), size=copies, replace=False)
        for e in edits:
            name = SELF_SUPERVISED_EDITS[int(e)]
            copy = apply_edit(name, image, int(rng.integers(0, 2**31)))
            if max(copy.size) > max_side:
                copy.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
            out.images.append(copy)
            out.paths.append(f"{file}#{name}")
            out.labels.append(label)
    if len(out.names) < 2:
        raise ConfigError(f"{root}: needs at least 2 readable photos, found {len(out.names)}")
    return out


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random view: crop keeping 60-100 % of each side, flip half the time, brightness,
    contrast and saturation in 0.7-1.3, and a rotation up to 10 degrees a third of the time."""
    w, h = image.size
    f = float(rng.uniform(0.6, 1.0))
    cw, ch = max(32, int(w * f)), max(32, int(h * f))
    x0 = int(rng.integers(0, max(1, w - cw + 1)))
    y0 = int(rng.integers(0, max(1, h - ch + 1)))
    out = image.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.7, 1.3)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.7, 1.3)))
    out = ImageEnhance.Color(out).enhance(float(rng.uniform(0.7, 1.3)))
    if rng.random() < 1 / 3:
        out = out.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BICUBIC)
    return out


def resize_long_side(image: Image.Image, side: int) -> Image.Image:
    """Resize so the longer side is `side` (up or down), keeping the aspect ratio."""
    w, h = image.size
    s = side / max(w, h)
    size = (max(32, round(w * s)), max(32, round(h * s)))
    return image if size == (w, h) else image.resize(size, Image.Resampling.BICUBIC)
