"""`lookalike train-classes`: transfer learning, a new linear softmax head on frozen descriptors
for the user's own classes (one subfolder of LABELED_DIR per class).

The descriptors are exactly those an index stores (same model, pooling and image size: the
index's settings when `index` is given), computed for each image and `views - 1` augmented
views of it; the head is fitted with L-BFGS and weight decay. A leave-out check (every
`holdout`-th image of each class with more than 2 images held out, trained on the rest) gives
an honest accuracy before the final fit on everything.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from lookalike.errors import ConfigError
from lookalike.training.data import augment, load_classes
from lookalike.training.heads import ClassHead, attach_head

log = logging.getLogger(__name__)

WEIGHT_DECAY = 1e-3


def fit_softmax(
    x: np.ndarray, y: np.ndarray, n_classes: int, weight_decay: float = WEIGHT_DECAY
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS (torch, CPU): (weight (C, D), bias (C,))."""
    import torch

    torch.manual_seed(0)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    layer = torch.nn.Linear(x.shape[1], n_classes)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt), yt)
        loss = loss + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


def train_classes(
    labeled_dir: str | Path,
    out: str | Path,
    *,
    index: str | Path | None = None,
    model: str | None = None,
    max_side: int | None = None,
    views: int = 3,
    seed: int = 0,
) -> ClassHead:
    """Train a head for the classes under `labeled_dir`, save it to `out`, and, with `index`,
    attach it to that index (its classes then work with search --tag/--text and classify).
    Without `index`, `model` (a backbone name or a trained model folder) and `max_side` set
    the descriptors; the head then fits any index built with those settings."""
    from lookalike.engine import Index
    from lookalike.extract import Extractor
    from lookalike.index.manifest import validate_settings
    from lookalike.training.model_dir import resolve_model

    if views < 1:
        raise ConfigError(f"views must be at least 1, got {views}")
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty folder")
    idx = None
    if index is not None:
        if model is not None or max_side is not None:
            raise ConfigError(
                "with --index the index's own settings are used: leave out --model and --max-side"
            )
        idx = Index.open(index, writable=True)
        settings = idx.settings
    else:
        settings = validate_settings(**resolve_model(model), max_side=max_side)
    try:
        start = time.perf_counter()
        data = load_classes(labeled_dir, max_side=settings.max_side)
        extractor = Extractor.from_settings(settings)
        rng = np.random.default_rng(seed)
        rows, labels, owners = [], [], []
        for n, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
            for v in range(views):
                view = image if v == 0 else augment(image, rng)
                rows.append(extractor.describe_image(view).descriptor)
                labels.append(label)
                owners.append(n)
        x, y, owners_a = np.stack(rows), np.asarray(labels), np.asarray(owners)
        accuracy = _holdout_accuracy(x, y, owners_a, np.asarray(data.labels), len(data.names))
        weight, bias = fit_softmax(x, y, len(data.names))
        centroids, radius = _class_gate(x, y, len(data.names))
        counts = {
            name: int(np.sum(np.asarray(data.labels) == i)) for i, name in enumerate(data.names)
        }
        head = ClassHead(
            classes=tuple(data.names),
            weight=weight.astype(np.float32),
            bias=bias.astype(np.float32),
            extraction=settings.extraction(),
            centroids=centroids,
            radius=radius,
            info={
                "training": {
                    "source": str(Path(labeled_dir).expanduser().absolute()),
                    "images": len(data),
                    "per_class": counts,
                    "views": views,
                    "seed": seed,
                    "holdout_accuracy": accuracy,
                    "seconds": round(time.perf_counter() - start, 2),
                    "skipped": data.skipped,
                }
            },
        )
        head.save(out)
        if idx is not None:
            attach_head(idx, out)
        return head
    finally:
        if idx is not None:
            idx.close()


def _holdout_accuracy(
    x: np.ndarray, y: np.ndarray, owners: np.ndarray, image_labels: np.ndarray, n_classes: int
) -> float | None:
    """Accuracy on held-out images (every 3rd image of classes with 3 or more), trained on the
    other images' views; None when no class is large enough."""
    held = []
    for c in range(n_classes):
        members = np.flatnonzero(image_labels == c)
        if len(members) >= 3:
            held += list(members[2::3])
    if not held:
        return None
    test_rows = np.isin(owners, held)
    weight, bias = fit_softmax(x[~test_rows], y[~test_rows], n_classes)
    first_views = test_rows & np.r_[True, owners[1:] != owners[:-1]]
    pred = (x[first_views] @ weight.T + bias).argmax(axis=1)
    return round(float(np.mean(pred == y[first_views])), 4)


GATE_MARGIN = 0.05


def _class_gate(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the L2-normalized mean training descriptor, and the lowest cosine of the
    class's training views to it, less GATE_MARGIN (the open-set gate of ClassHead)."""
    xn = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
    centroids = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    radius = np.zeros(n_classes, dtype=np.float32)
    for c in range(n_classes):
        members = xn[y == c]
        mean = members.mean(axis=0)
        centroids[c] = mean / (np.linalg.norm(mean) + 1e-6)
        radius[c] = float((members @ centroids[c]).min()) - GATE_MARGIN
    return centroids, radius
