"""A classifier head for the user's own classes, on frozen descriptors (NumPy only).

`lookalike train-classes LABELED_DIR --out HEAD_DIR` writes

    HEAD_DIR/
        classes.json   class names, the extraction settings the head was trained with,
                       training facts, format version
        head.npz       weight (C, D) and bias (C,) of a linear softmax layer

A head reads the raw descriptors an index stores (catalog), so attaching it to an index needs
no re-indexing: the class probabilities of every image come from its stored descriptor. An
index with a head attached (a copy in INDEX/classes/) answers `search --tag NAME`,
`search --text NAME` and `classify` with the user's classes.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ConfigError, IndexCorruptError, IndexMismatchError

if TYPE_CHECKING:
    from lookalike.engine import Index

__all__ = [
    "ClassHead",
    "load_head",
    "attach_head",
    "index_head",
    "class_scores",
    "class_pairs",
    "tagged_by_class",
]

HEAD_FILE = "classes.json"
WEIGHTS_FILE = "head.npz"
HEAD_KIND = "lookalike-class-head"
HEAD_FORMAT_VERSION = 1
INDEX_HEAD_DIR = "classes"  # where an attached head lives inside an index folder
TAG_MIN_PROB = 0.5  # --tag filter: images whose probability for the class reaches this


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


@dataclass(frozen=True)
class ClassHead:
    """Linear softmax classifier over raw descriptors."""

    classes: tuple[str, ...]
    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    extraction: dict  # IndexSettings.extraction() of the descriptors it was trained on
    info: dict
    # Open-set gate: a softmax over the user's classes puts every image in one of them, even a
    # photo of something else. An image counts as class c only if its cosine to the class's
    # mean training descriptor reaches radius[c] (the class's own training images' lowest
    # such cosine, less a margin).
    centroids: np.ndarray | None = None  # (C, D), L2-normalized
    radius: np.ndarray | None = None  # (C,)

    def probs(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, D) or (D,) raw descriptors -> (n, C) class probabilities."""
        x = np.atleast_2d(np.asarray(descriptors, dtype=np.float32))
        if x.shape[1] != self.weight.shape[1]:
            raise IndexMismatchError(
                f"descriptors have dimension {x.shape[1]}, the class head expects "
                f"{self.weight.shape[1]}"
            )
        logits = x @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def member_probs(self, descriptors: np.ndarray) -> np.ndarray:
        """Class probabilities with the open-set gate: 0 where an image is not close enough
        to the class's training images (see `radius`)."""
        p = self.probs(descriptors)
        if self.centroids is None or self.radius is None:
            return p
        x = np.atleast_2d(np.asarray(descriptors, dtype=np.float32))
        x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
        return np.where(x @ self.centroids.T >= self.radius, p, 0.0).astype(np.float32)

    def find(self, text: str) -> int | None:
        """The class a word or phrase names (case, spaces, '_' and '-' ignored), or None."""
        wanted = _norm(text)
        for i, name in enumerate(self.classes):
            if _norm(name) == wanted:
                return i
        return None

    def top(self, descriptor: np.ndarray, k: int = 5) -> list[dict]:
        """[{"name", "prob", "member"}] of the k most probable classes, best first; `member`
        says whether the image passes the class's open-set gate."""
        p = self.probs(descriptor)[0]
        gated = self.member_probs(descriptor)[0]
        order = np.argsort(-p, kind="stable")[:k]
        return [
            {"name": self.classes[i], "prob": round(float(p[i]), 6), "member": bool(gated[i] > 0)}
            for i in order
        ]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"weight": self.weight, "bias": self.bias}
        if self.centroids is not None and self.radius is not None:
            arrays.update(centroids=self.centroids, radius=self.radius)
        np.savez(path / WEIGHTS_FILE, **arrays)
        meta = {
            "kind": HEAD_KIND,
            "format_version": HEAD_FORMAT_VERSION,
            "classes": list(self.classes),
            "extraction": self.extraction,
            **self.info,
        }
        tmp = path / (HEAD_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path / HEAD_FILE)


def load_head(path: str | Path) -> ClassHead:
    """Read HEAD_DIR; ConfigError when it is not one, IndexCorruptError when unreadable."""
    path = Path(path).expanduser()
    if not (path / HEAD_FILE).is_file():
        raise ConfigError(f"{path}: not a class head folder (no {HEAD_FILE})")
    try:
        meta = json.loads((path / HEAD_FILE).read_text(encoding="utf-8"))
        with np.load(path / WEIGHTS_FILE, allow_pickle=False) as data:
            weight = data["weight"].astype(np.float32)
            bias = data["bias"].astype(np.float32)
            centroids = data["centroids"].astype(np.float32) if "centroids" in data else None
            radius = data["radius"].astype(np.float32) if "radius" in data else None
    except (OSError, ValueError, KeyError) as exc:
        raise IndexCorruptError(f"{path}: cannot read the class head ({exc})") from exc
    if meta.get("kind") != HEAD_KIND or meta.get("format_version") != HEAD_FORMAT_VERSION:
        raise IndexCorruptError(f"{path}: not a supported class head")
    classes = tuple(str(c) for c in meta.get("classes", ()))
    if weight.ndim != 2 or weight.shape[0] != len(classes) or bias.shape != (len(classes),):
        raise IndexCorruptError(f"{path}: class head arrays do not match its classes")
    info = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "classes")}
    if centroids is not None and (centroids.shape != weight.shape or radius.shape != bias.shape):
        raise IndexCorruptError(f"{path}: class head arrays do not match its classes")
    return ClassHead(
        classes, weight, bias, dict(meta.get("extraction", {})), info, centroids, radius
    )


def attach_head(index: Index, head_dir: str | Path) -> ClassHead:
    """Copy a head into a writable index (INDEX/classes/), replacing any attached one. The head
    must have been trained on descriptors with the index's own extraction settings."""
    head = load_head(head_dir)
    wanted = index.settings.extraction()
    if head.extraction != wanted:
        raise IndexMismatchError(
            f"{head_dir}: the class head was trained with {head.extraction}, the index "
            f"extracts with {wanted}; train it with --index {index.path}"
        )
    if not index.writable:
        raise ConfigError(f"{index.path}: index is open read-only")
    target = index.path / INDEX_HEAD_DIR
    tmp = index.path / (INDEX_HEAD_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    head.save(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return head


def index_head(index) -> ClassHead | None:
    """The head attached to an index (an Index or its Store: anything with `.path`), or
    None."""
    path = index.path / INDEX_HEAD_DIR
    return load_head(path) if (path / HEAD_FILE).is_file() else None


def class_scores(index, head: ClassHead, class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, gated probability of `class_id`) for every image of the index, from stored
    descriptors (a pass over the catalog: about 2 x D x C multiply-adds an image)."""
    ids, scores = [], []
    for batch_ids, raw in index.catalog.iter_descriptors():
        ids.append(np.asarray(batch_ids))
        scores.append(head.member_probs(raw)[:, class_id])
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(ids), np.concatenate(scores)


def tagged_by_class(index, text: str) -> dict[int, float] | None:
    """{image id: probability} of the images the attached head puts in the class `text` names
    (probability >= TAG_MIN_PROB), or None when no attached class has that name."""
    head = index_head(index)
    class_id = head.find(text) if head is not None else None
    if class_id is None:
        return None
    ids, probs = class_scores(index, head, class_id)
    keep = probs >= TAG_MIN_PROB
    return {int(i): float(p) for i, p in zip(ids[keep], probs[keep], strict=True)}


def class_pairs(
    store, text: str, k: int, min_score: float | None = None
) -> list[tuple[int, float]] | None:
    """(image id, probability) of the images the attached head puts in the class `text` names,
    best first (probability at least TAG_MIN_PROB, or `min_score` when given); None when no
    attached class has that name."""
    head = index_head(store)
    class_id = head.find(text) if head is not None else None
    if class_id is None:
        return None
    ids, probs = class_scores(store, head, class_id)
    order = np.argsort(-probs, kind="stable")
    floor = TAG_MIN_PROB if min_score is None else min_score
    pairs = [(int(ids[i]), float(probs[i])) for i in order[: max(k, 0)]]
    return [p for p in pairs if p[1] >= floor and p[1] > 0]


def classify_paths(
    paths, k: int, head_dir: str | Path | None = None, index_dir: str | Path | None = None
) -> list[list[dict]]:
    """The top-k user classes of image files, with a head folder or an index's attached head
    (the descriptors computed with the settings the head was trained with)."""
    from lookalike.extract import Extractor
    from lookalike.index.manifest import validate_settings

    if (head_dir is None) == (index_dir is None):
        raise ConfigError("give either --classes HEAD_DIR or --index INDEX (one of them)")
    if index_dir is not None:
        from lookalike.engine import Index

        with Index.open(index_dir) as idx:
            head = index_head(idx)
            if head is None:
                raise ConfigError(
                    f"{idx.path}: no classes attached (lookalike train-classes DIR --out HEAD "
                    f"--index {idx.path})"
                )
            settings = idx.settings
    else:
        head = load_head(head_dir)
        try:
            settings = validate_settings(**head.extraction)
        except ConfigError as exc:
            raise IndexCorruptError(f"{head_dir}: bad extraction settings: {exc}") from exc
    extractor = Extractor.from_settings(settings)
    return [head.top(extractor.describe_path(p).descriptor, k) for p in paths]
