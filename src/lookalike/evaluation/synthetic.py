"""A benchmark built from any photos: each photo plus edited copies of it (lookalike.edits).

``make_benchmark(src, out)`` writes, for every source photo, the photo and one copy per edit
(crop to 50-90 %, rotation, rescaling, strong JPEG, colour and brightness changes, blur, text,
border, flip, the photo inside a larger canvas, ...). Layouts:

- ``groups`` (default): ``OUT/<photo>/original.jpg`` and ``OUT/<photo>/<edit>.jpg``: a
  ``groups`` benchmark where every image must find its siblings;
- ``copydays``: ``OUT/original/NNNN00.jpg`` and ``OUT/<edit>/NNNNxx.jpg``: copy detection,
  every edited copy must find its original.

The same sources, edits and seed always give the same files (byte for byte).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.edits import EDITS, apply_edit
from lookalike.errors import ConfigError, ImageError
from lookalike.images import iter_image_files, load_image

LAYOUTS = ("groups", "copydays")
DEFAULT_EDITS: tuple[str, ...] = tuple(EDITS)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "photo"


def read_sources(src: str | Path, max_side: int | None = 1024) -> dict[str, Image.Image]:
    """name -> RGB image for every readable image under ``src`` (unreadable ones are named in
    the error if none is left)."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise ConfigError(f"{src}: source folder not found")
    out: dict[str, Image.Image] = {}
    for path in iter_image_files(src):
        try:
            image = load_image(path, max_side)
        except ImageError:
            continue
        name = _safe(str(path.relative_to(src).with_suffix("")))
        while name in out:
            name += "_"
        out[name] = image
    if not out:
        raise ConfigError(f"{src}: no readable images")
    return out


def make_benchmark(
    sources: str | Path | Mapping[str, Image.Image],
    out: str | Path,
    *,
    edits: Sequence[str] | None = None,
    seed: int = 0,
    layout: str = "groups",
    max_side: int | None = 1024,
    quality: int = 90,
) -> dict:
    """Write the benchmark; returns ``{"layout", "sources", "images", "edits", "out"}``."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose {' or '.join(LAYOUTS)}")
    edits = list(edits) if edits is not None else list(DEFAULT_EDITS)
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        raise ConfigError(f"unknown edit {unknown[0]!r}; choose from {', '.join(EDITS)}")
    if isinstance(sources, str | Path):
        sources = read_sources(sources, max_side)
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, name in enumerate(sorted(sources)):
        image = sources[name].convert("RGB")
        if max_side is not None and max(image.size) > max_side:
            image = image.copy()
            image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        if layout == "groups":
            folder = out / _safe(name)
            folder.mkdir()
            image.save(folder / "original.jpg", quality=quality)
        else:
            (out / "original").mkdir(exist_ok=True)
            image.save(out / "original" / f"{(i + 1) * 100:06d}.jpg", quality=quality)
        count += 1
        for j, edit in enumerate(edits):
            edit_seed = int(np.random.SeedSequence([seed, i, j]).generate_state(1)[0])
            copy = apply_edit(edit, image, edit_seed)
            if layout == "groups":
                path = folder / f"{edit}.jpg"
            else:
                (out / edit).mkdir(exist_ok=True)
                path = out / edit / f"{(i + 1) * 100 + j + 1:06d}.jpg"
            copy.save(path, quality=quality)
            count += 1
    return {
        "layout": layout,
        "sources": len(sources),
        "images": count,
        "edits": edits,
        "out": str(out),
    }
