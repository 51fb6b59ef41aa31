"""Learning from the user's own data: fine-tuning the backbone for retrieval on groups of
matching images (`train`), and a classifier head for the user's own classes on frozen features
(`train_classes`).

    from lookalike.training import train, train_classes
    report = train("groups/", "my-model/", minutes=5)          # then Index(..., model_dir)
    head = train_classes("labeled/", "my-classes/")

Importing this package imports neither torch nor the training code; `train` imports torch when
called. Reading a trained model folder (lookalike.training.model_dir) never needs torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "train_classes"]


def train(*args: Any, **kwargs: Any):
    """Fine-tune a retrieval model; see lookalike.training.trainer.train."""
    from lookalike.training.trainer import train as _train

    return _train(*args, **kwargs)


def train_classes(*args: Any, **kwargs: Any):
    """Train a classifier head for your own classes; see lookalike.training.classes."""
    from lookalike.training.classes import train_classes as _train_classes

    return _train_classes(*args, **kwargs)
