"""Fine-tuning the backbone for retrieval (Radenovic, Tolias & Chum, "Fine-tuning CNN image
retrieval with no human annotation", 2018): the last blocks of EfficientNet-Lite and a GeM
pooling with learnable p, trained with a Siamese contrastive loss (or a triplet loss) on tuples
of (query, matching image, hard non-matching images), hard negatives mined with the current
model at the start of every epoch.

How it fits a CPU budget: the frozen part of the network (everything before the last
`train_blocks` blocks) runs once per augmented view of each training image, and its output is
kept; epochs then run only the trainable blocks, which work at 1/32 of the input resolution.
Each image gets `views` views (view 0 unaugmented, the others from `data.augment`); a tuple
draws a random view per image. BatchNorm statistics stay frozen (batches of one image).

Imports torch: the query path never imports this module.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lookalike.errors import ConfigError
from lookalike.training.data import LabelledImages, augment, resize_long_side

log = logging.getLogger(__name__)

LOSSES = ("contrastive", "triplet")
DEFAULT_MARGIN = {"contrastive": 0.7, "triplet": 0.1}


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (defaults measured in BENCHMARKS.md)."""

    base: str = "lite0"
    minutes: float = 5.0
    loss: str = "contrastive"
    margin: float | None = None  # None: DEFAULT_MARGIN[loss]
    train_blocks: int = 2  # trainable MBConv blocks at the end (plus the head conv)
    views: int = 4  # cached views per image (view 0 unaugmented)
    side: int = 352  # long side of training images
    lr: float = 1e-4
    p: float = 3.0  # initial GeM p
    negatives: int = 5  # hard negatives per tuple
    tuples_per_step: int = 8
    max_epochs: int | None = None
    seed: int = 0
    device: str | None = None  # None: "cuda" when available, else "cpu"

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not self.minutes > 0:
            raise ConfigError(f"--minutes must be positive, got {self.minutes}")
        if not 1 <= self.train_blocks <= 8:
            raise ConfigError(f"train_blocks must be 1..8, got {self.train_blocks}")
        if self.views < 1 or self.negatives < 1 or self.tuples_per_step < 1:
            raise ConfigError("views, negatives and tuples_per_step must be at least 1")
        if not 64 <= self.side <= 1024:
            raise ConfigError(f"side must be 64..1024, got {self.side}")


class GeM(nn.Module):
    """GeM pooling with a learnable p: (mean over positions of clamp(x, eps)^p)^(1/p)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor([float(p)]))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class RetrievalHead(nn.Module):
    """The trainable end of the network: the last blocks, the head conv + BN + ReLU6, GeM,
    L2 normalization. Input: the frozen trunk's output for one image."""

    def __init__(self, model: nn.Module, train_blocks: int, p: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(list(model._blocks)[-train_blocks:])
        self.conv = model._conv_head
        self.bn = model._bn1
        self.gem = GeM(p)

    def fmap(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return F.relu6(self.bn(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.gem(self.fmap(x)), dim=1)


class Trunk(nn.Module):
    """The frozen start of the network (BatchNorm folded for speed)."""

    def __init__(self, fused: nn.Module, train_blocks: int) -> None:
        super().__init__()
        self.stem = fused._conv_stem
        self.bn0 = fused._bn0
        self.blocks = nn.ModuleList(list(fused._blocks)[:-train_blocks])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn0(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


@dataclass
class FinetuneResult:
    model: nn.Module  # the whole EfficientNetLite with the trained blocks, eval mode
    p: float
    epochs: int
    steps: int
    seconds: float
    cache_seconds: float
    losses: list[float]  # mean loss per epoch
    device: str


TRUNK_FORMAT = 1  # bump when what the trunk export produces changes (cache key)


def trunk_runner(model: nn.Module, base: str, train_blocks: int):
    """A function PIL image -> the frozen trunk's output (1, C, h, w) as float32 NumPy, run by
    ONNX Runtime (3-5x PyTorch eager on a CPU, and no re-specialization of the scripted SAME
    pads for every new image size). The trunk's ONNX graph is cached next to the base models'
    (<cache>/training/), keyed by base, trained blocks, lookalike version and format."""
    import os
    import tempfile
    import warnings

    import onnxruntime as ort

    from lookalike import __version__
    from lookalike.backbone import cache_dir, preprocess
    from lookalike.backbone.runtime import ONNX_OPSET

    path = (
        cache_dir()
        / "training"
        / (f"trunk-{base}-{train_blocks}-{__version__}-v{TRUNK_FORMAT}.onnx")
    )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        trunk = Trunk(model.fused(), train_blocks).cpu().eval()
        fd, tmp = tempfile.mkstemp(prefix=".trunk-", suffix=".onnx.tmp", dir=path.parent)
        os.close(fd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    trunk,
                    (torch.zeros(1, 3, 224, 224),),
                    tmp,
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    input_names=["input"],
                    output_names=["trunk"],
                    dynamic_axes={
                        "input": {0: "batch", 2: "height", 3: "width"},
                        "trunk": {0: "batch", 2: "h", 3: "w"},
                    },
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(image) -> np.ndarray:
        batch = preprocess(np.asarray(image.convert("RGB")))[None]
        return session.run(None, {"input": batch})[0]

    return run


def _contrastive(q: torch.Tensor, others: torch.Tensor, target: torch.Tensor, margin: float):
    """Radenovic et al.'s contrastive loss: 0.5 d^2 for matches, 0.5 max(0, margin - d)^2 for
    non-matches (d the Euclidean distance of L2-normalized descriptors)."""
    d = (others - q).norm(dim=1)
    return (0.5 * target * d.pow(2) + 0.5 * (1 - target) * (margin - d).clamp(min=0).pow(2)).sum()


def _triplet(q: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, margin: float):
    d_pos = (pos - q).pow(2).sum()
    d_neg = (negs - q).pow(2).sum(dim=1)
    return (d_pos - d_neg + margin).clamp(min=0).sum()


def finetune(
    data: LabelledImages,
    config: FinetuneConfig,
    *,
    progress=None,
) -> FinetuneResult:
    """Fine-tune `config.base` on `data` (images labelled by group) within `config.minutes`.

    `progress(epoch, loss, seconds)` is called after every epoch when given.
    """
    from lookalike.backbone.efficientnet import load_model

    config.check()
    labels = np.asarray(data.labels)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        raise ConfigError("fine-tuning needs at least 2 groups and 3 images")
    start = time.perf_counter()
    budget = config.minutes * 60.0
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    margin = config.margin if config.margin is not None else DEFAULT_MARGIN[config.loss]

    model = load_model(config.base).to(device)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    head = RetrievalHead(model, config.train_blocks, config.p).to(device)
    for param in head.parameters():
        param.requires_grad_(True)
    trunk = trunk_runner(model, config.base, config.train_blocks)

    # Frozen trunk outputs of every view of every image.
    cache: list[list[torch.Tensor]] = []
    for image in data.images:
        base = resize_long_side(image, config.side)
        views = [base] + [
            resize_long_side(augment(image, rng), config.side) for _ in range(config.views - 1)
        ]
        cache.append([torch.from_numpy(trunk(v)).to(device) for v in views])
    cache_seconds = time.perf_counter() - start
    log.info("cached %d x %d views in %.1f s", len(cache), config.views, cache_seconds)

    optimizer = torch.optim.Adam(
        [
            {"params": [p for n, p in head.named_parameters() if not n.startswith("gem.")]},
            {"params": head.gem.parameters(), "lr": config.lr * 10},
        ],
        lr=config.lr,
    )
    # One intra-op thread: the trainable part works on tiny maps, where two threads cost more
    # in synchronisation than they gain (10x slower on a loaded 2-core machine, measured).
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        return _train_loop(
            config,
            head,
            model,
            cache,
            labels,
            rng,
            optimizer,
            margin,
            device,
            start,
            budget,
            cache_seconds,
            progress,
        )
    finally:
        torch.set_num_threads(threads)


def _train_loop(
    config,
    head,
    model,
    cache,
    labels,
    rng,
    optimizer,
    margin,
    device,
    start,
    budget,
    cache_seconds,
    progress,
) -> FinetuneResult:
    groups = {int(g): np.flatnonzero(labels == g) for g in np.unique(labels)}
    queries = np.array([i for i in range(len(labels)) if len(groups[int(labels[i])]) > 1])

    def describe_all() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([head(views[0]) for views in cache])

    losses: list[float] = []
    epoch = steps = 0
    while True:
        if config.max_epochs is not None and epoch >= config.max_epochs:
            break
        if time.perf_counter() - start > budget:
            break
        # Hard negatives with the current model: nearest images of other groups, one per group.
        desc = describe_all()
        sims = (desc @ desc.T).cpu().numpy()
        order = rng.permutation(queries)
        total, count = 0.0, 0
        optimizer.zero_grad()
        pending = 0
        for qi in order:
            g = int(labels[qi])
            pos = int(rng.choice([j for j in groups[g] if j != qi]))
            negs: list[int] = []
            seen: set[int] = {g}
            for j in np.argsort(-sims[qi]):
                lj = int(labels[j])
                if lj in seen:
                    continue
                seen.add(lj)
                negs.append(int(j))
                if len(negs) == config.negatives:
                    break

            def view(i: int) -> torch.Tensor:
                return cache[i][int(rng.integers(0, len(cache[i])))]

            q = head(view(int(qi)))[0]
            p = head(view(pos))[0]
            n = torch.cat([head(view(j)) for j in negs])
            if config.loss == "contrastive":
                others = torch.cat([p[None], n])
                target = torch.zeros(len(others), device=device)
                target[0] = 1
                loss = _contrastive(q, others, target, margin)
            else:
                loss = _triplet(q, p, n, margin)
            (loss / config.tuples_per_step).backward()
            total += float(loss.detach())
            count += 1
            pending += 1
            if pending == config.tuples_per_step:
                optimizer.step()
                optimizer.zero_grad()
                steps += 1
                pending = 0
            if time.perf_counter() - start > budget:
                break
        if pending:
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
        epoch += 1
        losses.append(total / max(count, 1))
        if progress is not None:
            progress(epoch, losses[-1], time.perf_counter() - start)
        log.info("epoch %d: loss %.4f, p %.3f", epoch, losses[-1], float(head.gem.p.detach()))
        if not math.isfinite(losses[-1]):
            raise ConfigError("training diverged (loss is not finite); try a smaller lr")
    if steps == 0:
        raise ConfigError(
            f"the time budget ({config.minutes:g} min) ran out before the first training step "
            f"(the frozen layers' pass over {len(cache)} images took {cache_seconds:.0f} s); "
            "give more --minutes"
        )
    head.eval()
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return FinetuneResult(
        model=model.cpu(),
        p=float(head.gem.p.detach().clamp(min=1.0)),
        epochs=epoch,
        steps=steps,
        seconds=time.perf_counter() - start,
        cache_seconds=cache_seconds,
        losses=losses,
        device=device,
    )


def export_model(model: nn.Module, path, input_size: int) -> None:
    """Export a (fine-tuned) EfficientNetLite to ONNX exactly as the base models are exported
    (lookalike.backbone.runtime.export_onnx: opset 17, the classic exporter, inputs/outputs
    input -> feature_map, logits, dynamic batch/height/width)."""
    import warnings

    from lookalike.backbone.runtime import ONNX_OPSET

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(),
            (torch.zeros(1, 3, input_size, input_size),),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["feature_map", "logits"],
            dynamic_axes={
                "input": {0: "batch", 2: "height", 3: "width"},
                "feature_map": {0: "batch", 2: "fmap_height", 3: "fmap_width"},
                "logits": {0: "batch"},
            },
        )
