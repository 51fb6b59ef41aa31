"""`lookalike train`: from groups of matching images (or the user's own photos and edited
copies of them) to a model folder that `--model MODEL_DIR` uses.

Steps: load the groups -> fine-tune (training/finetune.py) -> export to ONNX -> describe the
training images exactly as indexing will (ONNX Runtime, lookalike's pooling, the index's image
size) -> decide the supervised whitening by a held-out check -> write MODEL_DIR.

The whitening check: the groups are split in two halves; Lw is learned on one half at each
shrinkage of `LW_SHRINKAGES` and scored (mAP, every image a query, groups protocol) on the
other half, and the other way round. Lw is kept only when the best shrinkage beats no
whitening on average; it is then learned again on all groups. With fewer than 4 groups the
check cannot run and no whitening is stored.

Writes go to a temporary folder next to MODEL_DIR, renamed into place at the end: an
interrupted run leaves no half-written model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import ConfigError
from lookalike.training.data import LabelledImages
from lookalike.training.model_dir import (
    ONNX_FILE,
    WHITENING_FILE,
    TrainedModel,
    load_trained_model,
    write_model_json,
)

log = logging.getLogger(__name__)

LW_SHRINKAGES = (0.1, 1.0, 10.0)
MIN_LW_GROUPS = 4


@dataclass
class TrainReport:
    """What a training run did (`lookalike train --json` prints it)."""

    model_dir: str
    base: str
    descriptor: str
    hash: str
    images: int
    groups: int
    skipped: list[str]
    epochs: int
    steps: int
    seconds: float
    cache_seconds: float
    device: str
    losses: list[float]
    train_map_base: float  # mAP of the training groups with the base model (seen groups)
    train_map_finetuned: float
    whitening: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def groups_map(x: np.ndarray, labels: np.ndarray) -> float:
    """mAP with every image a query against the others (itself left out), positives its
    group's other members: the `groups` protocol of lookalike eval."""
    from lookalike.evaluation.metrics import average_precision, rank_by_scores

    labels = np.asarray(labels)
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    ranks = rank_by_scores(scores)
    aps = []
    for i in range(len(x)):
        pos = np.flatnonzero(labels == labels[i])
        pos = pos[pos != i]
        if len(pos) == 0:
            continue
        ranking = ranks[i][ranks[i] != i]
        aps.append(average_precision(ranking, pos))
    return float(np.mean(aps)) if aps else float("nan")


def choose_lw(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """The held-out whitening check (module docstring). Returns {"use", "shrinkage", "map_none",
    "map_lw" per shrinkage, "reason"}."""
    from lookalike.training.lw import fit_lw, group_pairs

    groups = np.unique(labels)
    if len(groups) < MIN_LW_GROUPS:
        return {"use": False, "reason": f"fewer than {MIN_LW_GROUPS} groups: cannot check"}
    rng = np.random.default_rng(seed)
    perm = rng.permutation(groups)
    halves = [perm[: len(perm) // 2], perm[len(perm) // 2 :]]
    masks = [np.isin(labels, h) for h in halves]
    none_scores, lw_scores = [], {s: [] for s in LW_SHRINKAGES}
    for learn, test in ((masks[0], masks[1]), (masks[1], masks[0])):
        none_scores.append(groups_map(x[test], labels[test]))
        pairs = group_pairs(labels[learn])
        for s in LW_SHRINKAGES:
            w = fit_lw(x[learn], pairs, shrinkage=s)
            lw_scores[s].append(groups_map(w.apply(x[test]), labels[test]))
    map_none = float(np.mean(none_scores))
    map_lw = {str(s): float(np.mean(v)) for s, v in lw_scores.items()}
    best = max(LW_SHRINKAGES, key=lambda s: np.mean(lw_scores[s]))
    use = float(np.mean(lw_scores[best])) > map_none
    return {
        "use": bool(use),
        "shrinkage": float(best),
        "map_none": round(map_none, 4),
        "map_lw": {k: round(v, 4) for k, v in map_lw.items()},
        "reason": "held-out groups: Lw " + ("beats" if use else "does not beat") + " no whitening",
    }


def train(
    groups_dir: str | Path | None,
    out: str | Path,
    *,
    self_supervised: str | Path | None = None,
    base: str = "lite0",
    minutes: float = 5.0,
    loss: str = "contrastive",
    max_side: int = 480,
    whitening: bool = True,
    seed: int = 0,
    progress=None,
    **options,
) -> TrainReport:
    """Train a retrieval model and write it to `out` (a new folder). Give `groups_dir` (one
    subfolder per group of matching images) or `self_supervised` (a folder of photos; each
    with edited copies of itself makes a group). `options` go to FinetuneConfig (lr,
    train_blocks, views, side, negatives, margin, max_epochs, device...).
    """
    from lookalike.backbone import get_model_info
    from lookalike.training.data import load_groups, self_supervised_groups
    from lookalike.training.finetune import FinetuneConfig, export_model, finetune

    if (groups_dir is None) == (self_supervised is None):
        raise ConfigError("give either a groups folder or --self-supervised DIR (not both)")
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty folder")
    get_model_info(base)
    config = FinetuneConfig(base=base, minutes=minutes, loss=loss, seed=seed, **options)
    config.check()
    start = time.perf_counter()
    if self_supervised is not None:
        data = self_supervised_groups(self_supervised, seed=seed, max_side=max_side)
    else:
        data = load_groups(groups_dir, max_side=max_side)
    log.info("training on %d images in %d groups", len(data), len(data.names))

    result = finetune(data, config, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        export_model(result.model, tmp / ONNX_FILE, get_model_info(base).input_size)
        descriptor = f"gem:p={result.p:.4f}"
        labels = np.asarray(data.labels)
        x = _describe(data, TrainedModel(tmp, base, descriptor, "", False, {}), max_side)
        x_base = _describe(data, None, max_side, base=base)
        check: dict = {"use": False, "reason": "disabled (--no-whitening)"}
        if whitening:
            check = choose_lw(x, labels, seed)
            if check["use"]:
                from lookalike.training.lw import fit_lw, group_pairs

                lw = fit_lw(x, group_pairs(labels), shrinkage=check["shrinkage"])
                lw.save(tmp / WHITENING_FILE)
        meta = {
            "base": base,
            "descriptor": descriptor,
            "whitening": bool(check["use"]),
            "max_side": max_side,
            "training": {
                "source": str(Path(self_supervised or groups_dir).expanduser().absolute()),
                "self_supervised": self_supervised is not None,
                "images": len(data),
                "groups": len(data.names),
                "loss": config.loss,
                "minutes": config.minutes,
                "epochs": result.epochs,
                "steps": result.steps,
                "seed": seed,
                "config": asdict(config),
                "whitening_check": check,
            },
        }
        write_model_json(tmp, meta)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    trained = load_trained_model(out)
    return TrainReport(
        model_dir=str(out),
        base=base,
        descriptor=descriptor,
        hash=trained.hash,
        images=len(data),
        groups=len(data.names),
        skipped=data.skipped,
        epochs=result.epochs,
        steps=result.steps,
        seconds=round(time.perf_counter() - start, 2),
        cache_seconds=round(result.cache_seconds, 2),
        device=result.device,
        losses=[round(v, 5) for v in result.losses],
        train_map_base=round(groups_map(x_base, labels), 4),
        train_map_finetuned=round(groups_map(x, labels), 4),
        whitening=check,
    )


def _describe(
    data: LabelledImages, trained: TrainedModel | None, max_side: int, base: str = "lite0"
) -> np.ndarray:
    """Descriptors of the training images as an index would compute them."""
    from lookalike.extract import Extractor

    extractor = (
        Extractor(max_side=max_side, trained=trained)
        if trained is not None
        else Extractor(base, max_side=max_side)
    )
    return np.stack([extractor.describe_image(im).descriptor for im in data.images])
